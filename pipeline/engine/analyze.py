"""The engine: one file in, a per-frame, per-face, per-model result and a verdict out.

media -> frames -> faces -> scores -> verdict, with the file's provenance (Content Credentials and
metadata) read beside them. Each stage lives in its own module; this one only runs them in order,
streaming frames so a long video never sits in memory, and times them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from pipeline.config import Settings, VerdictSettings
from pipeline.engine.allocator import tune_allocator
from pipeline.engine.ensemble import CLIP_PROBE, Ensemble, EnsembleSpec, jpeg_round_trip, read_spec
from pipeline.engine.faces import Face, FaceFinder, FaceSearch, face_chroma, face_focus, face_turn, is_toned
from pipeline.engine.media import check_readable, read_frames, sha256_file
from pipeline.engine.provenance import Provenance, read_provenance, verdict_reason
from pipeline.engine.verdict import AGGREGATIONS, ScoredFace, decide, most_suspicious
from pipeline.errors import PipelineError
from pipeline.results import AnalysisResult, FaceResult, FrameResult, TrackResult

Progress = Callable[[str, int, int], None]
"""Called as progress(stage, done, total) while an analysis runs."""

STAGES = ("hash", "decode", "provenance", "detect", "score", "verdict")
"""The timed stages of an analysis; their seconds add up to the result's `total`."""
VIDEO_FRAMES_CAVEAT = (
    "the faces were cut from video frames, which carry no JPEG save, while every video face the models "
    "trained on (DFDC) was a crop saved as JPEG at quality 75: the CLIP member reads that difference as a "
    "sign of fakes, so real videos score high (the 3 real shared DFDC videos 0.975-0.997, none told real; "
    "0.42-0.89 had their frames been saved as JPEG first) (model card: 'Known limits')"
)
"""Measured by rules 36 and 37 (benchmarks/README.md); said on a video's verdict when the CLIP member
scored its faces. A GIF's own caveat (its palette) is said instead."""
SMALL_FACE_CAVEAT = (
    "person {person}'s face is {size} px across as the models were given it, while 95% of the faces they "
    "trained on were {floor} px or more: real faces made that small were told real less often and fake more "
    "often (validation photos made smaller: real 6-7% of the time against 21%, fake 4-5% against 1%) "
    "(model card: 'A photo whose faces are smaller than the training faces')"
)
"""Said on a verdict whose most suspicious person's median face is under
`VerdictSettings.trained_face_px` (rule 44; the shares are rule 21's, benchmarks/README.md)."""
COLOURLESS_CAVEAT = (
    "person {person}'s face has no colour, while every face the models trained on was in colour: "
    "validation photos made black-and-white were ranked worse (ROC AUC 0.816 against 0.945) and their real "
    "faces scored higher (median 0.68 against 0.08; told fake 4.7% of the time against 0.8%) "
    "(model card: 'A black-and-white picture')"
)
"""Said on a verdict whose most suspicious person's faces have no colour (median `face_chroma` under
`VerdictSettings.colourless_chroma`; rule 117's scan of rule 101's validation pictures,
benchmarks/README.md)."""
TURNED_FACE_CAVEAT = (
    "person {person}'s face is turned away from the camera, while most faces the models trained on face "
    "it: validation faces so turned were ranked worse (ROC AUC 0.902 against 0.939; re-shared 0.841 "
    "against 0.883) and, re-shared, their fakes were told fake less often (27% against 45%), while their "
    "real faces were not told fake more often: a verdict of real or uncertain says less of such a face "
    "(model card: 'A face turned away from the camera')"
)
"""Said on a verdict whose most suspicious person's median `face_turn` is at least
`VerdictSettings.turned_face` (rule 131: the validation crops of rule 130, the engine's caveat
against the rest, benchmarks/README.md)."""


@dataclass
class Analysis:
    """A result plus the pictures behind it, for display and explanation maps (not serialised)."""

    result: AnalysisResult
    previews: list[np.ndarray]
    """Sampled frames, RGB, downscaled by `preview_scale`."""
    preview_scale: float
    faces: list[list[Face]]
    """Faces per sampled frame, with their crops."""
    caveats: list[str] = field(default_factory=list)
    """What the engine says beside the models' reason (already in `result.reason`): a face softer
    than the training faces (the verdict's own caveat), a video's frames, a face smaller than the
    training faces, a face without colour, a face turned away from the camera."""


def preview(rgb: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """A copy of a frame at most `max_side` pixels on its longer side, and its scale."""
    scale = min(1.0, max_side / max(rgb.shape[:2]))
    if scale == 1.0:
        return rgb.copy(), 1.0
    # At least one pixel a side: a 100000 x 1 picture must not become 0 pixels tall.
    size = (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), scale


def _timing_with_total(timing: dict[str, float]) -> dict[str, float]:
    stages = {stage: round(seconds, 3) for stage, seconds in timing.items()}
    return {**stages, "total": round(sum(stages.values()), 3)}


class Engine:
    """Loads MTCNN and the ensemble once and analyses files with them."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        # A process that analyses media holds large frames for a while and then frees them.
        tune_allocator(self.settings.memory)
        self._face_finder: FaceFinder | None = None
        self._ensemble: Ensemble | None = None

    @property
    def ensemble(self) -> Ensemble:
        """The trained ensemble, loaded on first use."""
        if self._ensemble is None:
            scoring = self.settings.scoring
            self._ensemble = Ensemble(self.settings.models_dir, scoring.batch_size, scoring.cnn_runtime)
        return self._ensemble

    @property
    def face_finder(self) -> FaceFinder:
        """MTCNN, loaded on first use."""
        if self._face_finder is None:
            self._face_finder = FaceFinder(self.settings.faces)
        return self._face_finder

    @property
    def spec(self) -> EnsembleSpec:
        """The ensemble's description: the loaded ensemble's, else read from the models folder
        without loading a model."""
        if self._ensemble is not None:
            return self._ensemble.spec
        return read_spec(self.settings.models_dir)

    def load(self) -> None:
        """Load now what the first analysis would otherwise load on its way: the ensemble, the
        CLIP encoder when a member reads it, and MTCNN (about 15 s on 2 cores, once)."""
        ensemble = self.ensemble
        if ensemble.probes:
            _ = ensemble.encoder  # a property: loads the encoder
        _ = self.face_finder

    def check_request(
        self, frames: int | None, aggregation: str | None, models: list[str] | None
    ) -> tuple[int, str, list[str]]:
        """(frames, aggregation rule, models) of a request with the defaults filled in; raises a
        `PipelineError` for a value the user chose badly."""
        limit = self.settings.media.max_frames
        frames = self.settings.media.frames if frames is None else frames
        if not 1 <= frames <= limit:
            raise PipelineError(f"frames must be between 1 and {limit}, not {frames}")
        rule = aggregation or self.ensemble.spec.aggregation
        if rule not in AGGREGATIONS:
            raise PipelineError(f"unknown aggregation {rule!r}; choose one of {', '.join(AGGREGATIONS)}")
        chosen = list(models) if models else self.ensemble.member_names
        for name in chosen:
            self.ensemble.member(name)
        return frames, rule, chosen

    def analyze(
        self,
        path: Path,
        frames: int | None = None,
        aggregation: str | None = None,
        models: list[str] | None = None,
        progress: Progress | None = None,
        sha256: str | None = None,
    ) -> Analysis:
        """Analyse one image or video. Raises a `PipelineError` for anything the user can fix.

        `sha256` is the file's hash when the caller has computed it already (each file is read
        for hashing once)."""
        path = Path(path)
        settings = self.settings
        frames, rule, chosen = self.check_request(frames, aggregation, models)
        ensemble, face_finder = self.ensemble, self.face_finder
        progress = progress or (lambda stage, done, total: None)
        timing = dict.fromkeys(STAGES, 0.0)
        clock = time.perf_counter()

        def lap(stage: str) -> None:
            # Every second of the analysis is charged to exactly one stage.
            nonlocal clock
            now = time.perf_counter()
            timing[stage] += now - clock
            clock = now

        check_readable(path, settings.media)
        digest = sha256 or sha256_file(path)
        lap("hash")
        info, frame_iter = read_frames(path, settings.media, frames)
        lap("decode")
        # Once the file is known to be a readable image or video; never fails the analysis.
        progress("reading provenance", 0, 1)
        provenance = read_provenance(path, info.kind, settings.provenance)
        lap("provenance")
        expected = 1 if info.kind == "image" else frames
        sampled: list[tuple[int, float]] = []
        previews: list[np.ndarray] = []
        preview_scale = 1.0
        pending_frames: list[np.ndarray] = []
        pending_scales: list[float] = []
        frame_scales: list[float] = []  # decoded pixels per original pixel, per sampled frame
        search = FaceSearch(face_finder, settings.faces)
        faces: list[list[Face]] = search.faces

        def find_pending() -> None:
            for frame_faces, scale in zip(search.add(pending_frames), pending_scales, strict=True):
                for face in frame_faces:
                    face.to_original(scale)
            pending_frames.clear()
            pending_scales.clear()
            lap("detect")
            progress("finding faces", len(faces), expected)

        # Video frames may be given the DFDC training crops' JPEG history (rule 37); pictures
        # keep their own.
        resave = settings.scoring.resaved_frame_quality if info.kind == "video" else None
        progress("reading frames", 0, expected)
        lap("decode")
        for frame in frame_iter:
            sampled.append((frame.frame_number, frame.time_s))
            small, scale = preview(frame.rgb, settings.pictures.preview_max_side)
            preview_scale = scale * frame.scale  # preview pixels per original pixel
            previews.append(small)
            pending_frames.append(frame.rgb if resave is None else jpeg_round_trip(frame.rgb, resave))
            pending_scales.append(frame.scale)
            frame_scales.append(frame.scale)
            lap("decode")
            if len(pending_frames) == settings.faces.detect_batch:
                find_pending()
        lap("decode")
        if pending_frames:
            find_pending()
        search.link()
        lap("detect")

        flat = [face for frame_faces in faces for face in frame_faces]
        progress("scoring faces", 0, len(flat))
        seconds_per_face: dict[str, float] = {}
        scored: list[ScoredFace] = []
        spec = ensemble.spec.for_media(info.kind)
        if flat:
            crops = np.stack([f.crop for f in flat])
            if settings.scoring.resaved_crop_quality is not None:
                crops = np.stack([jpeg_round_trip(crop, settings.scoring.resaved_crop_quality) for crop in crops])
            scores = ensemble.score(
                crops,
                chosen,
                people=np.asarray([f.track for f in flat]),
                costly_per_person=settings.scoring.costly_faces_per_person,
                spec=spec,
            )
            seconds_per_face = {
                n: s / max(1, int(np.isfinite(scores.members[n]).sum())) for n, s in scores.seconds.items()
            }
            scored = [
                ScoredFace(
                    position=face.position,
                    track=face.track,
                    fake_probability=float(scores.ensemble[i]),
                    # A costly member's score exists only for the faces it looked at.
                    model_scores={n: float(scores.members[n][i]) for n in chosen if np.isfinite(scores.members[n][i])},
                    focus=face_focus(crops[i]),
                    # The crop box's side in the decoded picture's pixels: the measure reads colour at
                    # the picture's own resolution, not the crop's enlargement of it (rule 121).
                    toned=is_toned(face.crop, settings.verdict, face.crop_box[2] * frame_scales[face.position]),
                )
                for i, face in enumerate(flat)
            ]
        progress("scoring faces", len(flat), len(flat))
        lap("score")

        clip_scored = any(ensemble.member(name).kind == CLIP_PROBE for face in scored for name in face.model_scores)
        verdict = decide(
            scored,
            len(sampled),
            rule,
            spec.decision_rule,
            settings.verdict.min_track_fraction,
            settings.verdict.trained_face_focus,
            soft_is_uncertain=info.kind in settings.verdict.uncertain_when_soft,
            kind=info.kind,
        )
        by_position: dict[int, list[FaceResult]] = {i: [] for i in range(len(sampled))}
        for face, score in zip(flat, scored, strict=True):
            by_position[face.position].append(
                FaceResult(
                    list(face.box), face.track, round(face.confidence, 4), score.fake_probability, score.model_scores
                )
            )
        versions = ensemble.versions()
        worst = most_suspicious(verdict.tracks)
        # The verdict's own caveats are in its reason already; the engine's go after it.
        engine_caveats = [caveat for caveat in [_video_caveat(info.kind, provenance, clip_scored)] if caveat]
        if worst is not None:
            engine_caveats += face_caveats([f for f in flat if f.track == worst.track], frame_scales, settings.verdict)
        lap("verdict")
        result = AnalysisResult(
            file=path.name,
            sha256=digest,
            kind=info.kind,
            width=info.width,
            height=info.height,
            duration_s=info.duration_s,
            verdict=verdict.label,
            fake_probability=verdict.fake_probability,
            reason=verdict_reason("; ".join([verdict.reason, *engine_caveats]), provenance),
            model_scores=verdict.model_scores,
            threshold=spec.threshold,
            uncertain_band=[spec.uncertain_low, spec.uncertain_high],
            aggregation=rule,
            frames_requested=frames,
            models={n: versions[n] for n in chosen},
            weights={n: spec.weights[n] for n in chosen},
            ensemble_version=spec.version,
            frames=[FrameResult(number, round(t, 3), by_position[i]) for i, (number, t) in enumerate(sampled)],
            tracks=[
                TrackResult(t.track, t.faces, t.fake_probability, t.model_scores, t.label, t.decides)
                for t in verdict.tracks
            ],
            timing=_timing_with_total(timing),
            model_seconds_per_face={k: round(v, 5) for k, v in seconds_per_face.items()},
            provenance=provenance,
            explanation_maps={n: ensemble.explanation_map(n) for n in chosen},
        )
        progress("done", 1, 1)
        return Analysis(result, previews, preview_scale, faces, [*verdict.caveats, *engine_caveats])


def _video_caveat(kind: str, provenance: Provenance | None, clip_scored: bool) -> str | None:
    """`VIDEO_FRAMES_CAVEAT` for a video whose faces the CLIP member scored; a GIF (whose provenance
    has a file history) says its own caveat instead."""
    if kind != "video" or not clip_scored or (provenance is not None and provenance.file_history is not None):
        return None
    return VIDEO_FRAMES_CAVEAT


def face_caveats(faces: Sequence[Face], frame_scales: Sequence[float], settings: VerdictSettings) -> list[str]:
    """What is said of one person (`faces`, theirs; `frame_scales`, decoded pixels per original
    pixel of each sampled frame): `SMALL_FACE_CAVEAT` when the median of their faces' size, in the
    pixels the models were given, is under the training faces' floor in `settings`, and
    `COLOURLESS_CAVEAT` when their faces have no colour, and `TURNED_FACE_CAVEAT` when their faces
    are turned away from the camera (any of the settings 0 turns its caveat off). A face softer than
    the training faces is the verdict's own caveat (`decide`)."""
    person = faces[0].track + 1
    caveats = []
    size = float(np.median([min(f.box[2], f.box[3]) * frame_scales[f.position] for f in faces]))
    if size < settings.trained_face_px:
        caveats.append(SMALL_FACE_CAVEAT.format(person=person, size=round(size), floor=settings.trained_face_px))
    if float(np.median([face_chroma(f.crop) for f in faces])) < settings.colourless_chroma:
        caveats.append(COLOURLESS_CAVEAT.format(person=person))
    if settings.turned_face and float(np.median([face_turn(f.landmarks) for f in faces])) >= settings.turned_face:
        caveats.append(TURNED_FACE_CAVEAT.format(person=person))
    return caveats
