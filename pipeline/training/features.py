"""Cached CLIP features of prepared crops, so a probe trains (and the cross-source table is made)
without running the encoder again: about 0.15 s per face on 2 cores.

Layout: `FOLDER/features/clip/chunk-NNNNN.npz`, each holding the features of some crops and
their file names (paths relative to the prepared folder). Any subset of a folder's crops can be
asked for: only the crops no chunk holds yet are computed, in new chunks written atomically, so
a stopped run resumes where it stopped and a larger subset later reuses everything done.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from pipeline.engine.clip import FEATURES, ClipEncoder

CHUNK = 256
FEATURE_DIR = Path("features") / "clip"


def _chunks(folder: Path) -> list[Path]:
    return sorted((folder / FEATURE_DIR).glob("chunk-*.npz"))


def _index(folder: Path) -> dict[str, tuple[Path, int]]:
    """File name -> (chunk holding it, row), from the chunks' file lists."""
    index: dict[str, tuple[Path, int]] = {}
    for chunk in _chunks(folder):
        with np.load(chunk) as data:
            for row, name in enumerate(data["files"].tolist()):
                index[name] = (chunk, row)
    return index


def _compute(folder: Path, names: list[str], encoder: ClipEncoder) -> None:
    from tqdm import tqdm

    existing = _chunks(folder)
    number = int(existing[-1].stem.split("-")[1]) + 1 if existing else 0
    target_dir = folder / FEATURE_DIR
    target_dir.mkdir(parents=True, exist_ok=True)
    for start in tqdm(range(0, len(names), CHUNK), desc=f"CLIP features {folder.name}", file=sys.stderr):
        part = names[start : start + CHUNK]
        crops = np.stack([cv2.cvtColor(cv2.imread(str(folder / name)), cv2.COLOR_BGR2RGB) for name in part])
        computed = encoder.features(crops)
        target = target_dir / f"chunk-{number:05d}.npz"
        partial = target_dir / f"chunk-{number:05d}.partial.npz"
        np.savez(partial, files=np.asarray(part), **{f: computed.named(f).astype(np.float16) for f in FEATURES})
        partial.replace(target)
        number += 1


def clip_features(
    folder: Path, names: Sequence[str] | None = None, encoder: ClipEncoder | None = None
) -> dict[str, np.ndarray]:
    """Feature name -> float32 array with one row per crop of `names` (paths relative to the
    prepared `folder`; default: every crop in its metadata.csv), computing what is missing."""
    if names is None:
        import csv

        with (folder / "metadata.csv").open(newline="") as handle:
            names = sorted(row["file"] for row in csv.DictReader(handle))
    names = list(names)
    index = _index(folder)
    missing = sorted({n for n in names if n not in index})
    if missing:
        _compute(folder, missing, encoder or ClipEncoder())
        index = _index(folder)
    out = {f: np.zeros((len(names), 512 if f == "embed" else 768), np.float32) for f in FEATURES}
    by_chunk: dict[Path, list[tuple[int, int]]] = {}
    for i, name in enumerate(names):
        chunk, row = index[name]
        by_chunk.setdefault(chunk, []).append((i, row))
    for chunk, pairs in by_chunk.items():
        with np.load(chunk) as data:
            positions, rows = zip(*pairs, strict=True)
            for feature in FEATURES:
                out[feature][list(positions)] = data[feature][list(rows)].astype(np.float32)
    return out
