"""The recipe as data (`models/recipe.json`): which members train on which sources, with what
settings, and how they combine; and how one member of it is trained and scores samples. The
shipped ensemble (`train-ensemble --recipe`) and every fold of the cross-source table train their
members through here."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.engine.clip import BACKBONE, BLOCKS, INPUT_SIDE, PATCH_GRID, PATCH_MAX, ClipProbe, blocks_in
from pipeline.engine.ensemble import CLIP_PROBE, KERAS, crop_logits, read_curve
from pipeline.engine.verdict import RANGE, checked_measure
from pipeline.errors import DataError
from pipeline.training.augment import AugmentSettings
from pipeline.training.calibration import CALIBRATIONS, TEMPERATURE, YOUDEN, checked_threshold_rule
from pipeline.training.data import Sample, balanced_subset, read_face
from pipeline.training.features import clip_features, patch_tokens
from pipeline.training.probe import changed_patches, fit_patch_probe, fit_per_source_probe, fit_probe
from pipeline.training.sources import SOURCES, augmented_samples, self_blended_samples, source_samples

PROBE_FILE = "clip_probe.json"
PROBE_SETTINGS = frozenset(
    {
        "kind",
        "name",
        "feature",
        "block",
        "blocks",
        "regularization",
        "train_per_class",
        "augmented_views",
        "augmented_settings",
        "self_blended_views",
        "part_blended_views",
        "augment_self_blends",
        "augment_reals_only",
        "self_blend_blur",
        "self_blend_resample",
        "self_blend_misplacement",
        "source_fakes",
        "per_source",
    }
)
"""What a probe member of a recipe may set (`train_recipe_member` reads these)."""


def cnn_settings() -> frozenset[str]:
    """What a CNN member of a recipe (or the folds' `cross_source.keras` overrides) may set: the
    fields of `TrainConfig` but its output folder, which the runs folder decides."""
    from pipeline.training.train import TrainConfig

    return frozenset({f.name for f in fields(TrainConfig)} - {"out_dir"} | {"kind", "flip_average"})


def _check_settings(settings: dict[str, Any], known: frozenset[str], what: str) -> None:
    # A misspelt setting would be ignored, or fail only after hours of training.
    if unknown := sorted(set(settings) - known):
        raise ValueError(f"{what}: unknown setting(s) {', '.join(map(repr, unknown))}")


@dataclass(frozen=True)
class Combination:
    """How the members are weighed, with what the cross-source table measured for that weighing:
    the recipe's own (the ensemble's: videos, and pictures without a weighing of their own) and its
    `pictures` (rule 79: pictures weigh the CLIP probe more than videos do)."""

    weights: dict[str, float]
    """Member name -> weight of its calibrated logit in the ensemble (chosen on the cross-source
    table); empty: `fit_ensemble` chooses members by greedy forward selection."""
    disagreement_margin: float | None = None
    false_alarm_curve: tuple[tuple[float, float], ...] = ()
    """(probability, share of real held-out faces scored at least that), from the cross-source
    table; empty: the ensemble uses its validation reals' curve."""
    miss_curve: tuple[tuple[float, float], ...] = ()
    """(probability, share of fake held-out faces scored at most that), from the same table;
    empty: the ensemble uses its validation fakes' curve."""
    hit_curve: tuple[tuple[float, float], ...] = ()
    """(probability, share of fake held-out faces scored at least that), from the same table
    (rule 109); empty: the ensemble uses its validation fakes' curve."""
    correct_rejection_curve: tuple[tuple[float, float], ...] = ()
    """(probability, share of real held-out faces scored at most that), from the same table
    (rule 109); empty: the ensemble uses its validation reals' curve."""

    @staticmethod
    def from_json(raw: dict[str, Any], weights: dict[str, float]) -> Combination:
        """A weighing read from the recipe (the top level, or its `pictures` block), its `weights`
        as given."""
        return Combination(
            weights={str(name): float(weight) for name, weight in weights.items()},
            disagreement_margin=raw.get("disagreement_margin"),
            false_alarm_curve=read_curve(raw.get("false_alarm_curve", ())),
            miss_curve=read_curve(raw.get("miss_curve", ())),
            hit_curve=read_curve(raw.get("hit_curve", ())),
            correct_rejection_curve=read_curve(raw.get("correct_rejection_curve", ())),
        )

    @staticmethod
    def pictures_from_json(raw: dict[str, Any], combination: Combination) -> Combination:
        """The recipe's `pictures` block; its weights must weigh exactly the members the recipe's
        own `combination` weighs (the ensemble holds one set of members), each above 0."""
        chosen = sorted(name for name, weight in combination.weights.items() if weight > 0)
        pictures = Combination.from_json(raw, raw["weights"])
        if sorted(pictures.weights) != chosen or min(pictures.weights.values()) <= 0:
            raise ValueError(f"pictures.weights must weigh {', '.join(chosen)}, each above 0")
        return pictures


@dataclass(frozen=True)
class Recipe:
    """What is trained, on what, and how members combine."""

    sources: tuple[str, ...]
    members: tuple[dict[str, Any], ...]
    """Each: {"kind": "keras" | "clip_probe", "name": ..., and its settings}."""
    combination: Combination
    """How the ensemble weighs its members (videos, and pictures without `pictures`); the
    cross-source table is made with its weights."""
    aggregation: str
    val_per_class: int
    cross_source: dict[str, Any]
    """What the folds train: `members` (names; default all) and `keras` (overrides of the CNN
    members' settings, for cheaper training)."""
    held_out_per_class: int
    ensemble_calibration: str = TEMPERATURE
    """How the ensemble's logit is calibrated on validation (one of `CALIBRATIONS`), in the
    shipped ensemble and in the cross-source folds alike."""
    disagreement: str = RANGE
    """How the members' disagreement is measured (`verdict.DISAGREEMENTS`, rule 95), in the folds'
    disagreement margin and in the shipped ensemble alike."""
    threshold_rule: str = YOUDEN
    """Where the threshold is placed on the calibrated probability (`calibration.THRESHOLD_RULES`,
    rule 100), in the folds and in the shipped ensemble alike."""
    pictures: Combination | None = None
    """How a picture's faces are weighed where that differs from a video's (`EnsembleSpec.pictures`);
    the cross-source table is made with `combination`'s weights, a table of these with
    `cross-source --pictures` (the same folds)."""

    @property
    def picture_combination(self) -> Combination:
        """How a picture's faces are weighed: `pictures`, else the recipe's own combination."""
        return self.pictures or self.combination

    def weighed_as_pictures(self) -> Recipe:
        """The same recipe (the same folds and members) with a picture's weighing as its own, for
        the tables and benchmarks that score what the engine decides for a picture."""
        return replace(self, combination=self.picture_combination, pictures=None)

    @staticmethod
    def load(path: Path) -> Recipe:
        """Read a recipe file; a missing or malformed one is a `DataError` naming what is wrong."""
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise DataError(f"cannot read the recipe {path}: {error}") from error
        try:
            members = tuple(raw["members"])
            folds = raw.get("cross_source", {}).get("members")
            cnn = cnn_settings()
            _check_settings(raw.get("cross_source", {}).get("keras", {}), cnn, "cross_source.keras")
            earlier_cnns: list[str] = []
            for member in members:
                if member.get("kind", KERAS) not in (KERAS, CLIP_PROBE):
                    raise ValueError(f"unknown member kind {member.get('kind')!r}")
                name = member.get("name") or member.get("backbone")
                known = PROBE_SETTINGS if member.get("kind") == CLIP_PROBE else cnn
                _check_settings(member, known, f"member {name!r}")
                # A CNN started from another is trained after it, from its runs folder: caught
                # here rather than after hours of training the members before it.
                if init_from := member.get("init_from"):
                    if init_from not in earlier_cnns:
                        raise ValueError(f"init_from {init_from!r} is not a CNN member listed before it")
                    if folds is not None and name in folds and init_from not in folds:
                        raise ValueError(f"the folds train {name!r} but not {init_from!r}, which it starts from")
                if not isinstance(member.get("source_fakes", True), bool):
                    raise ValueError("source_fakes must be true or false")
                if member.get("kind", KERAS) == KERAS:
                    earlier_cnns.append(name)
                    if (
                        member.get("source_fakes") is False
                        and "self_blend" in member
                        and float(member["self_blend"]) <= 0
                    ):
                        raise ValueError("source_fakes: false needs self_blend: the CNN would see no fake")
                if member.get("kind") == CLIP_PROBE:
                    member_blocks(member)
                    for views in ("augmented_views", "self_blended_views", "part_blended_views"):
                        if int(member.get(views, 0)) < 0:
                            raise ValueError(f"{views} must be 0 or more")
                    AugmentSettings.from_json(member.get("augmented_settings", {}))
                    # A patch probe learns which patches were changed: a degraded view changes them all.
                    if member.get("feature") == PATCH_MAX and int(member.get("augmented_views", 0)):
                        raise ValueError("a patch_max probe learns which patches were changed: no augmented_views")
                    if (
                        member.get("source_fakes") is False
                        and int(member.get("self_blended_views", 0)) + int(member.get("part_blended_views", 0)) < 1
                    ):
                        raise ValueError(
                            "source_fakes: false needs self_blended_views or part_blended_views: the probe would see no fake"
                        )
                    for flag in (
                        "augment_self_blends",
                        "augment_reals_only",
                        "self_blend_blur",
                        "self_blend_resample",
                        "per_source",
                    ):
                        if not isinstance(member.get(flag, False), bool):
                            raise ValueError(f"{flag} must be true or false")
                    misplacement = member.get("self_blend_misplacement", 1.0)
                    # A bool is an int to Python: `true` would read as 1 and say nothing.
                    if isinstance(misplacement, bool) or not isinstance(misplacement, (int, float)) or misplacement < 0:
                        raise ValueError("self_blend_misplacement must be a number, 0 or more")
                    if member.get("augment_self_blends") and (
                        int(member.get("augmented_views", 0)) < 1 or int(member.get("self_blended_views", 0)) < 1
                    ):
                        raise ValueError("augment_self_blends needs augmented_views and self_blended_views")
                    if member.get("augment_reals_only") and (
                        member.get("augment_self_blends") or int(member.get("augmented_views", 0)) < 1
                    ):
                        raise ValueError("augment_reals_only needs augmented_views and no augment_self_blends")
                    if member.get("per_source") and member.get("feature") == PATCH_MAX:
                        raise ValueError("per_source fits a probe on one feature per crop: not a patch_max probe")
            calibration = raw.get("ensemble_calibration", TEMPERATURE)
            if calibration not in CALIBRATIONS:
                raise ValueError(f"unknown ensemble_calibration {calibration!r}: one of {', '.join(CALIBRATIONS)}")
            disagreement = checked_measure(raw.get("disagreement", RANGE))
            threshold_rule = checked_threshold_rule(raw.get("threshold_rule", YOUDEN))
            weights = raw.get("weights") or {m.get("name") or m["backbone"]: 1.0 for m in members}
            combination = Combination.from_json(raw, weights)
            return Recipe(
                sources=tuple(raw.get("sources", SOURCES)),
                members=tuple({"kind": KERAS, **m, "name": m.get("name") or m["backbone"]} for m in members),
                combination=combination,
                aggregation=raw.get("aggregation", "mean"),
                val_per_class=int(raw.get("val_per_class", 500)),
                cross_source=dict(raw.get("cross_source", {})),
                held_out_per_class=int(raw.get("held_out_per_class", 1000)),
                ensemble_calibration=calibration,
                disagreement=disagreement,
                threshold_rule=threshold_rule,
                # An empty block is a mistake to say, not a recipe without one.
                pictures=Combination.pictures_from_json(raw["pictures"], combination)
                if raw.get("pictures") is not None
                else None,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise DataError(f"the recipe {path} is malformed: {error!r}") from error


@dataclass(frozen=True)
class TrainedMember:
    """A trained member's file and what the engine needs to know about it."""

    name: str
    kind: str
    path: Path
    """The Keras model, or the probe's JSON."""
    backbone: str
    input_size: int
    flip_average: bool = False


def samples_of(sources: Sequence[str], split: str | None, per_class: int | None, seed: int = 0) -> list[Sample]:
    """The samples of several sources, at most `per_class` per class and source."""
    chosen: list[Sample] = []
    for source in sources:
        found = source_samples(source, split)
        chosen += balanced_subset(found, per_class, seed) if per_class else found
    return chosen


def member_blocks(member: dict[str, Any]) -> tuple[int, ...]:
    """The CLIP blocks a probe member reads (`blocks_in`: its `blocks`, side by side, rule 92, or
    its one `block`); a ValueError naming the member where they are malformed or both given."""
    try:
        return blocks_in(member, member.get("feature", "cls"))
    except ValueError as error:
        raise ValueError(f"member {member.get('name')!r}: {error}") from error


def probe_rows(samples: Sequence[Sample], feature: str, blocks: Sequence[int]) -> np.ndarray:
    """(N, 768 x len(blocks)) cached CLIP features of prepared crops after each of `blocks`, side
    by side in that order, as a probe on them reads them."""
    return np.concatenate([clip_rows(samples, feature, block) for block in blocks], axis=1)


def clip_rows(samples: Sequence[Sample], feature: str, block: int = BLOCKS) -> np.ndarray:
    """Cached CLIP features (after `block`) of prepared crops, in the order of `samples`."""
    by_folder: dict[Path, list[int]] = {}
    for i, sample in enumerate(samples):
        by_folder.setdefault(sample.path.parent.parent, []).append(i)
    out: np.ndarray | None = None
    for folder, rows in by_folder.items():
        values = clip_features(folder, [samples[i].path.relative_to(folder).as_posix() for i in rows], feature, block)
        if out is None:
            out = np.zeros((len(samples), values.shape[1]), np.float32)
        out[rows] = values
    return out if out is not None else np.zeros((0, 768), np.float32)


def keras_logits(
    model_path: Path, input_size: int, samples: Sequence[Sample], flip_average: bool, batch: int = 64
) -> np.ndarray:
    """A saved member's logits on crops, read and scored as the engine scores them."""
    import keras
    from tqdm import tqdm

    model = keras.models.load_model(model_path, safe_mode=True, compile=False)
    out = []
    for start in tqdm(
        range(0, len(samples), batch), desc=f"logits {model_path.parent.name}", file=sys.stderr, leave=False
    ):
        crops = np.stack([read_face(s.path, 224) for s in samples[start : start + batch]])
        out.append(crop_logits(model, crops, input_size, batch, flip_average))
    return np.concatenate(out) if out else np.zeros(0)


def pseudo_fakes(member: dict[str, Any], samples: Sequence[Sample]) -> list[list[Sample]]:
    """The self-blended copies a probe member's settings ask for of the real samples: one list
    per view, each holding one copy of every real sample, in order."""
    # `self_blend_blur` / `self_blend_resample: false` leave their pasted faces unblurred / not
    # resampled, and `self_blend_misplacement` scales how far they are moved (rules 48, 50, 53-54).
    blur, resample = bool(member.get("self_blend_blur", True)), bool(member.get("self_blend_resample", True))
    misplacement = float(member.get("self_blend_misplacement", 1.0))
    # `part_blended_views`: pseudo-fakes of one part of the face each (eyes, nose or mouth), as a
    # photo edit replaces it (rule 66).
    return [
        self_blended_samples(samples, view, blur, resample, misplacement, parts)
        for parts, key in ((False, "self_blended_views"), (True, "part_blended_views"))
        for view in range(int(member.get(key, 0)))
    ]


def patch_training_set(member: dict[str, Any], sources: Sequence[str]) -> tuple[list[Sample], np.ndarray]:
    """What a patch probe (`PATCH_MAX`) trains on, from `sources`' train splits: the real crops,
    every patch real; unless `source_fakes: false`, the sources' fake crops, every patch fake
    (the crop is tight, mostly face; rule 73); and the reals' self-blends, a patch fake where its
    blend changed it (`changed_patches`). With the (N, 196) patch labels."""
    clean = samples_of(sources, "train", member.get("train_per_class"))
    reals = [s for s in clean if s.label == 0]
    fakes = [s for s in clean if s.label == 1] if member.get("source_fakes", True) else []
    samples = reals + fakes
    labels = [np.zeros((len(reals), PATCH_GRID**2), bool), np.ones((len(fakes), PATCH_GRID**2), bool)]
    for copies in pseudo_fakes(member, reals):
        samples += copies
        labels.append(
            np.stack(
                [
                    changed_patches(read_face(real.path, INPUT_SIDE), read_face(blend.path, INPUT_SIDE))
                    for real, blend in zip(reals, copies, strict=True)
                ]
            )
        )
    return samples, np.concatenate(labels)


def fitted_patch_probe(member: dict[str, Any], sources: Sequence[str]) -> ClipProbe:
    """A patch probe member (`PATCH_MAX`) fitted on `patch_training_set`'s crops and labels."""
    (block,) = member_blocks(member)
    train, patch_labels = patch_training_set(member, sources)
    print(
        f"{member['name']}: {len(train)} crops, {patch_labels.mean():.1%} of their patches labelled fake",
        file=sys.stderr,
    )
    tokens = patch_tokens([s.path for s in train], block)
    return fit_patch_probe(tokens, patch_labels, float(member.get("regularization", 1.0)), block)


def probe_training_samples(member: dict[str, Any], sources: Sequence[str]) -> list[Sample]:
    """What a probe member of a recipe trains on, from `sources`' train splits: their crops (or
    only the real ones), degraded views and self-blended pseudo-fakes, as its settings say."""
    clean = samples_of(sources, "train", member.get("train_per_class"))
    # `source_fakes: false` keeps only the real crops (and what is made from them below): the
    # probe then learns no trace of the sources' own generators, their file histories included.
    base = list(clean) if member.get("source_fakes", True) else [s for s in clean if s.label == 0]
    # Pseudo-fakes made from its own real crops (self-blended, as the CNNs train on; never from
    # a degraded view, which has no face mesh): a blending boundary no generator in
    # particular leaves; chosen on the cross-source table.
    blends = [v for copies in pseudo_fakes(member, clean) for v in copies]
    # Degraded views of the same crops, each under its crop's label, meant to keep the probe off
    # fine pixel statistics a re-shared upload no longer has: by default as the CNNs train on
    # them; `augmented_settings` narrows them (e.g. to recompression only). With
    # `augment_self_blends` the pseudo-fakes are degraded alike, so that a changed picture is
    # no more often fake than an untouched one. With `augment_reals_only` only the real crops
    # are degraded, against a cue that comes with the fake label in the training data (rule 55:
    # most sources' fakes are softer than their reals). See the model card.
    settings = AugmentSettings.from_json(member.get("augmented_settings", {}))
    degraded_from = base + blends if member.get("augment_self_blends") else base
    if member.get("augment_reals_only"):
        degraded_from = [s for s in base if s.label == 0]
    degraded = [
        v
        for view in range(int(member.get("augmented_views", 0)))
        for v in augmented_samples(degraded_from, view, settings)
    ]
    return base + degraded + blends


def train_recipe_member(
    member: dict[str, Any],
    sources: Sequence[str],
    runs: Path,
    overrides: dict[str, Any] | None = None,
    resume: bool = True,
) -> TrainedMember:
    """Train one member of a recipe on `sources` into `runs/NAME` (a finished run is reused
    with `resume`)."""
    name = member["name"]
    if member["kind"] == CLIP_PROBE:
        feature = member.get("feature", "cls")
        blocks = member_blocks(member)
        if feature == PATCH_MAX:
            probe = fitted_patch_probe(member, sources)
        else:
            train = probe_training_samples(member, sources)
            # `per_source`: the mean of one probe per source (rule 86), else one pooled fit.
            fit = fit_per_source_probe if member.get("per_source") else fit_probe
            probe = fit(
                probe_rows(train, feature, blocks),
                np.asarray([s.label for s in train]),
                [s.source for s in train],
                feature,
                float(member.get("regularization", 1.0)),
                blocks,
            )
        path = runs / name / PROBE_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(probe.to_json()) + "\n")
        return probe_member(name, path)
    from pipeline.training.train import TrainConfig, train_member

    fields = {k: v for k, v in member.items() if k not in ("kind", "flip_average", "init_from", "data")}
    fields.update(overrides or {})
    init_from = runs / member["init_from"] / "model.keras" if member.get("init_from") else None
    data = tuple(member.get("data") or sources)
    config = TrainConfig(**{**fields, "data": data, "out_dir": runs / name, "init_from": init_from})
    result = train_member(config, resume=resume)
    print(f"{name}: best validation ROC AUC {result.best_val_auc:.4f}", file=sys.stderr)
    return TrainedMember(
        name, KERAS, result.model_path, config.backbone, config.input_size, bool(member.get("flip_average"))
    )


def probe_member(name: str, path: Path) -> TrainedMember:
    """A trained CLIP probe member (its backbone and input size are the encoder's)."""
    return TrainedMember(name, CLIP_PROBE, path, BACKBONE, INPUT_SIDE)


def member_at(member: dict[str, Any], path: Path) -> TrainedMember:
    """A recipe member (its entry in the recipe) trained into the file `path`, with what the
    engine needs to score it."""
    from pipeline.training.train import TrainConfig

    if member["kind"] == CLIP_PROBE:
        return probe_member(member["name"], path)
    input_size = int(member.get("input_size", TrainConfig.input_size))
    return TrainedMember(member["name"], KERAS, path, member["backbone"], input_size, bool(member.get("flip_average")))


def kept_member(member: dict[str, Any], models_dir: Path) -> TrainedMember:
    """A recipe member taken as it is from a models folder (its file there), not trained again:
    e.g. the CNNs kept while the probe and the calibration are refitted."""
    name = member["name"]
    path = models_dir / (f"{name}.json" if member["kind"] == CLIP_PROBE else f"{name}.keras")
    if not path.is_file():
        raise DataError(f"cannot keep the member {name!r}: {path} does not exist")
    # Loaded once here, so a broken file is one line before any member trains, not after.
    try:
        if member["kind"] == CLIP_PROBE:
            ClipProbe.from_json(json.loads(path.read_text()))
        else:
            import keras

            keras.models.load_model(path, safe_mode=True, compile=False)
    except (KeyError, TypeError, ValueError, OSError) as error:
        raise DataError(f"cannot keep the member {name!r}: {path} does not load ({error})") from error
    return member_at(member, path)


def probe_logits(probe: ClipProbe, samples: Sequence[Sample]) -> np.ndarray:
    """A CLIP probe's raw logits on samples, from the cached features (a patch probe's from the
    cached patch tokens, 512 crops at a time: 294 KB of tokens a crop)."""
    if probe.feature != PATCH_MAX:
        return probe.logits_of(probe_rows(samples, probe.feature, probe.blocks))
    return np.concatenate(
        [
            probe.logits_of(patch_tokens([s.path for s in samples[start : start + 512]], probe.block))
            for start in range(0, len(samples), 512)
        ]
        or [np.zeros(0)]
    )


def trained_logits(trained: TrainedMember, samples: Sequence[Sample], flip_average: bool | None = None) -> np.ndarray:
    """A trained member's raw logits on samples, as the engine computes them."""
    if trained.kind == CLIP_PROBE:
        return probe_logits(ClipProbe.from_json(json.loads(trained.path.read_text())), samples)
    flip = trained.flip_average if flip_average is None else flip_average
    return keras_logits(trained.path, trained.input_size, samples, flip)
