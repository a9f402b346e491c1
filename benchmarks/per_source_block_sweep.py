"""Which CLIP block does a per-source probe travel best from? (rule 110)

In each cross-source fold, each of the 12 blocks' class tokens alone, fitted as v8's `clip` member
is (the mean of per-source probes, on its training set from the feature cache); see `probe_arms`.
Then, for each held-out source, the block with the best mean of the two held-out columns (as they
are, re-shared) over the other folds, scored on this one, against block 5 (v8's).

    .venv/bin/python -m benchmarks.per_source_block_sweep OUT.json

OUT.json keeps each fold's figures as it finishes, so a stopped run resumes.
"""

from __future__ import annotations

from benchmarks.probe_arms import Arm, chosen_arm_table, fold_by_fold, fold_figures, mean_of_sources
from pipeline.engine.clip import BLOCKS

SHIPPED_BLOCK = 5

ARMS = {f"block {block}": Arm((block,), mean_of_sources) for block in range(1, BLOCKS + 1)}
"""The arms, fixed by the rule before its run."""


def main() -> None:
    recipe, done = fold_by_fold(__doc__.splitlines()[0], lambda recipe, source: fold_figures(recipe, source, ARMS))
    # Block 5 is printed in its place among the blocks, and again as the baseline row.
    chosen_arm_table(recipe.sources, done, list(ARMS), f"block {SHIPPED_BLOCK}")


if __name__ == "__main__":
    main()
