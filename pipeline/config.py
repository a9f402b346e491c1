"""Every tunable of the engine in one place.

Modules take a `Settings` (or one of its parts) rather than reading literals of their own, so a
test, the CLI and the dashboard can change behaviour without touching the stages.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class MediaSettings:
    """Limits and sampling for reading images and videos."""

    frames: int = 32
    """Frames sampled from a video, evenly spaced in time."""
    max_image_pixels: int = 80_000_000
    """Larger images are refused as possible decompression bombs (30k x 30k = 900 M)."""
    max_video_pixels: int = 4096 * 2304
    """Largest frame size accepted (4K)."""
    max_video_seconds: float = 3 * 3600.0
    max_file_bytes: int = 2 * 1024**3
    image_suffixes: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
    video_suffixes: tuple[str, ...] = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v")


@dataclass(frozen=True)
class FaceSettings:
    """Face detection, cropping and tracking."""

    detect_max_side: int = 640
    """Frames are downscaled so that their longer side is at most this before MTCNN runs."""
    min_face_px: int = 40
    """Smallest face kept, in pixels of the original frame (shorter box side)."""
    min_confidence: float = 0.85
    max_faces_per_frame: int = 20
    crop_scale: float = 0.92
    """Side of the square crop as a multiple of sqrt(box width * box height), centred on the box.
    Measured on `dfdc-faces`: its crops are MTCNN's box made square with no extra margin, so
    the crops the engine scores are framed like the crops the models were trained on."""
    crop_size: int = 224
    """Side of the stored face crop in pixels; each model resizes it to its own input size."""
    track_iou: float = 0.3
    """Boxes in consecutive sampled frames with at least this overlap belong to one person."""
    detect_batch: int = 8
    """Frames per MTCNN call (the package batches frames of one size)."""


@dataclass(frozen=True)
class ScoringSettings:
    """How face scores become a verdict."""

    aggregation: str = "confident"
    """One of `pipeline.verdict.AGGREGATIONS`."""
    batch_size: int = 16


@dataclass(frozen=True)
class Settings:
    """All engine settings. Build with defaults and `with_(...)` to change a field."""

    media: MediaSettings = field(default_factory=MediaSettings)
    faces: FaceSettings = field(default_factory=FaceSettings)
    scoring: ScoringSettings = field(default_factory=ScoringSettings)
    models_dir: Path = field(
        default_factory=lambda: Path(os.environ.get("DEEPFAKE_MODELS_DIR", REPO_ROOT / "models"))
    )

    def with_frames(self, frames: int) -> Settings:
        return replace(self, media=replace(self.media, frames=frames))

    def with_aggregation(self, aggregation: str) -> Settings:
        return replace(self, scoring=replace(self.scoring, aggregation=aggregation))


def shared_data_dir() -> Path:
    """Where the shared real data lives: `$DEEPFAKE_DATA_DIR` or `../shared/data`."""
    return Path(os.environ.get("DEEPFAKE_DATA_DIR", REPO_ROOT.parent / "shared" / "data"))
