"""The members' calibrated probabilities averaged instead of their logits (rule 83).

A linear opinion pool: no member moves the mean by more than its weight's share, so a member
confidently wrong on an unseen source cannot outvote the others as it can in a mean of logits.
Scored on a `cross-source --runs` folder's folds with the recipe's pictures' weights, against
the ensemble's own mean of logits (`fold_combinations.compare`).

    .venv/bin/python -m benchmarks.probability_pool --runs RUNS --json pool.json
"""

from __future__ import annotations

import numpy as np

from benchmarks.fold_combinations import Combine, Fold, run
from pipeline.engine.ensemble import sigmoid

EDGE = 1e-6
"""How close to 0 or 1 the pooled probability may come before it is taken back to a logit."""


def probability_mean(weights: dict[str, float]) -> Combine:
    def combine(fold: Fold, name: str) -> np.ndarray:
        logits = fold.sets[name].logits
        pooled = sum(w * sigmoid(logits[m] / fold.temperatures[m]) for m, w in weights.items()) / sum(weights.values())
        pooled = np.clip(pooled, EDGE, 1 - EDGE)
        return np.log(pooled / (1 - pooled))

    return combine


if __name__ == "__main__":
    run(__doc__.splitlines()[0], lambda recipe, weights: (probability_mean(weights), None))
