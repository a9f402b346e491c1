"""Another way to combine a recipe's members, against the ensemble's own, on a runs folder's folds.

Each fold of a `cross-source --runs` folder is scored from its cached logits (nothing trains):
the members' temperatures as the table fits them on the fold's validation mix, then two ways of
combining them into one logit per face (the ensemble's weighted mean of calibrated logits, and a
variant), each calibrated on the fold's validation mix in the recipe's form. The two are compared
by the table's own paired bootstrap draws, as they are, re-shared and mixed (rules 81 and 83).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from benchmarks.recipes import prepared_recipe, require_folds
from pipeline.engine.ensemble import sigmoid, weighted_logit
from pipeline.training.calibration import expected_calibration_error, fit_calibration
from pipeline.training.cross_source import (
    Scored,
    bootstrap_roc_auc,
    bootstrap_seed,
    fold_calibration,
    interval,
    run_fold,
)
from pipeline.training.recipe import Recipe

SETS = ("val", "held", "reshared")
"""The fold's validation mix, its held-out items as they are, and the same re-shared."""
COLUMNS = {"as they are": "held", "re-shared": "reshared"}
WAYS = ("ensemble", "variant")


@dataclass
class Fold:
    """One fold's scored sets and its members' temperatures (fitted on its validation mix)."""

    source: str
    sets: dict[str, Scored]
    temperatures: dict[str, float]


Combine = Callable[[Fold, str], np.ndarray]
"""(fold, set name) -> one uncalibrated logit per face of that set."""
Notes = Callable[[Fold], dict[str, str]]
"""A fold's own diagnostics: column -> text."""


def logit_mean(weights: dict[str, float]) -> Combine:
    """The ensemble's own way: the weighted mean of the members' calibrated logits."""
    return lambda fold, name: weighted_logit(fold.sets[name].logits, fold.temperatures, weights)


def compare(
    recipe: Recipe,
    runs: Path,
    weights: dict[str, float],
    variant: Combine,
    notes: Notes | None = None,
) -> dict:
    """Score every fold both ways, print each source's figures and the paired mean difference,
    and return them; `notes` adds a fold's own diagnostics (column -> text) to its lines."""
    ways = {"ensemble": logit_mean(weights), "variant": variant}
    report: dict = {"weights": weights, "sources": {}, "mean": {}}
    draws: dict[str, dict[str, list[np.ndarray]]] = {c: {w: [] for w in WAYS} for c in [*COLUMNS, "mixed"]}
    for source in recipe.sources:
        val, held, reshared = run_fold(recipe, source, runs, True)
        temperatures = fold_calibration(val, weights, recipe.ensemble_calibration)[0]
        fold = Fold(source, dict(zip(SETS, (val, held, reshared), strict=True)), temperatures)
        labels = held.labels
        row: dict = {"validation_roc_auc": {}}
        probabilities: dict[str, dict[str, np.ndarray]] = {c: {} for c in COLUMNS}
        for way, combine in ways.items():
            val_logit = combine(fold, "val")
            temperature, offset = fit_calibration(val_logit, val.labels, recipe.ensemble_calibration)
            row["validation_roc_auc"][way] = float(roc_auc_score(val.labels, val_logit))
            for column, name in COLUMNS.items():
                probabilities[column][way] = sigmoid(combine(fold, name) / temperature + offset)
        probabilities["mixed"] = {w: np.concatenate([probabilities[c][w] for c in COLUMNS]) for w in WAYS}
        for column, by_way in probabilities.items():
            copies = 2 if column == "mixed" else 1  # the mixed column holds each item twice
            row[column] = {w: {"roc_auc": float(roc_auc_score(np.tile(labels, copies), p))} for w, p in by_way.items()}
            for w, p in by_way.items():
                if column != "mixed":
                    row[column][w]["ece"] = expected_calibration_error(p, labels)
                draws[column][w].append(bootstrap_roc_auc(labels, p, bootstrap_seed(source), copies=copies))
        report["sources"][source] = row
        extra = notes(fold) if notes else {}
        print(
            f"{source}: validation {row['validation_roc_auc']['ensemble']:.3f} -> {row['validation_roc_auc']['variant']:.3f}"
        )
        for column in probabilities:
            cells = " -> ".join(f"{row[column][w]['roc_auc']:.3f}" for w in WAYS)
            if column != "mixed":
                eces = " -> ".join(f"{row[column][w]['ece']:.3f}" for w in WAYS)
                cells += f"; ECE {eces}"
            print(f"  {column:11} ROC AUC {cells}{'; ' + extra[column] if column in extra else ''}")
    for column, by_way in draws.items():
        figures = {
            w: float(np.mean([report["sources"][s][column][w]["roc_auc"] for s in recipe.sources])) for w in WAYS
        }
        gap = interval(np.mean(by_way["variant"], axis=0) - np.mean(by_way["ensemble"], axis=0))
        difference = figures["variant"] - figures["ensemble"]
        report["mean"][column] = {**figures, "difference": difference, "interval": gap}
        print(
            f"mean {column:11} ensemble {figures['ensemble']:.3f}, variant {figures['variant']:.3f}:"
            f" {difference:+.3f} [{gap[0]:+.3f}, {gap[1]:+.3f}]"
        )
    return report


def run(description: str, variant: Callable[[Recipe, dict[str, float]], tuple[Combine, Notes | None]]) -> None:
    """A benchmark's command line: the recipe (`--recipe`) and runs folder (`--runs`) it reads,
    `variant` built for the recipe's pictures' weights and compared, the report written to `--json`."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--recipe", type=Path, default=Path("models/recipe.json"))
    parser.add_argument("--runs", type=Path, required=True)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    recipe = prepared_recipe(parser, args.recipe)
    require_folds(parser, recipe, args.runs)
    weights = recipe.picture_combination.weights
    combine, notes = variant(recipe, weights)
    report = compare(recipe, args.runs, weights, combine, notes)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
