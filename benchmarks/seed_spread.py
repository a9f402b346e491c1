"""The spread of cross-source tables made by one recipe with different training seeds (rule 39).

Each table is the JSON `python -m pipeline cross-source --json` writes; given the tables of one
recipe whose CNNs were trained with different seeds (rules 35, 38, 39), this prints, for every
model and each column (as they are, re-shared, mixed), the held-out ROC AUC of each table, their
mean and range, per source and for the mean over sources, and the same for the weight trials:

    .venv/bin/python -m benchmarks.seed_spread TABLE_1234.json TABLE_1235.json TABLE_1236.json

The range is a floor: a difference between two recipes smaller than it, each made with one seed,
says nothing about the recipes.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

COLUMNS = {
    "as they are": ("folds", "mean"),
    "re-shared": ("reshared_folds", "reshared_mean"),
    "mixed": ("mixed_folds", "mixed_mean"),
}
"""Column -> the table's keys for its folds and its mean over folds."""


def _figures(tables: list[dict], folds_key: str, mean_key: str) -> dict[tuple[str, str], list[float]]:
    """(source or "mean", model) -> that figure's ROC AUC in each table."""
    figures: dict[tuple[str, str], list[float]] = {}
    for table in tables:
        for source, models in table.get(folds_key, {}).items():
            for model, metrics in models.items():
                figures.setdefault((source, model), []).append(metrics["roc_auc"])
        for model, metrics in table.get(mean_key, {}).items():
            figures.setdefault(("mean", model), []).append(metrics["roc_auc"])
    return {key: values for key, values in figures.items() if len(values) == len(tables)}


def _weight_trials(tables: list[dict]) -> dict[str, list[float]]:
    """CLIP weight -> the table's weight-trial score (mean of the two columns) in each table."""
    scores: dict[str, list[float]] = {}
    for table in tables:
        for weight, score in table.get("weight_choice", {}).get("scores", {}).items():
            scores.setdefault(weight, []).append(score)
    return {weight: values for weight, values in scores.items() if len(values) == len(tables)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tables", nargs="+", type=Path, help="cross-source --json tables of one recipe")
    args = parser.parse_args()
    tables = [json.loads(path.read_text()) for path in args.tables]
    print(f"{len(tables)} tables: {', '.join(str(path) for path in args.tables)}")
    for column, (folds_key, mean_key) in COLUMNS.items():
        print(f"\n{column}: held-out ROC AUC per table | mean | range")
        for (source, model), values in sorted(_figures(tables, folds_key, mean_key).items()):
            each = " / ".join(f"{value:.3f}" for value in values)
            print(f"  {source:10} {model:16} {each} | {np.mean(values):.3f} | {np.ptp(values):.3f}")
    trials = _weight_trials(tables)
    if trials:
        print("\nweight trials (CLIP's weight against the CNNs' 1 each; mean of the two columns) | mean | range")
        for weight, values in sorted(trials.items(), key=lambda item: float(item[0])):
            each = " / ".join(f"{value:.3f}" for value in values)
            print(f"  {float(weight):>5g}  {each} | {np.mean(values):.3f} | {np.ptp(values):.3f}")
        choices = " / ".join(f"{table['weight_choice']['chosen']:g}" for table in tables)
        print(f"  chosen per table: {choices}")


if __name__ == "__main__":
    main()
