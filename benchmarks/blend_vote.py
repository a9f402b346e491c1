"""Do probes on self-blends alone travel better than v8's member? (rule 113)

In each cross-source fold, on block 5's class tokens: (1) the mean of one probe per training
source, each on that source's real crops against their self-blends only; (2) v8's per-source
probes and one more, pooled, of every real crop against every self-blend, the four logits'
mean. Against v8's member; the arm is chosen for each held-out source on the other three folds.
See `probe_arms`.

    .venv/bin/python -m benchmarks.blend_vote OUT.json

OUT.json keeps each fold's figures as it finishes, so a stopped run resumes.
"""

from __future__ import annotations

import numpy as np

from benchmarks.probe_arms import Arm, Scorer, compare_chosen, mean_of_sources
from pipeline.training.probe import fit_probe, per_source_probes

SHIPPED_BLOCK = 5
BASELINE = "(0) v8"


def _real_or_blend(labels: np.ndarray, sources: list[str]) -> np.ndarray:
    """Rows that are real crops or self-blends of them: every training row but a source's own fakes."""
    return np.asarray([label == 0 or source.endswith("/self-blend") for label, source in zip(labels, sources)])


def blends_per_source(features: np.ndarray, labels: np.ndarray, sources: list[str], regularization: float) -> Scorer:
    """Arm (1): v8's per-source fit on the real crops and self-blends alone."""
    rows = np.flatnonzero(_real_or_blend(labels, sources))
    return mean_of_sources(features[rows], labels[rows], [sources[i] for i in rows], regularization)


def blend_vote(features: np.ndarray, labels: np.ndarray, sources: list[str], regularization: float) -> Scorer:
    """Arm (2): the mean logit of v8's per-source probes and one pooled probe of real crops
    against self-blends."""
    probes = per_source_probes(features, labels, sources, "cls", regularization)
    rows = np.flatnonzero(_real_or_blend(labels, sources))
    probes.append(fit_probe(features[rows], labels[rows], [sources[i] for i in rows], "cls", regularization))
    return lambda batch: np.mean([probe.logits_of(batch) for probe in probes], axis=0)


ARMS = {
    BASELINE: Arm((SHIPPED_BLOCK,), mean_of_sources),
    "(1) blends per source": Arm((SHIPPED_BLOCK,), blends_per_source),
    "(2) blend vote": Arm((SHIPPED_BLOCK,), blend_vote),
}
"""The arms, fixed by the rule before its run."""


if __name__ == "__main__":
    compare_chosen(__doc__.splitlines()[0], ARMS, BASELINE)
