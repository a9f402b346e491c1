"""The cross-source table: how the recipe does on a source it never saw.

For each source in turn, every member of the recipe is trained on the other sources (their
train splits), calibrated and combined on their validation splits, and scores the held-out
source, all of it (none of it was seen), at most `held_out_per_class` items per class. The table
lists frame-level ROC AUC, AP, EER, ECE and accuracy at the fold's own threshold per held-out
source and member, and their mean, for two columns: the held-out crops as they are, and the same
crops re-shared (downscaled and JPEG-compressed, seeded per crop: `ReshareSettings`), because an
upload has usually been passed around before it reaches the engine, and a feature that ranks clean
crops well may not survive that. A third figure, "mixed", ranks both together (each held-out item
as it is and re-shared, in one set): uploads mix processing histories, and a model that reads
processing as a sign of fake ranks a passed-around real face above a clean fake, which neither
column alone can show. Every ROC AUC comes with a 95% interval from stratified
bootstrap resamples of the held-out items, seeded per source, so a table made later for another
recipe on the same folds resamples the same way and `compare_tables` (`cross-source --baseline`)
gives a paired interval for the difference. The interval covers which items were held out, not
training noise nor the flattery of choosing among many recipes on one table. Every recipe choice
is made on this table and on validation splits, never on test splits.

Folds are slow (a CNN member trains for each), so each fold keeps its members and their logits
under `runs/cross-source/FOLD/`, and a stopped run resumes there. The recipe's `cross_source`
block may make the folds' CNN training cheaper than the shipped one (fewer images, fewer rounds);
the model card says exactly what was trained.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.engine.clip import PATCH_MAX
from pipeline.engine.ensemble import KERAS, sigmoid, weighted_logit
from pipeline.engine.verdict import RANGE, disagreement
from pipeline.errors import DataError
from pipeline.files import whole_file
from pipeline.training.augment import ReshareSettings
from pipeline.training.calibration import (
    TEMPERATURE,
    YOUDEN,
    choose_disagreement_margin,
    choose_threshold,
    fit_calibration,
    fit_temperature,
    score_curves,
)
from pipeline.training.data import Sample
from pipeline.training.evaluate import binary_metrics
from pipeline.training.features import FEATURE_DIR, PATCH_TOKEN_DIR
from pipeline.training.recipe import Recipe, samples_of, train_recipe_member, trained_logits
from pipeline.training.sources import reshared_samples

ENSEMBLE = "ensemble"
RESHARED = "held_out_reshared"
MIXED_COPIES = 2
"""Copies of each held-out item in the mixed figure: as it is, and re-shared (`mixed`)."""
METRICS = ("roc_auc", "average_precision", "eer", "ece", "accuracy")
BOOTSTRAP_RESAMPLES = 1000
"""Stratified resamples of each held-out source's items behind every ROC AUC's 95% interval. They
are seeded by the source's name alone, so two tables of the same folds draw the same resamples
and the difference of two recipes is a paired comparison (`compare_tables`)."""


@dataclass
class Scored:
    """Raw logits of every member on one set of samples."""

    samples: list[Sample]
    logits: dict[str, np.ndarray]

    @property
    def labels(self) -> np.ndarray:
        return np.asarray([s.label for s in self.samples])


def mixed(held: Scored, reshared: Scored) -> Scored:
    """The held-out items as they are followed by the same items re-shared, in one set: how a
    processing history independent of the label ranks (item i's copies at i and i + n)."""
    return Scored(
        held.samples + reshared.samples, {n: np.concatenate([held.logits[n], reshared.logits[n]]) for n in held.logits}
    )


def _settings_hash(member: dict[str, Any], overrides: dict[str, Any]) -> str:
    # A probe's logits also depend on how its features were computed (their cache's version).
    inputs = [member, overrides] if member["kind"] == KERAS else [member, overrides, str(FEATURE_DIR)]
    if member.get("feature") == PATCH_MAX:
        inputs.append(PATCH_TOKEN_DIR)
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]


def _cached_logits(cache: Path, sets: dict[str, list[Sample]], settings: str) -> dict[str, np.ndarray]:
    """The logits of the named sets the cache holds for exactly these samples and settings."""
    if not cache.exists():
        return {}
    with np.load(cache, allow_pickle=False) as data:
        if "settings" not in data or str(data["settings"]) != settings:
            return {}
        return {
            name: data[name]
            for name, samples in sets.items()
            if name in data and data[f"{name}__paths"].tolist() == [str(s.path) for s in samples]
        }


def fold_overrides(recipe: Recipe, member: dict[str, Any]) -> dict[str, Any]:
    """What the folds change in a member's training (the recipe's `cross_source.keras`, CNNs only)."""
    return recipe.cross_source.get("keras", {}) if member["kind"] == KERAS else {}


def member_fold_dir(runs: Path, held_out: str, member: dict[str, Any], cnn_folder: str | None = None) -> Path:
    """The folder that holds `member`'s run in the fold of a runs folder that held `held_out`
    out: the fold's own, or for a CNN trained from another seed its `cnn_folder` (`seeded`)."""
    fold = runs / "cross-source" / held_out
    return fold / cnn_folder if cnn_folder and member["kind"] == KERAS else fold


def cached_fold_logits(
    recipe: Recipe,
    held_out: str,
    runs: Path,
    member: dict[str, Any],
    sets: dict[str, list[Sample]],
    cnn_folder: str | None = None,
) -> dict[str, np.ndarray]:
    """The logits of the named sets that the fold of a runs folder holding `held_out` out cached
    for `member` (as `recipe` trains it: a seeded recipe's CNNs in `cnn_folder`), read only: a set
    the cache holds for other samples or settings is left out."""
    cache = member_fold_dir(runs, held_out, member, cnn_folder) / member["name"] / "logits.npz"
    return _cached_logits(cache, sets, _settings_hash(member, fold_overrides(recipe, member)))


def member_logits(
    member: dict[str, Any],
    train_sources: Sequence[str],
    sets: dict[str, list[Sample]],
    runs: Path,
    resume: bool,
    overrides: dict[str, Any],
) -> dict[str, np.ndarray]:
    """Train one member on `train_sources` (or reuse it) and return its logits on each named
    sample set; cached in `runs/NAME/logits.npz`, set by set, so a set added later (the re-shared
    held-out crops) is scored by the member already trained."""
    cache = runs / member["name"] / "logits.npz"
    settings = _settings_hash(member, overrides)
    logits = _cached_logits(cache, sets, settings) if resume else {}
    missing = [name for name in sets if name not in logits]
    if not missing:
        return logits
    trained = train_recipe_member(member, train_sources, runs, overrides, resume)
    logits.update({name: trained_logits(trained, sets[name]) for name in missing})
    with whole_file(cache) as partial:
        np.savez(
            partial,
            settings=np.asarray(settings),
            **logits,
            **{f"{name}__paths": np.asarray([str(s.path) for s in samples]) for name, samples in sets.items()},
        )
    return logits


def run_fold(
    recipe: Recipe, held_out: str, runs: Path, resume: bool = True, cnn_folder: str | None = None
) -> tuple[Scored, Scored, Scored]:
    """Train the recipe without `held_out` and score the validation mix of the other sources,
    all of the held-out source, and the same held-out crops re-shared. With `cnn_folder` the CNN
    members train in that subfolder of the fold's (another seed's), the probes where they were."""
    train_sources = [s for s in recipe.sources if s != held_out]
    held_samples = samples_of([held_out], None, recipe.held_out_per_class)
    sets = {
        "val": samples_of(train_sources, "val", recipe.val_per_class),
        "held_out": held_samples,
        RESHARED: reshared_samples(held_samples),
    }
    logits: dict[str, dict[str, np.ndarray]] = {name: {} for name in sets}
    for member in fold_members(recipe):
        overrides = fold_overrides(recipe, member)
        member_runs = member_fold_dir(runs, held_out, member, cnn_folder)
        for name, values in member_logits(member, train_sources, sets, member_runs, resume, overrides).items():
            logits[name][member["name"]] = values
    val, held, reshared = (Scored(sets[name], logits[name]) for name in ("val", "held_out", RESHARED))
    return val, held, reshared


def cnn_seeds(recipe: Recipe) -> dict[str, int]:
    """Each CNN member's training seed as the folds train it (the folds' `cross_source.keras`
    overrides first, then the member's own, then `TrainConfig`'s default)."""
    from pipeline.training.train import TrainConfig

    overrides = recipe.cross_source.get("keras", {})
    return {
        m["name"]: int(overrides.get("seed", m.get("seed", TrainConfig.seed)))
        for m in fold_members(recipe)
        if m["kind"] == KERAS
    }


def with_cnn_seed(recipe: Recipe, seed: int) -> Recipe:
    """The recipe with every CNN member trained from `seed` (other training faces, augmentation
    and initial head). The CLIP probe draws nothing at random (`samples_of` takes seed 0) and is
    left as it is."""
    members = tuple({**m, "seed": seed} if m["kind"] == KERAS else m for m in recipe.members)
    cross = dict(recipe.cross_source)
    if "seed" in cross.get("keras", {}):
        cross["keras"] = {**cross["keras"], "seed": seed}
    return replace(recipe, members=members, cross_source=cross)


def seeded(recipe: Recipe, seed: int | None) -> tuple[Recipe, str | None]:
    """(the recipe with its CNNs trained from `seed`, the subfolder of each fold their runs live
    in): `seed-N`, or None, and the recipe unchanged, when `seed` is None or the recipe's own."""
    if seed is None or not set(cnn_seeds(recipe).values()) - {seed}:
        return recipe, None
    return with_cnn_seed(recipe, seed), f"seed-{seed}"


def fold_members(recipe: Recipe) -> list[dict]:
    """The members the folds train (the recipe's `cross_source.members`, default all)."""
    names = recipe.cross_source.get("members")
    return [m for m in recipe.members if names is None or m["name"] in names]


@dataclass
class FoldResult:
    """One fold: metrics per member and ensemble, and what the disagreement rule needs."""

    metrics: dict[str, dict[str, Any]]
    spread: np.ndarray
    """Per held-out item, how far the members' calibrated probabilities disagree (the fold's measure)."""
    correct: np.ndarray
    """Per held-out item, whether the ensemble's answer at the fold threshold was right."""
    real_probabilities: np.ndarray
    """The ensemble's probabilities for the held-out real items (the false-alarm curve)."""
    fake_probabilities: np.ndarray
    """The same for the held-out fake items (the miss curve)."""
    probabilities: dict[str, np.ndarray]
    """Per model (members calibrated, and the ensemble), its probability for each held-out item."""
    temperatures: dict[str, float]
    """Each member's temperature, fitted on the fold's validation mix."""


def fold_calibration(
    val: Scored, weights: dict[str, float], calibration: str = TEMPERATURE
) -> tuple[dict[str, float], float, float]:
    """(each member's temperature, the ensemble's temperature and offset), all fitted on the
    fold's validation mix: the ensemble's probability is sigmoid(weighted_logit(logits,
    temperatures, weights) / temperature + offset)."""
    temperatures = {n: fit_temperature(v, val.labels) for n, v in val.logits.items()}
    temperature, offset = fit_calibration(weighted_logit(val.logits, temperatures, weights), val.labels, calibration)
    return temperatures, temperature, offset


def fold_result(
    val: Scored,
    held: Scored,
    weights: dict[str, float],
    calibration: str = TEMPERATURE,
    measure: str = RANGE,
    fitted: tuple[dict[str, float], float, float] | None = None,
    threshold_rule: str = YOUDEN,
) -> FoldResult:
    """Metrics on the held-out set, everything calibrated on the fold's validation mix (the
    ensemble as `calibration` says); the members' disagreement as `measure` says. `fitted`:
    `fold_calibration(val, weights, calibration)` where the caller already has it (it scores
    several held-out sets against one validation mix). Thresholds are placed on the validation mix
    by `threshold_rule` (`calibration.THRESHOLD_RULES`)."""
    labels_val, labels_held = val.labels, held.labels
    temperatures, ensemble_temperature, offset = fitted or fold_calibration(val, weights, calibration)
    metrics: dict[str, dict[str, Any]] = {}
    probabilities: dict[str, np.ndarray] = {}
    for name in val.logits:
        threshold = choose_threshold(sigmoid(val.logits[name] / temperatures[name]), labels_val, threshold_rule)
        probabilities[name] = sigmoid(held.logits[name] / temperatures[name])
        metrics[name] = {**binary_metrics(labels_held, probabilities[name], threshold), "threshold": threshold}
    ensemble_val = weighted_logit(val.logits, temperatures, weights)
    threshold = choose_threshold(sigmoid(ensemble_val / ensemble_temperature + offset), labels_val, threshold_rule)
    p_held = sigmoid(weighted_logit(held.logits, temperatures, weights) / ensemble_temperature + offset)
    metrics[ENSEMBLE] = {**binary_metrics(labels_held, p_held, threshold), "threshold": threshold}
    names = [n for n in weights if weights[n] > 0 and n in held.logits]
    members = np.stack([probabilities[n] for n in names])
    spread = disagreement(members, measure, np.asarray([weights[n] for n in names]))
    correct = (p_held >= threshold) == labels_held.astype(bool)
    probabilities[ENSEMBLE] = p_held
    return FoldResult(
        metrics, spread, correct, p_held[labels_held == 0], p_held[labels_held == 1], probabilities, temperatures
    )


def bootstrap_roc_auc(
    labels: np.ndarray, scores: np.ndarray, seed: int, resamples: int = BOOTSTRAP_RESAMPLES, copies: int = 1
) -> np.ndarray:
    """(resamples,) ROC AUC of stratified bootstrap resamples (the reals and the fakes each drawn
    with replacement, their counts kept). The draws depend only on the labels and `seed`, never on
    the scores, so two models scored on the same items are resampled alike (paired); NaN without
    both classes. With `copies` > 1, `scores` holds that many copies of the items (item i's at
    i, i + n, ...: `mixed`) and a drawn item brings all of them, so the interval counts items,
    not copies."""
    from scipy.stats import rankdata

    reals, fakes = np.flatnonzero(labels == 0), np.flatnonzero(labels == 1)
    if not len(reals) or not len(fakes):
        return np.full(resamples, np.nan)
    rng = np.random.default_rng(seed)
    drawn_reals, drawn_fakes = rng.choice(reals, (resamples, len(reals))), rng.choice(fakes, (resamples, len(fakes)))
    shifts = [copy * len(labels) for copy in range(copies)]
    drawn = np.concatenate(
        [drawn_reals + shift for shift in shifts] + [drawn_fakes + shift for shift in shifts], axis=1
    )
    # Mann-Whitney: the fakes' rank sum among all drawn items, ties shared.
    n_reals, n_fakes = copies * len(reals), copies * len(fakes)
    ranks = rankdata(scores[drawn], axis=1)
    fake_ranks = ranks[:, n_reals:].sum(axis=1)
    return (fake_ranks - n_fakes * (n_fakes + 1) / 2) / (n_fakes * n_reals)


def interval(draws: np.ndarray) -> list[float] | None:
    """The central 95% of bootstrap draws, or None when they are undefined."""
    if np.isnan(draws).any():
        return None
    return [float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))]


def _items_digest(samples: Sequence[Sample]) -> str:
    """Which items, in which order, a fold held out (their count and a digest of their paths)."""
    digest = hashlib.sha256("\n".join(str(s.path) for s in samples).encode()).hexdigest()[:16]
    return f"{len(samples)} items {digest}"


def bootstrap_seed(source: str) -> int:
    """The seed of a held-out source's bootstrap draws: its name alone, so two tables of the same
    folds (or a benchmark comparing two combinations on them) draw the same resamples."""
    return int(hashlib.sha256(f"bootstrap/{source}".encode()).hexdigest()[:8], 16)


def _add_intervals(
    folds: dict[str, FoldResult], labels: dict[str, np.ndarray], mean: dict[str, dict[str, Any]], copies: int = 1
) -> list[float]:
    """Each model's ROC AUC interval per fold and over the folds' mean (each fold resampled on its
    own, the draws averaged); returns the ensemble's mean draws (for `compare_tables`)."""
    means: dict[str, np.ndarray] = {}
    for name in mean:
        draws = [
            bootstrap_roc_auc(labels[s], f.probabilities[name], bootstrap_seed(s), copies=copies)
            for s, f in folds.items()
        ]
        for fold, fold_draws in zip(folds.values(), draws, strict=True):
            fold.metrics[name]["roc_auc_interval"] = interval(fold_draws)
        defined = [d for d in draws if not np.isnan(d).any()]
        means[name] = np.mean(defined, axis=0) if defined else np.full(BOOTSTRAP_RESAMPLES, np.nan)
        mean[name]["roc_auc_interval"] = interval(means[name])
    return [round(float(v), 6) for v in means[ENSEMBLE]]


def _mean(folds: dict[str, FoldResult], names: list[str]) -> dict[str, dict[str, float]]:
    return {
        name: {
            k: float(np.mean([f.metrics[name][k] for f in folds.values() if f.metrics[name][k] is not None]))
            for k in METRICS
        }
        for name in names
    }


def cross_source_table(
    recipe: Recipe,
    runs: Path,
    held_out: Sequence[str] | None = None,
    resume: bool = True,
    cnn_seed: int | None = None,
) -> dict[str, Any]:
    """The whole table: per held-out source, each member and the ensemble, on the held-out crops
    as they are, re-shared, and both mixed; then the means over sources; and the disagreement
    margin and false-alarm curve measured on all held-out items as they are. `cnn_seed` trains
    the CNN members from that seed instead of the recipe's, in the folds' `seed-N` subfolders
    (the recipe's own seed keeps the folds already trained)."""
    recipe, cnn_folder = seeded(recipe, cnn_seed)
    folds: dict[str, FoldResult] = {}
    reshared: dict[str, FoldResult] = {}
    mixed_folds: dict[str, FoldResult] = {}
    scored: dict[str, tuple[Scored, Scored, Scored]] = {}
    for source in held_out or recipe.sources:
        scored[source] = run_fold(recipe, source, runs, resume, cnn_folder)
        val, held, held_reshared = scored[source]
        weights, calibration, measure = recipe.combination.weights, recipe.ensemble_calibration, recipe.disagreement
        fitted = fold_calibration(val, weights, calibration)  # one fit serves the three held-out sets
        for results, held_set in ((folds, held), (reshared, held_reshared), (mixed_folds, mixed(held, held_reshared))):
            results[source] = fold_result(val, held_set, weights, calibration, measure, fitted, recipe.threshold_rule)
        print(
            f"held out {source}: ensemble ROC AUC {folds[source].metrics[ENSEMBLE]['roc_auc']:.4f}, "
            f"re-shared {reshared[source].metrics[ENSEMBLE]['roc_auc']:.4f}, "
            f"mixed {mixed_folds[source].metrics[ENSEMBLE]['roc_auc']:.4f}",
            file=sys.stderr,
        )
    names = [m["name"] for m in fold_members(recipe)] + [ENSEMBLE]
    spread = np.concatenate([f.spread for f in folds.values()])
    correct = np.concatenate([f.correct for f in folds.values()])
    margin = choose_disagreement_margin(spread, correct) if len(fold_members(recipe)) > 1 else None
    labels = {source: held.labels for source, (_, held, _) in scored.items()}
    trials = weight_trials(scored, [m["name"] for m in fold_members(recipe)])
    mean, reshared_mean, mixed_mean = _mean(folds, names), _mean(reshared, names), _mean(mixed_folds, names)
    return {
        "folds": {source: f.metrics for source, f in folds.items()},
        "mean": mean,
        "reshared_folds": {source: f.metrics for source, f in reshared.items()},
        "reshared_mean": reshared_mean,
        "mixed_folds": {source: f.metrics for source, f in mixed_folds.items()},
        "mixed_mean": mixed_mean,
        # The ensemble's mean ROC AUC over the folds, per bootstrap resample (paired between
        # tables of the same folds: `compare_tables`).
        "bootstrap": {
            "resamples": BOOTSTRAP_RESAMPLES,
            "held_out": {source: _items_digest(held.samples) for source, (_, held, _) in scored.items()},
            "mean_roc_auc": _add_intervals(folds, labels, mean),
            "mean_roc_auc_reshared": _add_intervals(reshared, labels, reshared_mean),
            "mean_roc_auc_mixed": _add_intervals(mixed_folds, labels, mixed_mean, MIXED_COPIES),
        },
        "reshare": asdict(ReshareSettings()),
        "weights": recipe.combination.weights,
        "ensemble_calibration": recipe.ensemble_calibration,
        "threshold_rule": recipe.threshold_rule,
        "members": [m["name"] for m in fold_members(recipe)],
        "cnn_seeds": cnn_seeds(recipe),
        "disagreement": recipe.disagreement,
        "disagreement_margin": margin,
        "disagreement_accuracy": _accuracy_by_spread(spread, correct),
        # How often a real face from a source the models never saw scores at least p: what the
        # crowd rule weighs and a `fake` verdict quotes (the recipe's `false_alarm_curve`), beside
        # how often a fake does (`hit_curve`, rule 109); how often a fake scores at most p, what
        # a `real` verdict quotes (`miss_curve`), beside how often a real face does.
        **{
            name: [list(point) for point in curve]
            for name, curve in score_curves(
                np.concatenate([f.real_probabilities for f in folds.values()]),
                np.concatenate([f.fake_probabilities for f in folds.values()]),
            ).items()
        },
        "weight_trials": trials,
        "weight_choice": weight_choice(trials) if trials else None,
    }


WEIGHT_GRID = (0.25, 0.5, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 16.0)
"""The first member's weights tried against the others' 1 each (the members alone are tried too)."""
WEIGHT_TIE = 0.005
"""`choose_weight` takes the smallest grid weight scoring within this of the best, so the CNNs,
much the stronger members in domain, keep as much say as the table allows."""


def weight_trials(
    scored: dict[str, tuple[Scored, Scored, Scored]], names: list[str], grid: Sequence[float] = WEIGHT_GRID
) -> list[dict[str, Any]]:
    """The mean held-out ensemble ROC AUC (as they are, re-shared, and mixed) of each weighting of the
    first member (the CLIP probe in the shipped recipe) against the others (weight 1 each), and
    of each member alone (`grid`: the first member's weights; the table's own by default): how the
    recipe's weights are chosen on this table; beside it, the same
    on the folds' validation mixes, what each weighting costs on the sources the folds trained on
    (rule 88). (A ROC AUC does not depend on how the ensemble's logit is calibrated, so the
    trials use a temperature alone.)"""
    if len(names) < 2:
        return []
    first, rest = names[0], names[1:]
    trials = [{n: 1.0 if n == only else 0.0 for n in names} for only in names]
    trials += [{first: w, **dict.fromkeys(rest, 1.0)} for w in grid]
    rows = []
    for weights in trials:
        aucs, reshared, both, known = [], [], [], []
        for val, held, held_reshared in scored.values():
            # One calibration per fold and weighting serves the four sets it scores.
            fitted = fold_calibration(val, weights)
            for column, items in (
                (aucs, held),
                (reshared, held_reshared),
                (both, mixed(held, held_reshared)),
                (known, val),
            ):
                column.append(fold_result(val, items, weights, fitted=fitted).metrics[ENSEMBLE]["roc_auc"])
        rows.append(
            {
                "weights": weights,
                "mean_roc_auc": float(np.mean(aucs)),
                "mean_roc_auc_reshared": float(np.mean(reshared)),
                "mean_roc_auc_mixed": float(np.mean(both)),  # reported, not (yet) used to choose
                "mean_roc_auc_validation": float(np.mean(known)),  # reported: the cost in domain
                "by_source": dict(zip(scored, aucs, strict=True)),
                "by_source_reshared": dict(zip(scored, reshared, strict=True)),
                "by_source_mixed": dict(zip(scored, both, strict=True)),
            }
        )
    return rows


def _grid_rows(trials: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The weight trials of the grid (every other member at weight 1), not the members alone."""
    return [row for row in trials if sum(w > 0 for w in row["weights"].values()) == len(row["weights"])]


def _grid_weight(row: dict[str, Any]) -> float:
    return next(iter(row["weights"].values()))


def _score(row: dict[str, Any], sources: Sequence[str]) -> float:
    """The mean over `sources` of the ensemble's held-out ROC AUC as they are and re-shared."""
    return float(np.mean([(row["by_source"][s] + row["by_source_reshared"][s]) / 2 for s in sources]))


def choose_weight(trials: list[dict[str, Any]], sources: Sequence[str]) -> float:
    """The first member's grid weight that scores best on `sources` (the mean of the two columns),
    the smallest within `WEIGHT_TIE` of the best."""
    rows = _grid_rows(trials)
    best = max(_score(row, sources) for row in rows)
    return min(_grid_weight(row) for row in rows if _score(row, sources) >= best - WEIGHT_TIE)


def weight_choice(trials: list[dict[str, Any]]) -> dict[str, Any]:
    """The weight `choose_weight` picks on every fold, and how well that choice travels: for each
    held-out source, the weight chosen on the other folds alone and its score on this one (a
    choice made on the whole table flatters itself; the nested score does not)."""
    sources = list(trials[0]["by_source"])
    by_weight = {_grid_weight(row): row for row in _grid_rows(trials)}
    nested = {}
    for source in sources if len(sources) > 1 else ():
        weight = choose_weight(trials, [s for s in sources if s != source])
        nested[source] = {"weight": weight, "score": _score(by_weight[weight], [source])}
    chosen = choose_weight(trials, sources)
    return {
        "chosen": chosen,
        "score": _score(by_weight[chosen], sources),
        "nested": nested,
        "nested_score": float(np.mean([n["score"] for n in nested.values()])) if nested else None,
        "scores": {str(weight): _score(row, sources) for weight, row in by_weight.items()},
        "validation": {str(weight): row.get("mean_roc_auc_validation") for weight, row in by_weight.items()},
    }


def _accuracy_by_spread(spread: np.ndarray, correct: np.ndarray) -> list[dict[str, float]]:
    """Ensemble accuracy on held-out items by how far the members disagreed (for the card)."""
    rows = []
    for low, high in ((0.0, 0.2), (0.2, 0.4), (0.4, 0.6), (0.6, 0.8), (0.8, 1.01)):
        inside = (spread >= low) & (spread < high)
        if inside.any():
            rows.append(
                {
                    "spread_from": low,
                    "spread_to": min(high, 1.0),
                    "n": int(inside.sum()),
                    "accuracy": float(correct[inside].mean()),
                }
            )
    return rows


def _cell(metrics: dict[str, Any], key: str) -> str:
    """A metric to three decimals; the ROC AUC with its bootstrap 95% interval when it has one."""
    bounds = metrics.get(f"{key}_interval")
    return f"{metrics[key]:.3f}" + (f" [{bounds[0]:.3f}, {bounds[1]:.3f}]" if bounds else "")


def read_baseline(path: Path) -> dict[str, Any]:
    """A table's JSON written by `cross-source --json`, checked to hold what `compare_tables`
    reads (read before any fold runs); anything else is a `DataError` saying what is wrong."""
    try:
        table = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise DataError(f"cannot read the baseline table {path}: {error}") from error
    try:
        draws = table["bootstrap"]
        for key in ("mean_roc_auc", "mean_roc_auc_reshared"):
            if len(draws[key]) != draws["resamples"]:
                raise ValueError(f"{key} holds {len(draws[key])} draws, not {draws['resamples']}")
        dict(draws["held_out"])
        float(table["mean"][ENSEMBLE]["roc_auc"]) + float(table["reshared_mean"][ENSEMBLE]["roc_auc"])
    except (KeyError, TypeError, ValueError) as error:
        raise DataError(
            f"the baseline {path} is not a cross-source table with bootstrap draws ({error!r}): "
            "remake it with this version's cross-source --json"
        ) from error
    return table


def compare_tables(table: dict[str, Any], baseline: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The ensemble's mean held-out ROC AUC of `table` minus `baseline`'s (as `read_baseline`
    checks it), as they are, re-shared, the mean of the two and (when both tables have it) mixed,
    each with the 95% interval of the paired bootstrap differences: both tables' folds resampled
    alike (the same held-out items, so the same draws). A `DataError` when the tables do not hold
    the same folds and items."""
    ours, theirs = table["bootstrap"], baseline["bootstrap"]
    if (ours["resamples"], ours["held_out"]) != (theirs["resamples"], theirs["held_out"]):
        raise DataError(
            f"the tables hold other folds or items ({ours['held_out']} against {theirs['held_out']}): no paired comparison"
        )
    columns = {
        "as_they_are": ("mean", "mean_roc_auc"),
        "reshared": ("reshared_mean", "mean_roc_auc_reshared"),
    }
    # Tables made before the mixed figure existed have none to compare.
    if "mean_roc_auc_mixed" in ours and "mean_roc_auc_mixed" in theirs:
        columns["mixed"] = ("mixed_mean", "mean_roc_auc_mixed")
    out: dict[str, dict[str, Any]] = {}
    draws = {}
    for column, (mean_key, draws_key) in columns.items():
        draws[column] = np.asarray(ours[draws_key]) - np.asarray(theirs[draws_key])
        difference = table[mean_key][ENSEMBLE]["roc_auc"] - baseline[mean_key][ENSEMBLE]["roc_auc"]
        out[column] = {"difference": difference, "interval": interval(draws[column])}
    out["mean_of_the_two"] = {
        "difference": (out["as_they_are"]["difference"] + out["reshared"]["difference"]) / 2,
        "interval": interval((draws["as_they_are"] + draws["reshared"]) / 2),
    }
    return out


def table_markdown(table: dict[str, Any]) -> str:
    """The table as Markdown: one row per held-out source and model, the ensemble first, with
    the held-out crops as they are and re-shared side by side, then the ROC AUC of both mixed;
    each ROC AUC with its 95% interval."""
    names = [ENSEMBLE, *table["members"]]
    columns = ("ROC AUC", "AP", "EER", "ECE", "accuracy at threshold")
    lines = [
        f"| held-out source | model | n | {' | '.join(columns)} | re-shared: {' | '.join(columns)} | mixed: ROC AUC |",
        "|---|---|---|" + "---|" * (2 * len(columns) + 1),
    ]

    def cells(m: dict[str, Any], keys: Sequence[str] = METRICS) -> str:
        return " | ".join("-" if m.get(k) is None else _cell(m, k) for k in keys)

    for source, fold in table["folds"].items():
        for name in names:
            label = f"**{name}**" if name == ENSEMBLE else name
            again, both = table["reshared_folds"][source][name], table["mixed_folds"][source][name]
            lines.append(
                f"| {source} | {label} | {fold[name]['n']} | {cells(fold[name])} | {cells(again)} | {cells(both, ['roc_auc'])} |"
            )
    for name in names:
        label = f"**{name}**" if name == ENSEMBLE else name
        lines.append(
            f"| **mean** | {label} | | {cells(table['mean'][name])} | {cells(table['reshared_mean'][name])} "
            f"| {cells(table['mixed_mean'][name], ['roc_auc'])} |"
        )
    if table.get("weight_choice"):
        lines += ["", weight_choice_markdown(table["weight_choice"], table["members"])]
    return "\n".join(lines)


def weight_choice_markdown(choice: dict[str, Any], members: Sequence[str]) -> str:
    """The weight trials' scores, the weight `choose_weight` picks, and its nested check."""
    first, rest = members[0], ", ".join(members[1:])

    validation = choice.get("validation", {})  # tables made before rule 88 have none

    def trial(weight: str, score: float) -> str:
        text = f"{float(weight):g}: {score:.3f}"
        text = f"**{text}**" if float(weight) == choice["chosen"] else text
        return f"{text} ({validation[weight]:.3f})" if validation.get(weight) is not None else text

    scores = ", ".join(trial(weight, score) for weight, score in choice["scores"].items())
    known = " (in brackets, on the folds' validation mixes: the cost in domain)" if validation else ""
    lines = [
        f"Weight of {first} against {rest} (1 each), ensemble's mean held-out ROC AUC, mean of the two columns"
        f"{known}: {scores}; chosen (the smallest within {WEIGHT_TIE} of the best): {choice['chosen']:g}."
    ]
    if choice["nested"]:
        per_fold = ", ".join(f"{s} {n['weight']:g} → {n['score']:.3f}" for s, n in choice["nested"].items())
        lines.append(
            f"Chosen on the other folds and scored on each: {per_fold}; mean {choice['nested_score']:.3f} "
            f"(chosen on all folds: {choice['score']:.3f})."
        )
    return "\n".join(lines)


SPREAD_COLUMNS = {
    "as they are": ("folds", "mean"),
    "re-shared": ("reshared_folds", "reshared_mean"),
    "mixed": ("mixed_folds", "mixed_mean"),
}
"""Column -> a table's keys for its folds and its mean over folds."""


def _spread(values: Sequence[float]) -> dict[str, Any]:
    return {"values": list(values), "mean": float(np.mean(values)), "range": float(np.ptp(values))}


def seed_spread(tables: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """How far the CNNs' training seed moves a recipe's table: given its tables made with
    different seeds, each ROC AUC's values, mean and range over them, per column, held-out
    source ("mean": over sources) and model, and the same for the weight trials' scores. The
    ensemble's range over seeds is the floor a difference between two recipes, each trained with
    one seed, must clear to say something about the recipes."""
    columns: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
    for column, (folds_key, mean_key) in SPREAD_COLUMNS.items():
        figures: dict[tuple[str, str], list[float]] = {}
        for table in tables:
            rows = {**table.get(folds_key, {}), "mean": table.get(mean_key, {})}
            for source, models in rows.items():
                for model, metrics in models.items():
                    figures.setdefault((source, model), []).append(metrics["roc_auc"])
        for (source, model), values in figures.items():
            if len(values) == len(tables):
                columns.setdefault(column, {}).setdefault(source, {})[model] = _spread(values)
    trials: dict[str, list[float]] = {}
    known: dict[str, list[float]] = {}
    for table in tables:
        for weight, score in (table.get("weight_choice") or {}).get("scores", {}).items():
            trials.setdefault(weight, []).append(score)
        for weight, auc in (table.get("weight_choice") or {}).get("validation", {}).items():
            if auc is not None:
                known.setdefault(weight, []).append(auc)
    against = [table.get("against_baseline") for table in tables]
    return {
        "cnn_seeds": [table.get("cnn_seeds") for table in tables],
        "columns": columns,
        # The ensemble's mean ROC AUC minus its baseline's, per seed (each paired on the same items).
        "against_baseline": {
            column: _spread([differences[column]["difference"] for differences in against]) for column in against[0]
        }
        if against and all(against)
        else {},
        "weight_trials": {w: _spread(values) for w, values in trials.items() if len(values) == len(tables)},
        "weight_trials_validation": {w: _spread(v) for w, v in known.items() if len(v) == len(tables)},
        "weight_chosen": [(table.get("weight_choice") or {}).get("chosen") for table in tables],
    }


def seed_spread_text(spread: dict[str, Any]) -> str:
    """`seed_spread` as text: one line per figure with each table's value, their mean and range."""
    lines: list[str] = []
    for column, sources in spread["columns"].items():
        lines += ["", f"{column}: held-out ROC AUC per seed | mean | range"]
        for source, models in sorted(sources.items()):
            for model, figure in sorted(models.items()):
                each = " / ".join(f"{value:.3f}" for value in figure["values"])
                lines.append(f"  {source:10} {model:16} {each} | {figure['mean']:.3f} | {figure['range']:.3f}")
    if spread["weight_trials"]:
        known = spread.get("weight_trials_validation", {})
        lines += [
            "",
            "weight trials (the first member's weight against the others' 1 each; mean of the two columns"
            + ("; then the folds' validation mixes, the cost in domain)" if known else ")"),
        ]
        for weight, figure in sorted(spread["weight_trials"].items(), key=lambda item: float(item[0])):
            each = " / ".join(f"{value:.3f}" for value in figure["values"])
            line = f"  {float(weight):>5g}  {each} | {figure['mean']:.3f} | {figure['range']:.3f}"
            if weight in known:
                line += f"  ||  {' / '.join(f'{v:.3f}' for v in known[weight]['values'])} | {known[weight]['mean']:.3f}"
            lines.append(line)
        lines.append("  chosen per seed: " + " / ".join(f"{chosen:g}" for chosen in spread["weight_chosen"] if chosen))
    if spread["against_baseline"]:
        lines += ["", "ensemble's mean held-out ROC AUC minus the baseline's, per seed | mean | range"]
        for column, figure in spread["against_baseline"].items():
            each = " / ".join(f"{value:+.3f}" for value in figure["values"])
            lines.append(f"  {column.replace('_', ' '):16} {each} | {figure['mean']:+.3f} | {figure['range']:.3f}")
    return "\n".join(lines).lstrip("\n")
