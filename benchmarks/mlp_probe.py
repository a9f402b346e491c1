"""Does a small MLP on the CLIP features travel to unseen sources better than the linear probe? (rule 41)

The issue asked for a linear probe first, "an MLP ... only if the table says so". This asks the
table, for the probe alone: in each cross-source fold, the shipped probe's training set (the
recipe's `clip` member, as `probe_training_samples` makes it: its crops per class and source, one
self-blended copy of each real, block 5's class token, all from the feature cache) fits

- the linear probe exactly as shipped (`fit_probe`: the table's own CLIP figures, a check), and
- a one-hidden-layer MLP (256 ReLU units, Adam, early stopping on a tenth of the training rows,
  sources and classes balanced as the probe's fit balances them) on the same standardised features,
  at two L2 strengths fixed before any run: `alpha` 1e4, about the linear probe's penalty per
  row (C = 0.0001 on some 24,000 rows), and scikit-learn's default 1e-4; three seeds each;

and each scores the whole held-out source as it is, re-shared, and both mixed (ROC AUC). Every
feature is read from the cache the table filled (run `cross-source` first); nothing is extracted.

    .venv/bin/python -m benchmarks.mlp_probe OUT.json [--recipe models/recipe.json]

OUT.json keeps each fold's figures as it finishes, so a stopped run resumes.
"""

from __future__ import annotations

import numpy as np

from benchmarks.probe_arms import COLUMNS, fold_by_fold, held_out_aucs
from pipeline.training.probe import balanced_weights, fit_probe
from pipeline.training.recipe import Recipe, clip_rows, probe_training_samples, samples_of
from pipeline.training.sources import reshared_samples

HIDDEN_UNITS = 256
ALPHAS = {"mlp, alpha 1e4": 1e4, "mlp, alpha 1e-4": 1e-4}
"""The two L2 strengths, fixed before any run (see the docstring)."""
SEEDS = (0, 1, 2)


def fold_figures(recipe: Recipe, held_out: str) -> dict[str, list[dict[str, float]]]:
    """Each probe's held-out ROC AUCs in one fold (one entry per seed; one for the linear probe)."""
    from sklearn.neural_network import MLPClassifier

    member = next(m for m in recipe.members if m["kind"] == "clip_probe")
    feature, block = member.get("feature", "cls"), int(member["block"])
    train = probe_training_samples(member, [s for s in recipe.sources if s != held_out])
    held = samples_of([held_out], None, recipe.held_out_per_class)
    features = clip_rows(train, feature, block)
    labels = np.asarray([s.label for s in train])
    sources = [s.source for s in train]
    held_features, reshared_features = (
        clip_rows(held, feature, block),
        clip_rows(reshared_samples(held), feature, block),
    )
    held_labels = np.asarray([s.label for s in held])

    linear = fit_probe(features, labels, sources, feature, float(member["regularization"]), block)
    figures = {
        "linear (shipped)": [
            held_out_aucs(held_labels, linear.logits_of(held_features), linear.logits_of(reshared_features))
        ]
    }
    mean, scale = features.mean(axis=0), features.std(axis=0) + 1e-6
    weights = balanced_weights(labels.tolist(), sources)
    for name, alpha in ALPHAS.items():
        figures[name] = []
        for seed in SEEDS:
            mlp = MLPClassifier(
                hidden_layer_sizes=(HIDDEN_UNITS,), alpha=alpha, early_stopping=True, max_iter=200, random_state=seed
            )
            mlp.fit((features - mean) / scale, labels, sample_weight=weights)
            figures[name].append(
                held_out_aucs(
                    held_labels,
                    mlp.predict_proba((held_features - mean) / scale)[:, 1],
                    mlp.predict_proba((reshared_features - mean) / scale)[:, 1],
                )
            )
            print(f"  {held_out} {name} seed {seed}: {figures[name][-1]}", flush=True)
    return figures


def main() -> None:
    recipe, done = fold_by_fold(__doc__.splitlines()[0], fold_figures)
    print("\nheld-out ROC AUC of the probe alone; MLPs: mean over seeds (range)")
    for name in done[recipe.sources[0]]:
        for column in COLUMNS:
            per_seed = np.asarray([[run[column] for run in done[s][name]] for s in recipe.sources])  # source x seed
            cells = [f"{s} {per_seed[i].mean():.3f}" for i, s in enumerate(recipe.sources)]
            means = per_seed.mean(axis=0)  # the mean over sources, per seed
            print(f"  {name:18} {column:12} {', '.join(cells)} | mean {means.mean():.3f} ({np.ptp(means):.3f})")
        two = [
            np.mean([(done[s][name][i]["as they are"] + done[s][name][i]["re-shared"]) / 2 for s in recipe.sources])
            for i in range(len(done[recipe.sources[0]][name]))
        ]
        print(f"  {name:18} mean of the two columns, per seed: {' / '.join(f'{v:.3f}' for v in two)}")


if __name__ == "__main__":
    main()
