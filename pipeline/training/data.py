"""Labelled face data for training and evaluation.

A data set is any folder with `real/` and `fake/`. With a `metadata.csv` (the shared data's
format: `file,label,group,split`) its splits are used as given; without one, every file is its
own group and splits are drawn by a hash of the group, so they never change between runs.
Splits are always by group (source video or identity), never by file: a fake and its source
face on both sides of a split would leak the answer.
"""

from __future__ import annotations

import csv
import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from pipeline.config import MediaSettings
from pipeline.engine.media import detect_kind
from pipeline.errors import DataError, MediaError
from pipeline.files import whole_file

LABELS = {"real": 0, "fake": 1}
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Sample:
    """One labelled file."""

    path: Path
    label: int
    """1 for fake, 0 for real."""
    group: str
    split: str
    source: str
    """Name of the data set it came from (the folder name), for per-source metrics."""
    landmarks: Path | None = None
    """468 face-mesh points of the crop (`prepare` writes them), for self-blending masks."""


def split_for_group(group: str, val_fraction: float, test_fraction: float) -> str:
    bucket = int(hashlib.sha256(group.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    if bucket < test_fraction:
        return "test"
    if bucket < test_fraction + val_fraction:
        return "val"
    return "train"


def is_video(path: Path, settings: MediaSettings = MediaSettings()) -> bool:
    """Whether the engine reads `path` as a video: by its name, but a picture that may be
    animated (GIF, WebP, AVIF, PNG) by its content (an animated one is a video)."""
    if path.suffix.lower() not in settings.animation_suffixes:
        return path.suffix.lower() in settings.video_suffixes
    try:
        return detect_kind(path, settings) == "video"
    except MediaError:
        return False  # read as a picture, whose reading says what is wrong


def load_samples(
    root: Path,
    split: str | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    settings: MediaSettings = MediaSettings(),
) -> list[Sample]:
    """Samples of a `real/` and/or `fake/` folder, optionally of one split (`None` or "all": every
    one). A folder with one side only (`sd-faces`: fakes) is paired with another source's other
    side by the caller."""
    if not (root / "real").is_dir() and not (root / "fake").is_dir():
        raise DataError(f"{root} must hold a real/ or a fake/ folder")
    source = root.name
    metadata = root / "metadata.csv"
    samples: list[Sample] = []
    if metadata.exists():
        with metadata.open(newline="") as handle:
            for row in csv.DictReader(handle):
                if row["label"] not in LABELS:
                    raise DataError(f"{metadata}: unknown label {row['label']!r}")
                samples.append(
                    Sample(
                        root / row["file"],
                        LABELS[row["label"]],
                        row.get("group") or row["file"],
                        row.get("split")
                        or split_for_group(row.get("group") or row["file"], val_fraction, test_fraction),
                        source,
                        root / row["landmarks"] if row.get("landmarks") else None,
                    )
                )
    else:
        suffixes = settings.image_suffixes + settings.video_suffixes
        for name, label in LABELS.items():
            for path in sorted((root / name).iterdir()) if (root / name).is_dir() else []:
                if path.suffix.lower() in suffixes:
                    group = path.stem
                    samples.append(
                        Sample(path, label, group, split_for_group(group, val_fraction, test_fraction), source)
                    )
    if split not in (None, "all"):
        if split not in SPLITS:
            raise DataError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)} or all")
        samples = [s for s in samples if s.split == split]
    if not samples:
        raise DataError(f"no samples in {root}" + (f" for split {split!r}" if split else ""))
    _check_groups(samples)
    return samples


def _check_groups(samples: Sequence[Sample]) -> None:
    splits_of: dict[str, set[str]] = {}
    for s in samples:
        splits_of.setdefault(s.group, set()).add(s.split)
    leaking = [g for g, splits in splits_of.items() if len(splits) > 1]
    if leaking:
        raise DataError(f"{len(leaking)} groups appear in more than one split (e.g. {leaking[0]!r})")


def class_weights(samples: Sequence[Sample]) -> dict[int, float]:
    """Weights that make both classes count equally in the loss."""
    counts = Counter(s.label for s in samples)
    total = sum(counts.values())
    return {label: total / (2.0 * counts[label]) for label in counts}


def balanced_subset(samples: Sequence[Sample], per_class: int, seed: int) -> list[Sample]:
    """Up to `per_class` samples of each label, drawn reproducibly."""
    rng = np.random.default_rng(seed)
    chosen: list[Sample] = []
    for label in (0, 1):
        pool = [s for s in samples if s.label == label]
        picks = rng.permutation(len(pool))[:per_class]
        chosen.extend(pool[i] for i in sorted(picks))
    return chosen


def read_rgb(path: Path) -> np.ndarray:
    """An image file as RGB uint8, at its own size; an unreadable one is a `DataError`."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise DataError(f"cannot read image {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def write_rgb(path: Path, image: np.ndarray) -> None:
    """Write an RGB uint8 image whole or not at all (to a partial file, then renamed into place),
    so that a stopped run never leaves a half-written copy that a cache would take as made. The
    format is the path's suffix (a PNG keeps every pixel; a JPEG is saved again)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with whole_file(path) as partial:
        if not cv2.imwrite(str(partial), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
            raise DataError(f"cannot write image {path}")


def read_face(path: Path, size: int) -> np.ndarray:
    """A face crop file as RGB uint8, resized to `size` x `size`."""
    rgb = read_rgb(path)
    if rgb.shape[0] != size or rgb.shape[1] != size:
        interpolation = cv2.INTER_AREA if rgb.shape[0] > size else cv2.INTER_LINEAR
        rgb = cv2.resize(rgb, (size, size), interpolation=interpolation)
    return rgb
