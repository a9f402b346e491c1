"""Second stage: frames -> faces. MTCNN finds the faces, each gets a square crop framed the way
the training crops are framed, and faces are linked into one track per person."""

from __future__ import annotations

import importlib.resources
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from pipeline.config import FaceSettings, VerdictSettings
from pipeline.engine.colour import LINEAR_LIGHT, srgb_encoded
from pipeline.engine.lite import LiteModel, check_runtime, lite_model

Box = tuple[int, int, int, int]
"""x, y, width, height in pixels of the original frame."""

MTCNN_NETWORKS = (("pnet.lz4", (None, None, 3)), ("rnet.lz4", (24, 24, 3)), ("onet.lz4", (48, 48, 3)))
"""Each MTCNN stage's weights file in the package and its network's input (height, width,
channels): the proposal network takes a whole pyramid level, the other two fixed-size patches."""


@dataclass(frozen=True)
class Detection:
    """One face found by MTCNN, in the coordinates of the original frame."""

    box: Box
    confidence: float
    landmarks: dict[str, tuple[float, float]]


@dataclass
class Face:
    """A detected face, its square crop, and the person (track) it belongs to."""

    position: int
    """Position of the frame among the sampled frames (not its number in the video)."""
    box: Box
    confidence: float
    landmarks: dict[str, tuple[float, float]]
    crop: np.ndarray = field(repr=False)
    """Square RGB uint8 crop, `FaceSettings.crop_size` pixels a side."""
    crop_box: Box
    """The square region of the frame the crop covers (may extend past the frame's edge)."""
    track: int = -1

    def to_original(self, scale: float) -> None:
        """Express the box, crop box and landmarks in pixels of the original picture, when the
        frame they were found in was decoded at `scale` original size (a very large image)."""
        if scale == 1.0:
            return
        self.box = tuple(round(v / scale) for v in self.box)  # type: ignore[assignment]
        self.crop_box = tuple(round(v / scale) for v in self.crop_box)  # type: ignore[assignment]
        self.landmarks = {name: (x / scale, y / scale) for name, (x, y) in self.landmarks.items()}


def crop_box_for(box: Box, settings: FaceSettings) -> Box:
    """The square region around a face box that training crops frame the same way."""
    x, y, w, h = box
    side = max(1, round(settings.crop_scale * math.sqrt(max(w, 1) * max(h, 1))))
    cx, cy = x + w / 2.0, y + h / 2.0
    return (round(cx - side / 2.0), round(cy - side / 2.0), side, side)


def crop_square(rgb: np.ndarray, region: Box, size: int) -> np.ndarray:
    """Cut `region` out of `rgb` (reflecting the image where the region leaves the frame) and
    resize it to `size` x `size`."""
    x, y, side, _ = region
    height, width = rgb.shape[:2]
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + side, width), min(y + side, height)
    if x1 <= x0 or y1 <= y0:
        return np.zeros((size, size, 3), np.uint8)
    inside = rgb[y0:y1, x0:x1]
    top, bottom, left, right = y0 - y, y + side - y1, x0 - x, x + side - x1
    if top or bottom or left or right:
        # A reflected border looks like more face and background, not a black frame the
        # models never saw in training; the training augmentation pads the same way.
        mode = "reflect" if min(inside.shape[:2]) > 1 else "edge"
        inside = np.pad(inside, ((top, bottom), (left, right), (0, 0)), mode=mode)
    interpolation = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    return cv2.resize(inside, (size, size), interpolation=interpolation)


def face_focus(crop: np.ndarray) -> float:
    """How sharp a face crop is: the variance of the Laplacian (3 x 3) of its grey levels (0-255),
    the textbook focus measure. A blurred, smoothed or upscaled face scores low (rule 47)."""
    grey = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_64F, ksize=3).var())


def face_chroma(crop: np.ndarray) -> float:
    """How much colour a face crop holds: the mean over its pixels of the largest minus the
    smallest of their red, green and blue (0-255), colour science's chroma. A black-and-white
    picture scores 0, saved as colour JPEG too; a face in colour scores tens (rule 117)."""
    channels = crop.astype(np.int16)
    return float((channels.max(axis=2) - channels.min(axis=2)).mean())


def face_turn(landmarks: dict[str, tuple[float, float]]) -> float:
    """How far a face is turned from the camera, from MTCNN's five points: |2r - 1|, r the mean
    of the nose's place along the line from one eye to the other and along the line between the
    mouth corners (its projection, 0.5 midway). 0 faces the camera; 1 has the nose level with an
    eye and the mouth corner below it, and more lies past them (rule 131)."""
    nose = np.asarray(landmarks["nose"], np.float64)
    places = []
    for first, second in (("left_eye", "right_eye"), ("mouth_left", "mouth_right")):
        start = np.asarray(landmarks[first], np.float64)
        line = np.asarray(landmarks[second], np.float64) - start
        length = float(line @ line)
        # Points on top of each other (a face seen edge-on) say the face is turned all the way.
        places.append(float((nose - start) @ line) / length if length > 1e-9 else 1.0)
    return abs(2.0 * float(np.mean(places)) - 1.0)


def face_colour_spread(
    crop: np.ndarray, native_side: float | None = None, reduction: int = VerdictSettings.toned_reduction
) -> float:
    """How much a face crop's colour varies among its pixels of the same brightness: the root mean
    squared distance of each pixel's chromaticity (R, G and B over their sum, in percent) from the
    mean of its brightness bin, averaged over the bins by their pixels, on the crop reduced to
    1/`reduction` of its side, or of `native_side` (the crop box's side in the picture's own
    pixels) where that is smaller. A picture whose colour follows its brightness alone (grey,
    sepia, any toned monochrome) scores about 0; a face in colour, whose skin, lips, hair and
    background differ at the same brightness, scores more (rules 120-121). Infinite when no pixel
    is bright enough to read a colour from."""
    side = min(crop.shape[0], native_side or crop.shape[0])
    # Averaging keeps a toned picture toned (each pixel is its lightness times one tone) and undoes
    # most of JPEG's halved colour resolution, which blurs the tone across sharp edges (rule 119);
    # in the picture's own pixels, since the crop enlarges a small face with its blur (rule 121).
    reduced = max(1, round(side / reduction))
    small = cv2.resize(crop.astype(np.float32), (reduced, reduced), interpolation=cv2.INTER_AREA).reshape(-1, 3)
    total = small.sum(axis=1)
    lit = total >= 60  # darker pixels' chromaticity is mostly rounding
    if not lit.any():
        return float("inf")
    chromaticity = 100 * small[lit, :2] / total[lit, None]
    bins = np.minimum((total[lit] / 3 / 16).astype(np.int64), 15)
    counts = np.bincount(bins, minlength=16)
    squared = np.zeros(16)
    for channel in chromaticity.T:
        means = np.bincount(bins, weights=channel, minlength=16) / np.maximum(counts, 1)
        squared += np.bincount(bins, weights=(channel - means[bins]) ** 2, minlength=16)
    occupied = counts > 0
    return float(np.average(np.sqrt(squared[occupied] / counts[occupied]), weights=counts[occupied]))


def is_toned(crop: np.ndarray, settings: VerdictSettings, native_side: float | None = None) -> bool:
    """Whether a face crop, as found (before any re-save for scoring), is a toned black-and-white
    picture: it holds colour, but its colour follows its brightness alone (rules 120-121). A grey one is
    not (`pipeline.engine.analyze.COLOURLESS_CAVEAT` is said of it instead)."""
    if settings.toned_colour_spread <= 0 or face_chroma(crop) < settings.colourless_chroma:
        return False
    return face_colour_spread(crop, native_side, settings.toned_reduction) < settings.toned_colour_spread


class FaceFinder:
    """MTCNN from the `mtcnn` package (its weights ship inside it: nothing is downloaded), its
    three networks run as TensorFlow Lite copies (`FaceSettings.mtcnn_runtime`; about half the
    detection time of the package's Keras networks on 2 cores) around the package's own stages."""

    def __init__(self, settings: FaceSettings = FaceSettings()) -> None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import tensorflow as tf  # imported here: loading it takes seconds
        from mtcnn import MTCNN

        check_runtime(settings.mtcnn_runtime, "MTCNN")
        self.settings = settings
        self._mtcnn = MTCNN()
        for stage, (weights, input_shape) in zip(self._mtcnn.stages, MTCNN_NETWORKS, strict=True):
            lite = _lite_network(stage._model, weights, input_shape) if settings.mtcnn_runtime == "tflite" else None
            # Else the package's network, which it calls eagerly, layer by layer: compiled into a
            # graph the same weights give the same boxes in about three fifths of the time.
            # reduce_retracing: one graph with free height and width serves every pyramid level.
            stage._model = lite or tf.function(stage._model, reduce_retracing=True)

    def _run_mtcnn(self, frames: list[np.ndarray]) -> list[list[dict]]:
        """MTCNN's three stages on frames of one size: the package's `detect_faces`, except
        that the normalised frames become a tensor once rather than at each level of the image
        pyramid and again for each stage (a third of the detection time on 1080p video)."""
        import tensorflow as tf
        from mtcnn.utils.bboxes import fix_bboxes_offsets, limit_bboxes, to_json
        from mtcnn.utils.images import load_images_batch, standarize_batch

        with tf.device(self._mtcnn.device):
            normalized, shapes, padding = standarize_batch(load_images_batch(frames), justification="center")
            normalized = tf.constant(normalized)
            boxes = None
            try:
                for stage in self._mtcnn.stages:
                    boxes = stage(bboxes_batch=boxes, images_normalized=normalized, images_oshapes=shapes)
            except tf.errors.InvalidArgumentError:  # how the package's stages say "no face left"
                return [[] for _ in frames]
            boxes = limit_bboxes(fix_bboxes_offsets(boxes, padding), images_shapes=shapes, limit_landmarks=False)
            return to_json(boxes, images_count=len(frames), output_as_width_height=True, input_as_width_height=False)

    def detect(self, frames: Sequence[np.ndarray]) -> list[list[Detection]]:
        """Faces in each frame, largest first. Large frames are searched on a downscaled copy
        and boxes mapped back; frames of one size are detected in batches."""
        found: list[list[Detection]] = [[] for _ in frames]
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for position, rgb in enumerate(frames):
            by_shape.setdefault(rgb.shape, []).append(position)
        for positions in by_shape.values():
            for start in range(0, len(positions), self.settings.detect_batch):
                batch = positions[start : start + self.settings.detect_batch]
                for position, detections in zip(batch, self._detect_batch([frames[i] for i in batch])):
                    found[position] = detections
        return found

    def _detect_batch(self, frames: list[np.ndarray], border: float = 0.0) -> list[list[Detection]]:
        height, width = frames[0].shape[:2]
        scale = min(1.0, self.settings.detect_max_side / max(height, width))
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        if min(size) < self.settings.min_frame_px:
            return [[] for _ in frames]  # a sliver (100000 x 1): no face fits, nothing to search
        small = [cv2.resize(f, size, interpolation=cv2.INTER_AREA) if scale < 1.0 else f for f in frames]
        pad = round(border * max(small[0].shape[:2]))
        if pad:
            small = [cv2.copyMakeBorder(f, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0) for f in small]
        # mtcnn 1.0 builds the same number of pyramid levels whatever `min_face_size` is and
        # loses large faces when it is raised, so keep its default and filter sizes afterwards.
        results = [self._keep(items, scale, pad, (height, width)) for items in self._run_mtcnn(small)]
        if not border and not any(results):
            # A face that fills the frame (a face-crop clip, a tight selfie) touches the border
            # and MTCNN misses it; a black border lets it see the whole face. Only when the
            # whole batch is empty: a scene video where one frame missed its face is not that.
            return self._detect_batch(frames, border=0.25)
        return results

    def detect_region(self, rgb: np.ndarray, region: Box) -> list[Detection]:
        """Faces inside `region` of a frame, searched at full resolution (at most
        `recheck_max_side`), in the frame's coordinates."""
        x, y, w, h = region
        x0, y0 = max(0, x), max(0, y)
        x1, y1 = min(rgb.shape[1], x + w), min(rgb.shape[0], y + h)
        if min(x1 - x0, y1 - y0) < self.settings.min_frame_px:
            return []
        part = np.ascontiguousarray(rgb[y0:y1, x0:x1])
        scale = min(1.0, self.settings.recheck_max_side / max(part.shape[:2]))
        if scale < 1.0:
            size = (max(1, round(part.shape[1] * scale)), max(1, round(part.shape[0] * scale)))
            part = cv2.resize(part, size, interpolation=cv2.INTER_AREA)
        found = self._keep(self._run_mtcnn([part])[0], scale, 0, (y1 - y0, x1 - x0))
        return [_shifted(d, x0, y0, rgb.shape[:2]) for d in found]

    def _keep(self, items: list[dict], scale: float, pad: int, shape: tuple[int, int]) -> list[Detection]:
        settings = self.settings
        kept: list[Detection] = []
        for item in items:
            if float(item["confidence"]) < settings.min_confidence:
                continue
            x, y, w, h = (float(v) for v in item["box"])
            box = _clip_box(((x - pad) / scale, (y - pad) / scale, w / scale, h / scale), shape)
            if min(box[2], box[3]) < settings.min_face_px:
                continue
            landmarks = {
                name: ((float(p[0]) - pad) / scale, (float(p[1]) - pad) / scale)
                for name, p in item["keypoints"].items()
            }
            kept.append(Detection(box, float(item["confidence"]), landmarks))
        kept.sort(key=lambda d: d.box[2] * d.box[3], reverse=True)
        return kept[: settings.max_faces_per_frame]


class _LiteNetwork:
    """An MTCNN network scored by TensorFlow Lite, answering as the package's Keras network does
    (its stages read the outputs as tensors)."""

    def __init__(self, runner: Any) -> None:
        self.runner = runner

    def __call__(self, batch: Any) -> list[Any]:
        import tensorflow as tf

        return [tf.constant(output) for output in self.runner.outputs(np.asarray(batch, np.float32))]


def _lite_network(network: Any, weights: str, input_shape: tuple[int | None, ...]) -> _LiteNetwork | None:
    """`network` as a TensorFlow Lite copy (cached by its weights file), or None when it cannot
    be converted (`lite_model` logs why)."""
    import keras

    source = keras.Input(input_shape)
    runner = lite_model(
        Path(str(importlib.resources.files("mtcnn.assets.weights") / weights)),
        keras.Model(source, network(source)),
        form="x".join(str(side or "any") for side in input_shape),
    )
    return _LiteNetwork(runner) if isinstance(runner, LiteModel) else None


def _shifted(detection: Detection, dx: int, dy: int, shape: tuple[int, int]) -> Detection:
    x, y, w, h = detection.box
    box = _clip_box((x + dx, y + dy, w, h), shape)
    landmarks = {name: (px + dx, py + dy) for name, (px, py) in detection.landmarks.items()}
    return Detection(box, detection.confidence, landmarks)


def _around(box: Box, factor: float) -> Box:
    """The square `factor` times the larger side of `box`, centred on it."""
    x, y, w, h = box
    side = round(factor * max(w, h))
    return (round(x + w / 2 - side / 2), round(y + h / 2 - side / 2), side, side)


def _clip_box(box: tuple[float, float, float, float], shape: tuple[int, int]) -> Box:
    height, width = shape
    x0, y0 = max(0.0, box[0]), max(0.0, box[1])
    x1, y1 = min(float(width), box[0] + box[2]), min(float(height), box[1] + box[3])
    return (round(x0), round(y0), max(0, round(x1 - x0)), max(0, round(y1 - y0)))


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes."""
    ax1, ay1, bx1, by1 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    inter_w = max(0, min(ax1, bx1) - max(a[0], b[0]))
    inter_h = max(0, min(ay1, by1) - max(a[1], b[1]))
    inter = inter_w * inter_h
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def link_tracks(faces_per_frame: Sequence[Sequence[Face]], min_iou: float) -> int:
    """Give each face a `track` id so the same person keeps one id across frames.

    Greedy matching of each frame's boxes to each track's latest box by overlap, best pairs
    first; a face that overlaps no track starts a new one. A track survives frames where its
    face was missed. Returns the number of tracks.
    """
    last_box: list[Box] = []
    for faces in faces_per_frame:
        pairs = sorted(
            ((iou(face.box, box), f, t) for f, face in enumerate(faces) for t, box in enumerate(last_box)),
            reverse=True,
        )
        taken_faces: set[int] = set()
        taken_tracks: set[int] = set()
        for overlap, f, t in pairs:
            if overlap < min_iou:
                break
            if f in taken_faces or t in taken_tracks:
                continue
            faces[f].track = t
            last_box[t] = faces[f].box
            taken_faces.add(f)
            taken_tracks.add(t)
        for f, face in enumerate(faces):
            if f not in taken_faces:
                face.track = len(last_box)
                last_box.append(face.box)
    return len(last_box)


def brightened_if_dark(rgb: np.ndarray, settings: FaceSettings) -> np.ndarray | None:
    """A dark frame with its light scaled so that its mean is `settings.dark_target_light` (as a
    camera's automatic exposure would have made it), by at most `settings.dark_max_gain`; None
    when its mean light is not under `settings.dark_mean_light`."""
    light = float(LINEAR_LIGHT[rgb[::4, ::4]].mean())  # every 16th pixel: the mean, cheaply
    if light >= settings.dark_mean_light:
        return None
    gain = min(settings.dark_max_gain, settings.dark_target_light / max(light, 1e-6))
    scaled = np.minimum(LINEAR_LIGHT * gain, 1.0)
    return cv2.LUT(rgb, np.round(srgb_encoded(scaled) * 255).astype(np.uint8))


RECHECK_REGION = 2.5
"""A face missing next to where it was seen is looked for in a square this many times its size."""


class FaceSearch:
    """Faces of consecutive sampled frames, found in batches, with a second look where the fast
    pass is likely to have missed one.

    The fast pass runs MTCNN on copies downscaled to `detect_max_side` (about a third of the
    time of full resolution on 1080p), where a face of 100 pixels shrinks to 35 and is sometimes
    lost. So where a person seen in the previous or next sampled frame is missing, the region
    around where they were is searched again at full resolution (`FaceFinder.detect_region`,
    tens of milliseconds); and a large still image with no face at all is searched again whole
    at `recheck_max_side`. A dark frame in which no face is found is searched again brightened
    (`brightened_if_dark`), its faces cropped from the frame as it is. The engine and `prepare`
    both find faces through this class.
    """

    def __init__(self, finder: FaceFinder, settings: FaceSettings) -> None:
        self.finder = finder
        self.settings = settings
        self.faces: list[list[Face]] = []
        self._last_boxes: list[Box] = []
        self._last_frame: np.ndarray | None = None

    def add(self, frames: Sequence[np.ndarray]) -> list[list[Face]]:
        """Find and crop the faces of the next consecutive frames; returns them per frame."""
        frames = list(frames)
        detections = self.finder.detect(frames)
        self._second_look(frames, detections)
        found = [
            [self._face(len(self.faces) + offset, rgb, d) for d in frame_detections]
            for offset, (rgb, frame_detections) in enumerate(zip(frames, detections, strict=True))
        ]
        self.faces.extend(found)
        return found

    def add_all(self, frames: Sequence[np.ndarray]) -> list[list[Face]]:
        """`add` over frames already decoded, in batches of `detect_batch`, as the engine adds
        them while it decodes; returns the faces of every frame added so far."""
        for start in range(0, len(frames), self.settings.detect_batch):
            self.add(frames[start : start + self.settings.detect_batch])
        return self.faces

    def link(self) -> int:
        """Give every face found so far its track (person); returns the number of people."""
        return link_tracks(self.faces, self.settings.track_iou)

    def _face(self, position: int, rgb: np.ndarray, detection: Detection) -> Face:
        region = crop_box_for(detection.box, self.settings)
        return Face(
            position=position,
            box=detection.box,
            confidence=detection.confidence,
            landmarks=detection.landmarks,
            crop=crop_square(rgb, region, self.settings.crop_size),
            crop_box=region,
        )

    def _second_look(self, frames: list[np.ndarray], detections: list[list[Detection]]) -> None:
        settings = self.settings
        fast_boxes = [[d.box for d in found] for found in detections]
        for i, rgb in enumerate(frames):
            before = fast_boxes[i - 1] if i > 0 else self._last_boxes
            after = fast_boxes[i + 1] if i + 1 < len(frames) else []
            for seen in before + after:
                if any(iou(seen, d.box) >= settings.track_iou * 0.5 for d in detections[i]):
                    continue
                for extra in self.finder.detect_region(rgb, _around(seen, RECHECK_REGION)):
                    if not any(iou(extra.box, d.box) > 0.3 for d in detections[i]):
                        detections[i].append(extra)
            if (
                not detections[i]
                and not self.faces
                and len(frames) == 1
                and max(rgb.shape[:2]) > settings.detect_max_side
            ):
                # One large picture without a face: a small face may need more pixels.
                height, width = rgb.shape[:2]
                detections[i] = self.finder.detect_region(rgb, (0, 0, width, height))
            if not detections[i] and settings.dark_mean_light > 0:
                brightened = brightened_if_dark(rgb, settings)
                if brightened is not None:
                    # Found on the brightened copy; cropped from the frame as it is.
                    detections[i] = self.finder.detect([brightened])[0]
            detections[i].sort(key=lambda d: d.box[2] * d.box[3], reverse=True)
            del detections[i][settings.max_faces_per_frame :]
        if frames:
            self._last_boxes = [d.box for d in detections[-1]]


def find_faces(
    frames: Sequence[np.ndarray], finder: FaceFinder, settings: FaceSettings, first: int = 0
) -> list[list[Face]]:
    """Detect and crop the faces of consecutive sampled frames (one batch, with the second
    look of `FaceSearch`); `first` is the position of `frames[0]` in the whole sequence. Tracks
    are linked afterwards with `link_tracks`."""
    search = FaceSearch(finder, settings)
    search.faces = [[] for _ in range(first)]
    return search.add(frames)
