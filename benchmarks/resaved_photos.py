"""Validation pictures re-saved at lower JPEG qualities, smaller sizes or as GIF, scored
through the whole product.

The models were trained on photos saved at JPEG quality 90 (the DFDC crops at 75). This builds,
from the validation split of each shared source, up to 100 pictures per class, as they are,
re-saved with Pillow at qualities 75, 60 and 45, and made smaller (each side a half and a third,
Pillow's area-averaging reduction, saved as PNG so that no compression is added), blurred (Pillow's
Gaussian blur of radius 1 and 2 px, saved as PNG), saved as GIF
(256 colours: Pillow's own palette for a GIF, median cut without dithering, and the same with
Floyd-Steinberg dithering, as GIF makers often do), saved as lossy WebP at qualities 80 and 90,
as AVIF at 75 and 90, as HEIC at x265's rate factors 28 and 20, converted into Display P3 and
Adobe RGB (1998), saved as PNG carrying that profile, and put through a filter (black-and-white,
a warm grade, vivid colours, film grain, sepia: rules 117-118, saved as PNG), and summarises how the shipped engine's
verdicts move (the model card's "A photo saved more compressed than the training photos", "A
photo whose faces are smaller than the training faces", "A picture saved as GIF", "A picture
saved as lossy WebP", "A picture saved as AVIF", "A photo saved as HEIC" and "A photo in a
wide-gamut colour space"):

    .venv/bin/python -m benchmarks.resaved_photos make OUT
    for v in qasis q75 q60 q45 s50 s33 b1 b2 gif gifd w80 w90 a75 a90 h28 h20 p3 adobe mono warm vivid grain sepia sepiaj sepiaq; do .venv/bin/python -m pipeline scan OUT/$v --json OUT/scan-$v.json; done
    .venv/bin/python -m benchmarks.resaved_photos summarise OUT

Pictures are chosen by the SHA-256 of their file name, so every run picks the same ones. No test
split is read. `sd-faces` has fakes only; pooled, its portraits stand against the other reals.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms, ImageEnhance, ImageFilter
from sklearn.metrics import roc_auc_score

from pipeline.config import shared_data_dir
from pipeline.engine.colour import ADOBE_RGB, DISPLAY_P3, rgb_profile
from tests.heif_factory import write_heic

SOURCES = ("dfdc-faces", "gan-faces", "swap-faces", "sd-faces")
QUALITIES = ("asis", "75", "60", "45")
SCALES = {"50": 2, "33": 3}
"""Smaller copies: folder `sNN` holds each picture with its sides divided by the number."""
WEBP_QUALITIES = ("80", "90")
"""Lossy WebP copies: folder `wNN` holds each picture saved as WebP at quality NN (80 is Pillow's
and cwebp's default)."""
AVIF_QUALITIES = ("75", "90")
"""AVIF copies: folder `aNN` holds each picture saved as AVIF at quality NN (75 is Pillow's
default)."""
HEIC_RATES = ("28", "20")
"""HEIC copies: folder `hNN` holds each picture saved as HEIC (one intra HEVC picture by x265,
`tests/heif_factory.py`) at constant rate factor NN (28 is x265's default; lower keeps more)."""
PROFILES = {"p3": rgb_profile("Display P3", DISPLAY_P3), "adobe": rgb_profile("Adobe RGB (1998)", ADOBE_RGB, 563 / 256)}
"""Wide-gamut copies: folder name -> the ICC profile each picture is converted into (from sRGB, by
LittleCMS) and saved with, as PNG (rule 28)."""
GIFS = {"gif": Image.Dither.NONE, "gifd": Image.Dither.FLOYDSTEINBERG}
"""GIF copies: folder name -> dithering towards the 256 colours of the picture's median cut
(without it, the picture is the median cut's own, byte for byte what Pillow saves as a GIF)."""
BLUR_RADII = ("1", "2")
"""Out-of-focus copies: folder `bN` holds each picture blurred by Pillow's Gaussian blur of radius N
px, saved as PNG so that no compression is added (rule 46)."""
FILTERS = ("mono", "warm", "vivid", "grain", "sepia", "sepiaj", "sepiaq")
"""Filtered copies (rules 117-118), saved as PNG: black-and-white (luminance only), a warm colour
grade (`WARM_GAIN`), vivid (`VIVID_SATURATION`, `VIVID_CONTRAST`), film grain (`GRAIN_SIGMA`) and
black-and-white toned sepia (`SEPIA_TONE`); `sepiaj` and `sepiaq` are the sepia copy saved as
JPEG at `TONED_JPEG_QUALITIES` instead (rules 120 and 122)."""
TONED_JPEG_QUALITIES = {"sepiaj": 90, "sepiaq": 75}
"""The JPEG quality of each JPEG sepia variant."""
WARM_GAIN = (1.08, 1.0, 0.92)
"""Red, green and blue multiplied by these."""
VIVID_SATURATION = 1.4
VIVID_CONTRAST = 1.15
GRAIN_SIGMA = 6.0
"""The grain's Gaussian noise (0-255 scale), the same on all three channels, seeded by the file's name."""
SEPIA_TONE = (1.07, 0.74, 0.43)
"""A sepia photo's red, green and blue as multiples of its luminance (the classic sepia matrix's row sums)."""
VARIANTS = (
    *(f"q{quality}" for quality in QUALITIES),
    *(f"s{name}" for name in SCALES),
    *(f"b{radius}" for radius in BLUR_RADII),
    *GIFS,
    *(f"w{quality}" for quality in WEBP_QUALITIES),
    *(f"a{quality}" for quality in AVIF_QUALITIES),
    *(f"h{rate}" for rate in HEIC_RATES),
    *PROFILES,
    *FILTERS,
)
PER_CLASS = 100
VERDICTS = ("fake", "uncertain", "real", "no_face")


def _filtered(variant: str, rgb: Image.Image, name: str) -> Image.Image:
    """`rgb` put through one of `FILTERS`."""
    if variant == "mono":
        return rgb.convert("L")
    if variant.startswith("sepia"):
        luminance = np.asarray(rgb.convert("L"), np.float32)[..., None]
        return Image.fromarray(np.clip(luminance * np.float32(SEPIA_TONE) + 0.5, 0, 255).astype(np.uint8))
    if variant == "warm":
        return Image.merge(
            "RGB",
            [
                band.point(lambda v, g=gain: min(255, round(v * g)))
                for band, gain in zip(rgb.split(), WARM_GAIN, strict=True)
            ],
        )
    if variant == "vivid":
        return ImageEnhance.Contrast(ImageEnhance.Color(rgb).enhance(VIVID_SATURATION)).enhance(VIVID_CONTRAST)
    rng = np.random.default_rng(int(hashlib.sha256(name.encode()).hexdigest()[:16], 16))
    pixels = np.asarray(rgb, np.float32)
    noise = rng.normal(0.0, GRAIN_SIGMA, pixels.shape[:2])[..., None]
    return Image.fromarray(np.clip(pixels + noise + 0.5, 0, 255).astype(np.uint8))


def _write(variant: str, source_path: Path, folder: Path) -> None:
    """One picture saved as `variant` into `folder`."""
    with Image.open(source_path) as picture:
        rgb = picture.convert("RGB")
    stem = folder / source_path.stem
    if variant in PROFILES:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(PROFILES[variant]))
        wide = ImageCms.profileToProfile(rgb, ImageCms.createProfile("sRGB"), profile, outputMode="RGB")
        wide.save(stem.with_suffix(".png"), "PNG", icc_profile=PROFILES[variant])
    elif variant in TONED_JPEG_QUALITIES:
        quality = TONED_JPEG_QUALITIES[variant]
        _filtered(variant, rgb, source_path.name).save(stem.with_suffix(".jpg"), "JPEG", quality=quality)
    elif variant in FILTERS:
        _filtered(variant, rgb, source_path.name).save(stem.with_suffix(".png"), "PNG")
    elif variant == "qasis":
        (folder / source_path.name).write_bytes(source_path.read_bytes())
    elif variant.startswith("q"):
        rgb.save(folder / source_path.name, "JPEG", quality=int(variant[1:]))
    elif variant.startswith("s"):
        rgb.reduce(SCALES[variant[1:]]).save(stem.with_suffix(".png"), "PNG")
    elif variant.startswith("b"):
        rgb.filter(ImageFilter.GaussianBlur(int(variant[1:]))).save(stem.with_suffix(".png"), "PNG")
    elif variant in GIFS:
        palette = rgb.quantize(256, Image.Quantize.MEDIANCUT)  # what Pillow saves as a GIF
        # Pillow dithers only towards a palette it is given: the median cut's own.
        dither = GIFS[variant]
        shown = palette if dither == Image.Dither.NONE else rgb.quantize(palette=palette, dither=dither)
        shown.save(stem.with_suffix(".gif"), "GIF")
    elif variant.startswith("w"):
        rgb.save(stem.with_suffix(".webp"), "WEBP", quality=int(variant[1:]))
    elif variant.startswith("a"):
        rgb.save(stem.with_suffix(".avif"), "AVIF", quality=int(variant[1:]))
    elif variant.startswith("h"):
        write_heic(stem.with_suffix(".heic"), np.asarray(rgb), crf=int(variant[1:]))
    else:
        raise ValueError(f"no such variant: {variant}")


def make(out: Path, only: set[str] | None = None) -> None:
    """The pictures, under OUT/VARIANT/SOURCE/LABEL/ (only the variants in `only`, if given)."""
    variants = [variant for variant in VARIANTS if only is None or variant in only]
    for source in SOURCES:
        with (shared_data_dir() / source / "metadata.csv").open() as table:
            rows = [row for row in csv.DictReader(table) if row["split"] == "val"]
        for label in ("real", "fake"):
            chosen = sorted(
                (row for row in rows if row["label"] == label),
                key=lambda row: hashlib.sha256(row["file"].encode()).hexdigest(),
            )[:PER_CLASS]
            for row in chosen:
                for variant in variants:
                    folder = out / variant / source / label
                    folder.mkdir(parents=True, exist_ok=True)
                    _write(variant, shared_data_dir() / source / row["file"], folder)
            print(f"{source} {label}: {len(chosen)}")


def _shares(results: list[dict]) -> str:
    counts = Counter(r["verdict"] for r in results)
    return " / ".join(f"{100 * counts[v] / len(results):.1f}" for v in VERDICTS)


def summarise(out: Path) -> None:
    """Per variant: verdict shares (fake / uncertain / real / no face) of reals and fakes, and
    ROC AUC of the ensemble and each member, pooled and per source."""
    for variant in VARIANTS:
        scan = out / f"scan-{variant}.json"
        if not scan.exists():
            # Said, not skipped silently: a scan left out by mistake shows here.
            print(f"{variant}: not scanned ({scan} does not exist)")
            continue
        scanned = json.loads(scan.read_text())
        # The members of the ensemble that scanned (v7.x had three, v8 four).
        members = sorted({m for r in scanned if r["fake_probability"] is not None for m in r["model_scores"]})
        print(variant)
        for source in ("pooled", *SOURCES):
            chosen = [r for r in scanned if source == "pooled" or Path(r["path"]).parts[-3] == source]
            by_label = {label: [r for r in chosen if Path(r["path"]).parts[-2] == label] for label in ("real", "fake")}
            line = [f"  {source}:"]
            line += [f"{label} n={len(rs)} {_shares(rs)}" for label, rs in by_label.items() if rs]
            scored = [r for r in chosen if r["fake_probability"] is not None]
            labels = np.array([Path(r["path"]).parts[-2] == "fake" for r in scored])
            if len(set(labels.tolist())) == 2:
                auc = roc_auc_score(labels, [r["fake_probability"] for r in scored])
                member_aucs = " ".join(
                    f"{m} {roc_auc_score(labels, [r['model_scores'][m] for r in scored]):.3f}" for m in members
                )
                line.append(f"ROC AUC {auc:.3f} ({member_aucs})")
            reals = [r for r in scored if Path(r["path"]).parts[-2] == "real"]
            if source == "pooled" and reals:
                medians = [np.median([r["fake_probability"] for r in reals])]
                medians += [np.median([r["model_scores"][m] for r in reals]) for m in members]
                line.append("real photos' median fake probability (ensemble, " + ", ".join(members) + ") ")
                line[-1] += ", ".join(f"{m:.2f}" for m in medians)
            print(" | ".join(line))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=["make", "summarise"])
    parser.add_argument("out", type=Path)
    parser.add_argument("--only", nargs="+", choices=VARIANTS, help="make only these variants")
    args = parser.parse_args()
    make(args.out, set(args.only) if args.only else None) if args.step == "make" else summarise(args.out)


if __name__ == "__main__":
    main()
