"""Does a face called by its nearest training faces travel better than v8's probe? (rule 108)

In each cross-source fold, on the shipped `clip` member's training set from the feature cache
(block 5's class token), three arms score the held-out source and the fold's validation mix: v8's
probe (the mean of per-source linear probes; a check on the table's `clip` figures), and two that
fit nothing: a face's score is the mean cosine similarity of its `NEIGHBOURS` most similar
training fakes less that of its most similar training reals, in the standardised, L2-normalised
feature space, over all training rows (pooled) or within each training source's rows, averaged
over the sources (per source). See `probe_arms`.

    .venv/bin/python -m benchmarks.nearest_faces OUT.json

OUT.json keeps each fold's figures as it finishes, so a stopped run resumes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from benchmarks.probe_arms import Arm, Scorer, main, mean_of_sources
from pipeline.training.probe import source_of

NEIGHBOURS = 10
"""How many of the most similar training faces of each class a score averages (fixed by rule 108)."""
CHUNK = 512
"""Faces compared with the training rows at a time, to bound memory."""


def unit_rows(features: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Features standardised by the training rows' mean and spread, each row scaled to length 1."""
    standard = (features - mean) / scale
    return (standard / (np.linalg.norm(standard, axis=1, keepdims=True) + 1e-12)).astype(np.float32)


def nearest_similarity(faces: np.ndarray, bank: np.ndarray) -> np.ndarray:
    """(N,) mean cosine similarity of each face's `NEIGHBOURS` most similar rows of `bank` (both unit rows)."""
    k = min(NEIGHBOURS, len(bank))
    out = np.empty(len(faces), dtype=np.float64)
    for start in range(0, len(faces), CHUNK):
        similarity = faces[start : start + CHUNK] @ bank.T
        out[start : start + CHUNK] = np.partition(similarity, -k, axis=1)[:, -k:].mean(axis=1)
    return out


def nearest_faces_scorer(features: np.ndarray, labels: np.ndarray) -> Scorer:
    """Nearest fakes' similarity less nearest reals', against the training rows `features`."""
    mean = features.mean(axis=0)
    scale = features.std(axis=0) + 1e-6
    rows = unit_rows(features, mean, scale)
    fakes, reals = rows[labels == 1], rows[labels == 0]

    def score(faces: np.ndarray) -> np.ndarray:
        units = unit_rows(faces, mean, scale)
        return nearest_similarity(units, fakes) - nearest_similarity(units, reals)

    return score


def nearest_pooled(features: np.ndarray, labels: np.ndarray, sources: Sequence[str], regularization: float) -> Scorer:
    """Arm (2): one bank of every training row."""
    return nearest_faces_scorer(features, labels)


def nearest_per_source(
    features: np.ndarray, labels: np.ndarray, sources: Sequence[str], regularization: float
) -> Scorer:
    """Arm (3): one bank per training source (`source_of`), the mean of their scores."""
    origins = np.asarray([source_of(source) for source in sources])
    scorers = [
        nearest_faces_scorer(features[origins == name], labels[origins == name]) for name in sorted(set(origins))
    ]
    return lambda faces: np.mean([score(faces) for score in scorers], axis=0)


ARMS = {
    "block 5, per source (v8)": Arm((5,), mean_of_sources),
    "nearest faces, pooled": Arm((5,), nearest_pooled),
    "nearest faces, per source": Arm((5,), nearest_per_source),
}
"""The arms, fixed by the rule before its run."""

if __name__ == "__main__":
    main(__doc__.splitlines()[0], ARMS)
