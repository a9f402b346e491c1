"""Rule 116: does the shipped ensemble find the edits people make to their own faces?

Rule 65 measured a part of a face replaced by another person's. The edits people make most to
their own photos replace nothing: a liquify warp (eyes enlarged, face slimmed) and skin smoothing
(a beauty filter). Real validation crops of the shared sources (the engine's framing, from the
prepared cache, each with its own face mesh) are edited each way and scored, with their
originals, as one-face photos are (`models/` as shipped, the pictures' weighing), as made and
re-shared. No test split is read.

    .venv/bin/python -m benchmarks.own_face_edits --json own_face_edits.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from sklearn.metrics import roc_auc_score

from benchmarks.sharp_swaps import hull_region
from pipeline.config import Settings
from pipeline.engine.ensemble import Ensemble
from pipeline.training.augment import FACE_PARTS, reshare
from pipeline.training.cross_source import bootstrap_roc_auc, interval
from pipeline.training.data import Sample, balanced_subset, read_rgb
from pipeline.training.sources import face_landmarks, source_samples

SOURCES = {"dfdc-faces": 150, "gan-faces": 150, "swap-faces": None}
"""Real validation crops drawn per source (None: every one)."""
SEED = 116
EYE_CONTOUR = 16
"""Each eye region of `FACE_PARTS` starts with the eye's 16 contour points (its brow follows)."""
EYE_FACTOR = (1.12, 1.25)
EYE_RADIUS = 1.6
"""The magnified disc's radius, in the eye's half-widths."""
SLIM_PULL = (0.04, 0.08)
"""How far the outline below the nose is pulled towards the midline, in face widths."""
SLIM_SPREAD = 0.25
"""The Gaussian sigma of each outline point's pull, in face widths."""
BORDER_FADE = 0.1
"""Both warps fade to nothing over this share of the crop's side at its edges: the crop is cut
from a larger picture, and a warp reaching its edge would pull in reflected pixels."""
NOSE_TIP = 1
"""The face mesh's nose-tip point."""
SMOOTH_COLOUR_SIGMA = (30.0, 60.0)
SMOOTH_SPACE_SIGMA = (3.0, 6.0)
SMOOTH_STRENGTH = (0.6, 0.9)
KEPT_PARTS_GROW = 1.3
FEATHER_SIGMA = 3.0


@dataclass(frozen=True)
class Edit:
    """An edited crop and its size: the largest displacement in pixels for a warp, the mean
    absolute change inside the smoothed region for a filter."""

    image: np.ndarray
    size: float


def _seed(*parts: str) -> int:
    return int(hashlib.sha256("/".join(parts).encode()).hexdigest()[:16], 16)


def _warped(image: np.ndarray, shift_x: np.ndarray, shift_y: np.ndarray) -> Edit:
    """`image` with each output pixel taken from (x - shift_x, y - shift_y), bicubically, the
    shift faded at the crop's edges (`BORDER_FADE`)."""
    height, width = image.shape[:2]
    grid_y, grid_x = np.mgrid[0:height, 0:width].astype(np.float32)
    edge = np.minimum(np.minimum(grid_x, width - 1 - grid_x), np.minimum(grid_y, height - 1 - grid_y))
    fade = np.clip(edge / (BORDER_FADE * min(height, width)), 0, 1)
    shift_x, shift_y = shift_x * fade, shift_y * fade
    warped = cv2.remap(
        image,
        grid_x - shift_x.astype(np.float32),
        grid_y - shift_y.astype(np.float32),
        interpolation=cv2.INTER_CUBIC,
        borderMode=cv2.BORDER_REFLECT_101,
    )
    return Edit(warped, float(np.sqrt(shift_x**2 + shift_y**2).max()))


def enlarged_eyes(image: np.ndarray, points: np.ndarray, rng: np.random.Generator) -> Edit:
    """Each eye magnified about its centre by a factor from `EYE_FACTOR`, inside a disc of
    `EYE_RADIUS` half-widths whose edge stays put (the fall-off is smooth)."""
    height, width = image.shape[:2]
    grid_y, grid_x = np.mgrid[0:height, 0:width].astype(np.float64)
    shift_x, shift_y = np.zeros((height, width)), np.zeros((height, width))
    factor = rng.uniform(*EYE_FACTOR)
    for region in FACE_PARTS["eyes"]:
        contour = points[list(region[:EYE_CONTOUR])]
        centre = contour.mean(axis=0)
        radius = EYE_RADIUS * (contour[:, 0].max() - contour[:, 0].min()) / 2
        offset_x, offset_y = grid_x - centre[0], grid_y - centre[1]
        reach = np.clip(np.hypot(offset_x, offset_y) / radius, 0, 1)
        # A pixel at distance d reads from d * scale: 1/factor at the centre, 1 at the disc's edge.
        scale = 1 - (1 - 1 / factor) * (1 - reach**2) ** 2
        shift_x += offset_x * (1 - scale)
        shift_y += offset_y * (1 - scale)
    return _warped(image, shift_x, shift_y)


def slimmed_face(image: np.ndarray, points: np.ndarray, rng: np.random.Generator) -> Edit:
    """The mesh's outline below the nose pulled towards the face's vertical midline by a share of
    the face's width from `SLIM_PULL`, each point's pull spread by a Gaussian."""
    height, width = image.shape[:2]
    grid_y, grid_x = np.mgrid[0:height, 0:width].astype(np.float64)
    outline = points[cv2.convexHull(points.astype(np.float32), returnPoints=False).ravel()]
    outline = outline[outline[:, 1] > points[NOSE_TIP, 1]]
    face_width = points[:, 0].max() - points[:, 0].min()
    midline = points[NOSE_TIP, 0]
    pull = rng.uniform(*SLIM_PULL) * face_width
    sigma = SLIM_SPREAD * face_width
    weighted, total = np.zeros((height, width)), np.zeros((height, width))
    for x, y in outline:
        weight = np.exp(-((grid_x - x) ** 2 + (grid_y - y) ** 2) / (2 * sigma**2))
        weighted += weight * pull * np.sign(midline - x)
        total += weight
    # The mean pull of the nearby points, faded where no point is near.
    shift_x = weighted / np.maximum(total, 1.0)
    return _warped(image, shift_x, np.zeros_like(shift_x))


def skin_mask(shape: tuple[int, ...], points: np.ndarray) -> np.ndarray:
    """1 on the face's skin (the mesh's hull without the eyes, brows and mouth), feathered."""
    mask = hull_region(shape, points, 1.0)
    for region in (*FACE_PARTS["eyes"], *FACE_PARTS["mouth"]):
        mask *= 1.0 - hull_region(shape, points[list(region)], KEPT_PARTS_GROW)
    return cv2.GaussianBlur(mask, (0, 0), FEATHER_SIGMA)


def smoothed_skin(image: np.ndarray, points: np.ndarray, rng: np.random.Generator) -> Edit:
    """A bilateral filter blended into the skin (`skin_mask`) at a strength from `SMOOTH_STRENGTH`."""
    filtered = cv2.bilateralFilter(image, -1, rng.uniform(*SMOOTH_COLOUR_SIGMA), rng.uniform(*SMOOTH_SPACE_SIGMA))
    mask = skin_mask(image.shape, points)[..., None] * rng.uniform(*SMOOTH_STRENGTH)
    edited = np.clip(image * (1 - mask) + filtered * mask + 0.5, 0, 255).astype(np.uint8)
    inside = mask[..., 0] > 0.5 * mask.max()
    return Edit(edited, float(np.abs(edited.astype(np.int16) - image)[inside].mean()))


EDITS: dict[str, Callable[[np.ndarray, np.ndarray, np.random.Generator], Edit]] = {
    "eyes enlarged": enlarged_eyes,
    "face slimmed": slimmed_face,
    "skin smoothed": smoothed_skin,
}


def chosen_crops() -> list[Sample]:
    """Real validation crops that carry their own face mesh, drawn per `SOURCES` (seed `SEED`)."""
    chosen: list[Sample] = []
    for source, count in SOURCES.items():
        reals = [
            s
            for s in source_samples(source, "val")
            if s.label == 0 and s.source == source and s.landmarks is not None and s.landmarks.exists()
        ]
        chosen += reals if count is None else balanced_subset(reals, count, SEED)
    return chosen


def _figures(scores: dict[str, dict[str, np.ndarray]], edit: str, sources: np.ndarray) -> dict:
    """An edit's figures against the originals (both scored the same way)."""
    originals, edits = scores["original"], scores[edit]
    count = len(originals["ensemble"])
    labels = np.r_[np.zeros(count), np.ones(count)]
    pair = {name: np.r_[originals[name], edits[name]] for name in originals}
    figures = {
        "roc_auc": {name: float(roc_auc_score(labels, values)) for name, values in pair.items()},
        "interval": interval(bootstrap_roc_auc(labels, pair["ensemble"], SEED)),
        "edit_higher": float(np.mean(edits["ensemble"] > originals["ensemble"])),
        "edits_at_half": float(np.mean(edits["ensemble"] >= 0.5)),
        "originals_at_half": float(np.mean(originals["ensemble"] >= 0.5)),
        "per_source": {},
    }
    for source in np.unique(sources):
        rows = np.r_[sources == source, sources == source]
        figures["per_source"][str(source)] = float(roc_auc_score(labels[rows], pair["ensemble"][rows]))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    samples = chosen_crops()
    sources = np.array([s.source for s in samples])
    print("crops: " + ", ".join(f"{name} {int(np.sum(sources == name))}" for name in SOURCES), flush=True)
    originals = [read_rgb(s.path) for s in samples]
    meshes = [face_landmarks(s, crop.shape[0]) for s, crop in zip(samples, originals, strict=True)]
    views: dict[str, list[np.ndarray]] = {"original": originals}
    sizes: dict[str, float] = {}
    for edit, apply in EDITS.items():
        made = [
            apply(crop, mesh, np.random.default_rng(_seed(edit, s.path.name)))
            for s, crop, mesh in zip(samples, originals, meshes, strict=True)
        ]
        views[edit] = [m.image for m in made]
        sizes[edit] = float(np.mean([m.size for m in made]))
    ensemble = Ensemble(Settings().models_dir)
    spec = ensemble.spec.for_media("image")
    report: dict[str, dict] = {}
    for column in ("as made", "re-shared"):
        scores: dict[str, dict[str, np.ndarray]] = {}
        for view, crops in views.items():
            if column == "re-shared":
                # One draw per crop: an edit and its original are passed around alike.
                crops = [
                    reshare(c, np.random.default_rng(_seed("reshare", s.path.name)))
                    for s, c in zip(samples, crops, strict=True)
                ]
            scored = ensemble.score(np.stack(crops), spec=spec)
            scores[view] = {"ensemble": scored.ensemble, **scored.members}
        report[column] = {edit: _figures(scores, edit, sources) for edit in EDITS}
    members = list(report["as made"]["eyes enlarged"]["roc_auc"])
    print("\n| edit | size | column | " + " | ".join(members) + " | edit higher | edits / originals at 0.5 |")
    print("|---" * (len(members) + 5) + "|")
    for edit in EDITS:
        for column, figures in ((c, report[c][edit]) for c in report):
            low, high = figures["interval"] or (float("nan"), float("nan"))
            cells = [f"{figures['roc_auc'][m]:.3f}" for m in members]
            cells[0] += f" [{low:.3f}, {high:.3f}]"
            print(
                f"| {edit} | {sizes[edit]:.1f} | {column} | "
                + " | ".join(cells)
                + f" | {figures['edit_higher']:.0%} | {figures['edits_at_half']:.0%} / {figures['originals_at_half']:.0%} |"
            )
    for edit in EDITS:
        per_source = report["as made"][edit]["per_source"]
        print(f"{edit}, as made, ensemble per source: " + ", ".join(f"{k} {v:.3f}" for k, v in per_source.items()))
    if args.json:
        args.json.write_text(json.dumps({"crops": len(samples), "sizes": sizes, "figures": report}, indent=1))


if __name__ == "__main__":
    main()
