"""Fourth stage: scores -> verdict. Face scores become one timeline per person (track), each
person gets a probability, and the media gets a verdict.

The media's probability is that of "at least one person is fake", with the prior that a fake
shows one swapped or generated person among the people seen: its odds are the mean of the
people's odds. One person: their own probability. Twenty real faces in a crowd, one of them
scored 0.9 by chance: about 0.35, not "fake" (a rule of "fake if any person is fake" would turn
every per-face false positive into a fake crowd). One real face scored 0.99 would still tip it,
so with several people a `fake` must also be a score that real faces seldom reach: the chance
that as many real people include one scored as high (from the ensemble's false-alarm curve,
measured on real faces of sources the models never saw) must be under
`VerdictSettings.crowd_false_alarm_chance`, else the media is `uncertain`.

A `fake` or `real` verdict's reason also quotes what such a score is worth on media unlike the
training data: how often real faces (for `fake`) or fakes (for `real`) from sources the models
never saw score as high or as low (the ensemble's false-alarm and miss curves).

A person whose faces are softer than nearly all the training faces (their median `face_focus`
under `VerdictSettings.trained_face_focus`) is said to be so when they are the most suspicious. In
a picture they are also `uncertain` whatever their probability, and so is the picture: blurred,
smoothed or upscaled faces lie outside what the models were trained and validated on, and they
read such real photos as fake (rules 101 and 103). A video's soft faces keep their label: its
frames' faces are often softer than every training crop, and its fakes are still told apart
(rule 102).

A person whose faces are a toned black-and-white picture (sepia and the like: colour that follows
brightness alone) is `uncertain`, and so is the media when they are the most suspicious, pictures
and videos alike: every training face was in colour, and a quarter of such real photos were told
fake (rules 118-121).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
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


RANGE = "range"
"""The default measure of disagreement: the largest gap between two members, as every ensemble
before rule 95 measured it."""
DISAGREEMENTS = {
    RANGE: "the largest gap between two members' probabilities",
    "opposition": "how far the two most opposed members sit on opposite sides of 0.5",
    "weighted_spread": "twice the spread of the members' probabilities, each weighed as in the ensemble",
}
"""How the members' disagreement about a face or person may be measured, in words (rule 95).
`opposition` is 2 * min(max p - 0.5, 0.5 - min p), 0 when every member leans the same way: a sure
member beside an unsure one does not contradict it. `weighted_spread` is twice the standard
deviation of the members' probabilities weighted by their weights, so that a member the ensemble
barely listens to cannot make a person uncertain on its own."""


def checked_measure(measure: str) -> str:
    """`measure` if it names one of `DISAGREEMENTS`, else a ValueError listing them."""
    if measure not in DISAGREEMENTS:
        raise ValueError(f"unknown disagreement measure {measure!r}; choose one of {', '.join(DISAGREEMENTS)}")
    return measure


def disagreement(
    member_probabilities: np.ndarray, measure: str = RANGE, weights: np.ndarray | None = None
) -> np.ndarray:
    """Per item (column), how far the members (rows) disagree about it, as `measure` says;
    `weights` (one per member) only for `weighted_spread`."""
    checked_measure(measure)
    p = np.asarray(member_probabilities, dtype=np.float64)
    if measure == RANGE:
        return p.max(axis=0) - p.min(axis=0)
    if measure == "opposition":
        return 2 * np.clip(np.minimum(p.max(axis=0) - 0.5, 0.5 - p.min(axis=0)), 0.0, None)
    w = np.ones(len(p)) if weights is None else np.asarray(weights, dtype=np.float64)
    w = w[:, None] / w.sum()
    mean = (w * p).sum(axis=0)
    return 2 * np.sqrt((w * (p - mean) ** 2).sum(axis=0))


def aggregate(frame_scores: Sequence[Sequence[float]], rule: str) -> float:
    """Combine face scores grouped by frame into one probability with the named rule."""
    if rule not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {rule!r}; choose one of {', '.join(AGGREGATIONS)}")
    return AGGREGATIONS[rule](frame_scores)


def percent(share: float) -> str:
    """A share as a person reads it: whole percent, but never a rare nonzero share as "0%"."""
    return f"{share:.0%}" if share == 0 or share >= 0.01 else f"{share * 100:.2g}%"


SOFT_FACE_CAVEAT = (
    "person {person}'s face is softer than 95% of the faces the models trained on (focus {focus}, theirs "
    "{floor} or more), where they read out-of-focus, smoothed or upscaled real faces as fake ({evidence})"
    "{consequence} (model card: 'Known limits')"
)
"""Said when the most suspicious person's median focus is under the floor (rule 47);
`evidence` is `SOFT_FACE_EVIDENCE` of the media's kind, `consequence` `SOFT_FACE_UNCERTAIN` where it
makes the verdict `uncertain` (a picture, rule 103), else empty."""
TONED_CAVEAT = (
    "person {person}'s face is a toned black-and-white picture (sepia or another single tint), while every "
    "face the models trained on was in colour: validation photos so toned were ranked worse (ROC AUC 0.804 "
    "against 0.945) and 25.7% of the real ones were told fake, so it is uncertain whatever the models say "
    "(model card: 'A black-and-white picture')"
)
"""Said, and the verdict made `uncertain`, when the most suspicious person's faces are toned
(rules 118-121)."""
SOFT_FACE_EVIDENCE: dict[str, str] = {
    "image": "validation photos blurred by 2 px: 42% of the real ones told fake",
    "video": "measured on pictures, not on videos: DFDC validation faces, cut from video frames, blurred by "
    "2 px: 15 of 100 real ones told fake",
}
"""What the soft-face caveat quotes, by media kind (v8.1, rule 101's scan of 253 real validation
photos blurred by 2 px, benchmarks/README.md): a picture, the pooled share; a video, the share of
the DFDC faces among them, the nearest thing to a video's frames that was measured (rule 106)."""
SOFT_FACE_UNCERTAIN = ", so the picture is uncertain whatever its probability"

UNSEEN_SOURCES = "sources the models never saw"
VALIDATION_MIX = "the validation mix (sources the models were trained on)"
"""Where a false-alarm or miss curve's faces came from, as a verdict's reason names them."""


@dataclass(frozen=True)
class DecisionRule:
    """Threshold and the band around it where the answer is `uncertain`, and how far members may
    disagree before a person is `uncertain` whatever the probability (from ensemble.json)."""

    threshold: float = 0.5
    uncertain_low: float = 0.4
    uncertain_high: float = 0.6
    disagreement_margin: float | None = None
    false_alarm_curve: tuple[tuple[float, float], ...] = ()
    crowd_false_alarm_chance: float = VerdictSettings.crowd_false_alarm_chance
    miss_curve: tuple[tuple[float, float], ...] = ()
    false_alarm_faces: str = UNSEEN_SOURCES
    """Where the false-alarm curve's real faces came from (`UNSEEN_SOURCES` or `VALIDATION_MIX`)."""
    miss_faces: str = UNSEEN_SOURCES
    """Where the miss curve's fake faces came from."""
    hit_curve: tuple[tuple[float, float], ...] = ()
    """(probability, share of fake faces scoring at least it), at the false-alarm curve's points."""
    correct_rejection_curve: tuple[tuple[float, float], ...] = ()
    """(probability, share of real faces scoring at most it), at the miss curve's points."""
    hit_faces: str = UNSEEN_SOURCES
    correct_rejection_faces: str = UNSEEN_SOURCES
    unseen_odds: bool = VerdictSettings.unseen_odds
    """Whether `fake` and `real` also need the unseen-source curves' odds (`odds_hold`)."""
    disagreement: str = RANGE
    """How the members' disagreement is measured (one of `DISAGREEMENTS`)."""
    member_weights: tuple[tuple[str, float], ...] = ()
    """(member, its weight in the ensemble), for `weighted_spread`; a member not named weighs 1."""

    def disagreement_of(self, model_scores: dict[str, float]) -> float:
        """How far the members' probabilities for one person disagree (0 with fewer than two)."""
        if len(model_scores) < 2:
            return 0.0
        weights = dict(self.member_weights)
        names = sorted(model_scores)
        probabilities = np.asarray([[model_scores[n]] for n in names])
        return float(
            disagreement(probabilities, self.disagreement, np.asarray([weights.get(n, 1.0) for n in names]))[0]
        )

    def false_alarm_reading(self, probability: float) -> tuple[float, float] | None:
        """(p, share of real faces from `false_alarm_faces` scoring at least p), read at the
        curve's highest point p not above `probability`, so the share is never less than the
        one at `probability` itself (below the curve: every real face). None without a curve."""
        if not self.false_alarm_curve:
            return None
        readings = [(point, share) for point, share in self.false_alarm_curve if point <= probability]
        return readings[-1] if readings else (probability, 1.0)

    def miss_reading(self, probability: float) -> tuple[float, float] | None:
        """(p, share of fake faces from `miss_faces` scoring at most p), read at the curve's
        lowest point p not below `probability` (above the curve: every fake face). None without
        a curve."""
        if not self.miss_curve:
            return None
        readings = [(point, share) for point, share in self.miss_curve if point >= probability]
        return readings[0] if readings else (probability, 1.0)

    def hit_share(self, point: float) -> float | None:
        """The share of fake faces scoring at least `point`, where the hit curve measured it at that
        very point on the false-alarm curve's faces; else None."""
        return _share_at(self.hit_curve, point) if self.hit_faces == self.false_alarm_faces else None

    def correct_rejection_share(self, point: float) -> float | None:
        """The share of real faces scoring at most `point`, where the correct-rejection curve
        measured it at that very point on the miss curve's faces; else None."""
        return (
            _share_at(self.correct_rejection_curve, point) if self.correct_rejection_faces == self.miss_faces else None
        )

    def crowd_false_alarm(self, probability: float, people: int) -> float | None:
        """The chance that `people` real people include one scored at least `probability`.
        None without a curve."""
        reading = self.false_alarm_reading(probability)
        return None if reading is None else 1.0 - (1.0 - reading[1]) ** people

    def band_label(self, probability: float) -> Label:
        """The label the threshold and band alone give `probability`."""
        if probability >= max(self.threshold, self.uncertain_high):
            return "fake"
        if probability < self.threshold and probability <= self.uncertain_low:
            return "real"
        return "uncertain"

    def label(self, probability: float) -> Label:
        """The band's label, kept only where the unseen-source curves give it the band's odds."""
        label = self.band_label(probability)
        return label if label == "uncertain" or self.odds_hold(label, probability) else "uncertain"

    def curve_evidence(self, label: Label, probability: float) -> tuple[float, float, float | None] | None:
        """(point, share of the other class, share of `label`'s class) scoring as high (`fake`) or
        as low (`real`) as `probability` on the curves, read at the point a reason quotes; the
        second share None where not measured at that point on the same faces. None: no curve."""
        if label == "fake" and (reading := self.false_alarm_reading(probability)) is not None:
            return reading[0], reading[1], self.hit_share(reading[0])
        if label == "real" and (reading := self.miss_reading(probability)) is not None:
            return reading[0], reading[1], self.correct_rejection_share(reading[0])
        return None

    def odds_hold(self, label: Label, probability: float) -> bool:
        """Whether, among faces from sources the models never saw scoring as `probability` does,
        `label`'s class outnumbers the other by the odds the band asks of the probability (rule
        111): uncertain_high / (1 - uncertain_high) for `fake`, the mirror for `real`. True when
        the setting is off or the curves are not all from unseen sources."""
        sources = {self.false_alarm_faces, self.miss_faces, self.hit_faces, self.correct_rejection_faces}
        evidence = self.curve_evidence(label, probability)
        if not self.unseen_odds or sources != {UNSEEN_SOURCES} or evidence is None or evidence[2] is None:
            return True
        _, other, own = evidence
        edge = self.uncertain_high if label == "fake" else 1.0 - self.uncertain_low
        return own >= edge / (1.0 - edge) * other

    def evidence_reason(self, label: Label, probability: float) -> str | None:
        """What the curves say of `label` (`fake` or `real`) at `probability`, as a reason quotes
        it (rule 109), e.g. "10% of real faces and 12% of fake faces from FACES score 0.9 or more":
        the class its curve measured, then `label`'s own where measured at the same point on the
        same faces. None without a curve."""
        evidence = self.curve_evidence(label, probability)
        if evidence is None:
            return None
        point, other, own = evidence
        opposite, faces, direction = (
            ("real", self.false_alarm_faces, "or more") if label == "fake" else ("fake", self.miss_faces, "or less")
        )
        also = "" if own is None else f" and {percent(own)} of {label} faces"
        return f"{percent(other)} of {opposite} faces{also} from {faces} score {point:.3g} {direction}"


def _share_at(curve: tuple[tuple[float, float], ...], point: float) -> float | None:
    return next((share for p, share in curve if p == point), None)


@dataclass(frozen=True)
class ScoredFace:
    """One face's scores, with where it was (position among the sampled frames) and who it is
    (track)."""

    position: int
    track: int
    fake_probability: float
    model_scores: dict[str, float]
    focus: float | None = None
    """`pipeline.engine.faces.face_focus` of the crop as the members were given it (None: not
    measured, and the face is never judged too soft)."""
    toned: bool = False
    """Whether the crop is a toned black-and-white picture (`pipeline.engine.faces.is_toned`)."""


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
    disagreement: float = 0.0
    """How far the members' probabilities for this person disagree (the decision rule's measure)."""
    focus: float | None = None
    """The median focus of this person's faces (None when none was measured)."""

    toned: bool = False
    """Whether most of this person's faces are toned black-and-white (`ScoredFace.toned`)."""

    def softer_than(self, focus_floor: float) -> bool:
        """Whether this person's faces are softer than `focus_floor` (0: never)."""
        return focus_floor > 0 and self.focus is not None and self.focus < focus_floor


@dataclass(frozen=True)
class Verdict:
    label: Label
    fake_probability: float | None
    reason: str
    model_scores: dict[str, float]
    tracks: tuple[TrackSummary, ...]
    caveats: tuple[str, ...] = ()
    """Clauses of `reason` that say where the models cannot be trusted (`SOFT_FACE_CAVEAT`,
    `TONED_CAVEAT`)."""


def _by_frame(faces: Sequence[ScoredFace], score: Callable[[ScoredFace], float | None]) -> list[list[float]]:
    frames: dict[int, list[float]] = {}
    for face in faces:
        value = score(face)
        if value is not None:
            frames.setdefault(face.position, []).append(value)
    return [frames[k] for k in sorted(frames)]


def crowd_probability(probabilities: Sequence[float]) -> float:
    """The probability that at least one of these people is fake, when a fake shows one of them:
    the odds are the mean of their odds (for one person, their own probability)."""
    clipped = np.clip(np.asarray(probabilities, dtype=np.float64), 1e-6, 1 - 1e-6)
    odds = float(np.mean(clipped / (1 - clipped)))
    return odds / (1 + odds)


def _person(
    track: int,
    faces: Sequence[ScoredFace],
    rule: str,
    models: Sequence[str],
    decision: DecisionRule,
    decides: bool,
    focus_floor: float,
    soft_is_uncertain: bool,
) -> TrackSummary:
    probability = aggregate(_by_frame(faces, lambda f: f.fake_probability), rule)
    model_scores = {}
    for m in models:
        frames = _by_frame(faces, lambda f, m=m: f.model_scores.get(m))
        if frames:
            model_scores[m] = aggregate(frames, rule)
    spread = decision.disagreement_of(model_scores)
    label = decision.label(probability)
    if decision.disagreement_margin is not None and spread > decision.disagreement_margin:
        label = "uncertain"
    measured = [f.focus for f in faces if f.focus is not None]
    focus = float(np.median(measured)) if measured else None
    toned = 2 * sum(f.toned for f in faces) > len(faces)
    summary = TrackSummary(track, len(faces), probability, model_scores, label, decides, spread, focus, toned)
    soft = soft_is_uncertain and summary.softer_than(focus_floor)
    return replace(summary, label="uncertain") if soft or toned else summary


def most_suspicious(tracks: Sequence[TrackSummary]) -> TrackSummary | None:
    """The deciding person with the highest fake probability (the one a verdict's reason names),
    or None when no one was seen."""
    return max((t for t in tracks if t.decides), key=lambda t: t.fake_probability, default=None)


def decide(
    faces: Sequence[ScoredFace],
    sampled_frames: int,
    rule: str,
    decision: DecisionRule,
    min_track_fraction: float = VerdictSettings.min_track_fraction,
    focus_floor: float = VerdictSettings.trained_face_focus,
    soft_is_uncertain: bool = True,
    kind: Literal["image", "video"] = "image",
) -> Verdict:
    """The verdict for a whole image or video (`kind`). When the most suspicious person's faces'
    median focus is under `focus_floor` (0: no floor) the reason says so, with what was measured on
    media of that kind; with `soft_is_uncertain` (a picture) every such person is `uncertain`, and so
    is the media when it is the most suspicious. A person most of whose faces are toned
    (`ScoredFace.toned`) is `uncertain` in any media, and so is the media when they are the most
    suspicious, with `TONED_CAVEAT` in the reason."""
    if not faces:
        where = "the image" if sampled_frames == 1 else f"any of the {sampled_frames} sampled frames"
        return Verdict("no_face", None, f"no face found in {where}", {}, ())
    models = sorted({m for face in faces for m in face.model_scores})
    tracks: dict[int, list[ScoredFace]] = {}
    for face in faces:
        tracks.setdefault(face.track, []).append(face)
    longest = max(len(t) for t in tracks.values())
    summaries = [
        _person(
            track,
            tracks[track],
            rule,
            models,
            decision,
            len(tracks[track]) >= max(1, min_track_fraction * longest),
            focus_floor,
            soft_is_uncertain,
        )
        for track in sorted(tracks)
    ]
    deciding = [t for t in summaries if t.decides]
    worst = most_suspicious(summaries)
    assert worst is not None  # the most-seen person always decides
    if rule == "max_face_mean":
        # The rule is defined over frames, whoever the most suspicious face belongs to.
        probability = aggregate(_by_frame(faces, lambda f: f.fake_probability), rule)
        model_scores = {m: aggregate(_by_frame(faces, lambda f, m=m: f.model_scores.get(m)), rule) for m in models}
    else:
        probability = crowd_probability([t.fake_probability for t in deciding])
        model_scores = {
            m: crowd_probability([t.model_scores[m] for t in deciding if m in t.model_scores])
            for m in models
            if any(m in t.model_scores for t in deciding)
        }
    label = decision.label(probability)
    count = len(deciding)
    people = f"{count} person" if count == 1 else f"{count} people"
    reason = (
        f"{people} tracked over {sampled_frames} sampled frame{'s' if sampled_frames != 1 else ''}; "
        f"most suspicious is person {worst.track + 1} ({worst.faces} face{'s' if worst.faces != 1 else ''}, "
        f"fake probability {worst.fake_probability:.2f}, '{rule}' rule)"
    )
    if count > 1 and rule != "max_face_mean":
        reason += f"; the probability that one of the {count} people is fake is {probability:.2f}"
    if (
        worst.label == "uncertain"
        and decision.disagreement_margin is not None
        and worst.disagreement > decision.disagreement_margin
    ):
        if label != "uncertain":
            label = "uncertain"
        low, high = (
            min(worst.model_scores.items(), key=lambda kv: kv[1]),
            max(worst.model_scores.items(), key=lambda kv: kv[1]),
        )
        reason += (
            f"; the models disagree about person {worst.track + 1} ({high[0]} {high[1]:.2f}, {low[0]} {low[1]:.2f})"
        )
    elif label == "uncertain" and (band := decision.band_label(probability)) != "uncertain":
        # Beyond the band, but the unseen-source curves do not give that side its odds (rule 111).
        reason += (
            f"; {probability:.2f} is beyond the uncertain band, but {decision.evidence_reason(band, probability)}: "
            f"too few {band} faces for the band's odds"
        )
    elif label == "uncertain":
        reason += f"; {probability:.2f} is inside the uncertain band {decision.uncertain_low:.2f}-{decision.uncertain_high:.2f}"
    elif label == "fake" and count > 1 and rule != "max_face_mean":
        # One person alone: their probability is the answer. In a crowd, a real face scored
        # this high by chance is likely enough among so many people that the crowd is not
        # called fake on it (the crowd rule's odds are dominated by its top score).
        chance = decision.crowd_false_alarm(worst.fake_probability, count)
        reading = decision.false_alarm_reading(worst.fake_probability)
        if chance is not None and reading is not None and chance >= decision.crowd_false_alarm_chance:
            label = "uncertain"
            reason += (
                f"; among {count} real people, one is scored {reading[0]:.3g} or more "
                f"{percent(chance)} of the time (measured on real faces), so the crowd is uncertain"
            )
    caveats: tuple[str, ...] = ()
    if worst.softer_than(focus_floor):
        assert worst.focus is not None  # softer_than says so
        consequence = ""
        if soft_is_uncertain:
            label, consequence = "uncertain", SOFT_FACE_UNCERTAIN
        caveats = (
            SOFT_FACE_CAVEAT.format(
                person=worst.track + 1,
                focus=round(worst.focus),
                floor=round(focus_floor),
                evidence=SOFT_FACE_EVIDENCE[kind],
                consequence=consequence,
            ),
        )
        reason += f"; {caveats[0]}"
    if worst.toned:
        label = "uncertain"
        caveats += (TONED_CAVEAT.format(person=worst.track + 1),)
        reason += f"; {caveats[-1]}"
    # A verdict is only as strong as the models are on media unlike their training data: say how
    # often faces from sources they never saw score the same way, so 0.95 is not read as 95% sure
    # and 0.05 not as 95% safe, and how often the other class does, so the share can be weighed
    # (rule 109: on unseen sources a `fake` goes to real faces as often as to fakes). The
    # probability quoted is the curve's point, what was measured: the person's own rounded to two
    # decimals could read "1.00 or more".
    if label != "uncertain" and (evidence := decision.evidence_reason(label, worst.fake_probability)) is not None:
        reason += f"; {evidence}"
    return Verdict(label, probability, reason, model_scores, tuple(summaries), caveats)
