"""Does a probe on several CLIP blocks' class tokens side by side travel better than block 5's? (rule 85)

In each cross-source fold, on the shipped probe's training set from the feature cache (the
recipe's `clip` member, as `probe_training_samples` makes it), the same linear fit (`fit_probe`,
the member's own regularisation) on

- block 5's class token, as shipped (the table's own CLIP figures: a check),
- the class tokens of blocks 1-5 side by side (what the engine computes already), and
- the class tokens of all 12 blocks side by side (the whole tower);

each scores the held-out source as it is, re-shared and both mixed, and the fold's validation mix
of its training sources (in domain). Nothing is extracted: run `cross-source` first.

    .venv/bin/python -m benchmarks.multi_block_probe OUT.json [--recipe models/recipe.json]

OUT.json keeps each fold's figures as it finishes, so a stopped run resumes.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from benchmarks.mlp_probe import COLUMNS, held_out_aucs
from benchmarks.recipes import prepared_recipe
from pipeline.training.data import Sample
from pipeline.training.probe import fit_probe
from pipeline.training.recipe import Recipe, clip_rows, probe_training_samples, samples_of
from pipeline.training.sources import reshared_samples

ARMS = {"block 5 (shipped)": (5,), "blocks 1-5": (1, 2, 3, 4, 5), "blocks 1-12": tuple(range(1, 13))}
"""Each arm's blocks, fixed by the rule before its run."""


def class_tokens(samples: Sequence[Sample], blocks: Sequence[int]) -> np.ndarray:
    """(N, 768 x len(blocks)) the cached class tokens of `blocks`, side by side."""
    return np.concatenate([clip_rows(samples, "cls", block) for block in blocks], axis=1)


def fold_figures(recipe: Recipe, held_out: str) -> dict[str, dict[str, float]]:
    """Each arm's held-out ROC AUCs (as they are, re-shared, mixed) and validation ROC AUC in one fold."""
    member = next(m for m in recipe.members if m["kind"] == "clip_probe")
    kept = [s for s in recipe.sources if s != held_out]
    train = probe_training_samples(member, kept)
    held = samples_of([held_out], None, recipe.held_out_per_class)
    val = samples_of(kept, "val", recipe.val_per_class)
    labels = np.asarray([s.label for s in train])
    figures = {}
    for name, blocks in ARMS.items():
        probe = fit_probe(
            class_tokens(train, blocks), labels, [s.source for s in train], "cls", float(member["regularization"])
        )
        figures[name] = held_out_aucs(
            np.asarray([s.label for s in held]),
            probe.logits_of(class_tokens(held, blocks)),
            probe.logits_of(class_tokens(reshared_samples(held), blocks)),
        )
        figures[name]["validation"] = float(
            roc_auc_score([s.label for s in val], probe.logits_of(class_tokens(val, blocks)))
        )
        print(f"  {held_out} {name}: {figures[name]}", flush=True)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="JSON of each fold's figures (a stopped run resumes from it)")
    parser.add_argument("--recipe", type=Path, default=Path("models/recipe.json"))
    args = parser.parse_args()
    recipe = prepared_recipe(parser, args.recipe)
    done = json.loads(args.out.read_text()) if args.out.exists() else {}
    for source in recipe.sources:
        if source not in done:
            done[source] = fold_figures(recipe, source)
            args.out.write_text(json.dumps(done, indent=2) + "\n")
    print("\nROC AUC of the probe alone, per held-out source, and the mean over folds")
    for name in ARMS:
        for column in (*COLUMNS, "validation"):
            cells = [f"{s} {done[s][name][column]:.3f}" for s in recipe.sources]
            mean = np.mean([done[s][name][column] for s in recipe.sources])
            print(f"  {name:18} {column:12} {', '.join(cells)} | mean {mean:.3f}")
        two = np.mean([(done[s][name]["as they are"] + done[s][name]["re-shared"]) / 2 for s in recipe.sources])
        print(f"  {name:18} mean of the two held-out columns: {two:.3f}")


if __name__ == "__main__":
    main()
