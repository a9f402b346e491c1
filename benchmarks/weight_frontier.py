"""What the CLIP probe's weight costs in domain and buys on unseen sources, for two probes (rule 88).

For each (recipe, runs folder) given, on the same CNN seeds' folds, and for each weight of the
table's grid (the first member's weight against the others' 1 each): the ensemble's ROC AUC on
each fold's validation mix (the sources it trained on) and on its held-out source as it is and
re-shared, each a mean over the folds, per seed. Every logit is read from the folds' caches;
nothing trains (`require_folds`).

    .venv/bin/python -m benchmarks.weight_frontier --arm NAME RECIPE RUNS [--arm ...] --seeds 1234 1235 1236 [--json OUT]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from benchmarks.recipes import prepared_recipe, require_folds
from pipeline.engine.ensemble import weighted_logit
from pipeline.training.cross_source import WEIGHT_GRID, fold_calibration, run_fold, seeded
from pipeline.training.recipe import Recipe

COLUMNS = ("validation", "as they are", "re-shared")


def frontier(recipe: Recipe, runs: Path, seed: int) -> dict[str, dict[str, float]]:
    """Weight -> column -> ROC AUC (mean over folds) for one CNN seed's folds."""
    seeded_recipe, cnn_folder = seeded(recipe, seed)
    first, *rest = [m["name"] for m in seeded_recipe.members if m["name"] in seeded_recipe.combination.weights]
    sums = {w: dict.fromkeys(COLUMNS, 0.0) for w in WEIGHT_GRID}
    for source in seeded_recipe.sources:
        val, held, reshared = run_fold(seeded_recipe, source, runs, True, cnn_folder)
        for weight in WEIGHT_GRID:
            weights = {first: weight, **dict.fromkeys(rest, 1.0)}
            temperatures = fold_calibration(val, weights, seeded_recipe.ensemble_calibration)[0]
            for column, scored in zip(COLUMNS, (val, held, reshared), strict=True):
                auc = roc_auc_score(scored.labels, weighted_logit(scored.logits, temperatures, weights))
                sums[weight][column] += auc / len(seeded_recipe.sources)
    return {str(w): columns for w, columns in sums.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arm", nargs=3, action="append", metavar=("NAME", "RECIPE", "RUNS"), required=True)
    parser.add_argument("--seeds", type=int, nargs="+", required=True)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    report: dict[str, dict[str, dict]] = {}
    for name, recipe_path, runs in args.arm:
        recipe = prepared_recipe(parser, Path(recipe_path))
        for seed in args.seeds:
            require_folds(parser, *seeded(recipe, seed)[:1], Path(runs), seeded(recipe, seed)[1])
        report[name] = {str(seed): frontier(recipe, Path(runs), seed) for seed in args.seeds}
    print(
        "ROC AUC, mean over folds: validation | as they are | re-shared | mean of the two held-out; per seed, then their mean"
    )
    for name, by_seed in report.items():
        print(f"{name}")
        for weight in map(str, WEIGHT_GRID):
            rows = np.asarray([[by_seed[s][weight][c] for c in COLUMNS] for s in by_seed])  # seed x column
            two = rows[:, 1:].mean(axis=1)
            seeds = " / ".join(f"{v:.3f} {a:.3f} {r:.3f} {t:.3f}" for (v, a, r), t in zip(rows, two, strict=True))
            mean = rows.mean(axis=0)
            print(f"  {weight:>5}  {seeds} | {mean[0]:.3f} {mean[1]:.3f} {mean[2]:.3f} {two.mean():.3f}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
