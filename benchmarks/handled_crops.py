"""How often the CLIP probe calls real faces fake after one small change to their pixels.

The model card's check after rule 19 found that the shipped probe (and one trained on
self-blends only) reads any change to a crop after it was made, softer or sharper, as a sign of
fake. This measures it for the probe of each models folder given: real validation crops of the
shared sources (the engine's framing, from the prepared cache), as they are and after each
single change below, scored by the probe with its calibration in that folder's `ensemble.json`;
it prints the share with probability at least 0.5, and the same for the fakes as they are.

    .venv/bin/python -m benchmarks.handled_crops models COPY_OF_MODELS

Crops are drawn reproducibly (`balanced_subset`, seed 7). No test split is read.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from pipeline.engine.clip import ClipEncoder, ClipProbe
from pipeline.engine.ensemble import CLIP_PROBE, ENSEMBLE_FILE, EnsembleSpec, jpeg_round_trip
from pipeline.errors import ModelsMissingError
from pipeline.training.augment import rescale, sharpen
from pipeline.training.data import balanced_subset, read_rgb
from pipeline.training.sources import source_samples

SOURCES = {"dfdc-faces": 120, "gan-faces": 120, "swap-faces": 60}
"""Validation crops drawn per class (the inswapper source has 26 real validation crops)."""


def half_pixel_shift(image: np.ndarray) -> np.ndarray:
    """Resampled half a pixel right and down: the gentlest change a resize or a rotation makes."""
    matrix = np.float32([[1, 0, 0.5], [0, 1, 0.5]])
    return cv2.warpAffine(image, matrix, image.shape[1::-1], flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)


CHANGES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "as is": lambda image: image,
    "half-pixel shift": half_pixel_shift,
    "blur 0.7": lambda image: cv2.GaussianBlur(image, (0, 0), 0.7),
    "down 0.7 and up": lambda image: rescale(image, 0.7),
    "JPEG 75": lambda image: jpeg_round_trip(image, 75),
    "sharpened 0.6": lambda image: sharpen(image, 0.6),
}


def calibrated_probe(models_dir: Path) -> tuple[ClipProbe, float]:
    """The folder's CLIP probe and its temperature; `ModelsMissingError` if it has none to read."""
    spec = EnsembleSpec.load(models_dir / ENSEMBLE_FILE)
    member = next((m for m in spec.members if m.kind == CLIP_PROBE), None)
    if member is None:
        raise ModelsMissingError(f"{models_dir / ENSEMBLE_FILE} has no CLIP probe member")
    try:
        return ClipProbe.from_json(json.loads((models_dir / member.file).read_text())), member.temperature
    except (ValueError, KeyError, TypeError, OSError) as error:
        raise ModelsMissingError(f"cannot read the CLIP probe {models_dir / member.file}: {error}") from error


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models_dirs", nargs="+", type=Path)
    args = parser.parse_args()
    try:
        probes = {str(d): calibrated_probe(d) for d in args.models_dirs}
    except ModelsMissingError as error:
        parser.error(str(error))
    blocks = {block for probe, _ in probes.values() for block in probe.blocks}
    encoder = ClipEncoder(last_block=max(blocks))
    print("source | crops | change | " + " | ".join(probes))
    for source, per_class in SOURCES.items():
        chosen = balanced_subset(source_samples(source, "val"), per_class, 7)
        for label, name in ((0, "reals"), (1, "fakes")):
            crops = [read_rgb(s.path) for s in chosen if s.label == label]
            for change, apply in CHANGES.items() if label == 0 else [("as is", CHANGES["as is"])]:
                features = encoder.features(np.stack([apply(crop) for crop in crops]))
                shares = [
                    float(np.mean(probe.logits(features) / temperature >= 0)) for probe, temperature in probes.values()
                ]
                cells = " | ".join(f"{share:.0%}" for share in shares)
                print(f"{source} | {len(crops)} {name} | {change} | {cells}", flush=True)


if __name__ == "__main__":
    main()
