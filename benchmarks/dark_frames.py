"""Faces found in darker copies of the validation pictures and the shared videos, with and without
the second look at dark frames (rule 31).

Each of `resaved_photos`' pictures as they are (`qasis`: the 562 validation pictures) and 8 sampled
frames of each of the 28 shared videos, as they are and 1, 2 and 3 stops darker (linear light
halved per stop, back to 8-bit sRGB, no compression), go through `FaceSearch` (MTCNN and its second
looks; no model scores), once with the dark look off (`FaceSettings.dark_mean_light = 0`) and once
as shipped:

    .venv/bin/python -m benchmarks.dark_frames OUT/qasis

No test split is read.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.config import FaceSettings, shared_data_dir
from pipeline.engine.colour import LINEAR_LIGHT, srgb_encoded
from pipeline.engine.faces import FaceFinder, FaceSearch
from pipeline.engine.media import sample_frames

STOPS = (0, 1, 2, 3)
FRAMES_PER_VIDEO = 8


def darker(rgb: np.ndarray, stops: int) -> np.ndarray:
    """`rgb` with its linear light halved `stops` times, as 8-bit sRGB."""
    return np.round(srgb_encoded(LINEAR_LIGHT / 2**stops) * 255).astype(np.uint8)[rgb]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pictures", type=Path, help="resaved_photos' qasis folder")
    args = parser.parse_args()
    shipped = FaceSettings()
    looks = {"without the look": dataclasses.replace(shipped, dark_mean_light=0.0), "with it": shipped}
    finder = FaceFinder(shipped)
    pictures = sorted(args.pictures.glob("*/*/*"))
    videos = sorted((shared_data_dir() / "videos").glob("*/*.mp4"))
    sampled = {video: [frame.rgb for frame in sample_frames(video, frames=FRAMES_PER_VIDEO)] for video in videos}
    found: dict[tuple[str, int, str], set[str]] = {}
    for stops in STOPS:
        for name, settings in looks.items():
            with_face = set()
            for picture in pictures:
                with Image.open(picture) as image:
                    rgb = np.asarray(image.convert("RGB"))
                if FaceSearch(finder, settings).add([darker(rgb, stops)])[0]:
                    with_face.add(str(picture))
            found["pictures", stops, name] = with_face
            frames_with_face = set()
            for video, frames in sampled.items():
                faces = FaceSearch(finder, settings).add_all([darker(rgb, stops) for rgb in frames])
                frames_with_face |= {f"{video}#{index}" for index, frame_faces in enumerate(faces) if frame_faces}
            found["frames", stops, name] = frames_with_face
            print(
                f"{stops} stops darker, {name}: a face in {len(with_face)} of {len(pictures)} pictures, "
                f"{len(frames_with_face)} of {sum(map(len, sampled.values()))} video frames",
                flush=True,
            )
    for what in ("pictures", "frames"):
        as_they_are = found[what, 0, "without the look"] ^ found[what, 0, "with it"]
        print(f"{what} as they are whose faces the look changes: {sorted(as_they_are) or 'none'}")
        for stops in STOPS[1:]:
            lost = found[what, 0, "without the look"] - found[what, stops, "without the look"]
            back = lost & found[what, stops, "with it"]
            print(f"{what} {stops} stops darker: {len(lost)} lost their face, the look found {len(back)} again")


if __name__ == "__main__":
    main()
