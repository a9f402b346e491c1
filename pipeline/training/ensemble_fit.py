"""Turning trained members into the shipped ensemble: calibrate each member, choose the members'
weights, the ensemble temperature, the threshold and the uncertain band, all on validation."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

from pipeline.config import DEFAULT_AGGREGATION
from pipeline.engine.ensemble import (
    ENSEMBLE_FILE,
    HELD_OUT_CURVES,
    KERAS,
    EnsembleSpec,
    MemberSpec,
    sigmoid,
    weighted_logit,
)
from pipeline.engine.media import sha256_file
from pipeline.engine.verdict import RANGE
from pipeline.training.backbones import BACKBONES
from pipeline.training.calibration import (
    TEMPERATURE,
    YOUDEN,
    balanced_accuracy,
    choose_threshold,
    choose_uncertain_band,
    expected_calibration_error,
    fit_calibration,
    fit_temperature,
    score_curves,
)
from pipeline.training.recipe import Combination, TrainedMember, samples_of, trained_logits


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
    members: Sequence[TrainedMember],
    val_sources: Sequence[str],
    models_dir: Path,
    val_per_class: int | None = None,
    aggregation: str = DEFAULT_AGGREGATION,
    combination: Combination | None = None,
    calibration: str = TEMPERATURE,
    pictures: Combination | None = None,
    disagreement: str = RANGE,
    threshold_rule: str = YOUDEN,
) -> dict[str, Any]:
    """Calibrate and combine trained members on the validation mix of `val_sources`, copy them
    into `models_dir` and write `ensemble.json`.

    `combination` (the recipe's: weights chosen on the cross-source table, and that table's
    disagreement margin and curves) fixes how the members are weighed; without weights, members
    are chosen by greedy forward selection on validation ROC AUC. Flip averaging of the CNN
    members is used only when it raises validation AUC (it costs a second pass). The table's
    false-alarm curve (real held-out faces) becomes the ensemble's; without it, the validation
    reals' curve does; the same for the miss curve (held-out fakes). `calibration` is how the
    ensemble's logit is calibrated (one of `CALIBRATIONS`). With `pictures` (the recipe's
    combination for pictures: other weights of the same members, and the table's margin and
    curves for them) the ensemble also gets `EnsembleSpec.pictures`, decided on the same
    validation mix. `disagreement` is how the members' disagreement is measured against the
    margins (`verdict.DISAGREEMENTS`). `threshold_rule` places the threshold (`THRESHOLD_RULES`)."""
    combination = combination or Combination({})
    weights = combination.weights
    val = samples_of(val_sources, "val", val_per_class)
    labels = np.asarray([s.label for s in val], dtype=float)
    both = {
        m.name: {flip: trained_logits(m, val, flip_average=flip) for flip in (False, True)} if m.kind == KERAS else None
        for m in members
    }
    for m in members:
        if both[m.name] is None:
            logits = trained_logits(m, val)
            both[m.name] = {False: logits, True: logits}
    candidates = {}
    for flip_average in (False, True):
        logits = {name: by_flip[flip_average] for name, by_flip in both.items()}
        temperatures = {name: fit_temperature(values, labels) for name, values in logits.items()}
        if weights:
            chosen = {n: w for n, w in weights.items() if w > 0 and n in logits}
            mean = sum(w * logits[n] / temperatures[n] for n, w in chosen.items()) / sum(chosen.values())
            candidates[flip_average] = (logits, temperatures, chosen, float(roc_auc_score(labels, mean)), [])
        else:
            candidates[flip_average] = (logits, temperatures, *select_members(logits, temperatures, labels))
    flip_average = candidates[True][3] > candidates[False][3] + 1e-4
    logits, temperatures, chosen_weights, _, trials = candidates[flip_average]
    single_auc = {name: float(roc_auc_score(labels, values)) for name, values in logits.items()}
    by_name = {m.name: m for m in members}
    models_dir.mkdir(parents=True, exist_ok=True)
    specs = []
    for name, weight in chosen_weights.items():
        member = by_name[name]
        target = models_dir / (f"{name}.keras" if member.kind == KERAS else f"{name}.json")
        if member.path.resolve() != target.resolve():
            shutil.copyfile(member.path, target)
        specs.append(
            MemberSpec(
                name=name,
                file=target.name,
                backbone=member.backbone,
                input_size=member.input_size,
                weight=round(weight, 3),
                temperature=round(temperatures[name], 4),
                gradcam_layer=BACKBONES[member.backbone].last_conv_layer if member.kind == KERAS else "",
                sha256=sha256_file(target),
                kind=member.kind,
            )
        )
    spec = EnsembleSpec(
        members=tuple(specs),
        aggregation=aggregation,
        flip_average=flip_average,
        disagreement_margin=combination.disagreement_margin,
        disagreement=disagreement,
        trained_on=tuple(str(s) for s in val_sources),
    )
    member_logits = {n: logits[n] for n in chosen_weights}
    sources = [s.source for s in val]
    spec, validation = _decided(spec, member_logits, labels, sources, calibration, combination, threshold_rule)
    validation = {
        **validation,
        "single_auc": single_auc,
        "member_ece": {n: expected_calibration_error(sigmoid(logits[n] / temperatures[n]), labels) for n in logits},
        "selected": list(chosen_weights),
        "flip_average": flip_average,
        "ensemble_auc_without_flip": candidates[False][3],
        "ensemble_auc_with_flip": candidates[True][3],
        "weight_trials": trials,
    }
    spec = replace(spec, metrics={"validation": validation})
    if pictures is None:
        spec.save(models_dir / ENSEMBLE_FILE)
        return validation
    # The same members and temperatures, the pictures' weights, decided on the same validation mix.
    weighed = replace(
        spec,
        members=tuple(replace(m, weight=round(pictures.weights[m.name], 3)) for m in spec.members),
        disagreement_margin=pictures.disagreement_margin,
    )
    picture_spec, picture_validation = _decided(
        weighed, member_logits, labels, sources, calibration, pictures, threshold_rule
    )
    spec = replace(spec, pictures=replace(picture_spec, metrics={"validation": picture_validation}))
    spec.save(models_dir / ENSEMBLE_FILE)
    return {**validation, "pictures": picture_validation}


VALIDATION_CURVES = {
    "false_alarm_curve": "validation reals",
    "hit_curve": "validation fakes",
    "miss_curve": "validation fakes",
    "correct_rejection_curve": "validation reals",
}
"""Each curve a weighing carries (`score_curves`), and what the metrics say it came from where the
cross-source table gave none and the validation mix's faces measured it."""


def _decided(
    spec: EnsembleSpec,
    member_logits: dict[str, np.ndarray],
    labels: np.ndarray,
    sources: list[str],
    calibration: str,
    combination: Combination,
    threshold_rule: str,
) -> tuple[EnsembleSpec, dict[str, Any]]:
    """`spec` (its members weighed) with the ensemble's calibration, threshold (placed by
    `threshold_rule`) and uncertain band fitted on the validation logits, and its curves
    (`VALIDATION_CURVES`: `combination`'s, from the cross-source table, where given, else the
    validation mix's); also what validation measured of it."""
    # The weighted mean alone: `spec` may carry another weighing's calibration (the videos').
    ensemble_logit = weighted_logit(member_logits, spec.temperatures, spec.weights)
    temperature, offset = fit_calibration(ensemble_logit, labels, calibration)
    spec = replace(spec, temperature=round(temperature, 4), offset=round(offset, 4))
    probabilities = sigmoid(ensemble_logit / spec.temperature + spec.offset)
    threshold = choose_threshold(probabilities, labels, threshold_rule)
    low, high = choose_uncertain_band(probabilities, labels, threshold)
    validation_curves = score_curves(probabilities[labels == 0], probabilities[labels == 1])
    held_out_curves = {name: getattr(combination, name) for name in VALIDATION_CURVES}
    validation = {
        "n": int(len(labels)),
        "weights": spec.weights,
        "ensemble_auc": float(roc_auc_score(labels, probabilities)),
        "ensemble_ece": expected_calibration_error(probabilities, labels),
        "calibration": calibration,
        "threshold_rule": threshold_rule,
        # What the rule costs on the mix: its balanced accuracy beside the best any threshold gets.
        "balanced_accuracy": balanced_accuracy(probabilities, labels, threshold),
        "best_balanced_accuracy": balanced_accuracy(probabilities, labels, choose_threshold(probabilities, labels)),
        "ensemble_auc_by_source": {
            source: float(roc_auc_score(labels[mask], probabilities[mask]))
            for source in sorted(set(sources))
            if len(set(labels[mask := np.asarray([x == source for x in sources])])) == 2
        },
    }
    for name, faces in VALIDATION_CURVES.items():
        validation[f"{name}_from"] = HELD_OUT_CURVES[f"{name}_from"] if held_out_curves[name] else faces
        validation[f"validation_{name}"] = validation_curves[name]
    spec = replace(
        spec,
        threshold=round(threshold, 4),
        uncertain_low=low,
        uncertain_high=high,
        **{name: held_out_curves[name] or validation_curves[name] for name in VALIDATION_CURVES},
    )
    return spec, validation
