"""Pictures and files made from an analysis: Grad-CAM overlays of the most suspicious faces."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from pipeline.analyze import Analysis
from pipeline.detector import Detector
from pipeline.faces import Face
from pipeline.gradcam import gradcam_overlays


def most_suspicious_faces(analysis: Analysis, per_track: int = 1) -> list[Face]:
    """The highest-scoring faces of each person, most suspicious first."""
    scores = {
        (frame_position, face.track): face.fake_probability
        for frame_position, frame in enumerate(analysis.result.frames)
        for face in frame.faces
    }
    chosen: list[Face] = []
    tracks = sorted({face.track for frame in analysis.faces for face in frame})
    for track in tracks:
        faces = [f for frame in analysis.faces for f in frame if f.track == track]
        faces.sort(key=lambda f: scores[(f.frame, f.track)], reverse=True)
        chosen.extend(faces[:per_track])
    return sorted(chosen, key=lambda f: scores[(f.frame, f.track)], reverse=True)


def gradcam_pictures(detector: Detector, analysis: Analysis, face: Face, members: list[str] | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Model name -> (overlay on the face crop, overlay on the frame) for one face."""
    frame = analysis.previews[face.frame]
    return gradcam_overlays(detector, face.crop, frame, face.crop_box, analysis.preview_scale, members or detector.member_names)


def write_gradcam_pictures(detector: Detector, analysis: Analysis, out_dir: Path) -> list[Path]:
    """PNG overlays (crop and frame, each model) of each person's most suspicious face."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = analysis.result.sha256[:12]
    written = []
    for face in most_suspicious_faces(analysis):
        members = list(analysis.result.models)
        for name, (on_crop, on_frame) in gradcam_pictures(detector, analysis, face, members).items():
            for kind, picture in (("crop", on_crop), ("frame", on_frame)):
                path = out_dir / f"{stem}_person{face.track + 1}_frame{face.frame}_{name}_{kind}.png"
                cv2.imwrite(str(path), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
                written.append(path)
    return written
