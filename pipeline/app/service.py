"""What the dashboard does with the engine, without Streamlit: analyse an upload or open its
stored result, keep what is needed to show it later, and explain a stored face on demand.

One `AnalysisService` (one engine, its models loaded once, in a thread of their own while the
first page is used) serves every browser session of a process. Sessions run in threads, so the
engine is used by one of them at a time (`_engine_lock`): the models and MTCNN are shared objects,
and on a few CPU cores two analyses side by side would not finish sooner than one after the other.
The same file with the same settings asked for twice at once (two tabs) is analysed once: the
second request waits for the first one's stored result.
"""

from __future__ import annotations

import logging
import re
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.app.pictures import collect, read_picture
from pipeline.app.store import JobFile, Record, Store, settings_key
from pipeline.config import PictureSettings
from pipeline.engine.analyze import Engine, Progress
from pipeline.engine.ensemble import Ensemble, EnsembleSpec
from pipeline.engine.explain import explanation_overlays
from pipeline.engine.media import check_readable, detect_kind, sha256_file
from pipeline.errors import PipelineError


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


def _cut_to_bytes(text: str, limit: int) -> str:
    """The longest prefix of `text` whose UTF-8 encoding fits in `limit` bytes."""
    return text.encode("utf-8")[: max(limit, 0)].decode("utf-8", errors="ignore")


def safe_upload_name(name: str, max_bytes: int = PictureSettings.max_upload_name_bytes) -> str:
    """A file name that is safe to create in a private folder: no folders, no control or
    unusual characters, not hidden, at most `max_bytes` bytes in UTF-8 (file systems count
    bytes, and one CJK character is three); the suffix (the media type) is kept."""
    base = re.sub(r"[^\w.\- ()]", "_", name.replace("\\", "/").rsplit("/", 1)[-1]).strip(" .")
    stem, dot, suffix = base.rpartition(".")
    if not dot:
        stem, suffix = base, ""
    suffix = _cut_to_bytes(suffix, 10)
    stem = _cut_to_bytes(stem, max_bytes - len(suffix.encode("utf-8")) - 1).strip(" .") or "upload"
    return f"{stem}.{suffix}" if suffix else stem


@contextmanager
def uploaded_file(name: str, data: bytes | memoryview) -> Iterator[Path]:
    """An upload written to a private temporary folder (removed afterwards) as a file named
    after `safe_upload_name(name)`: the engine reads paths and records the file's name."""
    with tempfile.TemporaryDirectory(prefix="deepfake-upload-") as folder:
        path = Path(folder) / safe_upload_name(name)
        path.write_bytes(data)
        yield path


class _KeyLocks:
    """One lock per history key, alive while someone holds or waits for it."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, tuple[threading.Lock, int]] = {}

    @contextmanager
    def hold(self, key: str) -> Iterator[None]:
        with self._guard:
            lock, users = self._locks.get(key, (threading.Lock(), 0))
            self._locks[key] = (lock, users + 1)
        try:
            with lock:
                yield
        finally:
            with self._guard:
                lock, users = self._locks[key]
                if users == 1:
                    del self._locks[key]
                else:
                    self._locks[key] = (lock, users - 1)


LOADER_THREAD = "load-models"
"""The name of the thread `AnalysisService.load_in_background` starts."""


class AnalysisService:
    """The engine shared by every session of the dashboard, guarded by locks."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._engine_lock = threading.Lock()  # held while the engine runs (an analysis, a map)
        self._loading = threading.Lock()  # held while the models load: sessions opened at once load them once
        self._key_locks = _KeyLocks()  # one analysis per file and settings at a time
        self._loader: threading.Thread | None = None  # loads the models while the first page is used
        self._loader_start = threading.Lock()

    @property
    def spec(self) -> EnsembleSpec:
        """The ensemble's description (members, default rule), read without waiting for the models
        to load; raises `ModelsMissingError` when the models folder has none."""
        return self.engine.spec

    def load_in_background(self) -> None:
        """Start loading the models in a thread of their own, once per service, so that a page can
        take uploads while they load (about 15 s); whatever needs them waits for that thread."""
        with self._loader_start:
            if self._loader is None:
                self._loader = threading.Thread(target=self._load, name=LOADER_THREAD, daemon=True)
                self._loader.start()

    def _load(self) -> None:
        try:
            with self._loading:
                self.engine.load()
                # Every analysis here is kept with its explanation maps, which need the Keras
                # models themselves (the engine scores with their TensorFlow Lite copies).
                _ = self.engine.ensemble.models
        except PipelineError:
            pass  # a models folder to mend: the first use that needs the models tries again and says why
        except Exception:  # a bug: logged; the first use that needs the models raises it again
            logging.getLogger("dashboard").exception("loading the models in the background failed")

    @property
    def load_started(self) -> bool:
        """Whether a page has started the background load (`load_in_background`)."""
        return self._loader is not None

    @property
    def loading(self) -> bool:
        """Whether the background load (`load_in_background`) is still running."""
        return self._loader is not None and self._loader.is_alive()

    @property
    def ensemble(self) -> Ensemble:
        """The ensemble, loaded on first use (or waited for while it loads in the background);
        raises `ModelsMissingError` without models."""
        with self._loading:
            return self.engine.ensemble

    @property
    def member_names(self) -> list[str]:
        """The ensemble's models (loads them on first use)."""
        return self.ensemble.member_names

    def history_key(self, path: Path, request: AnalysisRequest, sha256: str | None = None) -> str:
        """The `settings_key` the result of this request on this file is stored under."""
        ensemble = self.ensemble
        frames, aggregation, models = self.engine.check_request(
            request.frames, request.aggregation, list(request.models) or None
        )
        versions = ensemble.versions()
        kind = detect_kind(path, self.engine.settings.media)  # checks that the file is readable first
        return settings_key(
            sha256 or sha256_file(path),
            kind,
            frames,
            aggregation,
            {n: versions[n] for n in models},
            ensemble.spec.for_media(kind).version,
        )

    def analyze(
        self,
        path: Path,
        request: AnalysisRequest,
        store: Store,
        progress: Progress | None = None,
        job: JobFile | None = None,
    ) -> Outcome:
        """The stored result of the same file with the same settings, else a new analysis,
        stored with its pictures (and, for a scan `job`, linked to it in the same transaction).
        Raises `PipelineError` for anything the user can fix; on any error nothing is stored."""
        progress = progress or (lambda stage, done, total: None)
        check_readable(path, self.engine.settings.media)
        digest = sha256_file(path)
        key = self.history_key(path, request, digest)
        if stored := store.find(key):
            return Outcome(stored, True)
        with self._key_locks.hold(key):
            # Another session may have analysed this very file while we waited.
            if stored := store.find(key):
                return Outcome(stored, True)
            if not self._engine_lock.acquire(blocking=False):
                progress("waiting for another analysis to finish", 0, 1)
                self._engine_lock.acquire()
            try:
                analysis = self.engine.analyze(
                    path, request.frames, request.aggregation, list(request.models) or None, progress, sha256=digest
                )
                pictures = collect(self.ensemble, analysis, self.engine.settings.pictures, progress)
            finally:
                self._engine_lock.release()
            progress("saving to history", 0, 1)
            record = store.save(analysis.result, pictures, analysis.preview_scale, job=job)
        progress("saved", 1, 1)
        return Outcome(record, False)

    def explain(
        self, record: Record, store: Store, position: int, face: int
    ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Explanation maps of one stored face (frame position, face index) by each model that
        scored it: model name -> (map over the face crop, map over the frame)."""
        ensemble = self.ensemble
        versions = ensemble.versions()
        changed = [name for name, version in record.result.models.items() if versions.get(name) != version]
        if changed:
            raise PipelineError(
                f"the models that made this result ({', '.join(changed)}) are not the ones loaded now; "
                "only the explanation maps stored with it can be shown"
            )
        crop_picture = next((p for p in record.pictures_of("face") if (p.position, p.face) == (position, face)), None)
        frame_picture = next((p for p in record.pictures_of("frame") if p.position == position), None)
        crop = read_picture(store.path(crop_picture)) if crop_picture else None
        frame_rgb = read_picture(store.path(frame_picture)) if frame_picture else None
        if crop is None or frame_rgb is None or crop_picture is None or crop_picture.crop_box is None:
            raise PipelineError("the pictures of this face are missing from the history folder")
        with self._engine_lock:
            return explanation_overlays(
                ensemble, crop, frame_rgb, crop_picture.crop_box, record.preview_scale, list(record.result.models)
            )
