"""What an analysis produces, as plain data: the engine builds it, the CLI writes it as JSON,
the dashboard stores, charts and exports it. Nothing here imports the engine, so the store and
the pages can read a result without loading a model.

Words used throughout: a *frame* is one picture of the media; `frame_number` is its number in
the video (0 for an image) and `position` its place among the sampled frames (the index into
`AnalysisResult.frames`). A *person* is a track of faces across frames.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any


@dataclass
class FaceResult:
    """One face in one sampled frame."""

    box: list[int]
    """x, y, width, height in pixels of the original frame."""
    track: int
    """The person the face belongs to (0-based)."""
    confidence: float
    """The face finder's confidence that this is a face."""
    fake_probability: float
    model_scores: dict[str, float]
    """Model name -> that model's calibrated fake probability for this face."""


@dataclass
class FrameResult:
    """One sampled frame and the faces found in it."""

    frame_number: int
    time_s: float
    faces: list[FaceResult]


@dataclass
class TrackResult:
    """One person across the sampled frames."""

    track: int
    faces: int
    fake_probability: float
    model_scores: dict[str, float]
    verdict: str
    decides: bool
    """False for a person seen too briefly to carry the verdict alone."""


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
    """Seconds per stage; the stages add up to `total`."""
    model_seconds_per_face: dict[str, float]
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    def to_json(self) -> dict[str, Any]:
        """The result as JSON-ready data (the CLI's `--json` format)."""
        return asdict(self)

    @staticmethod
    def from_json(data: dict[str, Any]) -> AnalysisResult:
        """A result from `to_json`'s data, also as written by earlier versions."""
        data = dict(data)
        data["frames"] = [
            FrameResult(
                # Results stored before version 2 called the frame number `index`.
                frame_number=f["frame_number"] if "frame_number" in f else f["index"],
                time_s=f["time_s"],
                faces=[FaceResult(**x) for x in f["faces"]],
            )
            for f in data["frames"]
        ]
        data["tracks"] = [TrackResult(**t) for t in data["tracks"]]
        known = AnalysisResult.__dataclass_fields__
        return AnalysisResult(**{k: v for k, v in data.items() if k in known})

    @property
    def face_count(self) -> int:
        """Faces found in all sampled frames."""
        return sum(len(frame.faces) for frame in self.frames)
