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


def chosen_on_other_folds(done: dict[str, dict[str, dict[str, float]]], source: str, candidates: list[str]) -> str:
    """The candidate arm with the best mean of the two held-out columns over every fold but `source`'s."""
    others = [s for s in done if s != source]
    return max(candidates, key=lambda arm: np.mean([held_out_mean(done[s][arm]) for s in others]))


def chosen_arm_table(sources: list[str], done: dict, candidates: list[str], baseline: str) -> None:
    """Print every arm's figures per fold, then the candidates chosen without looking at the fold
    they are scored on (`chosen_on_other_folds`) against `baseline` in every fold (rules 110, 112),
    and the candidate the four folds together would choose."""
    arms = candidates if baseline in candidates else [baseline, *candidates]
    print("\nPer arm: as they are / re-shared / validation, per held-out source | mean of the two held-out columns")
    for arm in arms:
        cells = [
            f"{s} {done[s][arm]['as they are']:.3f}/{done[s][arm]['re-shared']:.3f}/{done[s][arm]['validation']:.3f}"
            for s in sources
        ]
        print(f"  {arm:9} {', '.join(cells)} | {np.mean([held_out_mean(done[s][arm]) for s in sources]):.3f}")
    rows = {"chosen on the other folds": {s: chosen_on_other_folds(done, s, candidates) for s in sources}}
    rows[baseline] = dict.fromkeys(sources, baseline)
    for name, picked in rows.items():
        figures = [done[s][picked[s]] for s in sources]
        picks = ", ".join(
            f"{s} {picked[s]} {f['as they are']:.3f}/{f['re-shared']:.3f}" for s, f in zip(sources, figures)
        )
        print(
            f"\n{name}: {picks}\n  as they are {np.mean([f['as they are'] for f in figures]):.3f}, "
            f"re-shared {np.mean([f['re-shared'] for f in figures]):.3f}, "
            f"mean of the two {np.mean([held_out_mean(f) for f in figures]):.3f}, "
            f"validation {np.mean([f['validation'] for f in figures]):.3f}, "
            f"lowest as they are {min(f['as they are'] for f in figures):.3f}"
        )
    everywhere = max(candidates, key=lambda arm: np.mean([held_out_mean(done[s][arm]) for s in sources]))
    print(f"\nChosen on all four folds: {everywhere}")


def compare_chosen(description: str, arms: dict[str, Arm], baseline: str) -> None:
    """The command line of a comparison of `arms` where the arm is chosen on the other folds:
    each fold in turn, then `chosen_arm_table` of every arm but `baseline` against it."""
    recipe, done = fold_by_fold(description, lambda recipe, source: fold_figures(recipe, source, arms))
    chosen_arm_table(recipe.sources, done, [arm for arm in arms if arm != baseline], baseline)


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
