"""Do v8's per-source probes travel better combined another way than by their mean logit? (rule 114)

In each cross-source fold, on block 5's class tokens, the per-source probes of v8's `clip` member
combined (1) with equal spreads: each probe's logit divided by the standard deviation of its
logits over the fold's training rows, then the mean; (2) by the median logit. Against v8's mean;
the arm is chosen for each held-out source on the other three folds. See `probe_arms`.

    .venv/bin/python -m benchmarks.equal_votes OUT.json

OUT.json keeps each fold's figures as it finishes, so a stopped run resumes.
"""

from __future__ import annotations

import numpy as np

from benchmarks.probe_arms import Arm, Scorer, compare_chosen, mean_of_sources
from pipeline.training.probe import per_source_probes

SHIPPED_BLOCK = 5
BASELINE = "(0) v8"


def equal_spread(features: np.ndarray, labels: np.ndarray, sources: list[str], regularization: float) -> Scorer:
    """Arm (1): the mean of the per-source probes' logits, each over its spread on the training rows."""
    probes = per_source_probes(features, labels, sources, "cls", regularization)
    spreads = [float(probe.logits_of(features).std()) for probe in probes]
    print(f"    logit spreads of the per-source probes: {[round(s, 2) for s in spreads]}", flush=True)
    return lambda batch: np.mean([p.logits_of(batch) / s for p, s in zip(probes, spreads)], axis=0)


def median_vote(features: np.ndarray, labels: np.ndarray, sources: list[str], regularization: float) -> Scorer:
    """Arm (2): the median of the per-source probes' logits."""
    probes = per_source_probes(features, labels, sources, "cls", regularization)
    return lambda batch: np.median([probe.logits_of(batch) for probe in probes], axis=0)


ARMS = {
    BASELINE: Arm((SHIPPED_BLOCK,), mean_of_sources),
    "(1) equal spread": Arm((SHIPPED_BLOCK,), equal_spread),
    "(2) median": Arm((SHIPPED_BLOCK,), median_vote),
}
"""The arms, fixed by the rule before its run."""


if __name__ == "__main__":
    compare_chosen(__doc__.splitlines()[0], ARMS, BASELINE)
