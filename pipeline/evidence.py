"""The pictures kept with a result, so that a stored result can be shown and explained without
its media: every sampled frame (at preview size), every face crop, and each model's Grad-CAM
overlays of each person's most suspicious face.

Face crops are kept at full crop size and quality: Grad-CAM of any face the user picks later is
computed from the kept crop, with the same models (the result records their versions).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from pipeline.analyze import Analysis, FaceResult, Progress
from pipeline.detector import Detector
from pipeline.gradcam import gradcam_overlays
from pipeline.report import most_suspicious_faces
from pipeline.store import PictureData

FRAME_JPEG_QUALITY = 85
"""Sampled frames and overlays on them are for display only."""
CROP_JPEG_QUALITY = 95
"""Face crops are explained again later: keep them close to what the models scored."""
GRADCAM_PER_TRACK = 1
"""Most suspicious faces per person explained at analysis time."""

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


def collect(detector: Detector, analysis: Analysis, progress: Progress | None = None) -> list[PictureData]:
    """Everything worth keeping of an analysis besides its JSON result, encoded for the store."""
    report = progress or (lambda stage, done, total: None)
    members = list(analysis.result.models)
    pictures = [
        PictureData("frame", position, -1, -1, "", encode_jpeg(preview, FRAME_JPEG_QUALITY), ".jpg")
        for position, preview in enumerate(analysis.previews)
    ]
    for position, faces in enumerate(analysis.faces):
        # Same order as `analysis.result.frames[position].faces`: the engine builds both from it.
        for index, face in enumerate(faces):
            crop = encode_jpeg(face.crop, CROP_JPEG_QUALITY)
            pictures.append(PictureData("face", position, index, face.track, "", crop, ".jpg", face.crop_box))
    suspicious = most_suspicious_faces(analysis, GRADCAM_PER_TRACK)
    for done, face in enumerate(suspicious):
        report("explaining (Grad-CAM)", done, len(suspicious))
        index = next(i for i, f in enumerate(analysis.faces[face.frame]) if f is face)
        preview = analysis.previews[face.frame]
        for name, (on_crop, on_frame) in gradcam_overlays(
            detector, face.crop, preview, face.crop_box, analysis.preview_scale, members
        ).items():
            for role, picture, quality in (
                ("gradcam_face", on_crop, CROP_JPEG_QUALITY),
                ("gradcam_frame", on_frame, FRAME_JPEG_QUALITY),
            ):
                pictures.append(
                    PictureData(role, face.frame, index, face.track, name, encode_jpeg(picture, quality), ".jpg")
                )
    report("explaining (Grad-CAM)", len(suspicious), len(suspicious))
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
