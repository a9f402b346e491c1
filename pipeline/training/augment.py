"""Training augmentation that matches what the ensemble meets in the wild, and self-blended
pseudo-fakes (Shiohara & Yamasaki, "Detecting Deepfakes with Self-Blended Images", CVPR 2022).

Every function takes and returns an RGB uint8 array and draws from a numpy `Generator`, so a
seed reproduces a training run.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, ClassVar

import cv2
import numpy as np

from pipeline.engine.ensemble import jpeg_round_trip

# Crop-relative MTCNN landmarks (left eye, right eye, nose, mouth left, mouth right), the median
# over 80 training crops of each shared data set (measured with pipeline.engine.faces.FaceFinder).
# Used to place the self-blending mask when a crop comes without its own landmarks.
LANDMARK_TEMPLATES = {
    "dfdc-faces": np.array([[0.308, 0.304], [0.71, 0.299], [0.509, 0.496], [0.339, 0.737], [0.681, 0.737]]),
    "gan-faces": np.array([[0.371, 0.469], [0.621, 0.469], [0.5, 0.621], [0.377, 0.719], [0.618, 0.719]]),
}
DEFAULT_TEMPLATE = "dfdc-faces"
FACE_PARTS = {
    "eyes": (
        # Each eye's contour and its brow (MediaPipe face mesh indices), the person's right, then left.
        (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)
        + (46, 53, 52, 65, 55, 70, 63, 105, 66, 107),
        (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466)
        + (276, 283, 282, 295, 285, 300, 293, 334, 296, 336),
    ),
    "nose": ((168, 6, 197, 195, 5, 4, 1, 19, 94, 2, 98, 97, 326, 327, 129, 358, 48, 278, 64, 294, 219, 439),),
    "mouth": ((61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185),),
}
"""The parts of a face a photo edit replaces, as regions of the 468-point face mesh (each a
convex outline), for part self-blends (rule 66) and the made part edits (rule 65)."""
TEMPLATE_PARTS = {"eyes": (0, 1), "nose": (2,), "mouth": (3, 4)}
"""The same parts among five template points (eyes, nose, mouth corners)."""


def random_part(rng: np.random.Generator) -> str:
    """One of `FACE_PARTS`, drawn evenly: the part a part self-blend replaces."""
    return list(FACE_PARTS)[int(rng.integers(len(FACE_PARTS)))]


@dataclass(frozen=True)
class AugmentSettings:
    """Probabilities and ranges of each augmentation."""

    ADDED_LATER: ClassVar[tuple[str, ...]] = ("sharpen_p", "sharpen_amount")
    """Fields that name a views folder only when set (see `sources._settings_digest`)."""

    jpeg_p: float = 0.6
    jpeg_quality: tuple[int, int] = (40, 100)
    blur_p: float = 0.2
    blur_sigma: tuple[float, float] = (0.3, 1.5)
    # Unsharp masking (as phones and photo apps sharpen), off by default: added after the
    # other settings, so it neither draws from the generator nor names the cache folder unless set.
    sharpen_p: float = 0.0
    sharpen_amount: tuple[float, float] = (0.3, 1.0)
    rescale_p: float = 0.3
    rescale_factor: tuple[float, float] = (0.35, 0.9)
    noise_p: float = 0.2
    noise_sigma: tuple[float, float] = (2.0, 8.0)
    color_p: float = 0.5
    flip_p: float = 0.5
    affine_p: float = 0.5
    shift: float = 0.06
    scale: tuple[float, float] = (0.9, 1.1)

    @staticmethod
    def from_json(overrides: dict[str, Any]) -> AugmentSettings:
        """The defaults with some fields replaced (a recipe's `augmented_settings`); an unknown
        field or a malformed value is a `ValueError`."""
        defaults = AugmentSettings()
        known = {f.name for f in fields(AugmentSettings)}
        values: dict[str, Any] = {}
        for name, value in overrides.items():
            if name not in known:
                raise ValueError(f"unknown augmentation setting {name!r}")
            default = getattr(defaults, name)
            # Cast to the default's types, so 0 and 0.0 name the same settings (and cache folder).
            if isinstance(default, tuple):
                low, high = (type(default[0])(v) for v in value)
                if low > high:
                    raise ValueError(f"{name} must be [low, high], got {value!r}")
                values[name] = (low, high)
            elif isinstance(value, int | float) and not isinstance(value, bool):
                if name.endswith("_p") and not 0 <= value <= 1:
                    raise ValueError(f"{name} is a probability, between 0 and 1, not {value!r}")
                values[name] = type(default)(value)
            else:
                raise ValueError(f"{name} must be a number, got {value!r}")
        return AugmentSettings(**values)


@dataclass(frozen=True)
class ReshareSettings:
    """How the cross-source table re-shares a held-out crop: downscaled by a factor drawn from
    `scale` and brought back to its size, then JPEG-compressed at a quality drawn from
    `jpeg_quality`, as a picture that went through a messaging app or a social network before it
    was uploaded. Drawn once per crop from a seed of its name, so every run scores the same
    pictures."""

    scale: tuple[float, float] = (0.5, 1.0)
    jpeg_quality: tuple[int, int] = (50, 90)


def rescale(image: np.ndarray, factor: float) -> np.ndarray:
    """Down- then up-scale: the softness of a small face blown up, as in many DFDC crops."""
    height, width = image.shape[:2]
    small = cv2.resize(
        image, (max(8, round(width * factor)), max(8, round(height * factor))), interpolation=cv2.INTER_AREA
    )
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)


def sharpen(image: np.ndarray, amount: float) -> np.ndarray:
    """Unsharp masking: the picture plus `amount` times its detail above a 1-pixel blur."""
    blurred = cv2.GaussianBlur(image, (0, 0), 1.0)
    return cv2.addWeighted(image, 1.0 + amount, blurred, -amount, 0)


def color_jitter(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + rng.uniform(-5, 5)) % 180
    hsv[..., 1] *= rng.uniform(0.8, 1.2)
    out = cv2.cvtColor(hsv.clip(0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32)
    contrast, brightness = rng.uniform(0.8, 1.2), rng.uniform(-20, 20)
    return ((out - out.mean()) * contrast + out.mean() + brightness).clip(0, 255).astype(np.uint8)


def affine(image: np.ndarray, rng: np.random.Generator, shift: float, scale: tuple[float, float]) -> np.ndarray:
    """A small shift and zoom of the crop, as face boxes jitter between frames."""
    height, width = image.shape[:2]
    zoom = rng.uniform(*scale)
    dx, dy = rng.uniform(-shift, shift, size=2) * (width, height)
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), 0.0, zoom)
    matrix[:, 2] += (dx, dy)
    # Reflected borders, like pipeline.faces.crop_square for faces at the frame's edge.
    return cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)


def augment(image: np.ndarray, rng: np.random.Generator, settings: AugmentSettings = AugmentSettings()) -> np.ndarray:
    """One random in-the-wild degradation of a face crop."""
    s = settings
    if rng.random() < s.flip_p:
        image = image[:, ::-1].copy()
    if rng.random() < s.affine_p:
        image = affine(image, rng, s.shift, s.scale)
    if rng.random() < s.color_p:
        image = color_jitter(image, rng)
    if rng.random() < s.rescale_p:
        image = rescale(image, rng.uniform(*s.rescale_factor))
    if rng.random() < s.blur_p:
        image = cv2.GaussianBlur(image, (0, 0), rng.uniform(*s.blur_sigma))
    if s.sharpen_p > 0 and rng.random() < s.sharpen_p:
        image = sharpen(image, rng.uniform(*s.sharpen_amount))
    if rng.random() < s.noise_p:
        noise = rng.normal(0.0, rng.uniform(*s.noise_sigma), image.shape)
        image = (image + noise).clip(0, 255).astype(np.uint8)
    if rng.random() < s.jpeg_p:
        image = jpeg_round_trip(image, int(rng.integers(s.jpeg_quality[0], s.jpeg_quality[1] + 1)))
    return image


def reshare(image: np.ndarray, rng: np.random.Generator, settings: ReshareSettings = ReshareSettings()) -> np.ndarray:
    """A re-shared copy of a crop (see `ReshareSettings`)."""
    image = rescale(image, rng.uniform(*settings.scale))
    return jpeg_round_trip(image, int(rng.integers(settings.jpeg_quality[0], settings.jpeg_quality[1] + 1)))


def face_mask(shape: tuple[int, int], landmarks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A soft, randomly deformed mask over the face, float32 in [0, 1].

    With a face mesh (many points) the mask is the convex hull of the points, as in the
    self-blended images paper, so it follows this face's own outline, shrunk towards its centre by
    5-25%: the engine's crops are tight, and the whole mesh (forehead to chin) would put the
    blending boundary outside the picture. With five points (eyes,
    nose, mouth corners: too few for a hull that covers the face) it is an ellipse around them,
    enlarged at random. Either way it is warped by a smooth random displacement field and
    blurred, so the boundary is never a clean curve.
    """
    height, width = shape
    mask = np.zeros((height, width), np.float32)
    if len(landmarks) > 5:
        centre = landmarks.mean(axis=0)
        shrunk = centre + (landmarks - centre) * rng.uniform(0.75, 0.95)
        hull = cv2.convexHull(np.round(shrunk).astype(np.int32))
        cv2.fillConvexPoly(mask, hull, 1.0)
        # Shrink or grow the hull a little, like the paper's random erosion and dilation.
        kernel = np.ones((3, 3), np.uint8)
        steps = int(rng.integers(-3, 4))
        if steps < 0:
            mask = cv2.erode(mask, kernel, iterations=-steps)
        elif steps > 0:
            mask = cv2.dilate(mask, kernel, iterations=steps)
    else:
        center = landmarks.mean(axis=0)
        spread = landmarks.max(axis=0) - landmarks.min(axis=0)
        axes = spread * rng.uniform(0.75, 1.05, size=2) + 0.05 * np.array([width, height])
        cv2.ellipse(
            mask,
            (round(center[0]), round(center[1] + spread[1] * 0.05)),
            (round(axes[0]), round(axes[1])),
            0,
            0,
            360,
            1.0,
            -1,
        )
    return _roughened(mask, rng, 0.04, 7)


def _roughened(mask: np.ndarray, rng: np.random.Generator, displacement: float, blur_steps: int) -> np.ndarray:
    """`mask` warped by a smooth random displacement field (spread `displacement` of the picture's
    side) and blurred (a kernel of 1 to `blur_steps` steps of 4 px), so its boundary is never a
    clean curve; scaled to peak at 1."""
    height, width = mask.shape
    grid = 4
    shifts = rng.normal(0.0, displacement * min(width, height), size=(grid, grid, 2)).astype(np.float32)
    field = cv2.resize(shifts, (width, height), interpolation=cv2.INTER_CUBIC)
    xs, ys = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    mask = cv2.remap(mask, xs + field[..., 0], ys + field[..., 1], cv2.INTER_LINEAR)
    kernel_size = int(rng.integers(1, blur_steps + 1)) * 4 + 1
    mask = cv2.GaussianBlur(mask, (kernel_size, kernel_size), 0)
    return mask / max(float(mask.max()), 1e-6)


def part_mask(shape: tuple[int, int], landmarks: np.ndarray, part: str, rng: np.random.Generator) -> np.ndarray:
    """A soft mask over one part of the face (`FACE_PARTS`), float32 in [0, 1]: the convex hull
    of each of its regions of the face mesh (with five points, an ellipse about the part's
    template points), grown 1.1-1.5 times about its centre so the boundary lies on the skin
    around it, warped and blurred as `face_mask` does, on the smaller scale of a part."""
    height, width = shape
    mask = np.zeros((height, width), np.float32)
    grow = rng.uniform(1.1, 1.5)
    if len(landmarks) > 5:
        for region in FACE_PARTS[part]:
            points = landmarks[list(region)]
            centre = points.mean(axis=0)
            hull = cv2.convexHull(np.round(centre + (points - centre) * grow).astype(np.int32))
            cv2.fillConvexPoly(mask, hull, 1.0)
    else:
        points = landmarks[list(TEMPLATE_PARTS[part])]
        centre = points.mean(axis=0)
        axes = ((points.max(axis=0) - points.min(axis=0)) / 2 + 0.08 * np.array([width, height])) * grow
        cv2.ellipse(mask, (round(centre[0]), round(centre[1])), (round(axes[0]), round(axes[1])), 0, 0, 360, 1.0, -1)
    return _roughened(mask, rng, 0.015, 3)


def self_blend(
    image: np.ndarray,
    landmarks: np.ndarray,
    rng: np.random.Generator,
    blur_source: bool = True,
    resample_source: bool = True,
    misplacement: float = 1.0,
    part: str | None = None,
) -> np.ndarray:
    """A pseudo-fake made from one real face: a slightly altered copy of the face blended back
    inside a soft mask, so the only evidence is a blending boundary and a colour or frequency
    mismatch, the traces every face swap leaves whatever generator made it.

    `landmarks` are points of the face in pixels of `image`: its 468-point face mesh (the mask
    is their hull), or five MTCNN points. With `blur_source` false the 30% of pasted faces that
    would be blurred are left as they are, and with `resample_source` false the pasted face is
    moved by whole pixels and not resized, so it is not interpolated (bilinear resampling softens
    it). `misplacement` scales how far it is moved and resized (at 0 it stays where it was, so a
    mask below 1 cannot mix the face with a shifted copy of itself: a doubled image is a softer
    one). Either way the same draws are made, so every other pseudo-fake is identical. These were
    tried as why the CLIP probe reads soft real faces as fake (rules 48-54: the blur does not
    teach it; the resampling teaches a probe trained on pseudo-fakes alone about half of it; the
    move little more, and without it the probe does worse on sources it never saw, while twice
    the move adds nothing). With `part` (one of `FACE_PARTS`) only that part of the face is
    blended (`part_mask`), as a photo edit replaces it (rule 66).
    """
    height, width = image.shape[:2]
    source = image.copy()
    # The "source" face: colour and sharpness shifted...
    if rng.random() < 0.5:
        source = color_jitter(source, rng)
    else:
        hsv_shift = rng.uniform(-12, 12, size=3)
        source = (source.astype(np.float32) + hsv_shift).clip(0, 255).astype(np.uint8)
    if rng.random() < 0.3:
        sigma = rng.uniform(0.5, 1.5)
        if blur_source:
            source = cv2.GaussianBlur(source, (0, 0), sigma)
    elif rng.random() < 0.3:
        source = sharpen(source, 0.6)
    # ...and slightly moved or resized, like a swapped face that does not sit exactly in place.
    zoom = rng.uniform(0.95, 1.05)
    dx, dy = rng.uniform(-0.03, 0.03, size=2) * (width, height)
    if misplacement != 1:  # kept apart so that the default's arithmetic is bit for bit the same
        zoom, dx, dy = 1.0 + misplacement * (zoom - 1.0), misplacement * dx, misplacement * dy
    if misplacement and resample_source:
        matrix = cv2.getRotationMatrix2D((width / 2, height / 2), 0.0, zoom)
        matrix[:, 2] += (dx, dy)
        source = cv2.warpAffine(source, matrix, (width, height), borderMode=cv2.BORDER_REFLECT_101)
    elif misplacement:
        matrix = np.float32([[1, 0, round(dx)], [0, 1, round(dy)]])
        source = cv2.warpAffine(
            source, matrix, (width, height), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_REFLECT_101
        )
    mask = (
        face_mask((height, width), landmarks, rng) if part is None else part_mask((height, width), landmarks, part, rng)
    )
    mask *= rng.choice([0.25, 0.5, 0.75, 1.0, 1.0, 1.0])
    blended = mask[..., None] * source.astype(np.float32) + (1.0 - mask[..., None]) * image.astype(np.float32)
    return blended.clip(0, 255).astype(np.uint8)


def template_landmarks(source: str, size: int) -> np.ndarray:
    """Template landmarks in pixels of a `size` crop from the named data set."""
    return LANDMARK_TEMPLATES.get(source, LANDMARK_TEMPLATES[DEFAULT_TEMPLATE]) * size
