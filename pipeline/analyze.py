"""The engine: one file in, a per-frame, per-face, per-model result and a verdict out.

media -> frames -> faces -> scores -> verdict. Each stage lives in its own module; this one only
runs them in order, streaming frames so a long video never sits in memory, and times them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from pipeline.config import Settings
from pipeline.detector import Detector
from pipeline.errors import PipelineError
from pipeline.faces import Face, FaceDetector, find_faces, link_tracks
from pipeline.media import read_frames, sha256_file
from pipeline.verdict import AGGREGATIONS, DecisionRule, ScoredFace, decide

Progress = Callable[[str, int, int], None]
"""Called as progress(stage, done, total) while an analysis runs."""

PREVIEW_MAX_SIDE = 960
"""Frames kept for display and Grad-CAM overlays are downscaled to this longer side."""


@dataclass
class FaceResult:
    box: list[int]
    """x, y, width, height in pixels of the original frame."""
    track: int
    confidence: float
    fake_probability: float
    model_scores: dict[str, float]


@dataclass
class FrameResult:
    index: int
    time_s: float
    faces: list[FaceResult]


@dataclass
class TrackResult:
    track: int
    faces: int
    fake_probability: float
    model_scores: dict[str, float]
    verdict: str
    decides: bool


@dataclass
class AnalysisResult:
    """Everything the CLI writes as JSON and the dashboard stores and shows."""

    file: str
    sha256: str
    kind: str
    width: int
    height: int
    duration_s: float | None
    verdict: str
    fake_probability: float | None
    reason: str
    model_scores: dict[str, float]
    threshold: float
    uncertain_band: list[float]
    aggregation: str
    frames_requested: int
    models: dict[str, str]
    """Model name -> short hash of its file: which models made this result."""
    frames: list[FrameResult]
    tracks: list[TrackResult]
    timing: dict[str, float]
    """Seconds per stage (decode, detect, score, verdict, total)."""
    model_seconds_per_face: dict[str, float]
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_json(data: dict[str, Any]) -> AnalysisResult:
        data = dict(data)
        data["frames"] = [
            FrameResult(index=f["index"], time_s=f["time_s"], faces=[FaceResult(**x) for x in f["faces"]])
            for f in data["frames"]
        ]
        data["tracks"] = [TrackResult(**t) for t in data["tracks"]]
        return AnalysisResult(**data)


@dataclass
class Analysis:
    """A result plus the pictures behind it, for display and Grad-CAM (not serialised)."""

    result: AnalysisResult
    previews: list[np.ndarray]
    """Sampled frames, RGB, downscaled by `preview_scale`."""
    preview_scale: float
    faces: list[list[Face]]
    """Faces per sampled frame, with their crops."""


def _preview(rgb: np.ndarray) -> tuple[np.ndarray, float]:
    scale = min(1.0, PREVIEW_MAX_SIDE / max(rgb.shape[:2]))
    if scale == 1.0:
        return rgb.copy(), 1.0
    size = (round(rgb.shape[1] * scale), round(rgb.shape[0] * scale))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), scale


class Engine:
    """Loads MTCNN and the ensemble once and analyses files with them."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        self._face_detector: FaceDetector | None = None
        self._detector: Detector | None = None

    @property
    def detector(self) -> Detector:
        if self._detector is None:
            self._detector = Detector(self.settings.models_dir, self.settings.scoring.batch_size)
        return self._detector

    @property
    def face_detector(self) -> FaceDetector:
        if self._face_detector is None:
            self._face_detector = FaceDetector(self.settings.faces)
        return self._face_detector

    def analyze(
        self,
        path: Path,
        frames: int | None = None,
        aggregation: str | None = None,
        models: list[str] | None = None,
        progress: Progress | None = None,
    ) -> Analysis:
        """Analyse one image or video. Raises a `PipelineError` for anything the user can fix."""
        settings = self.settings
        frames = frames or settings.media.frames
        rule = aggregation or self.detector.spec.aggregation
        if rule not in AGGREGATIONS:
            raise PipelineError(f"unknown aggregation {rule!r}; choose one of {', '.join(AGGREGATIONS)}")
        detector, face_detector = self.detector, self.face_detector
        chosen = models or detector.member_names
        for name in chosen:
            detector.member(name)
        report = progress or (lambda stage, done, total: None)
        timing = {"decode": 0.0, "detect": 0.0, "score": 0.0, "verdict": 0.0}
        started = time.perf_counter()

        digest = sha256_file(path)
        info, frame_iter = read_frames(path, settings.media, frames)
        expected = 1 if info.kind == "image" else frames
        sampled: list[tuple[int, float]] = []
        previews: list[np.ndarray] = []
        preview_scale = 1.0
        faces: list[list[Face]] = []
        pending: list[np.ndarray] = []

        def detect_pending() -> None:
            clock = time.perf_counter()
            faces.extend(find_faces(pending, face_detector, settings.faces, first=len(faces)))
            timing["detect"] += time.perf_counter() - clock
            pending.clear()
            report("finding faces", len(faces), expected)

        report("reading frames", 0, expected)
        clock = time.perf_counter()
        for frame in frame_iter:
            timing["decode"] += time.perf_counter() - clock
            sampled.append((frame.index, frame.time_s))
            preview, preview_scale = _preview(frame.rgb)
            previews.append(preview)
            pending.append(frame.rgb)
            if len(pending) == settings.faces.detect_batch:
                detect_pending()
            clock = time.perf_counter()
        timing["decode"] += time.perf_counter() - clock
        if pending:
            detect_pending()
        link_tracks(faces, settings.faces.track_iou)

        clock = time.perf_counter()
        flat = [face for frame_faces in faces for face in frame_faces]
        report("scoring faces", 0, len(flat))
        seconds_per_face: dict[str, float] = {}
        scored: list[ScoredFace] = []
        if flat:
            scores = detector.score(np.stack([f.crop for f in flat]), chosen)
            seconds_per_face = {n: s / len(flat) for n, s in scores.seconds.items()}
            scored = [
                ScoredFace(
                    frame=face.frame,
                    track=face.track,
                    fake_probability=float(scores.ensemble[i]),
                    model_scores={n: float(scores.members[n][i]) for n in chosen},
                )
                for i, face in enumerate(flat)
            ]
        report("scoring faces", len(flat), len(flat))
        timing["score"] = time.perf_counter() - clock

        clock = time.perf_counter()
        spec = detector.spec
        decision = DecisionRule(spec.threshold, spec.uncertain_low, spec.uncertain_high)
        verdict = decide(scored, len(sampled), rule, decision)
        by_frame: dict[int, list[FaceResult]] = {i: [] for i in range(len(sampled))}
        for face, score in zip(flat, scored):
            by_frame[face.frame].append(
                FaceResult(list(face.box), face.track, round(face.confidence, 4), score.fake_probability, score.model_scores)
            )
        timing["verdict"] = time.perf_counter() - clock
        timing["total"] = time.perf_counter() - started
        versions = detector.versions()
        result = AnalysisResult(
            file=path.name,
            sha256=digest,
            kind=info.kind,
            width=info.width,
            height=info.height,
            duration_s=info.duration_s,
            verdict=verdict.label,
            fake_probability=verdict.fake_probability,
            reason=verdict.reason,
            model_scores=verdict.model_scores,
            threshold=spec.threshold,
            uncertain_band=[spec.uncertain_low, spec.uncertain_high],
            aggregation=rule,
            frames_requested=frames,
            models={n: versions[n] for n in chosen},
            frames=[FrameResult(index, round(t, 3), by_frame[i]) for i, (index, t) in enumerate(sampled)],
            tracks=[TrackResult(t.track, t.faces, t.fake_probability, t.model_scores, t.label, t.decides) for t in verdict.tracks],
            timing={k: round(v, 3) for k, v in timing.items()},
            model_seconds_per_face={k: round(v, 5) for k, v in seconds_per_face.items()},
        )
        report("done", 1, 1)
        return Analysis(result, previews, preview_scale, faces)
