"""Probes on cached CLIP class tokens compared fold by fold, the probe alone (rules 85-86).

An arm names the blocks whose class tokens it reads (side by side) and how it fits a probe on the
shipped probe's training set of a cross-source fold (`probe_training_samples`); each arm's probe
scores the held-out source as it is, re-shared and both mixed, and the fold's validation mix of
its training sources (in domain). Nothing is extracted: run `cross-source` first.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from benchmarks.recipes import prepared_recipe
from pipeline.training.probe import fit_per_source_probe, fit_probe
from pipeline.training.recipe import Recipe, probe_rows, probe_training_samples, samples_of
from pipeline.training.sources import reshared_samples

Scorer = Callable[[np.ndarray], np.ndarray]
"""(N, D) features to (N,) logits."""
Fit = Callable[[np.ndarray, np.ndarray, list[str], float], Scorer]
"""A probe's fit: training features, labels, each row's source and the member's regularisation."""


COLUMNS = ("as they are", "re-shared", "mixed")


def held_out_aucs(labels: np.ndarray, held: np.ndarray, reshared: np.ndarray) -> dict[str, float]:
    """ROC AUC of scores on held-out crops as they are, on their re-shared copies, and both mixed."""
    return {
        "as they are": float(roc_auc_score(labels, held)),
        "re-shared": float(roc_auc_score(labels, reshared)),
        "mixed": float(roc_auc_score(np.concatenate([labels, labels]), np.concatenate([held, reshared]))),
    }


def held_out_mean(figures: dict[str, float]) -> float:
    """The mean of an arm's two held-out columns in one fold (as they are, re-shared): what the
    probe rules' bars read."""
    return (figures["as they are"] + figures["re-shared"]) / 2


def pooled_fit(features: np.ndarray, labels: np.ndarray, sources: list[str], regularization: float) -> Scorer:
    """The shipped probe's fit (`fit_probe`) on every training row."""
    return fit_probe(features, labels, sources, "cls", regularization).logits_of


def mean_of_sources(features: np.ndarray, labels: np.ndarray, sources: list[str], regularization: float) -> Scorer:
    """The mean logit of one probe per training source (`fit_per_source_probe`, rule 86)."""
    return fit_per_source_probe(features, labels, sources, "cls", regularization).logits_of


@dataclass(frozen=True)
class Arm:
    blocks: tuple[int, ...]
    fit: Fit = pooled_fit


def fold_figures(recipe: Recipe, held_out: str, arms: dict[str, Arm]) -> dict[str, dict[str, float]]:
    """Each arm's held-out ROC AUCs (as they are, re-shared, mixed) and validation ROC AUC in one fold."""
    member = next(m for m in recipe.members if m["kind"] == "clip_probe")
    kept = [s for s in recipe.sources if s != held_out]
    train = probe_training_samples(member, kept)
    held = samples_of([held_out], None, recipe.held_out_per_class)
    val = samples_of(kept, "val", recipe.val_per_class)
    labels = np.asarray([s.label for s in train])
    figures = {}
    for name, arm in arms.items():
        score = arm.fit(
            probe_rows(train, "cls", arm.blocks), labels, [s.source for s in train], float(member["regularization"])
        )
        figures[name] = held_out_aucs(
            np.asarray([s.label for s in held]),
            score(probe_rows(held, "cls", arm.blocks)),
            score(probe_rows(reshared_samples(held), "cls", arm.blocks)),
        )
        figures[name]["validation"] = float(
            roc_auc_score([s.label for s in val], score(probe_rows(val, "cls", arm.blocks)))
        )
        print(f"  {held_out} {name}: {figures[name]}", flush=True)
    return figures


def fold_by_fold(description: str, figures_of: Callable[[Recipe, str], dict]) -> tuple[Recipe, dict]:
    """A probe benchmark's command line (OUT.json, `--recipe`): `figures_of(recipe, held_out)` for
    each fold in turn, kept in OUT.json as each finishes so a stopped run resumes; the recipe and
    every fold's figures."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("out", type=Path, help="JSON of each fold's figures (a stopped run resumes from it)")
    parser.add_argument("--recipe", type=Path, default=Path("models/recipe.json"))
    args = parser.parse_args()
    recipe = prepared_recipe(parser, args.recipe)
    done = json.loads(args.out.read_text()) if args.out.exists() else {}
    for source in recipe.sources:
        if source not in done:
            done[source] = figures_of(recipe, source)
            args.out.write_text(json.dumps(done, indent=2) + "\n")
    return recipe, done


def main(description: str, arms: dict[str, Arm]) -> None:
    """The command line of a comparison of `arms`: each fold in turn, then the table."""
    recipe, done = fold_by_fold(description, lambda recipe, source: fold_figures(recipe, source, arms))
    print("\nROC AUC of the probe alone, per held-out source, and the mean over folds")
    for name in arms:
        for column in (*COLUMNS, "validation"):
            cells = [f"{s} {done[s][name][column]:.3f}" for s in recipe.sources]
            mean = np.mean([done[s][name][column] for s in recipe.sources])
            print(f"  {name:22} {column:12} {', '.join(cells)} | mean {mean:.3f}")
        two = np.mean([held_out_mean(done[s][name]) for s in recipe.sources])
        print(f"  {name:22} mean of the two held-out columns: {two:.3f}")
