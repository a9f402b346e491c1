"""The shared videos scored with their crops or frames re-saved as JPEG before the models see them (rules 34, 37).

The DFDC training crops were saved as JPEG at quality 75 after they were cut from their videos'
frames; the engine scores a video's faces as cut from frames that never were JPEG. This analyses
each of the 28 shared videos with the shipped engine twice: its crops as cut (shipped), and each
crop saved as JPEG 75 and read back first (`ScoringSettings.resaved_crop_quality`), and prints
each clip's fake probability, verdict and the CLIP member's median over its faces both ways, then
per arm the real and the fake clips' medians, their verdicts and the video ROC AUC. Rule 37's
arm saves each frame as JPEG 75 at its own size before faces are found and cut from it
(`ScoringSettings.resaved_frame_quality`), as the DFDC crops were saved at the face's own size:

    .venv/bin/python -m benchmarks.resaved_crops [--arms ARM ...]

No test split is read: the shared videos are a check of the whole engine, not a training source.
"""

from __future__ import annotations

import argparse
from collections import Counter
from dataclasses import replace

import numpy as np
from sklearn.metrics import roc_auc_score

ARMS = {
    "as cut": {},
    "re-saved as JPEG 75": {"resaved_crop_quality": 75},
    "frames re-saved as JPEG 75": {"resaved_frame_quality": 75},
}
"""Arm -> the `ScoringSettings` it changes: rule 34's two arms, and rule 37's (each frame saved
at its own size before faces are cut from it)."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arms", nargs="*", choices=list(ARMS), help="the arms to run (default all)")
    args = parser.parse_args()
    from pipeline.config import ScoringSettings, Settings, shared_data_dir
    from pipeline.engine.analyze import Engine

    videos = sorted((shared_data_dir() / "videos").glob("*/*.mp4"))
    rows: dict[str, list[tuple[str, str, float, str, float]]] = {}
    for arm, changes in ARMS.items():
        if args.arms and arm not in args.arms:
            continue
        engine = Engine(replace(Settings(), scoring=replace(ScoringSettings(), **changes)))
        rows[arm] = []
        for video in videos:
            result = engine.analyze(video).result
            clip = [
                face.model_scores["clip"]
                for frame in result.frames
                for face in frame.faces
                if "clip" in face.model_scores
            ]
            probability = np.nan if result.fake_probability is None else result.fake_probability
            rows[arm].append(
                (video.parent.name, video.name, probability, result.verdict, float(np.median(clip)) if clip else np.nan)
            )
            print(
                f"{arm} | {video.parent.name}/{video.name} | {probability:.3f} | {result.verdict} | CLIP {rows[arm][-1][4]:.3f}",
                flush=True,
            )
    for arm, results in rows.items():
        line = [arm]
        for label in ("real", "fake"):
            chosen = [r for r in results if r[0] == label]
            counts = Counter(r[3] for r in chosen)
            probabilities = [r[2] for r in chosen]
            line.append(
                f"{label} n={len(chosen)}: fake / uncertain / real / no face "
                f"{' / '.join(str(counts[v]) for v in ('fake', 'uncertain', 'real', 'no_face'))}, "
                f"median {np.nanmedian(probabilities):.3f} (CLIP {np.nanmedian([r[4] for r in chosen]):.3f})"
                + (f", each {', '.join(f'{p:.3f}' for p in probabilities)}" if label == "real" else "")
            )
        scored = [r for r in results if not np.isnan(r[2])]
        labels = [int(r[0] == "fake") for r in scored]
        line.append(
            f"video ROC AUC {roc_auc_score(labels, [r[2] for r in scored]):.3f} "
            f"(CLIP median {roc_auc_score(labels, [r[4] for r in scored]):.3f})"
        )
        print(" | ".join(line))


if __name__ == "__main__":
    main()
