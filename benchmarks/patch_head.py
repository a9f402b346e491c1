"""Rule 70: can a head trained on CLIP patch tokens find a pasted part of a face?

A logistic regression on block 5's patch tokens, trained on real crops (all patches real) and on
their self-blends, whole-face and of one part (a patch is fake where the blend changed it),
without any source's own fakes; each crop scored by its largest patch logit. Scored on the part
edits and whole-face sharp swaps that `sharp_swaps` makes from the inswapper source's unseen
photos, against those photos.

    .venv/bin/python -m benchmarks.patch_head --json patch_head.json
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

from benchmarks.sharp_swaps import SEED, SOURCE, made_swaps
from pipeline.engine.clip import PATCH_GRID, ClipEncoder
from pipeline.errors import DataError
from pipeline.training.cross_source import bootstrap_roc_auc, interval
from pipeline.training.data import Sample, balanced_subset, read_face
from pipeline.training.sources import CROP_SIDE, face_landmarks, self_blended_samples, source_samples

BLOCK = 5
"""The block whose patch tokens the head reads (the shipped probe's)."""
TRAIN_SOURCES = ("dfdc-faces", "gan-faces", "sd-faces")
"""The inswapper source's fold trains on these; their real crops are none of the edits' photos."""
REALS_PER_SOURCE = 200
CHANGED_LEVELS = 3.0
"""A patch of a self-blend is fake where the blend moved its pixels by more than this on average."""
REGULARIZATION = 0.01
ARMS = ("eyes", "nose", "mouth", "sharp")
BATCH = 16
SIDE = 224


def patch_tokens(encoder: ClipEncoder, samples: Sequence[Sample]) -> np.ndarray:
    """(N, 196, 768) float16 patch tokens after `BLOCK` of the samples' crops."""
    from tqdm import tqdm

    out = []
    for start in tqdm(range(0, len(samples), BATCH), desc="CLIP patch tokens", leave=False):
        crops = np.stack([read_face(s.path, SIDE) for s in samples[start : start + BATCH]])
        patches = encoder.features(crops, patches_block=BLOCK).patches
        assert patches is not None
        out.append(patches.astype(np.float16))
    return np.concatenate(out)


def changed_patches(real: np.ndarray, blended: np.ndarray) -> np.ndarray:
    """(196,) whether each 16 x 16 patch of `blended` differs from `real` by more than
    `CHANGED_LEVELS` on average."""
    change = np.abs(blended.astype(np.float32) - real.astype(np.float32)).mean(axis=2)
    cell = SIDE // PATCH_GRID
    per_patch = change.reshape(PATCH_GRID, cell, PATCH_GRID, cell).mean(axis=(1, 3))
    return (per_patch > CHANGED_LEVELS).ravel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    encoder = ClipEncoder(last_block=BLOCK)

    reals = [
        s
        for source in TRAIN_SOURCES
        for s in balanced_subset([s for s in source_samples(source, "train") if s.label == 0], REALS_PER_SOURCE, 0)
    ]
    blends = self_blended_samples(reals, 0) + self_blended_samples(reals, 0, parts=True)
    labels = [np.zeros(PATCH_GRID * PATCH_GRID, bool)] * len(reals)
    for index, blend in enumerate(blends):
        real = reals[index % len(reals)]
        labels.append(changed_patches(read_face(real.path, SIDE), read_face(blend.path, SIDE)))
    tokens = patch_tokens(encoder, [*reals, *blends]).reshape(-1, 768).astype(np.float32)
    patch_labels = np.concatenate(labels).astype(int)
    print(f"{len(reals)} real crops, {len(blends)} self-blends; {patch_labels.mean():.1%} of patches fake")
    scaler = StandardScaler().fit(tokens)
    head = LogisticRegression(C=REGULARIZATION, class_weight="balanced", max_iter=500)
    head.fit(scaler.transform(tokens), patch_labels)
    del tokens

    def scores(samples: Sequence[Sample]) -> np.ndarray:
        tokens = patch_tokens(encoder, samples).astype(np.float32)
        logits = head.decision_function(scaler.transform(tokens.reshape(-1, 768)))
        return logits.reshape(len(samples), -1).max(axis=1)

    edited = [s for s in source_samples(SOURCE) if s.label == 0 and s.landmarks is not None and s.landmarks.exists()]
    meshes = np.stack([face_landmarks(s, CROP_SIDE) for s in edited])
    try:
        made = {arm: made_swaps(edited, meshes, arm) for arm in ARMS}
    except DataError as error:
        parser.error(str(error))
    real_scores = scores(edited)
    results = {}
    for arm in ARMS:
        values = np.concatenate([real_scores, scores(made[arm])])
        truth = np.asarray([0] * len(edited) + [1] * len(made[arm]))
        results[arm] = {
            "roc_auc": float(roc_auc_score(truth, values)),
            "interval": interval(bootstrap_roc_auc(truth, values, SEED)),
        }
        bounds = ", ".join(f"{b:.3f}" for b in results[arm]["interval"] or [])
        print(f"{arm}: largest patch logit of the patch head {results[arm]['roc_auc']:.3f} [{bounds}]")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
