"""The shared videos' frames scored as decoded and re-saved as JPEG at their own size (rule 36).

The DFDC training crops were cut from their videos' frames at about the face's own size and saved
as JPEG 75 there (`source_face_width` in the data's metadata: 223 px for a 224 px crop); rule 34
re-saved the engine's crops only after they were framed and resized to the models' input. This
samples 8 frames from each of the 28 shared videos and analyses each frame with the shipped engine
as a photo, as decoded (PNG, the same pixels) and saved once as JPEG 75 at its own size first, and
prints, per arm, the CLIP member's and the ensemble's median over the real and the fake clips'
faces and each member's face-level ROC AUC:

    .venv/bin/python -m benchmarks.resaved_frames

It first prints the one face whose training crop is known to come from these clips: the shared
crop `dfdc-faces/real/lynaeydofd.jpg`, and the same 224-pixel square cut from the clip's first
frame (where template matching places the crop), as decoded and saved as JPEG 75.

No test split is read: the shared videos are a check of the whole engine, not a training source.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
from PIL import Image
from sklearn.metrics import roc_auc_score

if TYPE_CHECKING:
    from pipeline.engine.analyze import Engine

ARMS = {"as decoded": None, "re-saved as JPEG 75": 75}
"""Arm -> the JPEG quality each frame is saved at before it is analysed (None: as PNG)."""

FRAMES = 8
KNOWN_CROP = ("real/lynaeydofd.mp4", "real/lynaeydofd.jpg")
"""A shared clip and its own DFDC training crop."""


def _saved(rgb: np.ndarray, folder: Path, name: str, quality: int | None) -> Path:
    path = folder / f"{name}.{'png' if quality is None else 'jpg'}"
    Image.fromarray(rgb).save(path, **({} if quality is None else {"quality": quality}))
    return path


def _known_crop(engine: Engine, data: Path, folder: Path) -> None:
    from pipeline.config import MediaSettings
    from pipeline.engine.media import load_image, sample_frames

    crop = load_image(data / "dfdc-faces" / KNOWN_CROP[1])
    # Asking for more frames than the clip has yields every frame, so the first is frame 0,
    # decoded by the engine's own reader; only that one is decoded here.
    frame = next(iter(sample_frames(data / "videos" / KNOWN_CROP[0], frames=MediaSettings().max_frames))).rgb
    match = cv2.matchTemplate(frame, crop, cv2.TM_CCOEFF_NORMED)
    _, correlation, _, (x, y) = cv2.minMaxLoc(match)
    region = np.ascontiguousarray(frame[y : y + crop.shape[0], x : x + crop.shape[1]])
    print(
        f"{KNOWN_CROP[1]} found in the first frame of {KNOWN_CROP[0]} at x={x}, y={y} (correlation {correlation:.3f})"
    )
    pictures = {
        "the shared training crop": data / "dfdc-faces" / KNOWN_CROP[1],
        **{
            f"its square in the frame, {arm}": _saved(region, folder, f"region{i}", q)
            for i, (arm, q) in enumerate(ARMS.items())
        },
    }
    for what, path in pictures.items():
        result = engine.analyze(path).result
        scores = " ".join(f"{name}={score:.3f}" for name, score in result.model_scores.items())
        print(f"  {what}: {result.fake_probability:.3f} {result.verdict} ({scores})")


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    from pipeline.config import shared_data_dir
    from pipeline.engine.analyze import Engine
    from pipeline.engine.media import sample_frames

    data = shared_data_dir()
    engine = Engine()
    videos = sorted((data / "videos").glob("*/*.mp4"))
    with tempfile.TemporaryDirectory() as scratch:
        _known_crop(engine, data, Path(scratch))
        faces: dict[str, list[tuple[int, float, dict[str, float]]]] = {arm: [] for arm in ARMS}
        for video in videos:
            label = int(video.parent.name == "fake")
            for number, frame in enumerate(sample_frames(video, frames=FRAMES)):
                for arm, quality in ARMS.items():
                    result = engine.analyze(_saved(frame.rgb, Path(scratch), f"frame{number}", quality)).result
                    faces[arm] += [
                        (label, face.fake_probability, face.model_scores)
                        for shown in result.frames
                        for face in shown.faces
                    ]
    for arm, scored in faces.items():
        labels = [label for label, _, _ in scored]
        members = {"ensemble": [p for _, p, _ in scored]}
        members |= {name: [s[name] for _, _, s in scored] for name in scored[0][2]}
        medians = []
        for label, name in ((0, "real"), (1, "fake")):
            chosen = [i for i, value in enumerate(labels) if value == label]
            medians.append(
                f"{name} faces {len(chosen)}: median ensemble {np.median(np.array(members['ensemble'])[chosen]):.3f}, "
                f"CLIP {np.median(np.array(members['clip'])[chosen]):.3f}"
            )
        aucs = ", ".join(f"{name} {roc_auc_score(labels, values):.3f}" for name, values in members.items())
        print(f"{arm} | {' | '.join(medians)} | face ROC AUC {aucs}")


if __name__ == "__main__":
    main()
