"""Which CLIP block does a per-source probe travel best from? (rule 110)

In each cross-source fold, each of the 12 blocks' class tokens alone, fitted as v8's `clip` member
is (the mean of per-source probes, on its training set from the feature cache); see `probe_arms`.
Then, for each held-out source, the block with the best mean of the two held-out columns (as they
are, re-shared) over the other folds, scored on this one, against block 5 (v8's).

    .venv/bin/python -m benchmarks.per_source_block_sweep OUT.json

OUT.json keeps each fold's figures as it finishes, so a stopped run resumes.
"""

from __future__ import annotations

import numpy as np

from benchmarks.probe_arms import Arm, fold_by_fold, fold_figures, held_out_mean, mean_of_sources
from pipeline.engine.clip import BLOCKS

SHIPPED_BLOCK = 5

ARMS = {f"block {block}": Arm((block,), mean_of_sources) for block in range(1, BLOCKS + 1)}
"""The arms, fixed by the rule before its run."""


def chosen_on_other_folds(done: dict[str, dict[str, dict[str, float]]], source: str) -> str:
    """The arm with the best mean of the two held-out columns over every fold but `source`'s."""
    others = [s for s in done if s != source]
    return max(ARMS, key=lambda arm: np.mean([held_out_mean(done[s][arm]) for s in others]))


def main() -> None:
    recipe, done = fold_by_fold(__doc__.splitlines()[0], lambda recipe, source: fold_figures(recipe, source, ARMS))
    sources = recipe.sources
    print("\nPer block: as they are / re-shared / validation, per held-out source | mean of the two held-out columns")
    for arm in ARMS:
        cells = [
            f"{s} {done[s][arm]['as they are']:.3f}/{done[s][arm]['re-shared']:.3f}/{done[s][arm]['validation']:.3f}"
            for s in sources
        ]
        print(f"  {arm:9} {', '.join(cells)} | {np.mean([held_out_mean(done[s][arm]) for s in sources]):.3f}")
    rows = {"chosen on the other folds": {s: chosen_on_other_folds(done, s) for s in sources}}
    rows[f"block {SHIPPED_BLOCK} (v8)"] = dict.fromkeys(sources, f"block {SHIPPED_BLOCK}")
    for name, arms in rows.items():
        figures = [done[s][arms[s]] for s in sources]
        picks = ", ".join(
            f"{s} {arms[s]} {f['as they are']:.3f}/{f['re-shared']:.3f}" for s, f in zip(sources, figures)
        )
        print(
            f"\n{name}: {picks}\n  as they are {np.mean([f['as they are'] for f in figures]):.3f}, "
            f"re-shared {np.mean([f['re-shared'] for f in figures]):.3f}, "
            f"mean of the two {np.mean([held_out_mean(f) for f in figures]):.3f}, "
            f"validation {np.mean([f['validation'] for f in figures]):.3f}, "
            f"lowest as they are {min(f['as they are'] for f in figures):.3f}"
        )
    everywhere = max(ARMS, key=lambda arm: np.mean([held_out_mean(done[s][arm]) for s in sources]))
    print(f"\nChosen on all four folds: {everywhere}")


if __name__ == "__main__":
    main()
