"""Which measure of the members' disagreement marks the faces the ensemble gets wrong on sources it never saw? (rule 95)

A face is `uncertain` when its members disagree beyond a margin measured on held-out sources.
With v8's four members the largest gap between two of them exceeds that margin on almost every
face, in domain too. For each measure (`pipeline.engine.verdict.DISAGREEMENTS`), on each CNN
seed's four folds pooled: the ROC AUC with which it separates the held-out items the fold
ensemble answers wrong at its threshold from those it answers right (`--column`: the items as
they are, re-shared, or both mixed, as the table's three columns; rules 95 and 96); beside
it, the same for the ensemble's closeness to its threshold (what the band already uses), and on
the first seed the margin `choose_disagreement_margin` gives the measure, with the shares of
held-out items and of the folds' validation items beyond it and the ensemble's accuracy on the
held-out items left decided.

    .venv/bin/python -m benchmarks.disagreement --recipe benchmarks/pair_recipe_pictures.json --runs RUNS --seeds 1234 1235 1236 1237 [--column reshared]

RUNS is a `cross-source --seeds` runs folder holding every fold of the recipe for those seeds
(read from its caches; a fold missing there is a one-line error).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from benchmarks.recipes import prepared_recipe, require_folds
from pipeline.engine.ensemble import sigmoid
from pipeline.engine.verdict import DISAGREEMENTS, RANGE, disagreement
from pipeline.training.calibration import choose_disagreement_margin
from pipeline.training.cross_source import fold_result, mixed, run_fold, seeded
from pipeline.training.recipe import Recipe

CLOSENESS = "closeness to the threshold"
COLUMNS = ("as_they_are", "reshared", "mixed")


def pooled_folds(recipe: Recipe, runs: Path, seed: int, column: str = COLUMNS[0]) -> dict[str, np.ndarray]:
    """Over the seed's folds pooled: per measure its value on each held-out item of `column` and
    each validation item, whether the fold ensemble was right on each held-out item, and its
    closeness to its threshold there."""
    recipe, folder = seeded(recipe, seed)
    weights = recipe.combination.weights
    names = [n for n in weights if weights[n] > 0]
    w = np.asarray([weights[n] for n in names])
    parts: dict[str, list[np.ndarray]] = {}
    for source in recipe.sources:
        val, held, reshared = run_fold(recipe, source, runs, True, folder)
        held = {"as_they_are": held, "reshared": reshared, "mixed": mixed(held, reshared)}[column]
        result = fold_result(val, held, weights, recipe.ensemble_calibration)
        held_members = np.stack([result.probabilities[n] for n in names])
        val_members = np.stack([sigmoid(val.logits[n] / result.temperatures[n]) for n in names])
        threshold = result.metrics["ensemble"]["threshold"]
        parts.setdefault("correct", []).append(result.correct)
        parts.setdefault(CLOSENESS, []).append(-np.abs(result.probabilities["ensemble"] - threshold))
        for measure in DISAGREEMENTS:
            parts.setdefault(measure, []).append(disagreement(held_members, measure, w))
            parts.setdefault(f"{measure} val", []).append(disagreement(val_members, measure, w))
    return {key: np.concatenate(values) for key, values in parts.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", type=Path, default=Path("benchmarks/pair_recipe_pictures.json"))
    parser.add_argument("--runs", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1234])
    parser.add_argument(
        "--column", choices=COLUMNS, default=COLUMNS[0], help="which held-out items (default: as they are)"
    )
    args = parser.parse_args()
    recipe = prepared_recipe(parser, args.recipe)
    for seed in args.seeds:
        seeded_recipe, folder = seeded(recipe, seed)
        require_folds(parser, seeded_recipe, args.runs, folder)
    rows = (*DISAGREEMENTS, CLOSENESS)
    aucs: dict[str, list[float]] = {row: [] for row in rows}
    for i, seed in enumerate(args.seeds):
        pooled = pooled_folds(recipe, args.runs, seed, args.column)
        wrong = ~pooled["correct"]
        print(f"\nCNN seed {seed}: {len(wrong)} held-out items, {wrong.mean():.1%} answered wrong")
        for row in rows:
            aucs[row].append(roc_auc_score(wrong, pooled[row]))
            line = f"  {row:28} ROC AUC of wrong answers {aucs[row][-1]:.3f}"
            if i == 0 and row in DISAGREEMENTS:
                margin = choose_disagreement_margin(pooled[row], pooled["correct"])
                if margin is None:
                    line += "; margin none"
                else:
                    beyond, val_beyond = pooled[row] > margin, pooled[f"{row} val"] > margin
                    decided = pooled["correct"][~beyond]
                    line += (
                        f"; margin {margin:.2f}: beyond it {beyond.mean():.1%} of held-out items"
                        f" ({val_beyond.mean():.1%} of validation items), accuracy on the rest"
                        f" {decided.mean() if len(decided) else float('nan'):.3f}"
                        f" (all {pooled['correct'].mean():.3f})"
                    )
            print(line)
    print("\nmean over seeds (each seed's figures):")
    for row in rows:
        beats = (
            ""
            if row in (RANGE, CLOSENESS)
            else f", above range on {sum(a > r for a, r in zip(aucs[row], aucs[RANGE], strict=True))} of {len(aucs[row])} seeds"
        )
        print(f"  {row:28} {np.mean(aucs[row]):.3f} ({' / '.join(f'{a:.3f}' for a in aucs[row])}){beats}")


if __name__ == "__main__":
    main()
