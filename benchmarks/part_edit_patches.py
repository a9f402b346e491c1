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
from sklearn.metrics import roc_auc_score

from benchmarks.recipes import fold_probe
from benchmarks.sharp_swaps import SEED, SOURCE, made_swaps
from pipeline.engine.clip import ClipEncoder, ClipProbe
from pipeline.errors import DataError
from pipeline.training.cross_source import bootstrap_roc_auc, interval
from pipeline.training.data import Sample, read_face
from pipeline.training.sources import CROP_SIDE, face_landmarks, source_samples

ARMS = ("eyes", "nose", "mouth", "sharp")
BATCH = 16


def scores(probe: ClipProbe, encoder: ClipEncoder, samples: Sequence[Sample]) -> tuple[np.ndarray, np.ndarray]:
    """Each crop's class-token logit and its largest patch push towards fake."""
    from tqdm import tqdm

    logits, largest = [], []
    for start in tqdm(range(0, len(samples), BATCH), desc="CLIP patches", leave=False):
        crops = np.stack([read_face(s.path, 224) for s in samples[start : start + BATCH]])
        features = encoder.features(crops, patches_block=probe.block)
        assert features.patches is not None
        logits.append(probe.logits(features))
        largest.append([probe.patch_map(patches).max() for patches in features.patches])
    return np.concatenate(logits), np.concatenate(largest)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, required=True, help="a cross-source runs folder with a swap-faces fold")
    parser.add_argument("--member", default="clip", help="the fold probe read")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    trained = fold_probe(parser, args.runs, SOURCE, args.member)
    probe = ClipProbe.from_json(json.loads(trained.path.read_text()))
    encoder = ClipEncoder(last_block=probe.block)
    reals = [s for s in source_samples(SOURCE) if s.label == 0 and s.landmarks is not None and s.landmarks.exists()]
    if len(reals) < 2:
        parser.error(f"{SOURCE} has no prepared real crops with face meshes: run `python -m pipeline prepare` first")
    meshes = np.stack([face_landmarks(s, CROP_SIDE) for s in reals])
    try:
        made = {arm: made_swaps(reals, meshes, arm) for arm in ARMS}
    except DataError as error:
        parser.error(str(error))
    real_logit, real_patch = scores(probe, encoder, reals)
    results = {}
    for arm in ARMS:
        edit_logit, edit_patch = scores(probe, encoder, made[arm])
        labels = np.asarray([0] * len(reals) + [1] * len(made[arm]))
        results[arm] = {}
        for reading, real, edit in (("class token", real_logit, edit_logit), ("largest patch", real_patch, edit_patch)):
            values = np.concatenate([real, edit])
            draws = bootstrap_roc_auc(labels, values, SEED)
            results[arm][reading] = {"roc_auc": float(roc_auc_score(labels, values)), "interval": interval(draws)}
        print(
            f"{arm}: "
            + ", ".join(
                f"{reading} {value['roc_auc']:.3f} [{', '.join(f'{b:.3f}' for b in value['interval'] or [])}]"
                for reading, value in results[arm].items()
            )
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
