"""Calibration and decision rules, all fitted on the validation split (never on test)."""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize, minimize_scalar
from sklearn.metrics import roc_curve

from pipeline.config import VerdictSettings
from pipeline.engine.ensemble import sigmoid


def _nll(probabilities: np.ndarray, labels: np.ndarray) -> float:
    p = np.clip(probabilities, 1e-7, 1 - 1e-7)
    return float(-np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p)))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """Temperature T minimising the log loss of sigmoid(logit / T) (Guo et al., 2017)."""
    result = minimize_scalar(
        lambda log_t: _nll(sigmoid(logits / np.exp(log_t)), labels),
        bounds=(np.log(0.05), np.log(20.0)),
        method="bounded",
    )
    return float(np.exp(result.x))


TEMPERATURE = "temperature"
TEMPERATURE_AND_OFFSET = "temperature_and_offset"
CALIBRATIONS = (TEMPERATURE, TEMPERATURE_AND_OFFSET)
"""How the ensemble's logit is calibrated (a recipe's `ensemble_calibration`)."""


def fit_temperature_and_offset(logits: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Temperature T and offset b minimising the log loss of sigmoid(logit / T + b) (Platt
    scaling): where the weighted mean of the members' logits leans to one class, the offset moves
    it back, which a temperature alone cannot."""
    bound = (np.log(0.05), np.log(20.0))
    result = minimize(
        lambda x: _nll(sigmoid(logits / np.exp(x[0]) + x[1]), labels),
        x0=[np.log(fit_temperature(logits, labels)), 0.0],
        method="L-BFGS-B",
        bounds=[bound, (-10.0, 10.0)],
    )
    return float(np.exp(result.x[0])), float(result.x[1])


def fit_calibration(logits: np.ndarray, labels: np.ndarray, form: str = TEMPERATURE) -> tuple[float, float]:
    """(temperature, offset) of one of `CALIBRATIONS`; the probability is sigmoid(logit / T + b)."""
    if form == TEMPERATURE:
        return fit_temperature(logits, labels), 0.0
    if form == TEMPERATURE_AND_OFFSET:
        return fit_temperature_and_offset(logits, labels)
    raise ValueError(f"unknown calibration {form!r}: one of {', '.join(CALIBRATIONS)}")


YOUDEN = "youden"
EVEN_ODDS = "even_odds"
THRESHOLD_RULES = {
    YOUDEN: "the point of best balanced accuracy (Youden's J) on the validation mix",
    EVEN_ODDS: "0.5 on the calibrated probability, where its odds of fake are even (rule 100)",
}
"""Where the threshold is placed on the calibrated probability (a recipe's `threshold_rule`). J is
often nearly flat around its best point, so `youden` can move far with last-digit changes to the
scores (rule 99); `even_odds` reads nothing from the data but the calibration."""


def checked_threshold_rule(rule: str) -> str:
    """`rule` if it names one of `THRESHOLD_RULES`, else a ValueError listing them."""
    if rule not in THRESHOLD_RULES:
        raise ValueError(f"unknown threshold rule {rule!r}; choose one of {', '.join(THRESHOLD_RULES)}")
    return rule


def choose_threshold(probabilities: np.ndarray, labels: np.ndarray, rule: str = YOUDEN) -> float:
    """The threshold on calibrated validation probabilities that `rule` (one of
    `THRESHOLD_RULES`) places: by default the one with the best balanced accuracy (Youden's J)."""
    if checked_threshold_rule(rule) == EVEN_ODDS:
        return 0.5
    fpr, tpr, thresholds = roc_curve(labels, probabilities)
    best = int(np.argmax(tpr - fpr))
    return float(np.clip(thresholds[best], 0.0, 1.0))


def balanced_accuracy(probabilities: np.ndarray, labels: np.ndarray, threshold: float) -> float:
    """The mean of the shares of fakes called fake and of reals called real at `threshold`
    (Youden's J is this, times two, minus one)."""
    called_fake = probabilities >= threshold
    fake = labels.astype(bool)
    return float((called_fake[fake].mean() + (~called_fake[~fake]).mean()) / 2)


def choose_uncertain_band(
    probabilities: np.ndarray,
    labels: np.ndarray,
    threshold: float,
    target_accuracy: float = 0.9,
    min_half_width: float = 0.05,
    max_half_width: float = 0.3,
) -> tuple[float, float]:
    """The narrowest band around the threshold outside which validation accuracy reaches
    `target_accuracy`: answers inside it are reported as `uncertain` rather than guessed.

    The band never shrinks below `min_half_width`, even for a model that is right 90% of the time
    everywhere: a face scored next to the threshold is still close to a coin toss, and
    calibration is only good to a few hundredths."""
    correct = (probabilities >= threshold) == labels.astype(bool)
    distance = np.abs(probabilities - threshold)
    for half_width in np.arange(min_half_width, max_half_width + 1e-9, 0.01):
        outside = distance >= half_width
        if outside.sum() and correct[outside].mean() >= target_accuracy:
            break
    low, high = max(0.0, threshold - half_width), min(1.0, threshold + half_width)
    return round(float(low), 4), round(float(high), 4)


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """Mean gap between confidence and accuracy over equal-width probability bins, weighted by
    how many predictions fall in each (Naeini et al., 2015), for the fake class."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(probabilities, edges[1:-1]), 0, bins - 1)
    error = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            error += members.mean() * abs(probabilities[members].mean() - labels[members].mean())
    return float(error)


def choose_disagreement_margin(
    spread: np.ndarray, correct: np.ndarray, worst_accuracy: float = 0.6, min_items: int = 30
) -> float | None:
    """The smallest gap between members' probabilities beyond which the ensemble was right less
    than `worst_accuracy` of the time on held-out sources (at least `min_items` such items):
    past it, a person is reported `uncertain` rather than guessed. None when disagreement never
    made the ensemble that unreliable."""
    for margin in np.arange(0.3, 0.96, 0.05):
        beyond = spread > margin
        if beyond.sum() >= min_items and correct[beyond].mean() < worst_accuracy:
            return round(float(margin), 2)
    return None


def shares_at_least(probabilities: np.ndarray, points: tuple[float, ...]) -> tuple[tuple[float, float], ...]:
    """(probability, share of `probabilities` at least that high) at each point."""
    return tuple((float(p), round(float(np.mean(probabilities >= p)), 5)) for p in points)


def shares_at_most(probabilities: np.ndarray, points: tuple[float, ...]) -> tuple[tuple[float, float], ...]:
    """(probability, share of `probabilities` at most that low) at each point."""
    return tuple((float(p), round(float(np.mean(probabilities <= p)), 5)) for p in points)


def false_alarm_curve(
    real_probabilities: np.ndarray, points: tuple[float, ...] = VerdictSettings.false_alarm_points
) -> tuple[tuple[float, float], ...]:
    """(probability, share of these real faces scored at least that high) at each point."""
    return shares_at_least(real_probabilities, points)


def hit_curve(
    fake_probabilities: np.ndarray, points: tuple[float, ...] = VerdictSettings.false_alarm_points
) -> tuple[tuple[float, float], ...]:
    """(probability, share of these fake faces scored at least that high) at the false-alarm
    curve's points: beside it, what a score that high is worth as evidence (rule 109)."""
    return shares_at_least(fake_probabilities, points)


def miss_curve(
    fake_probabilities: np.ndarray, points: tuple[float, ...] = VerdictSettings.miss_points
) -> tuple[tuple[float, float], ...]:
    """(probability, share of these fake faces scored at most that low) at each point."""
    return shares_at_most(fake_probabilities, points)


def correct_rejection_curve(
    real_probabilities: np.ndarray, points: tuple[float, ...] = VerdictSettings.miss_points
) -> tuple[tuple[float, float], ...]:
    """(probability, share of these real faces scored at most that low) at the miss curve's
    points: beside it, what a score that low is worth as evidence (rule 109)."""
    return shares_at_most(real_probabilities, points)


def score_curves(
    real_probabilities: np.ndarray, fake_probabilities: np.ndarray
) -> dict[str, tuple[tuple[float, float], ...]]:
    """The four curves a weighing carries (`ensemble.json`, the recipe), by name, measured on
    these real and fake faces: what a verdict quotes, and the crowd rule weighs."""
    return {
        "false_alarm_curve": false_alarm_curve(real_probabilities),
        "hit_curve": hit_curve(fake_probabilities),
        "miss_curve": miss_curve(fake_probabilities),
        "correct_rejection_curve": correct_rejection_curve(real_probabilities),
    }
