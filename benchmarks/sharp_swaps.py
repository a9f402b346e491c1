"""Rule 60: does the CLIP probe find a face swap as sharp as the photo it sits in? (Rule 65: a
photo edit replacing one part of a face?)

The inswapper source cannot say (its swaps are softer than its reals: softness alone tells them at
0.985). So swaps are made here from photos the swap source's fold probes never saw: each real crop
of `swap-faces` gets another of them pasted in (`paste_face`), once sharp and once with the donor
softened first (halved and blown up again). Scored against the same real crops as they are by
softness alone and by fold members trained without `swap-faces` (probes, or with `--recipe` any
member: rule 63), as made and re-shared (rule 61). Rule 65's arms paste one part of the donor's
face instead (`paste_part`: eyes with brows, nose or mouth).

    .venv/bin/python -m benchmarks.sharp_swaps --runs clip=RUNS48 clip_soft_both=RUNS58 clip_no_blends=RUNS60 --json sharp_swaps.json
    .venv/bin/python -m benchmarks.sharp_swaps --recipe models/recipe.json --runs clip=RUNS mobilenetv2=RUNS
    .venv/bin/python -m benchmarks.sharp_swaps --arms eyes nose mouth --recipe models/recipe.json --runs ...
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from sklearn.metrics import roc_auc_score

from benchmarks.focus_baseline import focus_of, softness
from benchmarks.recipes import fold_member, fold_probe, fold_temperatures, prepared_recipe
from pipeline.config import cache_dir
from pipeline.engine.ensemble import weighted_logit
from pipeline.errors import DataError
from pipeline.training.augment import FACE_PARTS, rescale
from pipeline.training.cross_source import (
    ENSEMBLE,
    bootstrap_roc_auc,
    interval,
    seeded,
)
from pipeline.training.data import Sample, read_rgb, write_rgb
from pipeline.training.recipe import TrainedMember, trained_logits
from pipeline.training.sources import CROP_SIDE, face_landmarks, reshared_samples, source_samples

SOURCE = "swap-faces"
SEED = 60
"""Seeds the bootstrap intervals."""
MASK_SHRINK = 0.8
"""The paste covers the hull of the target's face mesh shrunk to this fraction about its centre."""
FEATHER_SIGMA = 3.0
"""Gaussian sigma (pixels) of the mask's edge."""
SOFT_FACTOR = 0.5
"""The soft arm's donor is downscaled to this fraction of its side and blown up again."""
ARMS = ("sharp", "soft")
"""The whole-face arms (rules 60-64), which a run scores unless told others."""
PART_GROW = 1.3
"""A part's region is the hull of its points grown to this size about its centre (onto skin)."""
FEATHERED = "-feathered"
"""Rule 68: a part arm so suffixed is alpha-blended (colours matched, edge feathered), not Poisson-blended."""
PART_FEATHER_SIGMA = 2.0
"""Gaussian sigma (pixels) of a feathered part's edge (the regions are 20-60 px across)."""
PART_ARMS = (*FACE_PARTS, *(f"{part}{FEATHERED}" for part in FACE_PARTS))
"""Rules 65 and 68's arms: one part of the donor's face, Poisson-blended or feathered."""


def _lab(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)


def _complex(points: np.ndarray) -> np.ndarray:
    return points[..., 0].astype(np.float64) + 1j * points[..., 1].astype(np.float64)


def similarity(donor_points: np.ndarray, target_points: np.ndarray) -> np.ndarray:
    """The 2 x 3 similarity transform (rotation, scale, shift) that maps `donor_points` onto
    `target_points` with the least squared error (closed form: points as complex numbers)."""
    donor, target = _complex(donor_points), _complex(target_points)
    donor_mean, target_mean = donor.mean(), target.mean()
    scale = np.vdot(donor - donor_mean, target - target_mean) / np.vdot(donor - donor_mean, donor - donor_mean)
    shift = target_mean - scale * donor_mean
    return np.array([[scale.real, -scale.imag, shift.real], [scale.imag, scale.real, shift.imag]])


def closest_donors(meshes: np.ndarray) -> np.ndarray:
    """Each face's donor: the other face whose mesh a similarity transform fits best (the least
    residual, shapes centred and scaled to one), so a swap pairs faces of about the same pose and
    shape, as a face-swap method renders the donor's identity in the target's pose."""
    shapes = _complex(meshes)
    shapes = shapes - shapes.mean(axis=1, keepdims=True)
    shapes /= np.linalg.norm(shapes, axis=1, keepdims=True)
    residual = 1.0 - np.abs(shapes.conj() @ shapes.T) ** 2
    np.fill_diagonal(residual, np.inf)
    return residual.argmin(axis=1)


def _aligned(
    target: np.ndarray, donor: np.ndarray, donor_points: np.ndarray, target_points: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """`donor` moved onto `target`'s pixels by the `similarity` of the points (Lanczos, so the
    alignment softens little), and where it covers them."""
    height, width = target.shape[:2]
    matrix = similarity(donor_points, target_points)
    warped = cv2.warpAffine(donor, matrix, (width, height), flags=cv2.INTER_LANCZOS4, borderMode=cv2.BORDER_REFLECT_101)
    covered = cv2.warpAffine(np.ones(donor.shape[:2], np.float32), matrix, (width, height), flags=cv2.INTER_NEAREST)
    return warped, covered


def hull_region(shape: tuple[int, ...], points: np.ndarray, size: float) -> np.ndarray:
    """1 inside the convex hull of `points` scaled to `size` about their centre, 0 outside."""
    centre = points.mean(axis=0)
    hull = cv2.convexHull(np.round(centre + (points - centre) * size).astype(np.int32))
    inside = np.zeros(shape[:2], np.float32)
    cv2.fillConvexPoly(inside, hull, 1.0)
    return inside


def _blend(target: np.ndarray, warped: np.ndarray, inside: np.ndarray, feather_sigma: float) -> np.ndarray:
    """`warped` over `target` inside the region `inside`: its Lab colours matched to the target's
    there (mean and spread per channel), the region's edge feathered by `feather_sigma`."""
    mask = cv2.GaussianBlur(inside, (0, 0), feather_sigma)[..., None]
    pasted, kept = _lab(warped), _lab(target)
    region = inside > 0.5
    matched = (pasted - pasted[region].mean(axis=0)) / (pasted[region].std(axis=0) + 1e-6)
    matched = matched * kept[region].std(axis=0) + kept[region].mean(axis=0)
    colour = cv2.cvtColor(matched.astype(np.float32), cv2.COLOR_Lab2RGB) * 255.0
    blended = mask * colour + (1.0 - mask) * target.astype(np.float32)
    return np.round(blended).clip(0, 255).astype(np.uint8)


def paste_face(
    target: np.ndarray, target_points: np.ndarray, donor: np.ndarray, donor_points: np.ndarray
) -> np.ndarray:
    """`donor`'s face pasted over `target`'s: aligned by the `similarity` of their face meshes,
    and blended (`_blend`) inside the target's mesh hull shrunk by `MASK_SHRINK` and kept off any
    border the aligned donor does not cover."""
    warped, covered = _aligned(target, donor, donor_points, target_points)
    inside = hull_region(target.shape, target_points, MASK_SHRINK)
    margin = int(np.ceil(3 * FEATHER_SIGMA))
    inside *= cv2.erode(covered, np.ones((2 * margin + 1, 2 * margin + 1), np.uint8))
    return _blend(target, warped, inside, FEATHER_SIGMA)


def paste_part(
    target: np.ndarray,
    target_points: np.ndarray,
    donor: np.ndarray,
    donor_points: np.ndarray,
    part: str,
    feathered: bool = False,
) -> np.ndarray:
    """Rule 65: one part of `donor`'s face (`FACE_PARTS`) over the same part of `target`'s, aligned by
    the `similarity` of that part's points, inside each of its regions' hulls grown by
    `PART_GROW`, blended by Poisson image editing (OpenCV's seamless cloning), as a retoucher's
    healing tool blends: the donor's detail, the target's colours at the seam. (Matching colours
    and feathering, as `paste_face` does, left dark brows and pale lips on these small regions.)
    `feathered` blends so all the same (`_blend`, edge sigma `PART_FEATHER_SIGMA`: rule 68)."""
    regions = FACE_PARTS[part]
    chosen = [index for region in regions for index in region]
    warped, _ = _aligned(target, donor, donor_points[chosen], target_points[chosen])
    inside = np.zeros(target.shape[:2], np.uint8)
    for region in regions:
        inside = np.maximum(inside, hull_region(target.shape, target_points[list(region)], PART_GROW).astype(np.uint8))
    if feathered:
        return _blend(target, warped, inside.astype(np.float32), PART_FEATHER_SIGMA)
    # Seamless cloning needs the region off the picture's border, where it has no neighbours.
    inside[:2], inside[-2:], inside[:, :2], inside[:, -2:] = 0, 0, 0, 0
    x, y, width, height = cv2.boundingRect(inside)
    # The region is placed centred on this point: its own centre, so the donor stays aligned.
    return cv2.seamlessClone(warped, target, inside * 255, (x + width // 2, y + height // 2), cv2.NORMAL_CLONE)


def made_swaps(reals: Sequence[Sample], meshes: np.ndarray, arm: str) -> list[Sample]:
    """One pasted swap (or, for a `PART_ARMS` arm, part edit) per real crop (`meshes`: their face
    meshes in crop pixels), written once under the cache folder, one folder per arm. The folder's
    name seeds its re-shared copies, so it stays the arm's; a note in it of the constants that
    made its copies stops a run whose constants differ."""
    folder = cache_dir() / "benchmarks" / "sharp-swaps" / arm
    part = arm.removesuffix(FEATHERED)
    feathered = arm != part
    making: dict[str, object]
    if part not in FACE_PARTS:
        making = {"mask_shrink": MASK_SHRINK, "feather_sigma": FEATHER_SIGMA, "soft_factor": SOFT_FACTOR}
    elif feathered:
        making = {"part_grow": PART_GROW, "feather_sigma": PART_FEATHER_SIGMA, "points": FACE_PARTS[part]}
    else:
        making = {"part_grow": PART_GROW, "blend": "poisson", "points": FACE_PARTS[part]}
    note = folder / "making.json"
    if note.exists():
        text = note.read_text()
        try:
            made_with = json.loads(text)
        except ValueError:  # cut short by a stopped run: the copies' constants are unknown
            made_with = None
        if made_with != json.loads(json.dumps(making)):  # as JSON reads it back: tuples as lists
            raise DataError(
                f"{folder} holds swaps made with other constants ({note.name}: {text.strip()!r}): delete it first"
            )
    else:
        folder.mkdir(parents=True, exist_ok=True)
        note.write_text(json.dumps(making) + "\n")
    out = []
    for index, (sample, donor_index) in enumerate(zip(reals, closest_donors(meshes), strict=True)):
        donor = reals[donor_index]
        path = folder / "fake" / f"{sample.path.stem}-{donor.path.stem}.png"
        if not path.exists():
            donor_rgb = read_rgb(donor.path)
            if arm == "soft":
                donor_rgb = rescale(donor_rgb, SOFT_FACTOR)
            target_rgb = read_rgb(sample.path)
            write_rgb(
                path,
                paste_part(target_rgb, meshes[index], donor_rgb, meshes[donor_index], part, feathered)
                if part in FACE_PARTS
                else paste_face(target_rgb, meshes[index], donor_rgb, meshes[donor_index]),
            )
        out.append(replace(sample, path=path, label=1, group=f"swap-{sample.group}", landmarks=None))
    return out


def roc_auc_with_interval(labels: np.ndarray, scores: np.ndarray) -> dict[str, Any]:
    """ROC AUC and its 95% bootstrap interval (seeded by `SEED`)."""
    return {
        "roc_auc": float(roc_auc_score(labels, scores)),
        "interval": interval(bootstrap_roc_auc(labels, scores, SEED)),
    }


def printed(scored: dict[str, Any]) -> str:
    """`roc_auc_with_interval`'s figures to three places, as the benchmarks print them."""
    return f"{scored['roc_auc']:.3f} [{', '.join(f'{bound:.3f}' for bound in scored['interval'] or [])}]"


def edited_photos(parser: argparse.ArgumentParser, arms: Sequence[str]) -> tuple[list[Sample], dict[str, list[Sample]]]:
    """The `SOURCE`'s real crops with face meshes, and each arm's made copies of them
    (`made_swaps`); a missing preparation or a copies folder of other constants is the parser's
    one-line error."""
    reals = [s for s in source_samples(SOURCE) if s.label == 0 and s.landmarks is not None and s.landmarks.exists()]
    if len(reals) < 2:
        parser.error(f"{SOURCE} has no prepared real crops with face meshes: run `python -m pipeline prepare` first")
    meshes = np.stack([face_landmarks(s, CROP_SIDE) for s in reals])
    try:
        return reals, {arm: made_swaps(reals, meshes, arm) for arm in arms}
    except DataError as error:
        parser.error(str(error))


def _scored(
    real_focus: np.ndarray,
    real_logits: dict[str, np.ndarray],
    swap_focus: np.ndarray,
    members: dict[str, TrainedMember],
    swaps: Sequence[Sample],
    combined: tuple[dict[str, float], dict[str, float]] | None = None,
) -> dict[str, object]:
    """Softness alone and each member on the reals against the swaps; with `combined` (the
    recipe's weights and the members' fold temperatures), the members combined as the table
    combines them too."""
    labels = np.asarray([0] * len(real_focus) + [1] * len(swaps))
    logits = {
        name: np.concatenate([real_logits[name], trained_logits(member, swaps)]) for name, member in members.items()
    }
    scored = {
        "n": len(labels),
        "median_focus_real": float(np.median(real_focus)),
        "median_focus_swap": float(np.median(swap_focus)),
        "softness": roc_auc_with_interval(labels, softness(np.concatenate([real_focus, swap_focus]))),
        **{name: roc_auc_with_interval(labels, values) for name, values in logits.items()},
    }
    if combined is not None:
        weights, temperatures = combined
        scored[ENSEMBLE] = roc_auc_with_interval(labels, weighted_logit(logits, temperatures, weights))
    return scored


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--runs",
        nargs="+",
        default=[],
        metavar="MEMBER=RUNS",
        help="a fold member to score and the cross-source runs folder that holds it",
    )
    parser.add_argument(
        "--recipe", type=Path, help="the recipe whose members --runs names (needed for CNNs; without it, probes only)"
    )
    parser.add_argument(
        "--arms",
        nargs="+",
        choices=[*ARMS, *PART_ARMS],
        default=list(ARMS),
        help="what is pasted (default: whole faces)",
    )
    parser.add_argument(
        "--cnn-seed", type=int, help="the CNNs the fold trained from this seed (`cross-source --seeds`; rule 74)"
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    recipe = prepared_recipe(parser, args.recipe) if args.recipe else None
    if args.cnn_seed is not None and recipe is None:
        parser.error("--cnn-seed needs --recipe")
    cnn_folder = None
    if recipe and args.cnn_seed is not None:
        recipe, cnn_folder = seeded(recipe, args.cnn_seed)
    members, runs_of = {}, {}
    for pair in args.runs:
        name, _, runs = pair.partition("=")
        if not runs:
            parser.error(f"--runs wants MEMBER=RUNS, not {pair!r}")
        runs_of[name] = Path(runs)
        members[name] = (
            fold_member(parser, recipe, Path(runs), SOURCE, name, cnn_folder)
            if recipe
            else fold_probe(parser, Path(runs), SOURCE, name)
        )

    # Rule 64: with every member the recipe weighs, the fold's ensemble as well.
    weighed = [name for name, weight in recipe.combination.weights.items() if weight > 0] if recipe else []
    combined = (
        (recipe.combination.weights, fold_temperatures(parser, recipe, SOURCE, runs_of, weighed, cnn_folder))
        if recipe and weighed and set(weighed) <= set(members)
        else None
    )
    reals, made = edited_photos(parser, args.arms)
    results: dict[str, dict[str, object]] = {}
    for reshared in (False, True):
        # Rule 61: the same crops, real and made alike, re-shared as the table re-shares them.
        shown = reshared_samples(reals) if reshared else reals
        real_focus = focus_of(shown)
        real_logits = {name: trained_logits(member, shown) for name, member in members.items()}
        for arm in args.arms:
            swaps = reshared_samples(made[arm]) if reshared else made[arm]
            name = f"{arm}, re-shared" if reshared else arm
            results[name] = _scored(real_focus, real_logits, focus_of(swaps), members, swaps, combined)
            print(
                f"{name}: {len(reals)} real, {len(swaps)} swaps; focus median "
                f"{results[name]['median_focus_real']:.0f} real, {results[name]['median_focus_swap']:.0f} swap; "
                + ", ".join(
                    f"{key} {printed(value)}" for key, value in results[name].items() if isinstance(value, dict)
                )
            )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
