"""Verdicts: aggregation rules, the uncertain band, one timeline per person, any fake person."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from pipeline.engine.verdict import (
    SOFT_FACE_CAVEAT,
    SOFT_FACE_EVIDENCE,
    SOFT_FACE_UNCERTAIN,
    VALIDATION_MIX,
    DecisionRule,
    ScoredFace,
    aggregate,
    confident_rule,
    decide,
    disagreement,
)

DECISION = DecisionRule(threshold=0.5, uncertain_low=0.4, uncertain_high=0.6)


def faces_of(track: int, scores: list[float], first_frame: int = 0) -> list[ScoredFace]:
    return [ScoredFace(first_frame + i, track, s, {"a": s, "b": 1 - s}) for i, s in enumerate(scores)]


def test_mean_and_max_face_mean() -> None:
    frames = [[0.1, 0.9], [0.2, 0.7]]
    assert aggregate(frames, "mean") == pytest.approx(0.475)
    assert aggregate(frames, "max_face_mean") == pytest.approx(0.8)


def test_confident_rule_averages_only_the_confident_fakes() -> None:
    # 12 of 20 faces over 0.8: more than 20 / 2.5 = 8 and more than 11 -> mean of those 12.
    scores = [[0.95]] * 12 + [[0.1]] * 8
    assert confident_rule(scores) == pytest.approx(0.95)
    # Only 11 confident fakes: the "more than 11" clause fails -> plain mean.
    scores = [[0.95]] * 11 + [[0.1]] * 9
    assert confident_rule(scores) == pytest.approx((11 * 0.95 + 9 * 0.1) / 20)


def test_confident_rule_averages_the_confident_reals() -> None:
    scores = [[0.05]] * 19 + [[0.6]]  # 95% below 0.2
    assert confident_rule(scores) == pytest.approx(0.05)


def test_unknown_rule_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown aggregation"):
        aggregate([[0.5]], "median")


@pytest.mark.parametrize(
    ("probability", "label"),
    [(0.1, "real"), (0.4, "real"), (0.45, "uncertain"), (0.55, "uncertain"), (0.6, "fake"), (0.99, "fake")],
)
def test_decision_band(probability: float, label: str) -> None:
    assert DECISION.label(probability) == label


def test_no_face_has_a_reason_and_no_probability() -> None:
    verdict = decide([], sampled_frames=32, rule="mean", decision=DECISION)
    assert verdict.label == "no_face" and verdict.fake_probability is None
    assert "no face" in verdict.reason and "32" in verdict.reason


def odds_mean(*probabilities: float) -> float:
    odds = sum(p / (1 - p) for p in probabilities) / len(probabilities)
    return odds / (1 + odds)


def test_a_video_with_one_clearly_fake_person_is_fake() -> None:
    faces = faces_of(0, [0.05] * 10) + faces_of(1, [0.9] * 10)
    verdict = decide(faces, sampled_frames=10, rule="mean", decision=DECISION)
    assert verdict.label == "fake"
    assert [t.label for t in verdict.tracks] == ["real", "fake"]
    # "At least one of the two is fake", with one fake among them expected: the mean of the odds.
    assert verdict.fake_probability == pytest.approx(odds_mean(0.05, 0.9))
    assert "person 2" in verdict.reason and "one of the 2 people" in verdict.reason
    # Each model's video score comes from the same rules over its own face scores.
    assert verdict.model_scores == {"a": pytest.approx(odds_mean(0.05, 0.9)), "b": pytest.approx(odds_mean(0.95, 0.1))}


def test_one_false_alarm_in_a_crowd_does_not_make_it_fake() -> None:
    faces = [face for person in range(19) for face in faces_of(person, [0.08] * 4)] + faces_of(19, [0.9] * 4)
    verdict = decide(faces, sampled_frames=4, rule="mean", decision=DECISION)
    assert [t.label for t in verdict.tracks].count("fake") == 1
    assert verdict.label == "real" and verdict.fake_probability < 0.4


def test_one_person_keeps_their_own_probability() -> None:
    verdict = decide(faces_of(0, [0.7, 0.8]), sampled_frames=2, rule="mean", decision=DECISION)
    assert verdict.fake_probability == pytest.approx(0.75)


def test_members_that_disagree_beyond_the_margin_make_the_person_uncertain() -> None:
    faces = [ScoredFace(i, 0, 0.9, {"cnn": 0.97, "clip": 0.2}) for i in range(4)]
    calm = decide(faces, sampled_frames=4, rule="mean", decision=DECISION)
    assert calm.label == "fake"
    strict = DecisionRule(0.5, 0.4, 0.6, disagreement_margin=0.5)
    verdict = decide(faces, sampled_frames=4, rule="mean", decision=strict)
    assert verdict.label == "uncertain" and verdict.tracks[0].label == "uncertain"
    assert verdict.tracks[0].disagreement == pytest.approx(0.77)
    assert "models disagree" in verdict.reason and "cnn 0.97" in verdict.reason


def test_how_disagreement_is_measured_decides_who_is_uncertain() -> None:
    # A member the ensemble barely listens to, unsure beside a sure heavy one: the largest gap
    # (0.4) makes the person uncertain; the spread weighed as the ensemble weighs them does not.
    faces = [ScoredFace(i, 0, 0.88, {"clip": 0.9, "cnn": 0.5}) for i in range(4)]
    weights = (("clip", 12.0), ("cnn", 1.0))
    by_range = DecisionRule(0.5, 0.4, 0.6, disagreement_margin=0.3, member_weights=weights)
    weighed = replace(by_range, disagreement="weighted_spread")
    assert decide(faces, sampled_frames=4, rule="mean", decision=by_range).label == "uncertain"
    verdict = decide(faces, sampled_frames=4, rule="mean", decision=weighed)
    assert verdict.label == "fake" and verdict.tracks[0].disagreement == pytest.approx(2 * 0.4 * 12**0.5 / 13)
    # Weighed alike, the same two members are uncertain again; a sure and an unsure member do
    # not oppose each other, a sure fake and a sure real do.
    assert decide(faces, 4, "mean", replace(weighed, member_weights=())).label == "uncertain"
    opposed = replace(by_range, disagreement="opposition")
    assert decide(faces, 4, "mean", opposed).label == "fake"
    split = [ScoredFace(i, 0, 0.88, {"clip": 0.9, "cnn": 0.1}) for i in range(4)]
    assert decide(split, 4, "mean", opposed).tracks[0].disagreement == pytest.approx(0.8)


def test_disagreement_measures_agree_where_they_should() -> None:
    members = np.array([[0.9, 0.2, 0.6, 0.5], [0.3, 0.1, 0.6, 0.95]])
    gap = np.abs(members[0] - members[1])
    # Two members weighed alike: twice their spread is their gap.
    assert disagreement(members, "weighted_spread") == pytest.approx(gap)
    assert disagreement(members, "range") == pytest.approx(gap)
    # Opposition counts only members on opposite sides of 0.5, as far as the nearer one leans.
    assert disagreement(members, "opposition") == pytest.approx([0.4, 0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="unknown disagreement measure"):
        disagreement(members, "loudest")


def test_a_member_that_scored_some_faces_only_counts_where_it_looked() -> None:
    faces = [ScoredFace(i, 0, 0.2, {"cnn": 0.2, **({"clip": 0.4} if i % 2 == 0 else {})}) for i in range(6)]
    verdict = decide(faces, sampled_frames=6, rule="mean", decision=DECISION)
    assert verdict.tracks[0].model_scores == {"clip": pytest.approx(0.4), "cnn": pytest.approx(0.2)}


def test_a_person_seen_in_one_frame_does_not_decide_alone() -> None:
    faces = faces_of(0, [0.1] * 20) + faces_of(1, [0.99], first_frame=5)
    verdict = decide(faces, sampled_frames=20, rule="mean", decision=DECISION)
    assert [t.decides for t in verdict.tracks] == [True, False]
    assert verdict.label == "real"


def test_max_face_mean_is_over_frames_whoever_the_face_belongs_to() -> None:
    faces = faces_of(0, [0.1, 0.1]) + faces_of(1, [0.9, 0.3])
    verdict = decide(faces, sampled_frames=2, rule="max_face_mean", decision=DECISION)
    assert verdict.fake_probability == pytest.approx(0.6)


# Real validation faces: 10% score 0.9 or more, 2% score 0.98 or more, 0.1% score 0.995 or more.
FALSE_ALARMS = ((0.5, 0.2), (0.9, 0.1), (0.98, 0.02), (0.995, 0.001))
WEIGHED = DecisionRule(0.5, 0.4, 0.6, false_alarm_curve=FALSE_ALARMS)


def test_a_crowd_whose_top_score_real_faces_often_reach_is_uncertain_not_fake() -> None:
    # 19 real-looking people and one at 0.99: the mean of the odds alone says fake.
    faces = [face for person in range(19) for face in faces_of(person, [0.3] * 4)] + faces_of(19, [0.99] * 4)
    assert decide(faces, sampled_frames=4, rule="mean", decision=DECISION).label == "fake"
    verdict = decide(faces, sampled_frames=4, rule="mean", decision=WEIGHED)
    # Among 20 real people, one at 0.98 or more (2% each): 1 - 0.98 ** 20 = 33% of the time.
    assert WEIGHED.crowd_false_alarm(0.99, 20) == pytest.approx(1 - 0.98**20)
    assert verdict.label == "uncertain" and verdict.tracks[19].label == "fake"
    assert "among 20 real people" in verdict.reason and "33%" in verdict.reason


def test_a_score_real_faces_rarely_reach_still_makes_a_crowd_fake() -> None:
    # Two people, one at 0.997: real faces reach 0.995 0.1% of the time -> 0.2% for two people.
    faces = faces_of(0, [0.05] * 4) + faces_of(1, [0.997] * 4)
    assert decide(faces, sampled_frames=4, rule="mean", decision=WEIGHED).label == "fake"


def test_one_person_is_judged_on_their_own_probability_whatever_the_curve() -> None:
    verdict = decide(faces_of(0, [0.92] * 4), sampled_frames=4, rule="mean", decision=WEIGHED)
    assert verdict.label == "fake"
    assert WEIGHED.crowd_false_alarm(0.3, 5) == pytest.approx(1.0)  # below the curve: any real face
    assert DECISION.crowd_false_alarm(0.99, 20) is None  # no curve: the rule is off


def test_a_fake_says_how_often_real_faces_from_unseen_sources_score_as_high() -> None:
    # One person at 0.95: of the real faces the models never saw, 10% reach 0.9 (the curve's
    # highest point not above 0.95), and the reason says so.
    faces = faces_of(0, [0.95] * 4)
    verdict = decide(faces, sampled_frames=4, rule="mean", decision=WEIGHED)
    assert verdict.label == "fake"
    assert "10% of real faces from sources the models never saw score 0.9 or more" in verdict.reason
    # A score that rounds to 1.00 quotes the point measured, never "1.00 or more".
    almost_one = decide(faces_of(0, [0.9985] * 4), sampled_frames=4, rule="mean", decision=WEIGHED).reason
    assert "0.1% of real faces from sources the models never saw score 0.995 or more" in almost_one
    assert "1.00 or more" not in almost_one
    # Below the curve's first point nothing bounds the share but 100%; the score is still short.
    low_threshold = DecisionRule(0.3, 0.2, 0.4, false_alarm_curve=FALSE_ALARMS)
    below = decide(faces_of(0, [0.4567] * 4), sampled_frames=4, rule="mean", decision=low_threshold).reason
    assert "100% of real faces from sources the models never saw score 0.457 or more" in below
    # Without a measured curve nothing is claimed.
    assert "never saw" not in decide(faces, sampled_frames=4, rule="mean", decision=DECISION).reason


# Fake validation faces: 30% score 0.1 or less, 45% score 0.3 or less.
MISSES = ((0.01, 0.1), (0.1, 0.3), (0.3, 0.45), (0.5, 0.6))


def test_a_real_verdict_says_how_often_fakes_from_unseen_sources_score_as_low() -> None:
    rule = DecisionRule(0.5, 0.4, 0.6, false_alarm_curve=FALSE_ALARMS, miss_curve=MISSES)
    # One person at 0.2: of the fakes the models never saw, 45% score 0.3 or less (the curve's
    # lowest point not below 0.2), and the reason says so.
    verdict = decide(faces_of(0, [0.2] * 4), sampled_frames=4, rule="mean", decision=rule)
    assert verdict.label == "real"
    assert "45% of fake faces from sources the models never saw score 0.3 or less" in verdict.reason
    tiny = decide(faces_of(0, [0.004] * 4), sampled_frames=4, rule="mean", decision=rule).reason
    assert "10% of fake faces from sources the models never saw score 0.01 or less" in tiny
    assert "real faces" not in verdict.reason
    # An `uncertain` media claims neither; without a miss curve a `real` claims nothing.
    assert "never saw" not in decide(faces_of(0, [0.5] * 4), sampled_frames=4, rule="mean", decision=rule).reason
    assert "never saw" not in decide(faces_of(0, [0.2] * 4), sampled_frames=4, rule="mean", decision=WEIGHED).reason


# Fake faces from unseen sources at the false-alarm curve's points (at least p), and real ones at
# the miss curve's points (at most p).
HITS = ((0.5, 0.55), (0.9, 0.12), (0.98, 0.03), (0.995, 0.002))
CORRECT_REJECTIONS = ((0.01, 0.05), (0.1, 0.2), (0.3, 0.4), (0.5, 0.8))


def test_a_verdict_quotes_both_classes_at_its_point_so_the_share_can_be_weighed() -> None:
    """Rule 109: "10% of real faces score 0.9 or more" is evidence only if fewer fakes do not."""
    both = replace(WEIGHED, miss_curve=MISSES, hit_curve=HITS, correct_rejection_curve=CORRECT_REJECTIONS)
    fake = decide(faces_of(0, [0.95] * 4), sampled_frames=4, rule="mean", decision=both)
    assert fake.label == "fake"
    assert fake.reason.endswith(
        "10% of real faces and 12% of fake faces from sources the models never saw score 0.9 or more"
    )
    real = decide(faces_of(0, [0.2] * 4), sampled_frames=4, rule="mean", decision=both)
    assert real.label == "real"
    assert real.reason.endswith(
        "45% of fake faces and 40% of real faces from sources the models never saw score 0.3 or less"
    )
    # Below the false-alarm curve 100% of real faces bounds the share; the same bound on fakes
    # would overstate the evidence, so their share is not quoted.
    below = decide(
        faces_of(0, [0.4567] * 4),
        sampled_frames=4,
        rule="mean",
        decision=replace(both, threshold=0.3, uncertain_low=0.2, uncertain_high=0.4),
    ).reason
    assert below.endswith("100% of real faces from sources the models never saw score 0.457 or more")
    # Curves measured on other faces are never quoted as one figure.
    mixed = replace(both, hit_faces=VALIDATION_MIX)
    assert decide(faces_of(0, [0.95] * 4), sampled_frames=4, rule="mean", decision=mixed).reason.endswith(
        "10% of real faces from sources the models never saw score 0.9 or more"
    )
    # The labels are the curves' business only through the false-alarm curve (the crowd rule).
    assert fake.label == decide(faces_of(0, [0.95] * 4), sampled_frames=4, rule="mean", decision=WEIGHED).label


def test_with_unseen_odds_a_label_needs_the_bands_odds_on_the_unseen_curves() -> None:
    """Rule 111: the band 0.4-0.6 asks odds of 1.5 to 1; at 0.9, 12% of unseen fakes against 10% of
    unseen real faces is not that, at 0.98 3% against 2% is."""
    both = replace(WEIGHED, miss_curve=MISSES, hit_curve=HITS, correct_rejection_curve=CORRECT_REJECTIONS)
    strict = replace(both, unseen_odds=True)
    assert both.label(0.95) == "fake" and strict.band_label(0.95) == "fake" and strict.label(0.95) == "uncertain"
    assert strict.label(0.985) == "fake" and strict.label(0.5) == "uncertain"
    # `real`: at 0.2 (read at 0.3) 40% of real faces against 45% of fakes; at 0.05 (read at 0.1)
    # 20% against 30%: neither gives 1.5 to 1, so neither is `real`.
    assert strict.label(0.2) == "uncertain" and strict.label(0.05) == "uncertain"
    verdict = decide(faces_of(0, [0.95] * 4), sampled_frames=4, rule="mean", decision=strict)
    assert verdict.label == "uncertain" and verdict.tracks[0].label == "uncertain"
    assert verdict.reason.endswith(
        "0.95 is beyond the uncertain band, but 10% of real faces and 12% of fake faces from sources the "
        "models never saw score 0.9 or more: too few fake faces for the band's odds"
    )
    real = decide(faces_of(0, [0.2] * 4), sampled_frames=4, rule="mean", decision=strict).reason
    assert real.endswith(
        "45% of fake faces and 40% of real faces from sources the models never saw score 0.3 or less: "
        "too few real faces for the band's odds"
    )
    sure = decide(faces_of(0, [0.99] * 4), sampled_frames=4, rule="mean", decision=strict)
    assert sure.label == "fake" and "2% of real faces and 3% of fake faces" in sure.reason
    # Curves measured on the validation mix, or none: the band alone decides.
    assert replace(strict, miss_faces=VALIDATION_MIX).label(0.95) == "fake"
    assert replace(DECISION, unseen_odds=True).label(0.95) == "fake"


def focused(faces: list[ScoredFace], focus: float) -> list[ScoredFace]:
    return [replace(face, focus=focus) for face in faces]


@pytest.mark.parametrize("score", [0.95, 0.05])
def test_a_person_softer_than_the_training_faces_is_uncertain_whichever_way_they_are_read(score: float) -> None:
    """Rule 103: in a picture, under the focus floor neither `fake` nor `real` stands; the
    probability does."""
    sharp = decide(focused(faces_of(0, [score] * 4), 300.0), sampled_frames=4, rule="mean", decision=DECISION)
    assert sharp.label in {"fake", "real"} and sharp.caveats == ()
    soft_faces = focused(faces_of(0, [score] * 3), 40.0) + focused(faces_of(0, [score], first_frame=3), 90.0)
    soft = decide(soft_faces, sampled_frames=4, rule="mean", decision=DECISION, focus_floor=76)
    assert soft.label == "uncertain" and soft.tracks[0].label == "uncertain"
    assert soft.tracks[0].focus == pytest.approx(40.0)  # the median of the person's faces
    assert soft.fake_probability == pytest.approx(score) and soft.model_scores == sharp.model_scores
    evidence = SOFT_FACE_EVIDENCE["image"]
    caveat = SOFT_FACE_CAVEAT.format(person=1, focus=40, floor=76, evidence=evidence, consequence=SOFT_FACE_UNCERTAIN)
    assert soft.caveats == (caveat,) and soft.reason.endswith(f"; {caveat}")
    # In a video the same faces keep their label, and the reason says they are soft, quoting
    # what was measured nearest to video frames (rules 102 and 106).
    video = decide(soft_faces, sampled_frames=4, rule="mean", decision=DECISION, soft_is_uncertain=False, kind="video")
    assert video.label == sharp.label and video.tracks[0].label == sharp.label
    evidence = SOFT_FACE_EVIDENCE["video"]
    assert video.caveats == (SOFT_FACE_CAVEAT.format(person=1, focus=40, floor=76, evidence=evidence, consequence=""),)
    assert "not on videos" in evidence and "not on videos" not in caveat
    # No floor, or faces whose focus was not measured: the label stands.
    assert decide(soft_faces, sampled_frames=4, rule="mean", decision=DECISION, focus_floor=0).label == sharp.label
    assert decide(faces_of(0, [score] * 4), sampled_frames=4, rule="mean", decision=DECISION).label == sharp.label


def test_a_soft_person_who_is_not_the_most_suspicious_leaves_the_verdict_alone() -> None:
    faces = focused(faces_of(0, [0.05] * 4), 30.0) + focused(faces_of(1, [0.97] * 4), 500.0)
    verdict = decide(faces, sampled_frames=4, rule="mean", decision=DECISION, focus_floor=76)
    assert [t.label for t in verdict.tracks] == ["uncertain", "fake"]
    assert verdict.label == "fake" and verdict.caveats == ()
