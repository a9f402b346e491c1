"""Which known source carries what v8's probe knows about each unseen one? (rule 115)

In each cross-source fold, v8's `clip` member (the mean of per-source probes on block 5's class
token) refitted with one more training source left out, each of the fold's training sources in
turn, beside the member trained on all three. See `probe_arms`.

    .venv/bin/python -m benchmarks.source_contributions OUT.json

OUT.json keeps each fold's figures as it finishes, so a stopped run resumes.
"""

from __future__ import annotations

import numpy as np

from benchmarks.probe_arms import COLUMNS, Arm, Fit, Scorer, fold_by_fold, fold_figures, mean_of_sources
from pipeline.training.probe import source_of

SHIPPED_BLOCK = 5
BASELINE = "(0) v8"
CARRIES = 0.03
"""A held-out ROC AUC lower by at least this without a training source: it carries the transfer
(higher by as much: it misleads it); fixed by the rule."""


def without(left_out: str) -> Fit:
    """v8's fit on every training row but those of `left_out` (its crops, fakes and self-blends)."""

    def fit(features: np.ndarray, labels: np.ndarray, sources: list[str], regularization: float) -> Scorer:
        rows = np.flatnonzero([source_of(source) != left_out for source in sources])
        return mean_of_sources(features[rows], labels[rows], [sources[i] for i in rows], regularization)

    return fit


def main() -> None:
    def figures_of(recipe, held_out):
        arms = {BASELINE: Arm((SHIPPED_BLOCK,), mean_of_sources)} | {
            f"without {source}": Arm((SHIPPED_BLOCK,), without(source))
            for source in recipe.sources
            if source != held_out
        }
        return fold_figures(recipe, held_out, arms)

    recipe, done = fold_by_fold(__doc__.splitlines()[0], figures_of)
    print("\nHeld-out ROC AUC without each training source, minus v8's (as they are / re-shared), and the reading")
    for held_out in recipe.sources:
        base = done[held_out][BASELINE]
        print(f"  {held_out} held out: v8 {base['as they are']:.3f} / {base['re-shared']:.3f}")
        for arm, figures in done[held_out].items():
            if arm == BASELINE:
                continue
            changes = {column: figures[column] - base[column] for column in COLUMNS[:2]}
            readings = [
                "carries" if change <= -CARRIES else "misleads" if change >= CARRIES else "neither"
                for change in changes.values()
            ]
            print(
                f"    {arm:24} {changes['as they are']:+.3f} / {changes['re-shared']:+.3f}  "
                f"({readings[0]} / {readings[1]})"
            )


if __name__ == "__main__":
    main()
