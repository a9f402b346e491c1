"""Rule 131: the engine's turned-face caveat, read from MTCNN's five points (it has no face mesh).

`fit` sets `VerdictSettings.turned_face` on training crops only: up to `PER_CLASS` training crops
per class of each source (seed `SEED`), each with its own face mesh; the threshold on
`pipeline.engine.faces.face_turn` that best tells faces whose mesh turn (rule 130's `head_turn`)
is `TURNED_DEGREES` or more from the rest (largest true-positive minus false-positive rate, the
lowest such value on a tie). `check` reads a `face_groups` JSON (validation crops, scored by
`models/` as shipped) and says how the caveat's faces match the mesh's groups and whether they are
ranked worse, by the rule's marks.

    .venv/bin/python -m benchmarks.turned_faces fit
    .venv/bin/python -m benchmarks.face_groups --json face_groups.json
    .venv/bin/python -m benchmarks.turned_faces check face_groups.json

Each crop's five points are MTCNN's from the engine's own detection on the shared picture the crop
was cut from (the engine keeps an image's largest face, as `prepare` does), so they are the points
the engine would read from that picture.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from benchmarks.face_groups import TURN_GROUPS, five_point_turns, head_turn
from pipeline.training.data import Sample, balanced_subset
from pipeline.training.sources import CROP_SIDE, SOURCES, ensure_prepared, face_landmarks, source_samples

PER_CLASS = 600
SEED = 131
TURNED_DEGREES = 45.0
FACING_DEGREES = 25.0
"""Rule 131's (a): at most 5% of faces turned less than this may be flagged (`face_groups`' groups
under it)."""
GRID = np.round(np.arange(0.0, 1.0001, 0.01), 2)


def training_crops() -> list[Sample]:
    """The fit's crops: up to `PER_CLASS` per class of each source's training split, each with its
    own face mesh (seed `SEED`)."""
    ensure_prepared(SOURCES)
    chosen: list[Sample] = []
    for source in SOURCES:
        found = [s for s in source_samples(source, "train") if s.landmarks is not None and s.landmarks.exists()]
        chosen += balanced_subset(found, PER_CLASS, SEED)
    return chosen


def best_threshold(turns: np.ndarray, turned: np.ndarray) -> tuple[float, float, float]:
    """(threshold, true-positive rate, false-positive rate) of the `GRID` value that best tells
    `turned` faces by `turns` at least the threshold (the lowest on a tie)."""
    best = (float("nan"), -1.0, 0.0)
    for threshold in GRID:
        flagged = turns >= threshold
        tpr, fpr = float(flagged[turned].mean()), float(flagged[~turned].mean())
        if tpr - fpr > best[1] - best[2] + 1e-12:
            best = (float(threshold), tpr, fpr)
    return best


def fit(out: Path | None) -> None:
    samples = training_crops()
    mesh = np.array([head_turn(face_landmarks(s, CROP_SIDE)) for s in samples])
    turns = np.array(five_point_turns(samples))
    found = ~np.isnan(turns)
    turned = mesh[found] >= TURNED_DEGREES
    threshold, tpr, fpr = best_threshold(turns[found], turned)
    sources = np.array([s.source for s in samples])
    result = {
        "crops": len(samples),
        "no_face_now": int((~found).sum()),
        "turned": int(turned.sum()),
        "threshold": threshold,
        "true_positive_rate": round(tpr, 4),
        "false_positive_rate": round(fpr, 4),
        "per_source": {
            source: {
                "crops": int((sources == source).sum()),
                "turned": int((mesh[sources == source] >= TURNED_DEGREES).sum()),
            }
            for source in SOURCES
        },
    }
    print(json.dumps(result, indent=1))
    if out:
        out.write_text(json.dumps(result, indent=1) + "\n")


def check(path: Path) -> None:
    """Rule 131's (a) on a `face_groups` JSON's records (both turn measures' groups), and its (b) on
    the JSON's figures of the five-point groups (ROC AUC where both classes hold 30 faces)."""
    result = json.loads(path.read_text())
    columns = result["columns"]
    records = columns["as they are"]["records"]
    mesh = np.array([r["head turn group"] for r in records])
    flags = np.array([r["five-point turn group"] == "turned" for r in records])
    turned = np.isin(mesh, [name for name, lowest in TURN_GROUPS if lowest >= TURNED_DEGREES])
    facing = np.isin(mesh, [name for name, lowest in TURN_GROUPS if lowest < FACING_DEGREES])
    caught, wrongly = float(flags[turned].mean()), float(flags[facing].mean())
    print(f"threshold {result['turned_face']}: {flags.sum()} of {len(records)} faces flagged")
    print(
        f"(a) flagged: {caught:.1%} of {turned.sum()} turned >= {TURNED_DEGREES:g} (mark >= 50%), "
        f"{wrongly:.1%} of {facing.sum()} under {FACING_DEGREES:g} (mark <= 5%)"
    )
    passed = caught >= 0.5 and wrongly <= 0.05
    for column, entry in columns.items():
        figures = entry["five-point turn"]["figures"]["all sources"]
        flagged_auc = figures["turned"].get("roc_auc", float("nan"))
        rest_auc = figures["facing"].get("roc_auc", float("nan"))
        print(f"(b) {column}: ROC AUC flagged {flagged_auc:.3f}, the rest {rest_auc:.3f} (mark: 0.03 lower or more)")
        passed = passed and flagged_auc <= rest_auc - 0.03
    print("lands" if passed else "fails")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    fitting = commands.add_parser("fit", help="set the threshold on training crops")
    fitting.add_argument("--json", type=Path, help="write the result here")
    checking = commands.add_parser("check", help="read a face_groups JSON by rule 131's marks")
    checking.add_argument("face_groups_json", type=Path)
    args = parser.parse_args()
    if args.command == "fit":
        if args.json and not args.json.parent.is_dir():
            parser.error(f"--json: no folder {args.json.parent}")
        fit(args.json)
    else:
        try:
            check(args.face_groups_json)
        except (OSError, ValueError, KeyError) as error:
            parser.error(f"{args.face_groups_json}: not a face_groups JSON with rule 131's groups ({error!r})")


if __name__ == "__main__":
    main()
