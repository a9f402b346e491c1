"""How often would a caveat for faces unlike the training faces fire? (rule 84)

A face's novelty is rule 81's (`novelty_gate.novelty`: mean cosine distance of its CLIP probe
feature to its nearest reference faces); the reference is the probe's clean training crops, at
most `REFERENCE_PER_CLASS` per class and source; the threshold is the 99th percentile of novelty
over the validation mix. Printed: the share of faces above it among the test split's crops as
they are and re-shared (reference and threshold from every source), and among each held-out
source of the cross-source folds (reference and threshold from the other sources).

    .venv/bin/python -m benchmarks.unfamiliar_faces --json unfamiliar.json
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from benchmarks.novelty_gate import STRANGE, novelty, unit_rows
from benchmarks.recipes import prepared_recipe
from pipeline.training.data import Sample
from pipeline.training.recipe import CLIP_PROBE, clip_rows, samples_of
from pipeline.training.sources import reshared_samples

REFERENCE_PER_CLASS = 1000
TEST_PER_CLASS = 300


def shares(samples: Sequence[Sample], above: np.ndarray) -> dict[str, float]:
    """Share of faces above the threshold per 'source real|fake'."""
    out = {}
    for source in sorted({s.source for s in samples}):
        for label, name in ((0, "real"), (1, "fake")):
            mask = np.asarray([s.source == source and s.label == label for s in samples])
            if mask.any():
                out[f"{source} {name}"] = float(above[mask].mean())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", type=Path, default=Path("models/recipe.json"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    recipe = prepared_recipe(parser, args.recipe)
    probe = next(m for m in recipe.members if m["kind"] == CLIP_PROBE)
    feature, block = probe.get("feature", "cls"), int(probe.get("block", 12))

    def features(samples: Sequence[Sample]) -> np.ndarray:
        return clip_rows(samples, feature, block)

    def threshold_and_reference(sources: Sequence[str]) -> tuple[float, np.ndarray]:
        reference = unit_rows(features(samples_of(sources, "train", REFERENCE_PER_CLASS)))
        val = novelty(features(samples_of(sources, "val", recipe.val_per_class)), reference)
        return float(np.percentile(val, STRANGE)), reference

    report: dict = {"reference_per_class": REFERENCE_PER_CLASS}
    threshold, reference = threshold_and_reference(recipe.sources)
    report["reference_rows"], report["threshold"] = len(reference), threshold
    test = samples_of(recipe.sources, "test", TEST_PER_CLASS)
    for column, samples in (("test as they are", test), ("test re-shared", reshared_samples(test))):
        report[column] = shares(samples, novelty(features(samples), reference) > threshold)
        print(column, ", ".join(f"{k} {v:.1%}" for k, v in report[column].items()), flush=True)
    report["held out"] = {}
    for source in recipe.sources:
        fold_threshold, fold_reference = threshold_and_reference([s for s in recipe.sources if s != source])
        held = samples_of([source], None, recipe.held_out_per_class)
        report["held out"][source] = shares(held, novelty(features(held), fold_reference) > fold_threshold)
        print("held out", ", ".join(f"{k} {v:.1%}" for k, v in report["held out"][source].items()), flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
