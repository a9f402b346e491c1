"""Fourth stage: scores -> verdict. Face scores become one timeline per person (track), each
person gets a probability, and the media gets a verdict: fake if any person is fake."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from pipeline.config import VerdictSettings

Label = Literal["real", "fake", "uncertain", "no_face"]


def mean_rule(frame_scores: Sequence[Sequence[float]]) -> float:
    """Plain mean of every face score."""
    return float(np.mean([s for frame in frame_scores for s in frame]))


def max_face_mean_rule(frame_scores: Sequence[Sequence[float]]) -> float:
    """Per frame the most suspicious face, then the mean over frames."""
    return float(np.mean([max(frame) for frame in frame_scores if len(frame)]))


def confident_rule(frame_scores: Sequence[Sequence[float]], high: float = 0.8, low: float = 0.2) -> float:
    """The DFDC winner's rule (Seferbekov, 2020): when many faces are confidently fake, average
    only those; when nearly all are confidently real, average only those; else the mean.

    A few confident fake frames are strong evidence (a swap can fail on a few frames only),
    which a plain mean would wash out.
    """
    scores = np.asarray([s for frame in frame_scores for s in frame], dtype=np.float64)
    fakes = scores > high
    if fakes.sum() > len(scores) / 2.5 and fakes.sum() > 11:
        return float(scores[fakes].mean())
    reals = scores < low
    if reals.sum() > 0.9 * len(scores):
        return float(scores[reals].mean())
    return float(scores.mean())


AGGREGATIONS: dict[str, Callable[[Sequence[Sequence[float]]], float]] = {
    "mean": mean_rule,
    "max_face_mean": max_face_mean_rule,
    "confident": confident_rule,
}


def aggregate(frame_scores: Sequence[Sequence[float]], rule: str) -> float:
    """Combine face scores grouped by frame into one probability with the named rule."""
    if rule not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {rule!r}; choose one of {', '.join(AGGREGATIONS)}")
    return AGGREGATIONS[rule](frame_scores)


@dataclass(frozen=True)
class DecisionRule:
    """Threshold and the band around it where the answer is `uncertain` (from ensemble.json)."""

    threshold: float = 0.5
    uncertain_low: float = 0.4
    uncertain_high: float = 0.6

    def label(self, probability: float) -> Label:
        if probability >= max(self.threshold, self.uncertain_high):
            return "fake"
        if probability < self.threshold and probability <= self.uncertain_low:
            return "real"
        return "uncertain"


@dataclass(frozen=True)
class ScoredFace:
    """One face's scores, with where it was (position among the sampled frames) and who it is
    (track)."""

    position: int
    track: int
    fake_probability: float
    model_scores: dict[str, float]


@dataclass(frozen=True)
class TrackSummary:
    """One person across the sampled frames."""

    track: int
    faces: int
    fake_probability: float
    model_scores: dict[str, float]
    label: Label
    decides: bool
    """False for a person seen in too few frames to carry the verdict alone (a passer-by or a
    false detection); shown, but only counted when no one else was seen."""


@dataclass(frozen=True)
class Verdict:
    label: Label
    fake_probability: float | None
    reason: str
    model_scores: dict[str, float]
    tracks: tuple[TrackSummary, ...]


def _by_frame(faces: Sequence[ScoredFace], score: Callable[[ScoredFace], float]) -> list[list[float]]:
    frames: dict[int, list[float]] = {}
    for face in faces:
        frames.setdefault(face.position, []).append(score(face))
    return [frames[k] for k in sorted(frames)]


def decide(
    faces: Sequence[ScoredFace],
    sampled_frames: int,
    rule: str,
    decision: DecisionRule,
    min_track_fraction: float = VerdictSettings.min_track_fraction,
) -> Verdict:
    """The verdict for a whole image or video."""
    if not faces:
        where = "the image" if sampled_frames == 1 else f"any of the {sampled_frames} sampled frames"
        return Verdict("no_face", None, f"no face found in {where}", {}, ())
    models = sorted(faces[0].model_scores)
    tracks: dict[int, list[ScoredFace]] = {}
    for face in faces:
        tracks.setdefault(face.track, []).append(face)
    longest = max(len(t) for t in tracks.values())
    summaries = []
    for track_id in sorted(tracks):
        members = tracks[track_id]
        probability = aggregate(_by_frame(members, lambda f: f.fake_probability), rule)
        summaries.append(
            TrackSummary(
                track=track_id,
                faces=len(members),
                fake_probability=probability,
                model_scores={m: aggregate(_by_frame(members, lambda f, m=m: f.model_scores[m]), rule) for m in models},
                label=decision.label(probability),
                decides=len(members) >= max(1, min_track_fraction * longest),
            )
        )
    deciding = [t for t in summaries if t.decides]
    worst = max(deciding, key=lambda t: t.fake_probability)
    if rule == "max_face_mean":
        # The rule is defined over frames, whoever the most suspicious face belongs to.
        probability = aggregate(_by_frame(faces, lambda f: f.fake_probability), rule)
        model_scores = {m: aggregate(_by_frame(faces, lambda f, m=m: f.model_scores[m]), rule) for m in models}
    else:
        probability = worst.fake_probability
        model_scores = {m: max(t.model_scores[m] for t in deciding) for m in models}
    label = decision.label(probability)
    people = f"{len(deciding)} person" if len(deciding) == 1 else f"{len(deciding)} people"
    reason = (
        f"{people} tracked over {sampled_frames} sampled frame{'s' if sampled_frames != 1 else ''}; "
        f"most suspicious is person {worst.track + 1} ({worst.faces} face{'s' if worst.faces != 1 else ''}, "
        f"fake probability {worst.fake_probability:.2f}, '{rule}' rule)"
    )
    if label == "uncertain":
        reason += f"; {probability:.2f} is inside the uncertain band {decision.uncertain_low:.2f}-{decision.uncertain_high:.2f}"
    return Verdict(label, probability, reason, model_scores, tuple(summaries))
