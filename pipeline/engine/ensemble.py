"""Third stage: faces -> scores. Loads the trained ensemble from `models/` and scores face crops
with every member, keeping each member's calibrated probability and the ensemble's."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from pipeline.config import DEFAULT_AGGREGATION
from pipeline.engine.clip import BLOCKS, PATCH_MAX, ClipEncoder, ClipFeatures, ClipProbe
from pipeline.engine.lite import cached_lite_model, check_runtime, convert_to_lite
from pipeline.engine.media import sha256_file
from pipeline.engine.verdict import RANGE, UNSEEN_SOURCES, VALIDATION_MIX, DecisionRule, checked_measure
from pipeline.errors import ModelsMissingError, PipelineError
from pipeline.results import GRADCAM_MAP, PATCH_PUSH_MAP, PATCH_SCORE_MAP, PATCH_SHARE_MAP

ENSEMBLE_FILE = "ensemble.json"
HELD_OUT_CURVES = {
    "false_alarm_curve_from": "cross-source held-out reals",
    "miss_curve_from": "cross-source held-out fakes",
    "hit_curve_from": "cross-source held-out fakes",
    "correct_rejection_curve_from": "cross-source held-out reals",
}
"""What `fit_ensemble` records in the validation metrics when a curve came from the cross-source
table's held-out sources (else "validation reals" / "validation fakes")."""
ENSEMBLE_FORMAT = 1
KERAS, CLIP_PROBE = "keras", "clip_probe"
PICTURE = "image"
"""The media kind (`pipeline.engine.media.MediaKind`) that `EnsembleSpec.pictures` scores."""


@dataclass(frozen=True)
class MemberSpec:
    """One model of the ensemble as described in `ensemble.json`."""

    name: str
    file: str
    """The member's file in the models folder: a Keras model, or a CLIP probe's JSON."""
    backbone: str
    input_size: int
    weight: float = 1.0
    temperature: float = 1.0
    """Calibration: the member's probability is sigmoid(logit / temperature)."""
    gradcam_layer: str = ""
    """Layer whose feature map Grad-CAM explains (the backbone's last convolution)."""
    sha256: str = ""
    kind: str = "keras"
    """`keras`: a CNN scoring the crop; `clip_probe`: a linear probe on CLIP ViT-B/16 features
    (the encoder is read from its package, the probe from `file`)."""

    @property
    def costly(self) -> bool:
        """Whether the engine limits how many faces per person this member scores (CLIP takes
        about 0.15 s a face on 2 cores, the CNNs about 0.02 s)."""
        return self.kind == CLIP_PROBE


@dataclass(frozen=True)
class EnsembleSpec:
    """The ensemble: its members, how their scores combine, and the decision rule.

    Members are combined in logit space: the ensemble logit is the weighted mean of the members'
    calibrated logits, then scaled by the ensemble's own temperature and shifted by its offset.
    """

    members: tuple[MemberSpec, ...]
    temperature: float = 1.0
    offset: float = 0.0
    """Added to the ensemble logit after the temperature (0: calibrated by a temperature alone, as
    every release up to v7.1; see the recipe's `ensemble_calibration`)."""
    threshold: float = 0.5
    uncertain_low: float = 0.4
    uncertain_high: float = 0.6
    aggregation: str = DEFAULT_AGGREGATION
    flip_average: bool = False
    """Each CNN member's logit is the mean of its logits for the crop and its mirror image (chosen
    on validation by `fit_ensemble`; the temperatures are fitted to these averaged logits)."""
    disagreement_margin: float | None = None
    """A person is `uncertain` when the members' probabilities for them disagree by more than this,
    as `disagreement` measures it (measured on held-out sources, where such disagreement meant the
    ensemble was often wrong); None: never."""
    disagreement: str = RANGE
    """How the members' disagreement is measured (`verdict.DISAGREEMENTS`; rule 95). Ensembles made
    before it was a setting measured the largest gap between two members (`range`)."""
    false_alarm_curve: tuple[tuple[float, float], ...] = ()
    """(probability, share of real faces the ensemble scored at least that high), rising
    probabilities, measured on the real faces of held-out sources (else of the validation mix):
    how often a real face scores as high by chance, which the verdict weighs when a crowd's
    most suspicious person decides it; empty: not measured."""
    miss_curve: tuple[tuple[float, float], ...] = ()
    """(probability, share of fake faces the ensemble scored at most that low), rising
    probabilities, measured on the fake faces of held-out sources (else of the validation mix):
    how often a fake passes as this real, which a `real` verdict quotes; empty: not measured
    (ensembles made before it was)."""
    hit_curve: tuple[tuple[float, float], ...] = ()
    """(probability, share of fake faces the ensemble scored at least that high), at the
    false-alarm curve's points and measured on the same faces' fakes: quoted beside it by a `fake`
    verdict, so its share of real faces can be weighed (rule 109); empty: not measured."""
    correct_rejection_curve: tuple[tuple[float, float], ...] = ()
    """(probability, share of real faces the ensemble scored at most that low), at the miss curve's
    points and measured on the same faces' reals: quoted beside it by a `real` verdict (rule 109);
    empty: not measured."""
    preprocessing: str = (
        "RGB uint8 square face crop (pipeline.faces.crop_box_for), resized to input_size; models normalise inside"
    )
    trained_on: tuple[str, ...] = ()
    metrics: dict[str, Any] = field(default_factory=dict)
    pictures: EnsembleSpec | None = None
    """How a picture's faces are combined and decided where that differs from a video's: the
    same members with other weights, and the calibration, threshold, band, margin and curves
    fitted for those weights (rule 79: the CLIP member's weight is held down by video frames,
    which lack the JPEG history every picture and training crop has). None: as a video's."""

    @staticmethod
    def load(path: Path) -> EnsembleSpec:
        """Read `ensemble.json`."""
        try:
            raw = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise ModelsMissingError(f"cannot read the ensemble description {path}: {error}") from error
        if raw.get("format") != ENSEMBLE_FORMAT:
            raise ModelsMissingError(f"{path} has format {raw.get('format')!r}; this version reads {ENSEMBLE_FORMAT}")
        raw.pop("format")
        try:
            return EnsembleSpec.from_dict(raw)
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise ModelsMissingError(f"the ensemble description {path} is malformed: {error!r}") from error

    @staticmethod
    def from_dict(raw: dict[str, Any]) -> EnsembleSpec:
        """The spec a JSON object describes (`ensemble.json` less its format, or its
        `pictures`); raises KeyError, TypeError or ValueError for a malformed one."""
        raw = dict(raw)
        members = tuple(MemberSpec(**m) for m in raw.pop("members"))
        raw["trained_on"] = tuple(raw.get("trained_on", ()))
        # Numbers every score is computed with: a wrong type here is this file's fault, said now,
        # not a TypeError in the middle of an analysis.
        for key in ("temperature", "offset"):
            if key in raw:
                raw[key] = float(raw[key])
        for curve in CURVES:
            raw[curve] = read_curve(raw.get(curve, ()))
        checked_measure(raw.get("disagreement", RANGE))
        if raw.get("pictures") is not None:
            pictures = EnsembleSpec.from_dict(raw["pictures"])
            if pictures.pictures is not None:
                raise ValueError("a pictures spec cannot hold another")
            if [(m.name, m.file) for m in pictures.members] != [(m.name, m.file) for m in members]:
                raise ValueError("its pictures' members are not the ensemble's members")
            raw["pictures"] = pictures
        return EnsembleSpec(members=members, **raw)

    def to_dict(self) -> dict[str, Any]:
        """The spec as a JSON object (`from_dict` reads it back)."""
        data = {field.name: getattr(self, field.name) for field in fields(self)}
        data["members"] = [asdict(m) for m in self.members]
        data["trained_on"] = list(self.trained_on)
        # Written only where it differs from how every ensemble before it measured disagreement,
        # so those keep their `version` and the results stored under it stay reusable.
        if self.disagreement == RANGE:
            data.pop("disagreement")
        # Likewise the curves rule 109 added: an ensemble without them keeps its version.
        for curve in ("hit_curve", "correct_rejection_curve"):
            if not data[curve]:
                data.pop(curve)
        data.pop("pictures")
        if self.pictures is not None:
            data["pictures"] = self.pictures.to_dict()
        return data

    def save(self, path: Path) -> None:
        """Write `ensemble.json` (members' hashes are what the history records as versions)."""
        path.write_text(json.dumps({"format": ENSEMBLE_FORMAT, **self.to_dict()}, indent=2) + "\n")

    def for_media(self, kind: str) -> EnsembleSpec:
        """The spec that scores and decides media of `kind` ("image" or "video"): a picture's
        own where the ensemble has one."""
        return self.pictures if kind == PICTURE and self.pictures is not None else self

    @property
    def weights(self) -> dict[str, float]:
        """Each member's weight in this spec."""
        return {m.name: m.weight for m in self.members}

    @property
    def temperatures(self) -> dict[str, float]:
        """Each member's temperature (its logit is divided by it to be calibrated)."""
        return {m.name: m.temperature for m in self.members}

    @property
    def version(self) -> str:
        """Short hash of how this spec combines and decides (members, weights, calibration,
        threshold, band, margin, curves, aggregation), not of what it records about itself: two
        ensembles of the same member files that weigh or decide otherwise differ here."""
        deciding = {k: v for k, v in self.to_dict().items() if k not in ("metrics", "trained_on", "pictures")}
        return hashlib.sha256(json.dumps(deciding, sort_keys=True).encode()).hexdigest()[:12]

    @property
    def decision_rule(self) -> DecisionRule:
        """How this ensemble's probabilities become labels."""
        # A curve from the validation mix must not be quoted as one from unseen sources.
        validation = self.metrics.get("validation", {})

        def faces(curve_from: str) -> str:
            return UNSEEN_SOURCES if validation.get(curve_from) == HELD_OUT_CURVES[curve_from] else VALIDATION_MIX

        return DecisionRule(
            self.threshold,
            self.uncertain_low,
            self.uncertain_high,
            self.disagreement_margin,
            self.false_alarm_curve,
            miss_curve=self.miss_curve,
            false_alarm_faces=faces("false_alarm_curve_from"),
            miss_faces=faces("miss_curve_from"),
            hit_curve=self.hit_curve,
            correct_rejection_curve=self.correct_rejection_curve,
            hit_faces=faces("hit_curve_from"),
            correct_rejection_faces=faces("correct_rejection_curve_from"),
            disagreement=self.disagreement,
            member_weights=tuple(self.weights.items()),
        )


CURVES = ("false_alarm_curve", "miss_curve", "hit_curve", "correct_rejection_curve")
"""The curves a spec may carry, each a list of [probability, share] in `ensemble.json`."""


def read_curve(points: Any) -> tuple[tuple[float, float], ...]:
    """A curve read from JSON (lists of [probability, share])."""
    return tuple((float(p), float(share)) for p, share in points)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(logits, -50.0, 50.0)))


def weighted_logit(
    member_logits: dict[str, np.ndarray], temperatures: dict[str, float], weights: dict[str, float]
) -> np.ndarray:
    """The weighted mean of the members' calibrated logits (logit / temperature), over the
    members in `member_logits` with a positive weight. The engine and the cross-source folds
    both combine members with it."""
    used = {name: weight for name, weight in weights.items() if name in member_logits and weight > 0}
    total = sum(used.values())
    if total <= 0:
        raise PipelineError("no ensemble member selected")
    return sum(weight * member_logits[name] / temperatures[name] for name, weight in used.items()) / total


def combine_logits(member_logits: dict[str, np.ndarray], spec: EnsembleSpec) -> np.ndarray:
    """Ensemble logit from raw member logits: calibrated, weighted, then its own temperature and
    offset."""
    return weighted_logit(member_logits, spec.temperatures, spec.weights) / spec.temperature + spec.offset


@dataclass(frozen=True)
class FaceScores:
    """Calibrated fake probabilities for a batch of faces: per member and for the ensemble."""

    ensemble: np.ndarray
    members: dict[str, np.ndarray]
    seconds: dict[str, float]
    """Inference time per member for the whole batch."""


def read_spec(models_dir: Path) -> EnsembleSpec:
    """The description of the ensemble in `models_dir`, read without loading a model (a page
    shows its members while they load); raises `ModelsMissingError` when there is none."""
    spec_path = models_dir / ENSEMBLE_FILE
    if not spec_path.exists():
        raise ModelsMissingError(
            f"no trained models in {models_dir} (no {ENSEMBLE_FILE}). Train them with "
            "`python -m pipeline train-ensemble` (see models/MODEL_CARD.md), or point "
            "DEEPFAKE_MODELS_DIR at a folder that holds them."
        )
    return EnsembleSpec.load(spec_path)


class Ensemble:
    """The trained ensemble, loaded once, scoring batches of face crops."""

    def __init__(self, models_dir: Path, batch_size: int = 32, cnn_runtime: str = "tflite") -> None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        self.spec = read_spec(models_dir)
        spec_path = models_dir / ENSEMBLE_FILE
        self.models_dir = models_dir
        self.batch_size = batch_size
        check_runtime(cnn_runtime, "CNN")
        self._keras: dict[str, Any] = {}
        self._keras_lock = threading.Lock()  # explanation maps of two dashboard tabs may load one at once
        self.runners: dict[str, Any] = {}
        """Keras members: what scores them (a `LiteModel`, or the Keras model)."""
        self.probes: dict[str, ClipProbe] = {}
        self._encoder: ClipEncoder | None = None
        for member in self.spec.members:
            path = models_dir / member.file
            if not path.exists():
                raise ModelsMissingError(f"{spec_path} names {member.file}, which is not in {models_dir}")
            if member.kind == CLIP_PROBE:
                try:
                    self.probes[member.name] = ClipProbe.from_json(json.loads(path.read_text()))
                except (ValueError, KeyError, TypeError, OSError) as error:
                    raise ModelsMissingError(f"cannot read the CLIP probe {path.name}: {error}") from error
                continue
            # A TensorFlow Lite copy kept from an earlier run scores without the Keras model, whose
            # loading was a quarter of a cold start (one photo from the command line: 11.6 s, now
            # 8.9; benchmarks/README.md). The copy is named by the file's content, so it was made
            # from this very file, loaded in safe mode then. Keras loads the model only for what
            # needs gradients (explanation maps).
            kept = cached_lite_model(path) if cnn_runtime == "tflite" else None
            if kept is not None:
                self.runners[member.name] = kept
            else:
                model = self.keras_model(member.name)
                self.runners[member.name] = convert_to_lite(path, model) if cnn_runtime == "tflite" else model

    def keras_model(self, name: str) -> Any:
        """A Keras member's model itself (explanation maps need its gradients), loaded on first use.
        Raises `ModelsMissingError` for a file Keras refuses (safe mode refuses Lambda layers and
        other code hidden in a model file)."""
        import keras  # imported here: loading TensorFlow takes seconds

        with self._keras_lock:
            if name not in self._keras:
                path = self.models_dir / self.member(name).file
                try:
                    self._keras[name] = keras.models.load_model(path, safe_mode=True, compile=False)
                except (ValueError, OSError, TypeError) as error:
                    raise ModelsMissingError(f"refused to load {path.name}: {error}") from error
            return self._keras[name]

    @property
    def models(self) -> dict[str, Any]:
        """Every Keras member's model itself (see `keras_model`), each loaded now if not yet."""
        return {m.name: self.keras_model(m.name) for m in self.spec.members if m.kind != CLIP_PROBE}

    @property
    def keras_loaded(self) -> list[str]:
        """The Keras members whose models are loaded (not only their TensorFlow Lite copies)."""
        return list(self._keras)

    @property
    def member_names(self) -> list[str]:
        return [m.name for m in self.spec.members]

    @property
    def encoder(self) -> ClipEncoder:
        """The CLIP image encoder, loaded on first use, run up to the last block a probe reads."""
        if self._encoder is None:
            needed = [BLOCKS if p.feature == "embed" else max(p.blocks) for p in self.probes.values()]
            self._encoder = ClipEncoder(last_block=max(needed, default=BLOCKS))
        return self._encoder

    def member(self, name: str) -> MemberSpec:
        for member in self.spec.members:
            if member.name == name:
                return member
        raise PipelineError(f"unknown model {name!r}; the ensemble has {', '.join(self.member_names)}")

    def explanation_map(self, name: str) -> str:
        """What member `name`'s explanation map is (`pipeline.results`' `*_MAP` names)."""
        if self.member(name).kind != CLIP_PROBE:
            return GRADCAM_MAP
        return {PATCH_MAX: PATCH_SCORE_MAP, "patch_mean": PATCH_SHARE_MAP}.get(
            self.probes[name].feature, PATCH_PUSH_MAP
        )

    def versions(self) -> dict[str, str]:
        """Model name -> short content hash, so a stored result says which models made it."""
        return {m.name: (m.sha256 or sha256_file(self.models_dir / m.file))[:12] for m in self.spec.members}

    def logits(self, name: str, crops: np.ndarray) -> np.ndarray:
        """Raw logits of one member for a stack of RGB uint8 crops (N, S, S, 3)."""
        member = self.member(name)
        if member.kind == CLIP_PROBE:
            return self.probe_logits([name], crops)[name]
        return crop_logits(self.runners[name], crops, member.input_size, self.batch_size, self.spec.flip_average)

    def probe_logits(self, names: Sequence[str], crops: np.ndarray) -> dict[str, np.ndarray]:
        """Raw logits of CLIP probes for the same crops, from one encoder pass: the encoder is
        nearly all of a probe's cost (0.135 s a face on 2 cores), so a second probe costs only
        its read-out."""
        probes = {name: self.probes[name] for name in names}
        if not len(crops):
            return {name: np.zeros(0) for name in probes}
        features = self.probe_features(names, crops)
        return {name: probe.logits(features) for name, probe in probes.items()}

    def probe_features(self, names: Sequence[str], crops: np.ndarray) -> ClipFeatures:
        """The CLIP features the named probes read, from one encoder pass: the class tokens, and
        the patch tokens of every block a patch probe among them needs."""
        return self.encoder.features(crops, {block for name in names for block in self.probes[name].patch_blocks})

    def score(
        self,
        crops: np.ndarray,
        members: list[str] | None = None,
        people: np.ndarray | None = None,
        costly_per_person: int | None = None,
        spec: EnsembleSpec | None = None,
    ) -> FaceScores:
        """Calibrated probabilities of every selected member and of the ensemble (combined as
        `spec` says: this ensemble's own, or its `for_media` spec).

        With `people` (a person id per crop) and `costly_per_person`, a costly member scores at
        most that many faces of each person, evenly spread; its score for that person's other
        faces is NaN, and the ensemble uses the mean of its logits over the person's scored faces
        there (the member judges the person, not each frame)."""
        names = members or self.member_names
        for name in names:
            self.member(name)
        rows = np.arange(len(crops))
        if people is not None and costly_per_person:
            rows = spread_rows(people, costly_per_person)
        raw: dict[str, np.ndarray] = {}
        seconds: dict[str, float] = {}
        # The costly members are the CLIP probes: the same rows, one encoder pass shared, its time split.
        probes = [name for name in names if self.member(name).costly]
        if probes:
            start = time.perf_counter()
            shared = self.probe_logits(probes, crops[rows])
            elapsed = time.perf_counter() - start
            for name in probes:
                raw[name] = np.full(len(crops), np.nan)
                raw[name][rows] = shared[name]
                seconds[name] = elapsed / len(probes)
        for name in names:
            if name not in raw:
                start = time.perf_counter()
                raw[name] = self.logits(name, crops)
                seconds[name] = time.perf_counter() - start
        filled = {n: fill_by_person(values, people) for n, values in raw.items()}
        spec = spec or self.spec
        temperatures = spec.temperatures
        return FaceScores(
            ensemble=sigmoid(combine_logits(filled, spec)),
            members={n: sigmoid(raw[n] / temperatures[n]) for n in names},
            seconds=seconds,
        )


def spread_rows(people: np.ndarray, per_person: int) -> np.ndarray:
    """Indices of at most `per_person` rows of each person, evenly spread over their rows."""
    chosen: list[int] = []
    for person in np.unique(people):
        rows = np.flatnonzero(people == person)
        if len(rows) > per_person:
            rows = rows[np.linspace(0, len(rows) - 1, per_person).round().astype(int)]
        chosen.extend(rows.tolist())
    return np.asarray(sorted(set(chosen)), dtype=np.int64)


def fill_by_person(logits: np.ndarray, people: np.ndarray | None) -> np.ndarray:
    """Missing (NaN) logits replaced by the mean of the same person's known ones."""
    missing = np.isnan(logits)
    if not missing.any():
        return logits
    filled = logits.copy()
    for person in np.unique(people[missing]) if people is not None else []:
        mine = people == person
        known = logits[mine & ~missing]
        filled[mine & missing] = known.mean() if len(known) else 0.0
    return filled


def crop_logits(model: Any, crops: np.ndarray, input_size: int, batch_size: int, flip_average: bool) -> np.ndarray:
    """One member's logits (N,) for RGB uint8 crops (N, S, S, 3); with `flip_average`, the mean of
    the logits of each crop and its mirror image (faces are left-right symmetric; the training
    augmentation flips them, so both views are in-distribution and their errors partly cancel)."""
    if not flip_average:
        return predict_crops(model, crops, input_size, batch_size).astype(np.float64).reshape(-1)
    both = predict_crops(model, np.concatenate([crops, crops[:, :, ::-1]]), input_size, batch_size)
    both = both.astype(np.float64).reshape(2, len(crops))
    return both.mean(axis=0)


def predict_crops(model: Any, crops: np.ndarray, input_size: int, batch_size: int) -> np.ndarray:
    """A Keras model's outputs for a stack of RGB uint8 crops (N, S, S, 3), batch by batch.

    predict_on_batch runs a compiled graph: an eager call peaks at about twice the memory (2.2 GB
    against 1.0 GB with both members, batch 32; see benchmarks/). The graph is traced once per
    batch shape, so batches are padded to a power of two.
    """
    out = []
    for start in range(0, len(crops), batch_size):
        batch = resize_crops(crops[start : start + batch_size], input_size)
        size = len(batch)
        padded = min(batch_size, 1 << (size - 1).bit_length())
        if padded > size:
            batch = np.concatenate([batch, np.zeros((padded - size, *batch.shape[1:]), batch.dtype)])
        out.append(np.asarray(model.predict_on_batch(batch))[:size])
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def jpeg_round_trip(image: np.ndarray, quality: int) -> np.ndarray:
    """An RGB uint8 picture saved as JPEG at `quality` (libjpeg's scale, 4:2:0) and read back."""
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    return cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB) if ok else image


def resize_crops(crops: np.ndarray, size: int) -> np.ndarray:
    """Float32 batch at the model's input size, values in [0, 255]."""
    if crops.shape[1] != size:
        interpolation = cv2.INTER_AREA if crops.shape[1] > size else cv2.INTER_LINEAR
        crops = np.stack([cv2.resize(c, (size, size), interpolation=interpolation) for c in crops])
    return crops.astype(np.float32)
