"""What is a person told about a face from a source the models never saw? (rule 107)

The cross-source table ranks and calibrates; a person reads a one-word verdict. For each fold of
a `cross-source --runs` folder (read from its caches; nothing trains), the fold's ensemble is
decided as `train-ensemble` decides the shipped one: the members' temperatures and the
ensemble's calibration fitted on the fold's validation mix, the threshold placed there by the
recipe's rule, the uncertain band chosen around it there, and the recipe's disagreement margin.
It then decides each held-out face as the only face of a photo, exactly as `evaluate` does
(`photo_verdict`, with the crop's focus, so rule 103's soft faces are `uncertain`). Printed per
held-out source and class: how many faces are told `fake`, `uncertain` and `real`, as they are and
re-shared; with `--pictures`, the recipe's weighing of pictures (the engine's for photos).

    .venv/bin/python -m benchmarks.held_out_verdicts --recipe models/recipe.json --runs RUNS [--pictures]
        [--held-out SOURCE ...] [--unseen-odds] [--json OUT]

With `--unseen-odds` (rule 111), each fold's decision gives `fake` and `real` only where its
curves, measured on the other folds' held-out faces, give the band's odds.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np

from benchmarks.recipes import prepared_recipe, require_folds
from pipeline.config import VerdictSettings
from pipeline.engine.ensemble import sigmoid, weighted_logit
from pipeline.engine.faces import face_focus, is_toned
from pipeline.engine.verdict import DecisionRule
from pipeline.training.calibration import choose_threshold, choose_uncertain_band, score_curves
from pipeline.training.cross_source import Scored, fold_calibration, run_fold
from pipeline.training.data import read_face
from pipeline.training.evaluate import photo_verdict
from pipeline.training.recipe import Recipe

LABELS = ("fake", "uncertain", "real")
CLASSES = {0: "real", 1: "fake"}


Fold = tuple[dict[str, float], float, float, DecisionRule]
"""A fold's decision (`fold_decision`): member temperatures, calibration, decision rule."""


def fold_decision(recipe: Recipe, val: Scored) -> Fold:
    """The fold ensemble's member temperatures, calibration (temperature, offset) and decision
    rule, all from its validation mix, as `train-ensemble` fits the shipped ensemble's."""
    combination = recipe.combination
    weights = {n: w for n, w in combination.weights.items() if w > 0}
    temperatures, temperature, offset = fold_calibration(val, weights, recipe.ensemble_calibration)
    probabilities = sigmoid(weighted_logit(val.logits, temperatures, weights) / temperature + offset)
    threshold = choose_threshold(probabilities, val.labels, recipe.threshold_rule)
    low, high = choose_uncertain_band(probabilities, val.labels, threshold)
    decision = DecisionRule(
        threshold,
        low,
        high,
        combination.disagreement_margin,
        disagreement=recipe.disagreement,
        member_weights=tuple(weights.items()),
    )
    return temperatures, temperature, offset, decision


def held_out_probabilities(fold: Fold, held: Scored) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Each member's calibrated probability and the fold ensemble's, for every face of `held`."""
    temperatures, temperature, offset, decision = fold
    weights = dict(decision.member_weights)
    members = {n: sigmoid(held.logits[n] / temperatures[n]) for n in weights}
    return members, sigmoid(weighted_logit(held.logits, temperatures, weights) / temperature + offset)


def with_other_folds_curves(fold: Fold, others: list[tuple[np.ndarray, Scored]]) -> Fold:
    """The fold's decision with rule 111's policy on, its four curves measured on the other folds'
    held-out faces as they are (each with its own fold's probabilities), never its own source."""
    probabilities = np.concatenate([p for p, _ in others])
    labels = np.concatenate([held.labels for _, held in others])
    real, fake = probabilities[labels == 0], probabilities[labels == 1]
    temperatures, temperature, offset, decision = fold
    return temperatures, temperature, offset, replace(decision, unseen_odds=True, **score_curves(real, fake))


def held_out_labels(recipe: Recipe, fold: Fold, held: Scored) -> list[str]:
    """Each held-out face's verdict as a one-face photo under the fold's decision (`fold_decision`)."""
    decision = fold[3]
    members, ensemble = held_out_probabilities(fold, held)
    settings = VerdictSettings()
    labels = []
    for row, sample in enumerate(held.samples):
        crop = read_face(sample.path, 224)
        scores = {n: float(p[row]) for n, p in members.items()}
        labels.append(
            photo_verdict(
                float(ensemble[row]),
                scores,
                decision,
                recipe.aggregation,
                face_focus(crop),
                settings,
                is_toned(crop, settings),
            )
        )
    return labels


def counts(held: Scored, labels: list[str]) -> dict[str, dict[str, int]]:
    """{class: {verdict: faces}}."""
    tally = Counter(zip(held.labels.tolist(), labels, strict=True))
    return {CLASSES[c]: {label: tally[(c, label)] for label in LABELS} for c in CLASSES}


def line(source: str, column: str, by_class: dict[str, dict[str, int]]) -> str:
    """One printed row: per class, its faces told fake / uncertain / real, in shares."""
    parts = []
    for name, tally in by_class.items():
        total = sum(tally.values())
        shares = " / ".join(f"{tally[label] / total:.1%}" if total else "-" for label in LABELS)
        parts.append(f"{name} {total}: {shares}")
    return f"| {source} | {column} | " + " | ".join(parts) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", type=Path, default=Path("models/recipe.json"))
    parser.add_argument("--runs", type=Path, required=True)
    parser.add_argument("--pictures", action="store_true", help="the recipe's weighing of pictures")
    parser.add_argument("--held-out", nargs="+", metavar="SOURCE", help="only these folds (the others unfinished)")
    parser.add_argument(
        "--unseen-odds",
        action="store_true",
        help="rule 111's policy, each fold's curves from the other folds' held-out faces",
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    recipe = prepared_recipe(parser, args.recipe)
    if args.pictures:
        recipe = recipe.weighed_as_pictures()
    held_out = args.held_out or list(recipe.sources)
    require_folds(parser, recipe, args.runs, held_out=held_out)
    report: dict[str, dict[str, dict[str, dict[str, int]]]] = {}
    print("| held-out source | items | real faces: fake / uncertain / real | fakes: fake / uncertain / real |")
    print("|---|---|---|---|")
    folds = {}
    for source in held_out:
        val, held, reshared = run_fold(recipe, source, args.runs, True)
        folds[source] = (fold_decision(recipe, val), held, reshared)  # one fit serves both columns
    # Each fold's ensemble probabilities on its held-out faces as they are: the other folds' curves.
    scored = {s: (held_out_probabilities(f, h)[1], h) for s, (f, h, _) in folds.items()} if args.unseen_odds else {}
    for source, (fold, held, reshared) in folds.items():
        if args.unseen_odds:
            fold = with_other_folds_curves(fold, [scored[s] for s in folds if s != source])
        report[source] = {}
        for column, items in (("as they are", held), ("re-shared", reshared)):
            report[source][column] = counts(items, held_out_labels(recipe, fold, items))
            print(line(source, column, report[source][column]), flush=True)
    for column in ("as they are", "re-shared"):
        pooled = {
            name: {label: sum(report[s][column][name][label] for s in report) for label in LABELS}
            for name in CLASSES.values()
        }
        print(line("**pooled**", column, pooled))
    if args.json:
        weights = recipe.combination.weights
        args.json.write_text(
            json.dumps({"weights": weights, "unseen_odds": args.unseen_odds, "verdicts": report}, indent=2) + "\n"
        )


if __name__ == "__main__":
    main()
