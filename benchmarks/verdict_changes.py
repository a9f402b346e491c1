"""How many faces change verdict between two ensembles? (rules 99 and 100)

Reads two `evaluate --json` reports of the same pictures (each crop's one-face-photo verdict is in
their `photos`) and counts, face by face, the verdicts that differ, per class. With
`--decided-by`, each report's faces are decided again with another ensemble's pictures rule
(threshold, uncertain band, disagreement margin): only valid where that ensemble combines its
members exactly as the one that scored them (the same weights and calibration), which is checked,
so that a threshold rule can be compared without scoring the faces again.

    .venv/bin/python -m benchmarks.verdict_changes A.json B.json --scored-by MODELS_A MODELS_B [--decided-by DIR_A DIR_B]
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path
from typing import Any

from pipeline.engine.ensemble import ENSEMBLE_FILE, PICTURE, EnsembleSpec
from pipeline.training.evaluate import photo_verdict

VERDICTS = ("fake", "uncertain", "real")


def pictures_spec(models_dir: Path) -> EnsembleSpec:
    """The pictures' spec of the ensemble in `models_dir`."""
    return EnsembleSpec.load(models_dir / ENSEMBLE_FILE).for_media(PICTURE)


def combines_alike(first: EnsembleSpec, second: EnsembleSpec) -> bool:
    """Whether the two specs turn member scores into the same probability (weights, member
    temperatures, the ensemble's calibration), whatever each then decides."""
    return (
        first.weights == second.weights
        and first.temperatures == second.temperatures
        and (first.temperature, first.offset) == (second.temperature, second.offset)
    )


def verdicts(report: dict[str, Any], scorer: EnsembleSpec, decider: EnsembleSpec) -> dict[str, tuple[str, str]]:
    """File -> (class, verdict as `decider` decides it) for each photo of `report`, after checking
    that `scorer` reproduces the report's own verdicts and that `decider` combines as it does."""
    if not combines_alike(scorer, decider):
        raise SystemExit("error: the deciding ensemble combines its members otherwise than the one that scored")
    if "photos" not in report:
        raise SystemExit("error: the report keeps no per-face verdicts (`evaluate --json` on pictures, since rule 100)")
    out = {}
    for photo in report["photos"]:
        scores = (photo["fake_probability"], photo["model_scores"])
        focus = photo.get("focus")  # reports before rule 102 measured none
        toned = photo.get("toned", False)  # nor before rule 120
        if photo_verdict(*scores, scorer.decision_rule, scorer.aggregation, focus, toned=toned) != photo["verdict"]:
            raise SystemExit(f"error: {photo['file']}: the scoring ensemble does not give the report's verdict")
        decided = photo_verdict(*scores, decider.decision_rule, decider.aggregation, focus, toned=toned)
        out[photo["file"]] = (photo["label"], decided)
    return out


def shares(decided: dict[str, tuple[str, str]], label: str) -> str:
    counts = Counter(verdict for cls, verdict in decided.values() if cls == label)
    total = sum(counts.values())
    return " / ".join(f"{100 * counts[v] / total:.1f}%" for v in VERDICTS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", type=Path, nargs=2, help="two `evaluate --json` reports of the same pictures")
    parser.add_argument("--scored-by", type=Path, nargs=2, required=True, help="the models folder of each report")
    parser.add_argument("--decided-by", type=Path, nargs=2, help="decide each report's faces with these instead")
    args = parser.parse_args()
    deciders = args.decided_by or args.scored_by
    sides = []
    for report_path, scored_by, decided_by in zip(args.reports, args.scored_by, deciders, strict=True):
        decider = pictures_spec(decided_by)
        report = json.loads(report_path.read_text())
        sides.append(verdicts(report, pictures_spec(scored_by), decider))
        print(
            f"{decided_by}: threshold {decider.threshold}, band {decider.uncertain_low}-{decider.uncertain_high}, "
            f"margin {decider.disagreement_margin}; real faces fake / uncertain / real {shares(sides[-1], 'real')}, "
            f"fakes {shares(sides[-1], 'fake')}"
        )
    first, second = sides
    if set(first) != set(second):
        raise SystemExit("error: the two reports are not of the same pictures")
    for label in ("real", "fake"):
        files = [f for f in first if first[f][0] == label]
        moves = Counter((first[f][1], second[f][1]) for f in files if first[f][1] != second[f][1])
        changed = sum(moves.values())
        detail = ", ".join(f"{a}->{b} {n}" for (a, b), n in sorted(moves.items()))
        print(f"{label} faces: {changed} of {len(files)} change verdict ({100 * changed / len(files):.2f}%) {detail}")
    changed = sum(first[f][1] != second[f][1] for f in first)
    print(f"all: {changed} of {len(first)} ({100 * changed / len(first):.2f}%)")


if __name__ == "__main__":
    main()
