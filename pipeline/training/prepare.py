"""`prepare`: a folder of labelled videos -> a face-crop data set, cropped exactly as the engine
crops the faces it scores (same sampling, ensemble, crop rule and size)."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import cv2

from pipeline.config import Settings
from pipeline.training.data import LABELS, split_for_group
from pipeline.errors import DataError, PipelineError
from pipeline.engine.faces import FaceFinder, find_faces, link_tracks
from pipeline.engine.media import read_frames


def prepare_videos(videos_dir: Path, out_dir: Path, frames: int = 8, settings: Settings | None = None) -> int:
    """Write the face crops of every video under `videos_dir/{real,fake}` to `out_dir` with a
    `metadata.csv` (group = source video, split drawn by group). Returns the number of crops."""
    settings = settings or Settings()
    if not (videos_dir / "real").is_dir() or not (videos_dir / "fake").is_dir():
        raise DataError(f"{videos_dir} must hold a real/ and a fake/ folder of videos")
    finder = FaceFinder(settings.faces)
    rows = []
    for label in LABELS:
        (out_dir / label).mkdir(parents=True, exist_ok=True)
        videos = sorted(p for p in (videos_dir / label).iterdir() if p.suffix.lower() in settings.media.video_suffixes)
        for video in videos:
            try:
                _, frame_iter = read_frames(video, settings.media, frames)
                sampled = list(frame_iter)
            except PipelineError as error:
                print(f"warning: skipping {video}: {error}", file=sys.stderr)
                continue
            faces = find_faces([f.rgb for f in sampled], finder, settings.faces)
            link_tracks(faces, settings.faces.track_iou)
            group = video.stem
            for frame, frame_faces in zip(sampled, faces):
                for face in frame_faces:
                    name = f"{label}/{group}_f{frame.frame_number:05d}_p{face.track + 1}.jpg"
                    cv2.imwrite(str(out_dir / name), cv2.cvtColor(face.crop, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
                    rows.append({"file": name, "label": label, "group": group, "split": split_for_group(group, 0.1, 0.1)})
            print(f"{video.name}: {sum(len(f) for f in faces)} faces", file=sys.stderr)
    with (out_dir / "metadata.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["file", "label", "group", "split"])
        writer.writeheader()
        writer.writerows(rows)
    return len(rows)
