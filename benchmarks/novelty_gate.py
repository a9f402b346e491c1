"""Does fading the CNNs' weight on faces unlike their training crops help on unseen sources? (rule 81)

A face's novelty is the mean cosine distance of its CLIP probe feature to its `NEIGHBOURS`
nearest training crops of the fold; the gate is 1 up to the validation mix's 95th percentile of
novelty, 0 beyond its 99th, linear between, and multiplies each CNN's weight. Every fold of a
`cross-source --runs` folder is scored from its cached logits and features, with the recipe's
pictures' weights, ungated and gated (each calibrated on its own fold's validation mix), and the
two are compared with the table's own paired bootstrap draws: as they are, re-shared and mixed.

    .venv/bin/python -m benchmarks.novelty_gate --runs RUNS --json gate.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from benchmarks.recipes import prepared_recipe
from pipeline.engine.ensemble import sigmoid
from pipeline.training.calibration import expected_calibration_error, fit_calibration
from pipeline.training.cross_source import (
    Scored,
    _fold_seed,
    bootstrap_roc_auc,
    fold_calibration,
    interval,
    run_fold,
)
from pipeline.training.recipe import CLIP_PROBE, clip_rows, samples_of

NEIGHBOURS = 10
FAMILIAR, STRANGE = 95.0, 99.0
"""Percentiles of the validation mix's novelty where the gate starts to close and is shut."""
COLUMNS = ("as they are", "re-shared", "mixed")


def unit_rows(features: np.ndarray) -> np.ndarray:
    return features / np.linalg.norm(features, axis=1, keepdims=True)


def novelty(features: np.ndarray, reference: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """(N,) mean cosine distance of each row to its `NEIGHBOURS` nearest reference rows."""
    rows = unit_rows(features)
    out = np.empty(len(rows), np.float32)
    for start in range(0, len(rows), chunk):
        similarity = rows[start : start + chunk] @ reference.T
        nearest = np.partition(similarity, -NEIGHBOURS, axis=1)[:, -NEIGHBOURS:]
        out[start : start + chunk] = 1.0 - nearest.mean(axis=1)
    return out


def gate(distances: np.ndarray, familiar: float, strange: float) -> np.ndarray:
    return np.clip((strange - distances) / (strange - familiar), 0.0, 1.0)


def gated_logit(
    scored: Scored, temperatures: dict[str, float], weights: dict[str, float], probe: str, openness: np.ndarray
) -> np.ndarray:
    """The weighted mean of calibrated member logits with every member but `probe` weighed by
    `openness` face by face."""
    numerator = np.zeros(len(scored.samples))
    total = np.zeros(len(scored.samples))
    for name, weight in weights.items():
        face_weight = weight if name == probe else weight * openness
        numerator += face_weight * scored.logits[name] / temperatures[name]
        total += face_weight
    return numerator / total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", type=Path, default=Path("models/recipe.json"))
    parser.add_argument("--runs", type=Path, required=True)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    recipe = prepared_recipe(parser, args.recipe)
    weights = recipe.pictures.weights if recipe.pictures else recipe.weights
    probe = next(m for m in recipe.members if m["kind"] == CLIP_PROBE and m["name"] in weights)
    feature, block = probe.get("feature", "cls"), int(probe.get("block", 12))
    report: dict = {"weights": weights, "neighbours": NEIGHBOURS, "percentiles": [FAMILIAR, STRANGE], "sources": {}}
    draws: dict[str, dict[str, list[np.ndarray]]] = {c: {"ungated": [], "gated": [], "clip": []} for c in COLUMNS}
    for source in recipe.sources:
        train_sources = [s for s in recipe.sources if s != source]
        val, held, reshared = run_fold(recipe, source, args.runs, True)
        reference = unit_rows(
            clip_rows(samples_of(train_sources, "train", probe.get("train_per_class")), feature, block)
        )
        distance = {
            name: novelty(clip_rows(s.samples, feature, block), reference)
            for name, s in (("val", val), ("held", held), ("reshared", reshared))
        }
        familiar, strange = np.percentile(distance["val"], [FAMILIAR, STRANGE])
        openness = {name: gate(d, familiar, strange) for name, d in distance.items()}
        temperatures, temperature, offset = fold_calibration(val, weights, recipe.ensemble_calibration)
        gated_val = gated_logit(val, temperatures, weights, probe["name"], openness["val"])
        gated_t, gated_offset = fit_calibration(gated_val, val.labels, recipe.ensemble_calibration)
        ungated_val = gated_logit(val, temperatures, weights, probe["name"], np.ones(len(val.samples)))
        labels = held.labels
        row: dict = {
            "validation_roc_auc": {
                "ungated": roc_auc_score(val.labels, ungated_val),
                "gated": roc_auc_score(val.labels, gated_val),
            },
            "novelty_percentiles": [float(familiar), float(strange)],
        }
        probabilities: dict[str, dict[str, np.ndarray]] = {}
        for column, scored, open_ in (
            ("as they are", held, openness["held"]),
            ("re-shared", reshared, openness["reshared"]),
        ):
            ones = np.ones(len(scored.samples))
            probabilities[column] = {
                "ungated": sigmoid(
                    gated_logit(scored, temperatures, weights, probe["name"], ones) / temperature + offset
                ),
                "gated": sigmoid(
                    gated_logit(scored, temperatures, weights, probe["name"], open_) / gated_t + gated_offset
                ),
                "clip": sigmoid(scored.logits[probe["name"]] / temperatures[probe["name"]]),
            }
            row[column] = {
                name: {"roc_auc": roc_auc_score(labels, p), "ece": expected_calibration_error(p, labels)}
                for name, p in probabilities[column].items()
            }
            row[column]["touched"] = {
                cls: float(np.mean(open_[labels == value] < 1)) for cls, value in (("real", 0), ("fake", 1))
            }
            row[column]["silenced"] = {
                cls: float(np.mean(open_[labels == value] == 0)) for cls, value in (("real", 0), ("fake", 1))
            }
        probabilities["mixed"] = {
            name: np.concatenate([probabilities["as they are"][name], probabilities["re-shared"][name]])
            for name in ("ungated", "gated", "clip")
        }
        row["mixed"] = {
            name: {"roc_auc": roc_auc_score(np.concatenate([labels, labels]), p)}
            for name, p in probabilities["mixed"].items()
        }
        for column in COLUMNS:
            copies = 2 if column == "mixed" else 1
            for name in ("ungated", "gated", "clip"):
                draws[column][name].append(
                    bootstrap_roc_auc(labels, probabilities[column][name], _fold_seed(source), copies=copies)
                )
        report["sources"][source] = row
        print(
            f"{source}: validation {row['validation_roc_auc']['ungated']:.3f} -> {row['validation_roc_auc']['gated']:.3f}"
        )
        for column in COLUMNS:
            cells = ", ".join(f"{name} {row[column][name]['roc_auc']:.3f}" for name in ("ungated", "gated", "clip"))
            extra = ""
            if column != "mixed":
                extra = (
                    f"; ECE {row[column]['ungated']['ece']:.3f} -> {row[column]['gated']['ece']:.3f}"
                    f"; touched real {row[column]['touched']['real']:.1%} fake {row[column]['touched']['fake']:.1%}"
                    f", silenced real {row[column]['silenced']['real']:.1%} fake {row[column]['silenced']['fake']:.1%}"
                )
            print(f"  {column:11} {cells}{extra}")
    report["mean"] = {}
    for column in COLUMNS:
        means = {name: np.mean(values, axis=0) for name, values in draws[column].items()}
        figures = {
            name: float(np.mean([report["sources"][s][column][name]["roc_auc"] for s in recipe.sources]))
            for name in ("ungated", "gated", "clip")
        }
        difference = figures["gated"] - figures["ungated"]
        report["mean"][column] = {
            **figures,
            "gated_less_ungated": difference,
            "interval": interval(means["gated"] - means["ungated"]),
        }
        low, high = report["mean"][column]["interval"]
        print(
            f"mean {column:11} ungated {figures['ungated']:.3f}, gated {figures['gated']:.3f}, clip {figures['clip']:.3f};"
            f" gated less ungated {difference:+.3f} [{low:+.3f}, {high:+.3f}]"
        )
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=float))


if __name__ == "__main__":
    main()
