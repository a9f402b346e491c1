"""Training the foundation-model member: a linear probe on cached CLIP features.

Every source, and both classes within it, weigh the same in the fit, whatever their sizes: a
source with 10,000 crops must not decide alone what "fake" looks like.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from pipeline.engine.clip import BLOCKS, ClipProbe


def balanced_weights(labels: Sequence[int], sources: Sequence[str]) -> np.ndarray:
    """Sample weights giving every (source, label) group the same total weight, mean 1."""
    groups = list(zip(sources, labels, strict=True))
    counts = Counter(groups)
    weights = np.asarray([1.0 / counts[g] for g in groups])
    return weights * (len(weights) / weights.sum())


def fit_probe(
    features: np.ndarray,
    labels: np.ndarray,
    sources: Sequence[str],
    feature: str,
    regularization: float = 1.0,
    block: int = BLOCKS,
) -> ClipProbe:
    """L2-regularised logistic regression (inverse strength `regularization`) on standardised
    features (`feature` after `block`), sources and classes balanced."""
    from sklearn.linear_model import LogisticRegression

    mean = features.mean(axis=0)
    scale = features.std(axis=0) + 1e-6
    standard = (features - mean) / scale
    model = LogisticRegression(C=regularization, max_iter=5000)
    model.fit(standard, labels, sample_weight=balanced_weights(labels.tolist(), sources))
    return ClipProbe(
        feature,
        mean.astype(np.float32),
        scale.astype(np.float32),
        model.coef_[0].astype(np.float32),
        float(model.intercept_[0]),
        block,
    )
