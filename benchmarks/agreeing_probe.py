"""Does a probe that keeps only what the training sources agree on travel better? (rule 86)

In each cross-source fold, on the shipped probe's training set (block 5's class token, from the
feature cache), beside the shipped probe (a check): the mean of per-source probes (one `fit_probe`
per training source, on its crops and its self-blends; the crop's logit their mean), and the
pooled probe refitted on only the features whose coefficient has the same sign in every
per-source probe; see `probe_arms`.

    .venv/bin/python -m benchmarks.agreeing_probe OUT.json [--recipe models/recipe.json]

OUT.json keeps each fold's figures as it finishes, so a stopped run resumes.
"""

from __future__ import annotations

import numpy as np

from benchmarks.probe_arms import Arm, Scorer, main, mean_of_sources
from pipeline.training.probe import fit_probe, per_source_probes


def sign_agreement(features: np.ndarray, labels: np.ndarray, sources: list[str], regularization: float) -> Scorer:
    """The pooled probe on only the features every per-source probe weighs with the same sign."""
    signs = np.sign([probe.weights for probe in per_source_probes(features, labels, sources, "cls", regularization)])
    agreed = np.flatnonzero(np.all(signs == signs[0], axis=0) & (signs[0] != 0))
    print(f"    {len(agreed)} of {features.shape[1]} features agree in sign", flush=True)
    probe = fit_probe(features[:, agreed], labels, sources, "cls", regularization)
    return lambda values: probe.logits_of(values[:, agreed])


ARMS = {
    "block 5 (shipped)": Arm((5,)),
    "mean of per-source": Arm((5,), mean_of_sources),
    "sign agreement": Arm((5,), sign_agreement),
}
"""The arms, fixed by the rule before its run."""

if __name__ == "__main__":
    main(__doc__.splitlines()[0], ARMS)
