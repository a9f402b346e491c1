"""Does fading the CNNs' weight on faces unlike their training crops help on unseen sources? (rule 81)

A face's novelty is the mean cosine distance of its CLIP probe feature to its `NEIGHBOURS`
nearest training crops of the fold; the gate is 1 up to the validation mix's 95th percentile of
novelty, 0 beyond its 99th, linear between, and multiplies each CNN's weight. Every fold of a
`cross-source --runs` folder is scored from its cached logits and features with the recipe's
pictures' weights, gated against ungated (`fold_combinations.compare`).

    .venv/bin/python -m benchmarks.novelty_gate --runs RUNS --json gate.json
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score

from benchmarks.fold_combinations import COLUMNS, SETS, Fold, Notes, run
from pipeline.training.recipe import CLIP_PROBE, Recipe, clip_rows, samples_of

NEIGHBOURS = 10
FAMILIAR, STRANGE = 95.0, 99.0
"""Percentiles of the validation mix's novelty where the gate starts to close and is shut."""


def unit_rows(features: np.ndarray) -> np.ndarray:
    return features / np.linalg.norm(features, axis=1, keepdims=True)


def novelty(features: np.ndarray, reference: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """(N,) mean cosine distance of each row to its `NEIGHBOURS` nearest (unit) reference rows."""
    rows = unit_rows(features)
    out = np.empty(len(rows), np.float32)
    for start in range(0, len(rows), chunk):
        similarity = rows[start : start + chunk] @ reference.T
        nearest = np.partition(similarity, -NEIGHBOURS, axis=1)[:, -NEIGHBOURS:]
        out[start : start + chunk] = 1.0 - nearest.mean(axis=1)
    return out


class NoveltyGate:
    """The gated weighted mean, each fold's openness (1 open, 0 shut) per face computed once."""

    def __init__(self, sources: tuple[str, ...], probe: dict, weights: dict[str, float]) -> None:
        self.sources, self.probe, self.weights = sources, probe, weights
        self.openness: dict[str, dict[str, np.ndarray]] = {}

    def open_(self, fold: Fold) -> dict[str, np.ndarray]:
        if fold.source not in self.openness:
            feature, block = self.probe.get("feature", "cls"), int(self.probe.get("block", 12))
            train = samples_of(
                [s for s in self.sources if s != fold.source], "train", self.probe.get("train_per_class")
            )
            reference = unit_rows(clip_rows(train, feature, block))
            distance = {n: novelty(clip_rows(fold.sets[n].samples, feature, block), reference) for n in SETS}
            familiar, strange = np.percentile(distance["val"], [FAMILIAR, STRANGE])
            self.openness[fold.source] = {
                n: np.clip((strange - d) / (strange - familiar), 0.0, 1.0) for n, d in distance.items()
            }
        return self.openness[fold.source]

    def __call__(self, fold: Fold, name: str) -> np.ndarray:
        openness = self.open_(fold)[name]
        scored = fold.sets[name]
        numerator = np.zeros(len(scored.samples))
        total = np.zeros(len(scored.samples))
        for member, weight in self.weights.items():
            face_weight = weight if member == self.probe["name"] else weight * openness
            numerator += face_weight * scored.logits[member] / fold.temperatures[member]
            total += face_weight
        return numerator / total

    def notes(self, fold: Fold) -> dict[str, str]:
        """Per column: the probe alone, and the share of reals and fakes the gate touches and shuts."""
        out = {}
        for column, name in COLUMNS.items():
            openness, labels = self.open_(fold)[name], fold.sets[name].labels
            alone = roc_auc_score(labels, fold.sets[name].logits[self.probe["name"]])
            shares = [
                f"{what} real {np.mean(hit[labels == 0]):.1%} fake {np.mean(hit[labels == 1]):.1%}"
                for what, hit in (("touched", openness < 1), ("shut", openness == 0))
            ]
            out[column] = f"probe alone {alone:.3f}; " + ", ".join(shares)
        return out


def novelty_gate(recipe: Recipe, weights: dict[str, float]) -> tuple[NoveltyGate, Notes]:
    probe = next(m for m in recipe.members if m["kind"] == CLIP_PROBE and m["name"] in weights)
    gate = NoveltyGate(recipe.sources, probe, weights)
    return gate, gate.notes


if __name__ == "__main__":
    run(__doc__.splitlines()[0], novelty_gate)
