"""What the dashboard does with the engine, without Streamlit: analyse an upload or open its
stored result, keep what is needed to show it later, and explain a stored face on demand.

One `AnalysisService` (one engine, its models loaded once) serves every browser session of a
process. Sessions run in threads, so the engine is used by one of them at a time (`_lock`): the
models and MTCNN are shared objects, and on a few CPU cores two analyses side by side would not
finish sooner than one after the other.
"""

from __future__ import annotations

import re
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.analyze import Engine, Progress
from pipeline.detector import Detector
from pipeline.errors import PipelineError
from pipeline.evidence import collect, read_picture
from pipeline.gradcam import gradcam_overlays
from pipeline.media import detect_kind, sha256_file
from pipeline.store import Record, Store, settings_key

MAX_NAME_CHARS = 120


@dataclass(frozen=True)
class AnalysisRequest:
    """The options a user picks for an analysis."""

    frames: int
    aggregation: str
    models: tuple[str, ...] = ()
    """Ensemble members to use; empty for all of them."""


@dataclass(frozen=True)
class Outcome:
    """A stored analysis and whether it was found in the history instead of being run."""

    record: Record
    from_history: bool


def safe_upload_name(name: str) -> str:
    """A file name that is safe to create in a private folder: no folders, no control or
    unusual characters, not hidden, not too long; the suffix (the media type) is kept."""
    base = re.sub(r"[^\w.\- ()]", "_", name.replace("\\", "/").rsplit("/", 1)[-1]).strip(" .")
    stem, dot, suffix = base.rpartition(".")
    if not dot:
        stem, suffix = base, ""
    suffix = suffix[:10]
    stem = (stem or "upload")[: MAX_NAME_CHARS - len(suffix) - 1]
    return f"{stem}.{suffix}" if suffix else stem


@contextmanager
def uploaded_file(name: str, data: bytes | memoryview) -> Iterator[Path]:
    """An upload written to a private temporary folder (removed afterwards) as a file named
    after `safe_upload_name(name)`: the engine reads paths and records the file's name."""
    with tempfile.TemporaryDirectory(prefix="deepfake-upload-") as folder:
        path = Path(folder) / safe_upload_name(name)
        path.write_bytes(data)
        yield path


class AnalysisService:
    """The engine shared by every session of the dashboard, guarded by a lock."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = threading.Lock()  # held while the engine runs (an analysis, Grad-CAM)
        self._loading = threading.Lock()  # held while the models load: sessions opened at once load them once

    @property
    def detector(self) -> Detector:
        """The ensemble, loaded on first use; raises `ModelsMissingError` without models."""
        with self._loading:
            return self.engine.detector

    @property
    def member_names(self) -> list[str]:
        """The ensemble's models (loads them on first use)."""
        return self.detector.member_names

    def history_key(self, path: Path, request: AnalysisRequest) -> str:
        """The `settings_key` the result of this request on this file is stored under."""
        detector = self.detector
        models = list(request.models) or detector.member_names
        for name in models:
            detector.member(name)  # an unknown name is a user error, raised here
        versions = detector.versions()
        kind = detect_kind(path, self.engine.settings.media)
        return settings_key(
            sha256_file(path), kind, request.frames, request.aggregation, {n: versions[n] for n in models}
        )

    def analyze(self, path: Path, request: AnalysisRequest, store: Store, progress: Progress | None = None) -> Outcome:
        """The stored result of the same file with the same settings, else a new analysis,
        stored with its pictures. Raises `PipelineError` for anything the user can fix."""
        report = progress or (lambda stage, done, total: None)
        key = self.history_key(path, request)
        if stored := store.find(key):
            return Outcome(stored, True)
        if not self._lock.acquire(blocking=False):
            report("waiting for another analysis to finish", 0, 1)
            self._lock.acquire()
        try:
            # The analysis we waited for may have been of this very file.
            if stored := store.find(key):
                return Outcome(stored, True)
            analysis = self.engine.analyze(
                path, request.frames, request.aggregation, list(request.models) or None, report
            )
            pictures = collect(self.detector, analysis, report)
        finally:
            self._lock.release()
        report("saving to history", 0, 1)
        record = store.save(analysis.result, pictures, analysis.preview_scale)
        report("saved", 1, 1)
        return Outcome(record, False)

    def explain(self, record: Record, store: Store, frame: int, face: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Grad-CAM of one stored face (frame position, face index) by each model that scored it:
        model name -> (overlay on the face crop, overlay on the frame)."""
        detector = self.detector
        versions = detector.versions()
        changed = [name for name, version in record.result.models.items() if versions.get(name) != version]
        if changed:
            raise PipelineError(
                f"the models that made this result ({', '.join(changed)}) are not the ones loaded now; "
                "only the Grad-CAM pictures stored with it can be shown"
            )
        crop_picture = next((p for p in record.pictures_of("face") if (p.frame, p.face) == (frame, face)), None)
        frame_picture = next((p for p in record.pictures_of("frame") if p.frame == frame), None)
        crop = read_picture(store.path(crop_picture)) if crop_picture else None
        frame_rgb = read_picture(store.path(frame_picture)) if frame_picture else None
        if crop is None or frame_rgb is None or crop_picture is None or crop_picture.crop_box is None:
            raise PipelineError("the pictures of this face are missing from the history folder")
        with self._lock:
            return gradcam_overlays(
                detector, crop, frame_rgb, crop_picture.crop_box, record.preview_scale, list(record.result.models)
            )
