"""Test scenes made from real shared faces: several people in one picture or video."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from benchmarks.resaved_photos import SEPIA_TONE as SEPIA
from benchmarks.resaved_photos import WARM_GAIN as WARM
from pipeline.training.data import load_samples, read_face

# SEPIA and WARM are rules 118's and 117's own filters (red, green and blue as multiples of
# lightness; multiplied by these), so the tests tone and grade as those measurements did.
FACE_SIDE = 160


def toned(rgb: np.ndarray, tone: tuple[float, float, float] = SEPIA) -> np.ndarray:
    """`rgb` made black-and-white and toned: each pixel's lightness times `tone`."""
    lightness = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)[..., None]
    return np.clip(lightness * np.float32(tone) + 0.5, 0, 255).astype(np.uint8)


def warmed(rgb: np.ndarray) -> np.ndarray:
    """`rgb` graded warm (`WARM`): a colour filter, not a tone."""
    return np.clip(rgb * np.float32(WARM) + 0.5, 0, 255).astype(np.uint8)


def real_faces(shared_data: Path, count: int) -> list[np.ndarray]:
    """`count` real photos (FFHQ) from the GAN set's test split, RGB, FACE_SIDE square."""
    samples = [s for s in load_samples(shared_data / "gan-faces", "test") if s.label == 0][:count]
    return [read_face(s.path, FACE_SIDE) for s in samples]


def grid_image(faces: list[np.ndarray], columns: int, gap: int = 24) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """The faces on a grey canvas in a grid; returns the picture and each face's top-left corner."""
    rows = -(-len(faces) // columns)
    cell = FACE_SIDE + gap
    canvas = np.full((rows * cell + gap, columns * cell + gap, 3), 128, np.uint8)
    corners = []
    for i, face in enumerate(faces):
        x, y = gap + (i % columns) * cell, gap + (i // columns) * cell
        canvas[y : y + FACE_SIDE, x : x + FACE_SIDE] = face
        corners.append((x, y))
    return canvas, corners


def two_people_video(path: Path, shared_data: Path, frames: int = 24, size: tuple[int, int] = (960, 540)) -> Path:
    """Two different people drifting towards each other across a grey scene (MJPG AVI)."""
    left, right = real_faces(shared_data, 2)
    width, height = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 12.0, (width, height))
    for i in range(frames):
        canvas = np.full((height, width, 3), 110, np.uint8)
        shift = round(i * 4)
        y = (height - FACE_SIDE) // 2
        canvas[y : y + FACE_SIDE, 80 + shift : 80 + shift + FACE_SIDE] = left
        canvas[y : y + FACE_SIDE, width - 80 - FACE_SIDE - shift : width - 80 - shift] = right
        writer.write(cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))
    writer.release()
    return path
