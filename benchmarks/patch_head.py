"""Rule 70: can a head trained on CLIP patch tokens find a pasted part of a face?

A logistic regression on block 5's patch tokens, trained on real crops (all patches real) and on
their self-blends, whole-face and of one part (a patch is fake where the blend changed it),
without any source's own fakes; each crop scored by its largest patch logit. Scored on the part
edits and whole-face sharp swaps that `sharp_swaps` makes from the inswapper source's unseen
photos, against those photos (rule 70). With `--held-out`, trained for each source held out on
the others' real crops and scored on its held-out items as the cross-source table picks them
(rule 71). `--block` reads another block's patch tokens (rule 75).

    .venv/bin/python -m benchmarks.patch_head --json patch_head.json
    .venv/bin/python -m benchmarks.patch_head --held-out --json patch_head_held_out.json
    .venv/bin/python -m benchmarks.patch_head --block 3 --json patch_head_block3.json
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.sharp_swaps import SOURCE, edited_photos, printed, roc_auc_with_interval
from pipeline.config import REPO_ROOT
from pipeline.engine.clip import PATCH_MAX, ClipProbe
from pipeline.training.recipe import Recipe, fitted_patch_probe, probe_logits, samples_of
from pipeline.training.sources import SOURCES

HEAD = {
    "kind": "clip_probe",
    "name": "patch_head",
    "feature": PATCH_MAX,
    "block": 5,
    "regularization": 0.01,
    "train_per_class": 200,
    "source_fakes": False,
    "self_blended_views": 1,
    "part_blended_views": 1,
}
"""Rule 70's head as a recipe's probe member (benchmarks/clip_patch_head.json trains the same in
every fold of the cross-source table)."""
ARMS = ("eyes", "nose", "mouth", "sharp")


def trained_head(sources: Sequence[str], block: int) -> ClipProbe:
    """The patch head on `block`'s patch tokens, trained on 200 real training crops of each source
    and their whole-face and part self-blends."""
    return fitted_patch_probe({**HEAD, "block": block}, sources)


def _roc_auc(name: str, labels: np.ndarray, scores: np.ndarray) -> dict[str, Any]:
    """`roc_auc_with_interval`, printed under `name`."""
    scored = roc_auc_with_interval(labels, scores)
    print(f"{name}: largest patch logit of the patch head {printed(scored)}")
    return scored


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--held-out", action="store_true", help="each source held out in turn (rule 71)")
    parser.add_argument(
        "--block", type=int, default=HEAD["block"], help="the block whose patch tokens it reads (rule 75)"
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if not 1 <= args.block <= 12:
        parser.error(f"--block {args.block}: CLIP has blocks 1 to 12")
    results: dict[str, dict[str, object]] = {}
    if args.held_out:
        per_class = Recipe.load(REPO_ROOT / "models" / "recipe.json").held_out_per_class
        means = []
        for source in SOURCES:
            head = trained_head([s for s in SOURCES if s != source], args.block)
            held = samples_of([source], None, per_class)
            labels = np.asarray([s.label for s in held])
            scored = _roc_auc(f"{source} (n {len(held)})", labels, probe_logits(head, held))
            results[source] = {"n": len(held), **scored}
            means.append(scored["roc_auc"])
        print(f"mean held-out ROC AUC {np.mean(means):.3f}")
    else:
        # The inswapper source's fold trains on the other three; their reals are none of the edits' photos.
        head = trained_head([s for s in SOURCES if s != SOURCE], args.block)
        edited, made = edited_photos(parser, ARMS)
        real_scores = probe_logits(head, edited)
        for arm in ARMS:
            values = np.concatenate([real_scores, probe_logits(head, made[arm])])
            results[arm] = _roc_auc(arm, np.asarray([0] * len(edited) + [1] * len(made[arm])), values)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
