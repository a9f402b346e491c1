"""Rule 70: can a head trained on CLIP patch tokens find a pasted part of a face?

A logistic regression on block 5's patch tokens, trained on real crops (all patches real) and on
their self-blends, whole-face and of one part (a patch is fake where the blend changed it),
without any source's own fakes; each crop scored by its largest patch logit. Scored on the part
edits and whole-face sharp swaps that `sharp_swaps` makes from the inswapper source's unseen
photos, against those photos (rule 70). With `--held-out`, trained for each source held out on
the others' real crops and scored on its held-out items as the cross-source table picks them
(rule 71).

    .venv/bin/python -m benchmarks.patch_head --json patch_head.json
    .venv/bin/python -m benchmarks.patch_head --held-out --json patch_head_held_out.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from benchmarks.sharp_swaps import SOURCE, edited_photos, printed, roc_auc_with_interval
from pipeline.config import REPO_ROOT, cache_dir
from pipeline.engine.clip import PATCH_GRID, ClipEncoder
from pipeline.files import whole_file
from pipeline.training.data import Sample, balanced_subset, read_face
from pipeline.training.recipe import Recipe, samples_of
from pipeline.training.sources import SOURCES, self_blended_samples, source_samples

BLOCK = 5
"""The block whose patch tokens the head reads (the shipped probe's)."""
REALS_PER_SOURCE = 200
CHANGED_LEVELS = 3.0
"""A patch of a self-blend is fake where the blend moved its pixels by more than this on average."""
REGULARIZATION = 0.01
ARMS = ("eyes", "nose", "mouth", "sharp")
BATCH = 16
SIDE = 224


def _token_file(sample: Sample) -> Path:
    """Where a crop's patch tokens are kept: named by the crop's content and the block, so a crop
    made again differently is encoded again."""
    digest = hashlib.sha256(sample.path.read_bytes() + f"|block{BLOCK}|{SIDE}".encode()).hexdigest()[:24]
    return cache_dir() / "benchmarks" / "patch-tokens" / digest[:2] / f"{digest}.npy"


def patch_tokens(encoder: ClipEncoder, samples: Sequence[Sample]) -> np.ndarray:
    """(N, 196, 768) float16 patch tokens after `BLOCK` of the samples' crops (`encoder` cut at
    `BLOCK` or later), each encoded once and kept in the cache folder (a stopped run goes on
    where it stopped)."""
    from tqdm import tqdm

    files = [_token_file(s) for s in samples]
    missing = [i for i, file in enumerate(files) if not file.exists()]
    for start in tqdm(range(0, len(missing), BATCH), desc="CLIP patch tokens", leave=False):
        chosen = missing[start : start + BATCH]
        crops = np.stack([read_face(samples[i].path, SIDE) for i in chosen])
        patches = encoder.features(crops, patches_block=BLOCK).patches
        assert patches is not None
        for i, tokens in zip(chosen, patches.astype(np.float16), strict=True):
            files[i].parent.mkdir(parents=True, exist_ok=True)
            with whole_file(files[i]) as partial:
                np.save(partial, tokens)
    return np.stack([np.load(file) for file in files])


def changed_patches(real: np.ndarray, blended: np.ndarray) -> np.ndarray:
    """(196,) whether each 16 x 16 patch of `blended` differs from `real` by more than
    `CHANGED_LEVELS` on average."""
    change = np.abs(blended.astype(np.float32) - real.astype(np.float32)).mean(axis=2)
    cell = SIDE // PATCH_GRID
    per_patch = change.reshape(PATCH_GRID, cell, PATCH_GRID, cell).mean(axis=(1, 3))
    return (per_patch > CHANGED_LEVELS).ravel()


Head = tuple[StandardScaler, LogisticRegression]


def trained_head(encoder: ClipEncoder, sources: Sequence[str]) -> Head:
    """The patch head trained on `REALS_PER_SOURCE` real training crops of each source and their
    whole-face and part self-blends."""
    reals = [
        s
        for source in sources
        for s in balanced_subset([s for s in source_samples(source, "train") if s.label == 0], REALS_PER_SOURCE, 0)
    ]
    blends = self_blended_samples(reals, 0) + self_blended_samples(reals, 0, parts=True)
    labels = [np.zeros(PATCH_GRID * PATCH_GRID, bool)] * len(reals)
    for index, blend in enumerate(blends):
        real = reals[index % len(reals)]
        labels.append(changed_patches(read_face(real.path, SIDE), read_face(blend.path, SIDE)))
    rows = patch_tokens(encoder, [*reals, *blends]).reshape(-1, 768).astype(np.float32)
    patch_labels = np.concatenate(labels).astype(int)
    print(f"{len(reals)} real crops, {len(blends)} self-blends; {patch_labels.mean():.1%} of patches fake")
    scaler = StandardScaler().fit(rows)
    head = LogisticRegression(C=REGULARIZATION, class_weight="balanced", max_iter=500)
    head.fit(scaler.transform(rows), patch_labels)
    return scaler, head


def largest_logit(encoder: ClipEncoder, head: Head, samples: Sequence[Sample]) -> np.ndarray:
    """Each crop's largest patch logit under the head."""
    scaler, model = head
    scores = []
    for start in range(0, len(samples), 512):  # a bounded share of memory at a time
        part = samples[start : start + 512]
        rows = patch_tokens(encoder, part).astype(np.float32).reshape(-1, 768)
        scores.append(model.decision_function(scaler.transform(rows)).reshape(len(part), -1).max(axis=1))
    return np.concatenate(scores)


def _roc_auc(name: str, labels: np.ndarray, scores: np.ndarray) -> dict[str, Any]:
    """`roc_auc_with_interval`, printed under `name`."""
    scored = roc_auc_with_interval(labels, scores)
    print(f"{name}: largest patch logit of the patch head {printed(scored)}")
    return scored


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--held-out", action="store_true", help="each source held out in turn (rule 71)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    encoder = ClipEncoder(last_block=BLOCK)
    results: dict[str, dict[str, object]] = {}
    if args.held_out:
        per_class = Recipe.load(REPO_ROOT / "models" / "recipe.json").held_out_per_class
        means = []
        for source in SOURCES:
            head = trained_head(encoder, [s for s in SOURCES if s != source])
            held = samples_of([source], None, per_class)
            labels = np.asarray([s.label for s in held])
            scored = _roc_auc(f"{source} (n {len(held)})", labels, largest_logit(encoder, head, held))
            results[source] = {"n": len(held), **scored}
            means.append(scored["roc_auc"])
        print(f"mean held-out ROC AUC {np.mean(means):.3f}")
    else:
        # The inswapper source's fold trains on the other three; their reals are none of the edits' photos.
        head = trained_head(encoder, [s for s in SOURCES if s != SOURCE])
        edited, made = edited_photos(parser, ARMS)
        real_scores = largest_logit(encoder, head, edited)
        for arm in ARMS:
            values = np.concatenate([real_scores, largest_logit(encoder, head, made[arm])])
            results[arm] = _roc_auc(arm, np.asarray([0] * len(edited) + [1] * len(made[arm])), values)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
