"""Can a calibration fitted on sources the models never saw make held-out probabilities honest? (rule 42)

The shipped ensemble is calibrated on its own sources' validation mix, and on each source the
cross-source table holds out its ECE is 0.10-0.68 (target 0.10). Is that a temperature's fault,
which a calibration fitted on unseen sources would mend, or a shift that differs from source to
source, which no single calibration can? Nested, so no source is scored by a calibration fitted
on itself: in each fold, the ensemble's combined logit (members calibrated on the fold's
validation mix, combined with the recipe's weights, exactly as the table combines them) on the
held-out items, as they are and re-shared, of the *other* folds fits the recipe's calibration
form, which then scores this fold's held-out items. Printed per CNN seed and source: ECE with
the shipped way (validation mix) and the nested one, as they are and re-shared, and the fitted
temperature and offset.

    .venv/bin/python -m benchmarks.held_out_calibration --runs RUNS --seeds 1234 1235 1236

RUNS is a `cross-source --seeds` runs folder holding every fold of the recipe for those seeds;
the folds' logits come from its caches (a fold missing there is a one-line error: make the
table first).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from benchmarks.recipes import prepared_recipe, require_folds
from pipeline.engine.ensemble import sigmoid, weighted_logit
from pipeline.training.calibration import expected_calibration_error, fit_calibration
from pipeline.training.cross_source import fold_calibration, run_fold, seeded
from pipeline.training.recipe import Recipe

COLUMNS = ("as they are", "re-shared")


def fold_logits(
    recipe: Recipe, runs: Path, seed: int
) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray, float, float]]]:
    """Per held-out source and column: (combined logit, labels, and the shipped way's temperature
    and offset fitted on the fold's validation mix)."""
    recipe, folder = seeded(recipe, seed)
    out = {}
    for source in recipe.sources:
        val, held, reshared = run_fold(recipe, source, runs, True, folder)
        weights = recipe.combination.weights
        temperatures, temperature, offset = fold_calibration(val, weights, recipe.ensemble_calibration)
        out[source] = {
            column: (weighted_logit(scored.logits, temperatures, weights), scored.labels, temperature, offset)
            for column, scored in zip(COLUMNS, (held, reshared), strict=True)
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", type=Path, default=Path("models/recipe.json"))
    parser.add_argument("--runs", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1234])
    args = parser.parse_args()
    recipe = prepared_recipe(parser, args.recipe)
    for seed in args.seeds:
        seeded_recipe, folder = seeded(recipe, seed)
        require_folds(parser, seeded_recipe, args.runs, folder)
    worst: dict[str, list[float]] = {"shipped": [], "nested": []}
    for seed in args.seeds:
        folds = fold_logits(recipe, args.runs, seed)
        print(f"\nCNN seed {seed}: ECE shipped -> nested (nested calibration: temperature, offset)")
        means: dict[str, list[float]] = {f"{way} {column}": [] for way in ("shipped", "nested") for column in COLUMNS}
        for source, columns in folds.items():
            others = [folds[s][c] for s in folds if s != source for c in COLUMNS]
            temperature, offset = fit_calibration(
                np.concatenate([logits for logits, *_ in others]),
                np.concatenate([labels for _, labels, *_ in others]),
                recipe.ensemble_calibration,
            )
            cells = []
            for column, (logits, labels, shipped_t, shipped_b) in columns.items():
                shipped = expected_calibration_error(sigmoid(logits / shipped_t + shipped_b), labels)
                nested = expected_calibration_error(sigmoid(logits / temperature + offset), labels)
                means[f"shipped {column}"].append(shipped)
                means[f"nested {column}"].append(nested)
                cells.append(f"{column} {shipped:.3f} -> {nested:.3f}")
                if column == "as they are":
                    worst["shipped"].append(shipped)
                    worst["nested"].append(nested)
            print(f"  {source:10} {', '.join(cells)} ({temperature:.3f}, {offset:+.3f})")
        print("  mean       " + ", ".join(f"{name} {np.mean(values):.3f}" for name, values in means.items()))
    print(
        f"\nas they are, over every seed and source: shipped ECE at most 0.10 in {sum(e <= 0.10 for e in worst['shipped'])}"
        f" of {len(worst['shipped'])}, nested in {sum(e <= 0.10 for e in worst['nested'])}"
    )


if __name__ == "__main__":
    main()
