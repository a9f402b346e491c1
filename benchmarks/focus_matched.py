"""Rules 57-59 and 78: a recipe's fold members on held-out faces whose two classes are made equally soft.

For each source, its held-out items as `cross-source` picks them; the sharper class's crops are
blurred (Gaussian, on the 224 px crop, kept as PNG so their CLIP features cache) so that their
focus (`face_focus`) matches the softer class's at the same rank. Scored by a cross-source runs
folder's fold members trained without that source (probes or CNNs; with every member the recipe
weighs, their ensemble as the fold combines them), and by softness alone (rule 56): as it is,
matched, and over the pairs of a real and a fake face that are about equally soft, nothing
blurred (rule 59).

    .venv/bin/python -m benchmarks.focus_matched --recipe benchmarks/clip_sbi_blur.json --runs RUNS --json matched.json
    .venv/bin/python -m benchmarks.focus_matched --recipe models/recipe.json --runs RUNS --member clip mobilenetv2 mobilenetv2_224
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
from sklearn.metrics import roc_auc_score

from benchmarks.focus_baseline import focus_of, softness
from benchmarks.recipes import fold_member, fold_probe, fold_temperatures, prepared_recipe
from pipeline.config import cache_dir
from pipeline.engine.ensemble import weighted_logit
from pipeline.engine.faces import face_focus
from pipeline.training.cross_source import ENSEMBLE
from pipeline.training.data import Sample, read_rgb, write_rgb
from pipeline.training.recipe import samples_of, trained_logits

SIGMAS = np.arange(0.0, 4.0 + 1e-9, 0.125)
"""The Gaussian blurs tried on a crop of the sharper class (0: left as it is)."""


def _blurred(image: np.ndarray, sigma: float) -> np.ndarray:
    return image if sigma == 0 else cv2.GaussianBlur(image, (0, 0), float(sigma))


def focus_matched(samples: Sequence[Sample], focus: np.ndarray, name: str) -> tuple[list[Sample], dict[str, float]]:
    """The samples (their crops' `focus`) with the sharper class's crops blurred to the softer
    class's focus at the same rank (written once under the cache folder, in a folder `name` of
    its own: the same crop is blurred differently in another set), and what the matching did."""
    labels = np.asarray([s.label for s in samples])
    sharper = int(np.median(focus[labels == 1]) > np.median(focus[labels == 0]))
    softer_focus = focus[labels != sharper]
    chosen = np.flatnonzero(labels == sharper)
    ranks = np.argsort(np.argsort(focus[chosen])) / max(len(chosen) - 1, 1)
    out = list(samples)
    sigmas = []
    for index, rank in zip(chosen, ranks, strict=True):
        sample = samples[index]
        target = float(np.quantile(softer_focus, rank))
        folder = sample.path.parent.parent
        path = (
            cache_dir() / "benchmarks" / "focus-matched" / name / folder.name / sample.path.relative_to(folder)
        ).with_suffix(".png")
        image = read_rgb(sample.path)
        errors = [abs(np.log1p(face_focus(_blurred(image, s))) - np.log1p(target)) for s in SIGMAS]
        sigma = float(SIGMAS[int(np.argmin(errors))])
        sigmas.append(sigma)
        if not path.exists():
            write_rgb(path, _blurred(image, sigma))
        out[index] = replace(sample, path=path, landmarks=None)
    return out, {
        "blurred_class": sharper,
        "median_sigma": float(np.median(sigmas)),
        "share_blurred": float(np.mean(np.asarray(sigmas) > 0)),
    }


def same_focus_roc_auc(labels: np.ndarray, scores: np.ndarray, focus: np.ndarray, bins: int = 10) -> tuple[float, int]:
    """ROC AUC over the pairs of a real and a fake in the same tenth (`bins`) of the pooled focus
    distribution: how a score ranks faces that are about equally soft, nothing blurred (rule 59).
    Also the number of such pairs."""
    edges = np.quantile(focus, np.linspace(0, 1, bins + 1)[1:-1])
    tenth = np.searchsorted(edges, focus, side="right")
    right = pairs = 0.0
    for b in range(bins):
        real, fake = scores[(tenth == b) & (labels == 0)], scores[(tenth == b) & (labels == 1)]
        if len(real) and len(fake):
            # Mann-Whitney U over the bin's pairs (ties count half).
            order = fake[:, None] - real[None, :]
            right += float((order > 0).sum() + 0.5 * (order == 0).sum())
            pairs += len(real) * len(fake)
    return (right / pairs if pairs else float("nan")), int(pairs)


def _member_scores(
    labels: np.ndarray, focus: np.ndarray, logits: np.ndarray, matched_logits: np.ndarray
) -> dict[str, float]:
    """One score's ROC AUC as the items are, with the sharper class blurred to match, and over
    the equally soft pairs."""
    return {
        "roc_auc": float(roc_auc_score(labels, logits)),
        "matched_roc_auc": float(roc_auc_score(labels, matched_logits)),
        "same_focus_roc_auc": same_focus_roc_auc(labels, logits, focus)[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", type=Path, default=Path(__file__).with_name("clip_sbi_blur.json"))
    parser.add_argument("--runs", type=Path, required=True, help="a cross-source runs folder of the recipe")
    parser.add_argument(
        "--member",
        nargs="+",
        default=["clip"],
        help="the fold members scored (probes or CNNs); with every member the recipe weighs, the "
        "fold's ensemble too (rule 78)",
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    recipe = prepared_recipe(parser, args.recipe)
    weighed = [name for name, weight in recipe.combination.weights.items() if weight > 0]
    results: dict[str, dict[str, object]] = {}
    for source in recipe.sources:
        members = {
            name: fold_member(parser, recipe, args.runs, source, name)
            if any(m["name"] == name for m in recipe.members)
            else fold_probe(parser, args.runs, source, name)
            for name in args.member
        }
        held = samples_of([source], None, recipe.held_out_per_class)
        labels = np.asarray([s.label for s in held])
        focus = focus_of(held)
        matched, how = focus_matched(held, focus, source)
        logits = {name: trained_logits(member, held) for name, member in members.items()}
        matched_logits = {name: trained_logits(member, matched) for name, member in members.items()}
        if set(weighed) <= set(members):
            # Rule 78: the members combined as the fold's table combines them.
            temperatures = fold_temperatures(parser, recipe, source, dict.fromkeys(weighed, args.runs), weighed)
            logits[ENSEMBLE] = weighted_logit(logits, temperatures, recipe.combination.weights)
            matched_logits[ENSEMBLE] = weighted_logit(matched_logits, temperatures, recipe.combination.weights)
        same_focus_softness, pairs = same_focus_roc_auc(labels, softness(focus), focus)
        results[source] = {
            "n": len(held),
            **how,
            "same_focus_pairs": pairs,
            "softness": {
                "roc_auc": float(roc_auc_score(labels, softness(focus))),
                "matched_roc_auc": float(roc_auc_score(labels, softness(focus_of(matched)))),
                "same_focus_roc_auc": same_focus_softness,
            },
            **{name: _member_scores(labels, focus, logits[name], matched_logits[name]) for name in logits},
        }
        print(
            f"{source:>11} (n {len(held)}, {pairs} equally soft pairs; blurred class {how['blurred_class']}, "
            f"median sigma {how['median_sigma']:.3f}); ROC AUC as they are / matched / equally soft pairs:"
        )
        for name in ["softness", *logits]:
            scores = results[source][name]
            assert isinstance(scores, dict)
            print(f"    {name:>16}: " + " / ".join(f"{value:.3f}" for value in scores.values()))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
