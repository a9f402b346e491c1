"""Rule 48: do the CLIP probes of `clip_sbi_blur.json` read blurred real faces as fake?

Each probe of the recipe is trained on all four sources (as the shipped probe is, at the
recipe's size) and scores the validation crops of every source (`--per-class` per class and
source) as they are and blurred with Pillow's Gaussian blur of radius 1 and 2 px. The blur is
applied to the engine's 224 px crop (rule 46 blurred the uploaded picture before the engine
framed it), and the blurred copies are kept as PNG under the cache folder, so their CLIP
features are cached like any crop's. Printed per probe and blur: the median fake probability of
the real crops (the probe's own sigmoid, uncalibrated), the share of real crops at 0.5 or more,
and ROC AUC of blurred reals against blurred fakes.

    .venv/bin/python -m benchmarks.self_blend_blur --runs RUNS --json self_blend_blur.json

With `--folds CROSS_RUNS` (a `cross-source --runs` folder of the same recipe), each fold's probes,
trained without one source, are scored the same way (rule 52).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter
from sklearn.metrics import roc_auc_score

from benchmarks.recipes import fold_probe, prepared_recipe
from pipeline.config import cache_dir
from pipeline.training.data import Sample, write_rgb
from pipeline.training.recipe import (
    TrainedMember,
    samples_of,
    train_recipe_member,
    trained_logits,
)

RADII = (0, 1, 2)
"""Pillow Gaussian blur radii, in pixels of the 224 px crop (0: as it is)."""


def blurred(samples: Sequence[Sample], radius: int) -> list[Sample]:
    """The samples with their crops blurred by `radius` px (made once, kept as PNG)."""
    if radius == 0:
        return list(samples)
    out = []
    for sample in samples:
        folder = sample.path.parent.parent
        target = (
            cache_dir() / "benchmarks" / "blurred-crops" / f"r{radius}" / folder.name / sample.path.relative_to(folder)
        ).with_suffix(".png")
        if not target.exists():
            write_rgb(
                target, np.asarray(Image.open(sample.path).convert("RGB").filter(ImageFilter.GaussianBlur(radius)))
            )
        out.append(replace(sample, path=target, landmarks=None))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", type=Path, default=Path(__file__).with_name("clip_sbi_blur.json"))
    parser.add_argument("--runs", type=Path, required=True, help="where the all-source probes are kept")
    parser.add_argument("--per-class", type=int, default=300)
    parser.add_argument("--folds", type=Path, help="a cross-source runs folder: score its fold probes too")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    recipe = prepared_recipe(parser, args.recipe)
    validation = samples_of(recipe.sources, "val", args.per_class)
    labels = np.asarray([s.label for s in validation])
    probes: dict[str, TrainedMember] = {}
    for member in recipe.members:
        probes[member["name"]] = train_recipe_member(member, recipe.sources, args.runs)
        for source in recipe.sources if args.folds else ():
            probes[f"{member['name']} without {source}"] = fold_probe(parser, args.folds, source, member["name"])
    results: dict[str, dict[str, dict[str, float]]] = {}
    for name, trained in probes.items():
        results[name] = {}
        for radius in RADII:
            probability = 1 / (1 + np.exp(-trained_logits(trained, blurred(validation, radius))))
            real = probability[labels == 0]
            row = {
                "real_median": float(np.median(real)),
                "real_at_least_half": float((real >= 0.5).mean()),
                "fake_median": float(np.median(probability[labels == 1])),
                "roc_auc": float(roc_auc_score(labels, probability)),
            }
            results[name][f"blur {radius} px"] = row
            print(
                f"{name:>30} blur {radius} px: real median {row['real_median']:.3f}, "
                f"real >= 0.5 {row['real_at_least_half']:.1%}, fake median {row['fake_median']:.3f}, "
                f"ROC AUC {row['roc_auc']:.3f}"
            )
    if args.json:
        args.json.write_text(json.dumps({"validation_crops": len(validation), "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
