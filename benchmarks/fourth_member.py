"""Does a fourth member, strong in domain, move the trade between known and unseen sources? (rule 89)

On a runs folder's cached folds for each CNN seed, the recipe's members as the table scores them,
and beside them rule 85's probe on all 12 CLIP blocks' class tokens (fitted per fold on the
shipped probe's training set from the feature cache, `probe_arms`), as a fourth member at the
CNNs' weight. For each grid weight of the first member (the CLIP probe) against the others' 1
each: the ensemble's held-out ROC AUC (the mean of the two columns, as they are and re-shared)
and its ROC AUC on the folds' validation mixes (what the weight costs in domain), with the three
members and with the four; each a mean over the folds, per seed, then their mean.

    .venv/bin/python -m benchmarks.fourth_member --runs RUNS --seeds 1234 1235 1236 [--grid W ...] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from benchmarks.probe_arms import pooled_fit
from benchmarks.recipes import prepared_recipe, require_folds
from pipeline.training.cross_source import WEIGHT_GRID, Scored, fold_members, run_fold, seeded, weight_trials
from pipeline.training.recipe import Recipe, probe_rows, probe_training_samples

BLOCKS = tuple(range(1, 13))
"""The fourth member's blocks (rule 85's all-block probe)."""
NAME = "clip_blocks"
SETS = ("val", "held", "reshared")


def fourth_logits(recipe: Recipe, held_out: str, sets: dict[str, Scored]) -> dict[str, np.ndarray]:
    """The all-block probe of the fold that held `held_out` out, scored on the fold's sets."""
    member = next(m for m in recipe.members if m["kind"] == "clip_probe")
    train = probe_training_samples(member, [s for s in recipe.sources if s != held_out])
    score = pooled_fit(
        probe_rows(train, "cls", BLOCKS),
        np.asarray([s.label for s in train]),
        [s.source for s in train],
        float(member["regularization"]),
    )
    return {name: score(probe_rows(scored.samples, "cls", BLOCKS)) for name, scored in sets.items()}


def trade(trials: list[dict]) -> dict[str, dict[str, float]]:
    """Grid weight -> the held-out mean of the two columns and the validation ROC AUC."""
    rows = [t for t in trials if all(w > 0 for w in t["weights"].values())]
    return {
        str(next(iter(t["weights"].values()))): {
            "held_out": (t["mean_roc_auc"] + t["mean_roc_auc_reshared"]) / 2,
            "validation": t["mean_roc_auc_validation"],
        }
        for t in rows
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", type=Path, default=Path("models/recipe.json"))
    parser.add_argument("--runs", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", required=True)
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--grid",
        type=float,
        nargs="+",
        default=list(WEIGHT_GRID),
        help="the CLIP probe's weights (default the table's)",
    )
    args = parser.parse_args()
    if min(args.grid) <= 0:
        parser.error(f"--grid takes weights above 0, not {min(args.grid):g}")
    recipe = prepared_recipe(parser, args.recipe)
    names = [m["name"] for m in fold_members(recipe)]
    fourth: dict[str, dict[str, np.ndarray]] = {}  # the probe draws nothing at random: one fit per fold
    report: dict[str, dict[str, dict]] = {"three": {}, "four": {}}
    for seed in args.seeds:
        seeded_recipe, cnn_folder = seeded(recipe, seed)
        require_folds(parser, seeded_recipe, args.runs, cnn_folder)
        folds = {}
        for source in recipe.sources:
            folds[source] = run_fold(seeded_recipe, source, args.runs, True, cnn_folder)
            if source not in fourth:
                fourth[source] = fourth_logits(recipe, source, dict(zip(SETS, folds[source], strict=True)))
        report["three"][str(seed)] = trade(weight_trials(folds, names, args.grid))
        for source, scored in folds.items():
            for name, values in zip(SETS, scored, strict=True):
                values.logits[NAME] = fourth[source][name]
        report["four"][str(seed)] = trade(weight_trials(folds, [*names, NAME], args.grid))
        print(f"seed {seed} done", flush=True)
    print("CLIP weight: held-out mean of the two columns (validation ROC AUC), per seed | mean")
    for arm, by_seed in report.items():
        print(f"{arm} members")
        for weight in map(str, args.grid):
            cells = [by_seed[str(s)][weight] for s in args.seeds]
            each = " / ".join(f"{c['held_out']:.3f} ({c['validation']:.3f})" for c in cells)
            mean_held = np.mean([c["held_out"] for c in cells])
            mean_val = np.mean([c["validation"] for c in cells])
            print(f"  {float(weight):>5g}  {each} | {mean_held:.3f} ({mean_val:.3f})")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
