"""Explanation maps: where in a face each model looked when it scored it.

For the CNN members the map is Grad-CAM (Selvaraju et al., 2017): the ReLU of the last
convolution's feature maps weighted by the mean gradient of the fake logit with respect to each
map. It shows what raised the fake score; a real face's map shows what little evidence of fakery
the model found.

For the CLIP member the map is each of the 14 x 14 patch tokens' push towards "fake" through the
probe (`ClipProbe.patch_map`), upsampled: the regions whose own features look fake to the probe.
It is not a gradient and not a share of a class-token probe's logit (attention mixes the patches
into the class token in ways a linear read-out cannot undo); it shows where, not how much. A
probe on several blocks' class tokens (rule 92) reads each block's patch tokens through that
block's part of its weights, and its map is their sum.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from pipeline.engine.analyze import Analysis
from pipeline.engine.ensemble import CLIP_PROBE, Ensemble, resize_crops
from pipeline.engine.faces import Box, Face

OVERLAY_ALPHA = 0.45
"""Weight of the coloured map over the picture."""


_GRADCAM_STEPS: weakref.WeakKeyDictionary[Any, dict[str, Callable[[Any], Any]]] = weakref.WeakKeyDictionary()
_GRADCAM_STEPS_LOCK = threading.Lock()


def _gradcam_step(model: Any, layer_name: str) -> Callable[[Any], Any]:
    """The compiled Grad-CAM computation of one model and layer, built once per model: building
    the two-output Keras model and running the tape eagerly for every map cost about 0.35 s a
    map on 2 cores, the compiled step about 0.025 s (the same map to within 1e-5)."""
    import keras
    import tensorflow as tf

    with _GRADCAM_STEPS_LOCK:
        steps = _GRADCAM_STEPS.setdefault(model, {})
        if layer_name not in steps:
            grad_model = keras.Model(model.input, [model.get_layer(layer_name).output, model.output])

            @tf.function(reduce_retracing=True)
            def step(batch: Any) -> Any:
                with tf.GradientTape() as tape:
                    feature_maps, fake_logit = grad_model(batch, training=False)
                    target = fake_logit[:, 0]
                gradients = tape.gradient(target, feature_maps)
                channel_weights = tf.reduce_mean(gradients, axis=(0, 1, 2))
                return tf.nn.relu(tf.reduce_sum(feature_maps[0] * channel_weights, axis=-1))

            steps[layer_name] = step
        return steps[layer_name]


def gradcam(model: Any, layer_name: str, crop: np.ndarray, input_size: int) -> np.ndarray:
    """Grad-CAM of `model` for one RGB uint8 crop: float32 map in [0, 1] at the crop's size."""
    import tensorflow as tf

    batch = tf.convert_to_tensor(resize_crops(crop[None], input_size))
    cam = _gradcam_step(model, layer_name)(batch).numpy()
    return _to_crop_size(cam, crop.shape[0])


def _to_crop_size(heat: np.ndarray, size: int) -> np.ndarray:
    peak = float(heat.max())
    heat = heat / peak if peak > 0 else heat
    return cv2.resize(heat.astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC).clip(0.0, 1.0)


def colorize(heat: np.ndarray) -> np.ndarray:
    """Jet-coloured RGB uint8 picture of a [0, 1] heat map."""
    bgr = cv2.applyColorMap((heat * 255).astype(np.uint8), cv2.COLORMAP_JET)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def overlay(rgb: np.ndarray, heat: np.ndarray, alpha: float = OVERLAY_ALPHA) -> np.ndarray:
    """The heat map blended over a same-sized RGB picture."""
    return cv2.addWeighted(rgb, 1.0 - alpha, colorize(heat), alpha, 0.0)


def overlay_on_frame(
    frame: np.ndarray, crop_box: Box, heat: np.ndarray, scale: float = 1.0, alpha: float = OVERLAY_ALPHA
) -> np.ndarray:
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


def explanation_maps(
    ensemble: Ensemble, crop: np.ndarray, members: Sequence[str] | None = None
) -> dict[str, np.ndarray]:
    """Model name -> explanation map ([0, 1], crop-sized) of each chosen member for one crop."""
    names = list(members or ensemble.member_names)
    probes = [name for name in names if ensemble.member(name).kind == CLIP_PROBE]
    maps = clip_maps(ensemble, probes, crop) if probes else {}
    for name in names:
        member = ensemble.member(name)
        if member.kind != CLIP_PROBE:
            maps[name] = gradcam(ensemble.keras_model(name), member.gradcam_layer, crop, member.input_size)
    return {name: maps[name] for name in names}


def clip_maps(ensemble: Ensemble, names: Sequence[str], crop: np.ndarray) -> dict[str, np.ndarray]:
    """The CLIP members' maps for one crop, from one encoder pass: how far each patch points
    to "fake" (`ClipProbe.patch_map`: its push, its share or its own score), in [0, 1]."""
    probes = {name: ensemble.probes[name] for name in names}
    features = ensemble.encoder.features(crop[None], {block for probe in probes.values() for block in probe.blocks})
    return {
        name: _to_crop_size(
            np.maximum(probe.patch_map([features.patches_of(block)[0] for block in probe.blocks]), 0.0), crop.shape[0]
        )
        for name, probe in probes.items()
    }


def explanation_overlays(
    ensemble: Ensemble, crop: np.ndarray, frame: np.ndarray, crop_box: Box, scale: float, members: Sequence[str]
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Model name -> (map over the face crop, map over the frame) for one face.

    Works from a crop and a frame picture alone, so it serves a fresh analysis and a stored one;
    `scale` maps original frame pixels to `frame`'s pixels.
    """
    return {
        name: (overlay(crop, heat), overlay_on_frame(frame, crop_box, heat, scale))
        for name, heat in explanation_maps(ensemble, crop, list(members)).items()
    }


def most_suspicious_faces(analysis: Analysis, per_track: int = 1) -> list[Face]:
    """The highest-scoring faces of each person, most suspicious first."""
    scores = {
        (position, face.track): face.fake_probability
        for position, frame in enumerate(analysis.result.frames)
        for face in frame.faces
    }
    chosen: list[Face] = []
    for track in sorted({face.track for frame in analysis.faces for face in frame}):
        faces = [f for frame in analysis.faces for f in frame if f.track == track]
        faces.sort(key=lambda f: scores[(f.position, f.track)], reverse=True)
        chosen.extend(faces[:per_track])
    return sorted(chosen, key=lambda f: scores[(f.position, f.track)], reverse=True)


def face_overlays(ensemble: Ensemble, analysis: Analysis, face: Face) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Model name -> (map over the face crop, map over its frame) for one face of an analysis,
    by each model that scored it."""
    frame = analysis.previews[face.position]
    members = list(analysis.result.models)
    return explanation_overlays(ensemble, face.crop, frame, face.crop_box, analysis.preview_scale, members)


def write_explanations(ensemble: Ensemble, analysis: Analysis, out_dir: Path) -> list[Path]:
    """PNG explanation maps (over the crop and over the frame, each model) of each person's most
    suspicious face, written to `out_dir`. Returns the files written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = analysis.result.sha256[:12]
    written = []
    for face in most_suspicious_faces(analysis):
        for name, (on_crop, on_frame) in face_overlays(ensemble, analysis, face).items():
            for where, picture in (("crop", on_crop), ("frame", on_frame)):
                path = out_dir / f"{stem}_person{face.track + 1}_position{face.position}_{name}_{where}.png"
                cv2.imwrite(str(path), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
                written.append(path)
    return written
