"""Does a probe kept from reading what tells the training sources apart travel better? (rule 112)

In each cross-source fold, the directions of the block-5 class tokens that tell the training
sources apart are removed (iterative null-space projection: fit a source classifier, project its
weight rows out, repeat), on the real training crops only or on every training row, then v8's
`clip` member is fitted on what is left (the mean of per-source probes); every face it scores goes
through the same projection. See `probe_arms`. The arm is chosen for each held-out source on the
other three folds, as rule 110 chose a block.

    .venv/bin/python -m benchmarks.source_blind_probe OUT.json

OUT.json keeps each fold's figures as it finishes, so a stopped run resumes.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression

from benchmarks.probe_arms import Arm, Scorer, compare_chosen, mean_of_sources
from pipeline.training.probe import source_of

SHIPPED_BLOCK = 5
ITERATIONS = (2, 8, 32)
"""How many times a source classifier is fitted and its directions removed, fixed by the rule."""
SOURCE_C = 1.0

_removed: dict[tuple, list[np.ndarray]] = {}
"""Each fold's removed directions per iteration, per rows' choice: the arms with fewer iterations
take the first iterations of the longest run, which are the same."""


def removed_directions(standard: np.ndarray, origins: np.ndarray, iterations: int) -> list[np.ndarray]:
    """Each iteration's orthonormal directions (K, D) of standardised features that told `origins`
    apart, each found after the ones before were projected out. A multinomial fit on C sources has
    rank C - 1 (balanced softmax weights add up to zero), so C - 1 directions go each time (one for
    two sources)."""
    removed: list[np.ndarray] = []
    per_iteration = max(1, len(set(origins)) - 1)
    for _ in range(iterations):
        directions = np.vstack(removed) if removed else np.zeros((0, standard.shape[1]))
        left = standard - (standard @ directions.T) @ directions
        classifier = LogisticRegression(C=SOURCE_C, max_iter=2000, class_weight="balanced")
        classifier.fit(left, origins)
        print(f"      source classifier's training accuracy: {classifier.score(left, origins):.3f}", flush=True)
        rows = classifier.coef_ - (classifier.coef_ @ directions.T) @ directions
        basis = np.linalg.svd(rows.T, full_matrices=False)[0]
        removed.append(basis[:, :per_iteration].T)
    return removed


def source_blind(rows: str, iterations: int):
    """A probe fit (`probe_arms.Fit`) that removes `iterations` rounds of source directions, found
    on the real training rows (`rows` "reals") or on all of them ("all"), then fits v8's member."""

    def fit(features: np.ndarray, labels: np.ndarray, sources: list[str], regularization: float) -> Scorer:
        mean = features.mean(axis=0)
        scale = features.std(axis=0) + 1e-6
        origins = np.asarray([source_of(source) for source in sources])
        chosen = labels == 0 if rows == "reals" else np.ones(len(labels), dtype=bool)
        key = (features.shape, float(features.sum()), rows)
        if key not in _removed:
            print(f"    removing source directions found on {rows} rows", flush=True)
            _removed[key] = removed_directions(((features - mean) / scale)[chosen], origins[chosen], max(ITERATIONS))
        kept = np.vstack(_removed[key][:iterations])

        def project(batch: np.ndarray) -> np.ndarray:
            standard = (batch - mean) / scale
            return standard - (standard @ kept.T) @ kept

        score = mean_of_sources(project(features), labels, sources, regularization)
        return lambda batch: score(project(batch))

    return fit


BASELINE = "(0) v8"

ARMS = {BASELINE: Arm((SHIPPED_BLOCK,), mean_of_sources)} | {
    f"{rows} x{n}": Arm((SHIPPED_BLOCK,), source_blind(rows, n)) for rows in ("reals", "all") for n in ITERATIONS
}
"""The arms, fixed by the rule before its run."""


if __name__ == "__main__":
    compare_chosen(__doc__.splitlines()[0], ARMS, BASELINE)
