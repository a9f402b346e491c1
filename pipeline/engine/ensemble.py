"""Third stage: faces -> scores. Loads the trained ensemble from `models/` and scores face crops
with every member, keeping each member's calibrated probability and the ensemble's."""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from pipeline.config import DEFAULT_AGGREGATION
from pipeline.engine.media import sha256_file
from pipeline.errors import ModelsMissingError, PipelineError

ENSEMBLE_FILE = "ensemble.json"
ENSEMBLE_FORMAT = 1


@dataclass(frozen=True)
class MemberSpec:
    """One model of the ensemble as described in `ensemble.json`."""

    name: str
    file: str
    """Keras file in the models folder."""
    backbone: str
    input_size: int
    weight: float = 1.0
    temperature: float = 1.0
    """Calibration: the member's probability is sigmoid(logit / temperature)."""
    gradcam_layer: str = ""
    """Layer whose feature map Grad-CAM explains (the backbone's last convolution)."""
    sha256: str = ""


@dataclass(frozen=True)
class EnsembleSpec:
    """The ensemble: its members, how their scores combine, and the decision rule.

    Members are combined in logit space: the ensemble logit is the weighted mean of the members'
    calibrated logits, then scaled by the ensemble's own temperature.
    """

    members: tuple[MemberSpec, ...]
    temperature: float = 1.0
    threshold: float = 0.5
    uncertain_low: float = 0.4
    uncertain_high: float = 0.6
    aggregation: str = DEFAULT_AGGREGATION
    flip_average: bool = False
    """Each member's logit is the mean of its logits for the crop and its mirror image (chosen on
    validation by `fit_ensemble`; the temperatures are fitted to these averaged logits)."""
    preprocessing: str = (
        "RGB uint8 square face crop (pipeline.faces.crop_box_for), resized to input_size; models normalise inside"
    )
    trained_on: tuple[str, ...] = ()
    metrics: dict[str, Any] = field(default_factory=dict)

    @staticmethod
    def load(path: Path) -> EnsembleSpec:
        """Read `ensemble.json`."""
        try:
            raw = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise ModelsMissingError(f"cannot read the ensemble description {path}: {error}") from error
        if raw.get("format") != ENSEMBLE_FORMAT:
            raise ModelsMissingError(f"{path} has format {raw.get('format')!r}; this version reads {ENSEMBLE_FORMAT}")
        members = tuple(MemberSpec(**m) for m in raw.pop("members"))
        raw.pop("format")
        raw["trained_on"] = tuple(raw.get("trained_on", ()))
        return EnsembleSpec(members=members, **raw)

    def save(self, path: Path) -> None:
        """Write `ensemble.json` (members' hashes are what the history records as versions)."""
        data = {"format": ENSEMBLE_FORMAT, **asdict(self)}
        data["members"] = [asdict(m) for m in self.members]
        data["trained_on"] = list(self.trained_on)
        path.write_text(json.dumps(data, indent=2) + "\n")


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(logits, -50.0, 50.0)))


def combine_logits(member_logits: dict[str, np.ndarray], spec: EnsembleSpec) -> np.ndarray:
    """Ensemble logit from raw member logits: calibrated, weighted, then its own temperature."""
    weights = {m.name: m.weight for m in spec.members if m.name in member_logits}
    total = sum(weights.values())
    if total <= 0:
        raise PipelineError("no ensemble member selected")
    temperatures = {m.name: m.temperature for m in spec.members}
    mean = sum(weights[n] * member_logits[n] / temperatures[n] for n in weights) / total
    return mean / spec.temperature


@dataclass(frozen=True)
class FaceScores:
    """Calibrated fake probabilities for a batch of faces: per member and for the ensemble."""

    ensemble: np.ndarray
    members: dict[str, np.ndarray]
    seconds: dict[str, float]
    """Inference time per member for the whole batch."""


class Ensemble:
    """The trained ensemble, loaded once, scoring batches of face crops."""

    def __init__(self, models_dir: Path, batch_size: int = 32) -> None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        spec_path = models_dir / ENSEMBLE_FILE
        if not spec_path.exists():
            raise ModelsMissingError(
                f"no trained models in {models_dir} (no {ENSEMBLE_FILE}). Train them with "
                "`python -m pipeline train-ensemble` (see models/MODEL_CARD.md), or point "
                "DEEPFAKE_MODELS_DIR at a folder that holds them."
            )
        import keras  # imported here: loading TensorFlow takes seconds

        self.models_dir = models_dir
        self.spec = EnsembleSpec.load(spec_path)
        self.batch_size = batch_size
        self.models: dict[str, Any] = {}
        for member in self.spec.members:
            path = models_dir / member.file
            if not path.exists():
                raise ModelsMissingError(f"{spec_path} names {member.file}, which is not in {models_dir}")
            # safe_mode refuses Lambda layers and other code hidden in a model file.
            try:
                self.models[member.name] = keras.models.load_model(path, safe_mode=True, compile=False)
            except (ValueError, OSError, TypeError) as error:
                raise ModelsMissingError(f"refused to load {path.name}: {error}") from error

    @property
    def member_names(self) -> list[str]:
        return [m.name for m in self.spec.members]

    def member(self, name: str) -> MemberSpec:
        for member in self.spec.members:
            if member.name == name:
                return member
        raise PipelineError(f"unknown model {name!r}; the ensemble has {', '.join(self.member_names)}")

    def versions(self) -> dict[str, str]:
        """Model name -> short content hash, so a stored result says which models made it."""
        return {m.name: (m.sha256 or sha256_file(self.models_dir / m.file))[:12] for m in self.spec.members}

    def logits(self, name: str, crops: np.ndarray) -> np.ndarray:
        """Raw logits of one member for a stack of RGB uint8 crops (N, S, S, 3)."""
        member = self.member(name)
        return crop_logits(self.models[name], crops, member.input_size, self.batch_size, self.spec.flip_average)

    def score(self, crops: np.ndarray, members: list[str] | None = None) -> FaceScores:
        """Calibrated probabilities of every selected member and of the ensemble."""
        names = members or self.member_names
        for name in names:
            self.member(name)
        raw: dict[str, np.ndarray] = {}
        seconds: dict[str, float] = {}
        for name in names:
            start = time.perf_counter()
            raw[name] = self.logits(name, crops)
            seconds[name] = time.perf_counter() - start
        temperatures = {m.name: m.temperature for m in self.spec.members}
        return FaceScores(
            ensemble=sigmoid(combine_logits(raw, self.spec)),
            members={n: sigmoid(raw[n] / temperatures[n]) for n in names},
            seconds=seconds,
        )


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


def resize_crops(crops: np.ndarray, size: int) -> np.ndarray:
    """Float32 batch at the model's input size, values in [0, 255]."""
    if crops.shape[1] != size:
        interpolation = cv2.INTER_AREA if crops.shape[1] > size else cv2.INTER_LINEAR
        crops = np.stack([cv2.resize(c, (size, size), interpolation=interpolation) for c in crops])
    return crops.astype(np.float32)
