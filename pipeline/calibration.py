"""Calibration and decision rules, all fitted on the validation split (never on test)."""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar
from sklearn.metrics import roc_curve

from pipeline.detector import sigmoid


def _nll(probabilities: np.ndarray, labels: np.ndarray) -> float:
    p = np.clip(probabilities, 1e-7, 1 - 1e-7)
    return float(-np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p)))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """Temperature T minimising the log loss of sigmoid(logit / T) (Guo et al., 2017)."""
    result = minimize_scalar(
        lambda log_t: _nll(sigmoid(logits / np.exp(log_t)), labels), bounds=(np.log(0.05), np.log(20.0)), method="bounded"
    )
    return float(np.exp(result.x))


def choose_threshold(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """The threshold with the best balanced accuracy (Youden's J) on validation."""
    fpr, tpr, thresholds = roc_curve(labels, probabilities)
    best = int(np.argmax(tpr - fpr))
    return float(np.clip(thresholds[best], 0.0, 1.0))


def choose_uncertain_band(
    probabilities: np.ndarray,
    labels: np.ndarray,
    threshold: float,
    inside_accuracy: float = 0.8,
    min_half_width: float = 0.05,
    max_half_width: float = 0.3,
    min_faces: int = 20,
) -> tuple[float, float]:
    """The band around the threshold inside which answers are too often wrong to state: grown in
    steps of 0.01 while it holds at least `min_faces` validation faces and their accuracy stays
    under `inside_accuracy`.

    Answers inside it are reported as `uncertain` rather than guessed. The band never shrinks
    below `min_half_width`: however good the model, a face scored next to the threshold is close
    to a coin toss, and calibration is only good to a few hundredths."""
    correct = (probabilities >= threshold) == labels.astype(bool)
    distance = np.abs(probabilities - threshold)
    half_width = min_half_width
    for candidate in np.arange(min_half_width + 0.01, max_half_width + 1e-9, 0.01):
        inside = distance < candidate
        if inside.sum() < min_faces or correct[inside].mean() >= inside_accuracy:
            break
        half_width = float(candidate)
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
