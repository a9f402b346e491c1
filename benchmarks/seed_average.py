"""Would CNNs averaged over their training seeds travel better than one seed's? (rule 43)

Rules 38-39 found the CNNs' training seed alone moves the cross-source table's ensemble by up to
0.038. Averaging several seeds' models is the textbook remedy for that variance. From the fold
logits `cross-source --seeds` cached (nothing trains): in each fold, each CNN's raw logit
averaged over the seeds (validation and held-out alike), then calibrated and combined with the
recipe's weights exactly as the table does (`fold_result`); against each seed alone.

    .venv/bin/python -m benchmarks.seed_average --runs RUNS --seeds 1234 1235 1236

RUNS is a `cross-source --seeds` runs folder holding every fold of the recipe for those seeds.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from benchmarks.recipes import prepared_recipe
from pipeline.engine.ensemble import KERAS
from pipeline.training.cross_source import ENSEMBLE, Scored, fold_calibration, fold_result, mixed, run_fold, seeded
from pipeline.training.recipe import Recipe

COLUMNS = ("as they are", "re-shared", "mixed")


def seed_folds(recipe: Recipe, runs: Path, seed: int) -> dict[str, tuple[Scored, Scored, Scored]]:
    """Every fold's (validation, held-out, re-shared) logits with the CNNs of one seed."""
    recipe, folder = seeded(recipe, seed)
    return {source: run_fold(recipe, source, runs, True, folder) for source in recipe.sources}


def averaged(sets: list[Scored], cnns: set[str]) -> Scored:
    """One seed's set with each CNN's logit replaced by its mean over the seeds' sets."""
    first = sets[0]
    if any([s.path for s in other.samples] != [s.path for s in first.samples] for other in sets):
        raise ValueError("the seeds' folds hold other items: not one recipe's folds")
    logits = {
        name: np.mean([s.logits[name] for s in sets], axis=0) if name in cnns else values
        for name, values in first.logits.items()
    }
    return Scored(first.samples, logits)


def aucs(recipe: Recipe, folds: dict[str, tuple[Scored, Scored, Scored]]) -> dict[str, dict[str, float]]:
    """Per column, each model's held-out ROC AUC per source and the mean over sources."""
    out: dict[str, dict[str, float]] = {}
    weights, calibration = recipe.combination.weights, recipe.ensemble_calibration
    for source, (val, held, reshared) in folds.items():
        fitted = fold_calibration(val, weights, calibration)  # one fit serves the three columns
        for column, scored in zip(COLUMNS, (held, reshared, mixed(held, reshared)), strict=True):
            metrics = fold_result(val, scored, weights, calibration, fitted=fitted).metrics
            for model, figures in metrics.items():
                out.setdefault(f"{column} {model}", {})[source] = figures["roc_auc"]
    return {key: {**by_source, "mean": float(np.mean(list(by_source.values())))} for key, by_source in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", type=Path, default=Path("models/recipe.json"))
    parser.add_argument("--runs", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", required=True)
    args = parser.parse_args()
    recipe = prepared_recipe(parser, args.recipe)
    cnns = {m["name"] for m in recipe.members if m["kind"] == KERAS}
    per_seed = [seed_folds(recipe, args.runs, seed) for seed in args.seeds]
    mean_folds = {
        source: tuple(averaged([folds[source][i] for folds in per_seed], cnns) for i in range(3))
        for source in recipe.sources
    }
    tables = {f"seed {seed}": aucs(recipe, folds) for seed, folds in zip(args.seeds, per_seed, strict=True)}
    tables["averaged over the seeds"] = aucs(recipe, mean_folds)
    names = [ENSEMBLE, *sorted(cnns)]
    print("held-out ROC AUC, mean over sources (per source in brackets: " + ", ".join(recipe.sources) + ")")
    for column in COLUMNS:
        print(f"\n{column}")
        for name in names:
            for label, table in tables.items():
                figures = table[f"{column} {name}"]
                per_source = ", ".join(f"{figures[s]:.3f}" for s in recipe.sources)
                print(f"  {name:16} {label:24} {figures['mean']:.3f} ({per_source})")
    print("\nensemble, mean of the two columns (as they are, re-shared):")
    for label, table in tables.items():
        two = (table[f"as they are {ENSEMBLE}"]["mean"] + table[f"re-shared {ENSEMBLE}"]["mean"]) / 2
        print(f"  {label:24} {two:.3f}")


if __name__ == "__main__":
    main()
