"""Grad-CAM (Selvaraju et al., 2017): where in a face a model looked when it scored it fake.

The heat map is the ReLU of the last convolution's feature maps weighted by the mean gradient of
the fake logit with respect to each map. It shows what raised the fake score; a real face's map
shows what little evidence of fakery the model found.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from pipeline.detector import Detector, resize_crops
from pipeline.faces import Box


def heatmap(model: Any, layer_name: str, crop: np.ndarray, input_size: int) -> np.ndarray:
    """Grad-CAM of `model` for one RGB uint8 crop: float32 map in [0, 1] at the crop's size."""
    import keras
    import tensorflow as tf

    grad_model = keras.Model(model.input, [model.get_layer(layer_name).output, model.output])
    batch = tf.convert_to_tensor(resize_crops(crop[None], input_size))
    with tf.GradientTape() as tape:
        feature_maps, fake_logit = grad_model(batch, training=False)
        target = fake_logit[:, 0]
    gradients = tape.gradient(target, feature_maps)
    channel_weights = tf.reduce_mean(gradients, axis=(0, 1, 2))
    cam = tf.nn.relu(tf.reduce_sum(feature_maps[0] * channel_weights, axis=-1)).numpy()
    peak = float(cam.max())
    cam = cam / peak if peak > 0 else cam
    size = crop.shape[0]
    return cv2.resize(cam.astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC).clip(0.0, 1.0)


def colorize(heat: np.ndarray) -> np.ndarray:
    """Jet-coloured RGB uint8 picture of a [0, 1] heat map."""
    bgr = cv2.applyColorMap((heat * 255).astype(np.uint8), cv2.COLORMAP_JET)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def overlay(rgb: np.ndarray, heat: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """The heat map blended over a same-sized RGB picture."""
    return cv2.addWeighted(rgb, 1.0 - alpha, colorize(heat), alpha, 0.0)


def overlay_on_frame(frame: np.ndarray, crop_box: Box, heat: np.ndarray, scale: float = 1.0, alpha: float = 0.45) -> np.ndarray:
    """The heat map of a face crop placed back over the face in the (possibly downscaled) frame.

    `scale` maps original frame pixels to `frame`'s pixels.
    """
    out = frame.copy()
    x, y, side, _ = (round(v * scale) for v in crop_box)
    side = max(side, 1)
    heat_frame = cv2.resize(heat, (side, side), interpolation=cv2.INTER_LINEAR)
    height, width = out.shape[:2]
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + side, width), min(y + side, height)
    if x1 <= x0 or y1 <= y0:
        return out
    region = heat_frame[y0 - y : y1 - y, x0 - x : x1 - x]
    out[y0:y1, x0:x1] = overlay(out[y0:y1, x0:x1], region, alpha)
    cv2.rectangle(out, (x0, y0), (x1 - 1, y1 - 1), (255, 255, 255), max(1, round(2 * scale)))
    return out


def explain(detector: Detector, crop: np.ndarray, members: list[str] | None = None) -> dict[str, np.ndarray]:
    """Grad-CAM heat map of each ensemble member for one face crop."""
    maps = {}
    for name in members or detector.member_names:
        member = detector.member(name)
        maps[name] = heatmap(detector.models[name], member.gradcam_layer, crop, member.input_size)
    return maps


def gradcam_overlays(
    detector: Detector, crop: np.ndarray, frame: np.ndarray, crop_box: Box, scale: float, members: Sequence[str]
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Model name -> (Grad-CAM over the face crop, over the frame) for one face.

    Works from a crop and a frame picture alone, so it serves a fresh analysis and a stored one;
    `scale` maps original frame pixels to `frame`'s pixels.
    """
    return {
        name: (overlay(crop, heat), overlay_on_frame(frame, crop_box, heat, scale))
        for name, heat in explain(detector, crop, list(members)).items()
    }
