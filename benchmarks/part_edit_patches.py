"""Rule 69: does the CLIP probe, read patch by patch, single out a pasted part of a face?

Rule 65's part edits (and rule 60's whole-face sharp swaps) against the same real crops, scored
by a `cross-source` fold probe that never saw the `swap-faces` source: by its class-token logit
as the engine scores, and by the largest of its 196 patch pushes towards fake after its block
(`ClipProbe.patch_map`, what the explanation map shows). Made copies come from `sharp_swaps`'s
cache (made there if missing).

    .venv/bin/python -m benchmarks.part_edit_patches --runs RUNS63 --json patches.json
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from benchmarks.recipes import fold_probe
from benchmarks.sharp_swaps import SOURCE, edited_photos, printed, roc_auc_with_interval
from pipeline.engine.clip import ClipProbe
from pipeline.training.data import Sample
from pipeline.training.features import patch_tokens
from pipeline.training.recipe import trained_logits

ARMS = ("eyes", "nose", "mouth", "sharp")


def largest_push(probe: ClipProbe, samples: Sequence[Sample]) -> np.ndarray:
    """Each crop's largest patch push towards fake (`ClipProbe.patch_map`) after the probe's block."""
    tokens = patch_tokens([s.path for s in samples], probe.block).astype(np.float32)
    return np.asarray([probe.patch_map([patches]).max() for patches in tokens])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, required=True, help="a cross-source runs folder with a swap-faces fold")
    parser.add_argument("--member", default="clip", help="the fold probe read")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    trained = fold_probe(parser, args.runs, SOURCE, args.member)
    probe = ClipProbe.from_json(json.loads(trained.path.read_text()))
    reals, made = edited_photos(parser, ARMS)
    real_logit, real_patch = trained_logits(trained, reals), largest_push(probe, reals)
    results = {}
    for arm in ARMS:
        labels = np.asarray([0] * len(reals) + [1] * len(made[arm]))
        readings = (
            ("class token", real_logit, trained_logits(trained, made[arm])),
            ("largest patch", real_patch, largest_push(probe, made[arm])),
        )
        results[arm] = {
            reading: roc_auc_with_interval(labels, np.concatenate([real, edit])) for reading, real, edit in readings
        }
        print(f"{arm}: " + ", ".join(f"{reading} {printed(value)}" for reading, value in results[arm].items()))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
