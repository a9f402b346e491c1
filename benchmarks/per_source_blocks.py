"""Does the all-block CLIP probe travel better as the mean of per-source probes? (rule 97)

In each cross-source fold, on the probe's training set from the feature cache, the class tokens
of all 12 CLIP blocks side by side, fitted two ways with the member's own regularisation: one
pooled fit (v8's `clip_blocks`; rule 85's figures, a check) and the mean of one probe per training
source (`fit_per_source_probe`, rule 86's remedy for the block-5 probe); see `probe_arms`.

    .venv/bin/python -m benchmarks.per_source_blocks OUT.json --recipe benchmarks/pair_recipe_pictures.json

OUT.json keeps each fold's figures as it finishes, so a stopped run resumes.
"""

from __future__ import annotations

from benchmarks.probe_arms import Arm, main, mean_of_sources
from pipeline.engine.clip import BLOCKS

ALL_BLOCKS = tuple(range(1, BLOCKS + 1))


ARMS = {"all blocks, pooled (v8)": Arm(ALL_BLOCKS), "all blocks, per source": Arm(ALL_BLOCKS, mean_of_sources)}
"""The arms, fixed by the rule before its run."""

if __name__ == "__main__":
    main(__doc__.splitlines()[0], ARMS)
