"""Verdicts: aggregation rules, the uncertain band, one timeline per person, any fake person."""

from __future__ import annotations

import pytest

from pipeline.engine.verdict import DecisionRule, ScoredFace, aggregate, confident_rule, decide

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


def test_a_video_is_fake_if_any_person_is_fake() -> None:
    faces = faces_of(0, [0.05] * 10) + faces_of(1, [0.9] * 10)
    verdict = decide(faces, sampled_frames=10, rule="mean", decision=DECISION)
    assert verdict.label == "fake"
    assert [t.label for t in verdict.tracks] == ["real", "fake"]
    assert verdict.fake_probability == pytest.approx(0.9)
    assert "person 2" in verdict.reason
    # Each model's video score comes from the same rule over its own face scores.
    assert verdict.model_scores == {"a": pytest.approx(0.9), "b": pytest.approx(0.95)}


def test_a_person_seen_in_one_frame_does_not_decide_alone() -> None:
    faces = faces_of(0, [0.1] * 20) + faces_of(1, [0.99], first_frame=5)
    verdict = decide(faces, sampled_frames=20, rule="mean", decision=DECISION)
    assert [t.decides for t in verdict.tracks] == [True, False]
    assert verdict.label == "real"


def test_max_face_mean_is_over_frames_whoever_the_face_belongs_to() -> None:
    faces = faces_of(0, [0.1, 0.1]) + faces_of(1, [0.9, 0.3])
    verdict = decide(faces, sampled_frames=2, rule="max_face_mean", decision=DECISION)
    assert verdict.fake_probability == pytest.approx(0.6)
