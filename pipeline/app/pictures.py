"""The pictures kept with a result, so that a stored result can be shown and explained without
its media: every sampled frame (at preview size), every face crop, and each model's explanation
map over each person's most suspicious face.

Face crops are kept at full crop size and quality: the map of any face the user picks later is
computed from the kept crop, with the same models (the result records their versions).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from pipeline.app.store import PictureData
from pipeline.config import PictureSettings
from pipeline.engine.analyze import Analysis, Progress
from pipeline.engine.ensemble import Ensemble
from pipeline.engine.explain import face_overlays, most_suspicious_faces
from pipeline.results import FaceResult

FAKE_RGB = (230, 57, 70)
REAL_RGB = (42, 157, 143)


def encode_jpeg(rgb: np.ndarray, quality: int) -> bytes:
    """JPEG bytes of an RGB uint8 picture."""
    ok, buffer = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("could not encode a picture as JPEG")
    return buffer.tobytes()


def read_picture(path: Path) -> np.ndarray | None:
    """A stored picture as RGB uint8, or None when its file is gone."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    return None if bgr is None else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def collect(
    ensemble: Ensemble,
    analysis: Analysis,
    settings: PictureSettings = PictureSettings(),
    progress: Progress | None = None,
) -> list[PictureData]:
    """Everything worth keeping of an analysis besides its JSON result, encoded for the store."""
    progress = progress or (lambda stage, done, total: None)
    pictures = [
        PictureData("frame", position, -1, -1, "", encode_jpeg(preview, settings.frame_jpeg_quality), ".jpg")
        for position, preview in enumerate(analysis.previews)
    ]
    for position, faces in enumerate(analysis.faces):
        # Same order as `analysis.result.frames[position].faces`: the engine builds both from it.
        for index, face in enumerate(faces):
            crop = encode_jpeg(face.crop, settings.crop_jpeg_quality)
            pictures.append(PictureData("face", position, index, face.track, "", crop, ".jpg", face.crop_box))
    suspicious = most_suspicious_faces(analysis, settings.explained_faces_per_person)
    for done, face in enumerate(suspicious):
        progress("explaining", done, len(suspicious))
        index = next(i for i, f in enumerate(analysis.faces[face.position]) if f is face)
        for name, (on_crop, on_frame) in face_overlays(ensemble, analysis, face).items():
            for role, picture, quality in (
                ("explanation_face", on_crop, settings.crop_jpeg_quality),
                ("explanation_frame", on_frame, settings.frame_jpeg_quality),
            ):
                pictures.append(
                    PictureData(role, face.position, index, face.track, name, encode_jpeg(picture, quality), ".jpg")
                )
    progress("explaining", len(suspicious), len(suspicious))
    return pictures


def draw_faces(frame: np.ndarray, faces: Sequence[FaceResult], scale: float, threshold: float) -> np.ndarray:
    """The frame with each face's box, person number and fake probability drawn on it; boxes at
    or above the decision threshold in red, below it in green."""
    out = frame.copy()
    thickness = max(1, round(max(out.shape[:2]) / 400))
    for face in faces:
        x, y, w, h = (round(v * scale) for v in face.box)
        colour = FAKE_RGB if face.fake_probability >= threshold else REAL_RGB
        cv2.rectangle(out, (x, y), (x + w, y + h), colour, thickness)
        label = f"P{face.track + 1} {face.fake_probability:.2f}"
        font_scale = max(0.4, max(out.shape[:2]) / 1600)
        (text_w, text_h), baseline = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
        top = max(0, y - text_h - baseline - 2)
        cv2.rectangle(out, (x, top), (x + text_w + 4, top + text_h + baseline + 2), colour, -1)
        cv2.putText(
            out, label, (x + 2, top + text_h + 1), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (255, 255, 255), 1, cv2.LINE_AA
        )
    return out
