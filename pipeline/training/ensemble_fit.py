"""Turning trained members into the shipped ensemble: calibrate each member, choose the members'
weights, the ensemble temperature, the threshold and the uncertain band, all on validation."""

from __future__ import annotations

import shutil
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

from pipeline.config import DEFAULT_AGGREGATION
from pipeline.engine.ensemble import ENSEMBLE_FILE, EnsembleSpec, MemberSpec, combine_logits, crop_logits, sigmoid
from pipeline.engine.media import sha256_file
from pipeline.training.backbones import BACKBONES
from pipeline.training.calibration import (
    choose_threshold,
    choose_uncertain_band,
    expected_calibration_error,
    fit_temperature,
)
from pipeline.training.data import Sample, balanced_subset, load_samples, read_face


def member_logits(
    model_path: Path, input_size: int, samples: list[Sample], batch_size: int = 64
) -> dict[bool, np.ndarray]:
    """Raw logits of one saved member on face crops (read as the engine reads them), as the
    engine computes them without (False) and with (True) flip averaging."""
    import keras
    from tqdm import tqdm

    model = keras.models.load_model(model_path, safe_mode=True, compile=False)
    plain, flipped = [], []
    for start in tqdm(
        range(0, len(samples), batch_size), desc=f"val logits {model_path.parent.name}", file=sys.stderr, leave=False
    ):
        crops = np.stack([read_face(s.path, 224) for s in samples[start : start + batch_size]])
        plain.append(crop_logits(model, crops, input_size, batch_size, flip_average=False))
        flipped.append(crop_logits(model, crops[:, :, ::-1], input_size, batch_size, flip_average=False))
    plain_logits = np.concatenate(plain)
    return {False: plain_logits, True: (plain_logits + np.concatenate(flipped)) / 2}


def select_members(
    logits: dict[str, np.ndarray], temperatures: dict[str, float], labels: np.ndarray
) -> tuple[dict[str, float], float, list[dict[str, Any]]]:
    """Greedy forward selection, best single member first, each later one kept (with its weight
    on a 0.1 grid) only if it raises validation ROC AUC. Returns (weights, AUC, every trial)."""
    single_auc = {name: float(roc_auc_score(labels, values)) for name, values in logits.items()}
    order = sorted(single_auc, key=single_auc.get, reverse=True)
    weights = {order[0]: 1.0}
    best_auc = single_auc[order[0]]
    trials: list[dict[str, Any]] = []
    for candidate in order[1:]:
        best_trial: dict[str, float] | None = None
        for w in np.linspace(0.1, 1.0, 10):
            trial = {**weights, candidate: float(w)}
            mean = sum(trial[n] * logits[n] / temperatures[n] for n in trial) / sum(trial.values())
            auc = float(roc_auc_score(labels, mean))
            trials.append({"members": dict(trial), "val_auc": auc})
            if auc > best_auc + 1e-4:
                best_auc, best_trial = auc, trial
        if best_trial is not None:
            weights = best_trial
    return weights, best_auc, trials


def fit_ensemble(
    members: dict[str, tuple[Path, str, int]],
    val_roots: list[Path],
    models_dir: Path,
    val_per_class: int | None = None,
    aggregation: str = DEFAULT_AGGREGATION,
) -> dict[str, Any]:
    """Calibrate and combine trained members, copy them into `models_dir` and write
    `ensemble.json`. `members`: name -> (model file, backbone, input size). Members that do not
    raise the ensemble's validation AUC are left out (greedy forward selection)."""
    val: list[Sample] = []
    for root in val_roots:
        found = load_samples(root, "val")
        val += balanced_subset(found, val_per_class, seed=0) if val_per_class else found
    labels = np.asarray([s.label for s in val], dtype=float)
    both = {name: member_logits(path, size, val) for name, (path, _, size) in members.items()}
    # Flip averaging costs a second pass per face at analysis time, so it is used only when it
    # raises the ensemble's validation AUC.
    candidates = {}
    for flip_average in (False, True):
        logits = {name: by_flip[flip_average] for name, by_flip in both.items()}
        temperatures = {name: fit_temperature(values, labels) for name, values in logits.items()}
        candidates[flip_average] = (logits, temperatures, *select_members(logits, temperatures, labels))
    flip_average = candidates[True][3] > candidates[False][3] + 1e-4
    logits, temperatures, weights, _, trials = candidates[flip_average]
    single_auc = {name: float(roc_auc_score(labels, values)) for name, values in logits.items()}
    chosen = list(weights)
    models_dir.mkdir(parents=True, exist_ok=True)
    specs = []
    for name in chosen:
        path, backbone, size = members[name]
        target = models_dir / f"{name}.keras"
        if path.resolve() != target.resolve():
            shutil.copyfile(path, target)
        specs.append(
            MemberSpec(
                name=name,
                file=target.name,
                backbone=backbone,
                input_size=size,
                weight=round(weights[name], 3),
                temperature=round(temperatures[name], 4),
                gradcam_layer=BACKBONES[backbone].last_conv_layer,
                sha256=sha256_file(target),
            )
        )
    spec = EnsembleSpec(
        members=tuple(specs),
        aggregation=aggregation,
        flip_average=flip_average,
        trained_on=tuple(r.name for r in val_roots),
    )
    ensemble_logit = combine_logits({n: logits[n] for n in chosen}, spec)
    spec = replace(spec, temperature=round(fit_temperature(ensemble_logit, labels), 4))
    probabilities = sigmoid(ensemble_logit / spec.temperature)
    threshold = choose_threshold(probabilities, labels)
    low, high = choose_uncertain_band(probabilities, labels, threshold)
    validation = {
        "n": int(len(labels)),
        "single_auc": single_auc,
        "ensemble_auc": float(roc_auc_score(labels, probabilities)),
        "ensemble_ece": expected_calibration_error(probabilities, labels),
        "member_ece": {n: expected_calibration_error(sigmoid(logits[n] / temperatures[n]), labels) for n in logits},
        "selected": chosen,
        "flip_average": flip_average,
        "ensemble_auc_without_flip": candidates[False][3],
        "ensemble_auc_with_flip": candidates[True][3],
        "weight_trials": trials,
    }
    spec = replace(
        spec, threshold=round(threshold, 4), uncertain_low=low, uncertain_high=high, metrics={"validation": validation}
    )
    spec.save(models_dir / ENSEMBLE_FILE)
    return validation
