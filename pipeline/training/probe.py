"""Training the foundation-model member: a linear probe on cached CLIP features.

Every source, and both classes within it, weigh the same in the fit, whatever their sizes: a
source with 10,000 crops must not decide alone what "fake" looks like. A patch probe
(`PATCH_MAX`) learns instead from a label per patch: every patch of a real crop is real, a patch
of a self-blend is fake where the blend changed it, and every patch of a source's fake crop, where
the recipe lets it see them, is fake.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from pipeline.engine.clip import BLOCKS, INPUT_SIDE, PATCH_GRID, PATCH_MAX, ClipProbe, checked_blocks

CHANGED_LEVELS = 3.0
"""A patch of a self-blend is labelled fake where the blend moved its pixels by more than this
(of 255) on average: the blend's soft edge changes the pixels about it a little (rule 70)."""


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
    blocks: Sequence[int] = (BLOCKS,),
) -> ClipProbe:
    """L2-regularised logistic regression (inverse strength `regularization`) on standardised
    features (`feature` after `blocks`, side by side), sources and classes balanced."""
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
        checked_blocks(feature, blocks),
    )


def source_of(source: str) -> str:
    """The source a training row came from: a pseudo-fake made from a crop (`SOURCE/self-blend`)
    belongs to its crop's source."""
    return source.split("/")[0]


def per_source_probes(
    features: np.ndarray,
    labels: np.ndarray,
    sources: Sequence[str],
    feature: str,
    regularization: float = 1.0,
    blocks: Sequence[int] = (BLOCKS,),
) -> list[ClipProbe]:
    """One `fit_probe` per training source (`source_of`), each on that source's rows alone, in
    the sources' sorted order."""
    origins = np.asarray([source_of(source) for source in sources])
    probes = []
    for name in sorted(set(origins)):
        rows = np.flatnonzero(origins == name)
        probes.append(
            fit_probe(features[rows], labels[rows], [sources[i] for i in rows], feature, regularization, blocks)
        )
    return probes


def fit_per_source_probe(
    features: np.ndarray,
    labels: np.ndarray,
    sources: Sequence[str],
    feature: str,
    regularization: float = 1.0,
    blocks: Sequence[int] = (BLOCKS,),
) -> ClipProbe:
    """The mean logit of the `per_source_probes` (rule 86: it ranks unseen sources better than one
    pooled fit, and known ones worse). A mean of linear probes is one linear probe, so it is
    returned as one, standardised as a pooled fit would be:
    logit = mean_k [w_k . (x - m_k) / s_k + b_k] = w . (x - m) / s + b."""
    mean = features.mean(axis=0)
    scale = features.std(axis=0) + 1e-6
    direction = np.zeros(features.shape[1])
    bias = 0.0
    probes = per_source_probes(features, labels, sources, feature, regularization, blocks)
    for probe in probes:
        # In raw feature units, so that probes standardised differently add up.
        raw = probe.weights.astype(np.float64) / probe.scale
        direction += raw / len(probes)
        bias += (probe.bias + raw @ (mean - probe.mean)) / len(probes)
    return ClipProbe(
        feature,
        mean.astype(np.float32),
        scale.astype(np.float32),
        (direction * scale).astype(np.float32),
        float(bias),
        checked_blocks(feature, blocks),
    )


def changed_patches(real: np.ndarray, blended: np.ndarray) -> np.ndarray:
    """(196,) whether each 16 x 16 patch of the crop `blended` differs from `real` (both RGB,
    224 px) by more than `CHANGED_LEVELS` on average."""
    change = np.abs(blended.astype(np.float32) - real.astype(np.float32)).mean(axis=2)
    cell = INPUT_SIDE // PATCH_GRID
    per_patch = change.reshape(PATCH_GRID, cell, PATCH_GRID, cell).mean(axis=(1, 3))
    return (per_patch > CHANGED_LEVELS).ravel()


def fit_patch_probe(
    patches: np.ndarray, patch_labels: np.ndarray, regularization: float, block: int = BLOCKS
) -> ClipProbe:
    """L2-regularised logistic regression (inverse strength `regularization`) on standardised
    patch tokens (N, 196, 768) with a label per patch (N, 196), the two classes of patches
    weighed alike: a `PATCH_MAX` probe."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    rows = patches.reshape(-1, patches.shape[-1]).astype(np.float32)
    scaler = StandardScaler().fit(rows)
    model = LogisticRegression(C=regularization, class_weight="balanced", max_iter=500)
    model.fit(scaler.transform(rows), patch_labels.reshape(-1).astype(int))
    return ClipProbe(
        PATCH_MAX,
        scaler.mean_.astype(np.float32),
        scaler.scale_.astype(np.float32),
        model.coef_[0].astype(np.float32),
        float(model.intercept_[0]),
        (block,),
    )
