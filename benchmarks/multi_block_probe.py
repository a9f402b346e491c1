"""Does a probe on several CLIP blocks' class tokens side by side travel better than block 5's? (rule 85)

In each cross-source fold, on the shipped probe's training set from the feature cache, the same
linear fit (`fit_probe`, the member's own regularisation) on block 5's class token, as shipped
(the table's own CLIP figures: a check), on the class tokens of blocks 1-5 side by side (what the
engine computes already) and on those of all 12 blocks (the whole tower); see `probe_arms`.

    .venv/bin/python -m benchmarks.multi_block_probe OUT.json [--recipe models/recipe.json]

OUT.json keeps each fold's figures as it finishes, so a stopped run resumes.
"""

from __future__ import annotations

from benchmarks.probe_arms import Arm, main

ARMS = {"block 5 (shipped)": Arm((5,)), "blocks 1-5": Arm((1, 2, 3, 4, 5)), "blocks 1-12": Arm(tuple(range(1, 13)))}
"""Each arm's blocks, fixed by the rule before its run."""

if __name__ == "__main__":
    main(__doc__.splitlines()[0], ARMS)
