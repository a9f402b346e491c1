"""Cached CLIP features of prepared crops, so a probe trains (and the cross-source table is made)
without running the encoder again: about 0.15 s per face on 2 cores.

Layout: `FOLDER/features/clip-blocks/chunk-NNNNN.npz`, each holding the features of some crops
after every block (class token and patch mean, float16; 37 KB a crop) and their file names
(paths relative to the prepared folder), so a recipe may choose any block without encoding
again. Any subset of a folder's crops can be asked for: only the crops no chunk holds yet are
computed, in new chunks written atomically, so a stopped run resumes where it stopped and a
larger subset later reuses everything done.

A patch probe's tokens (196 a crop, 294 KB in float16) are too many for the chunks: each crop's
tokens of one block are kept in a file of their own under `cache_dir()/PATCH_TOKEN_DIR`, named by
the crop's content and the block (`patch_tokens`).
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from pipeline.config import cache_dir
from pipeline.engine.clip import BLOCKS, FEATURES, INPUT_SIDE, PATCH_GRID, PATCH_MAX, WIDTH, ClipEncoder, block_index
from pipeline.files import whole_file
from pipeline.training.data import read_face

CHUNK = 256
FEATURE_DIR = Path("features") / "clip-blocks"
"""Versioned: `features/clip` (encoded in batches, before the encoder ran one crop at a time, see
`ClipEncoder.features`) and `features/clip-single` (the last block only) are not used."""


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
        with whole_file(target_dir / f"chunk-{number:05d}.npz") as partial:
            np.savez(
                partial,
                files=np.asarray(part),
                cls=computed.cls.astype(np.float16),
                patch_mean=computed.patch_mean.astype(np.float16),
                embed=np.asarray(computed.embed).astype(np.float16),  # the whole tower ran (checked)
            )
        number += 1


def clip_features(
    folder: Path,
    names: Sequence[str] | None = None,
    feature: str = "cls",
    block: int = BLOCKS,
    encoder: ClipEncoder | None = None,
) -> np.ndarray:
    """(N, D) float32: one feature (of `FEATURES`, after `block`) of each crop of `names` (paths
    relative to the prepared `folder`; default: every crop in its metadata.csv), computing (all
    blocks of) what is missing."""
    if feature not in FEATURES or feature == PATCH_MAX:
        raise ValueError(
            f"unknown CLIP feature {feature!r}" + (" here: see patch_tokens" if feature in FEATURES else "")
        )
    block_row = block_index(block)
    if encoder is not None and encoder.last_block != BLOCKS:
        raise ValueError("the feature cache holds every block: it needs the whole tower (last_block 12)")
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
    out = np.zeros((len(names), 512 if feature == "embed" else 768), np.float32)
    by_chunk: dict[Path, list[tuple[int, int]]] = {}
    for i, name in enumerate(names):
        chunk, row = index[name]
        by_chunk.setdefault(chunk, []).append((i, row))
    for chunk, pairs in by_chunk.items():
        with np.load(chunk) as data:
            positions, rows = zip(*pairs, strict=True)
            values = data[feature][list(rows)]
            out[list(positions)] = values if feature == "embed" else values[:, block_row]
    return out


PATCH_TOKEN_DIR = "clip-patch-tokens"
PATCH_BATCH = 16


def _token_file(path: Path, block: int) -> Path:
    # Named by the crop's content, so a crop made again differently is encoded again.
    digest = hashlib.sha256(path.read_bytes() + f"|block{block}|{INPUT_SIDE}".encode()).hexdigest()[:24]
    return cache_dir() / PATCH_TOKEN_DIR / digest[:2] / f"{digest}.npy"


def patch_tokens(paths: Sequence[Path], block: int, encoder: ClipEncoder | None = None) -> np.ndarray:
    """(N, 196, 768) float16: the patch tokens after `block` of each crop file (read as the
    engine reads a crop, at the encoder's input size), each encoded once and kept in the cache
    folder, so a stopped run goes on where it stopped. `encoder` (cut at `block` or later) is
    made only if a crop is missing."""
    from tqdm import tqdm

    block_index(block)
    files = [_token_file(path, block) for path in paths]
    missing = [i for i, file in enumerate(files) if not file.exists()]
    if missing and encoder is None:
        encoder = ClipEncoder(last_block=block)
    for start in tqdm(range(0, len(missing), PATCH_BATCH), desc="CLIP patch tokens", file=sys.stderr, leave=False):
        chosen = missing[start : start + PATCH_BATCH]
        crops = np.stack([read_face(paths[i], INPUT_SIDE) for i in chosen])
        assert encoder is not None
        patches = encoder.features(crops, [block]).patches_of(block)
        for i, tokens in zip(chosen, patches.astype(np.float16), strict=True):
            files[i].parent.mkdir(parents=True, exist_ok=True)
            with whole_file(files[i]) as partial:
                np.save(partial, tokens)
    if not files:
        return np.zeros((0, PATCH_GRID**2, WIDTH), np.float16)
    return np.stack([np.load(file) for file in files])
