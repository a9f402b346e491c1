"""Rule 56: how far does a face's softness alone tell the table's held-out fakes from its reals?

A baseline that learns nothing: each held-out crop (the 224 px crop `prepare` framed as the
engine frames faces) scores minus the logarithm of its `face_focus` (the variance of its
Laplacian), so the softer the face, the more fake. Scored on each source's held-out items exactly
as `cross-source` picks them, as they are, re-shared (the table's cached copies) and both mixed.

    .venv/bin/python -m benchmarks.focus_baseline --json focus_baseline.json
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from benchmarks.recipes import prepared_recipe
from pipeline.engine.faces import face_focus
from pipeline.training.data import Sample, read_rgb
from pipeline.training.recipe import samples_of
from pipeline.training.sources import reshared_samples


def focus_of(samples: Sequence[Sample]) -> np.ndarray:
    """Each crop's focus measure (`face_focus`)."""
    return np.asarray([face_focus(read_rgb(s.path)) for s in samples])


def softness(focus: np.ndarray) -> np.ndarray:
    """Minus the log of a focus measure: higher for a softer face."""
    return -np.log1p(focus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", type=Path, default=Path("models/recipe.json"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    recipe = prepared_recipe(parser, args.recipe)
    results: dict[str, dict[str, float]] = {}
    for source in recipe.sources:
        held = samples_of([source], None, recipe.held_out_per_class)
        labels = np.asarray([s.label for s in held])
        as_they_are, reshared = softness(focus_of(held)), softness(focus_of(reshared_samples(held)))
        results[source] = {
            "n": len(held),
            "roc_auc": float(roc_auc_score(labels, as_they_are)),
            "reshared_roc_auc": float(roc_auc_score(labels, reshared)),
            "mixed_roc_auc": float(
                roc_auc_score(np.concatenate([labels, labels]), np.concatenate([as_they_are, reshared]))
            ),
        }
        print(
            f"{source:>11} (n {len(held)}): "
            + ", ".join(f"{k} {v:.3f}" for k, v in results[source].items() if k != "n")
        )
    mean = {
        key: float(np.mean([r[key] for r in results.values()]))
        for key in ("roc_auc", "reshared_roc_auc", "mixed_roc_auc")
    }
    print("       mean: " + ", ".join(f"{k} {v:.3f}" for k, v in mean.items()))
    if args.json:
        args.json.write_text(json.dumps({"sources": results, "mean": mean}, indent=2) + "\n")


if __name__ == "__main__":
    main()
