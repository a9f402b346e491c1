"""Rules 129-130: are real faces told `fake` more often when their skin looks darker, or when they
are turned away from the camera?

The shared data carry no demographic labels; what a picture shows is how light or dark a face
looks and how far it is turned. Each validation crop of the four sources (the engine's framing,
from the prepared cache, with its own face mesh) gets its skin's lightness (CIELAB L*, the median
over the face's skin pixels; `LIGHTNESS_GROUPS`) and its head turn (the nose tip's place between
the ends of the face's outline; `TURN_GROUPS`). The crops are scored by `models/` as shipped, each
as a one-face photo (the pictures' weighing, as `evaluate` does), as they are and re-shared, and
the verdicts are counted per group of each kind. Rule 131 adds a third kind: the turn read from
MTCNN's five points on the picture each crop was cut from (`pipeline.engine.faces.face_turn`), the
faces the engine calls turned (`VerdictSettings.turned_face`) against the rest. No test split is
read, and nothing is chosen on the result.

    .venv/bin/python -m benchmarks.face_groups --json face_groups.json

The lightness is not a person's ethnicity nor their skin's true colour: lighting, exposure, the
camera and a generator move it (a light-skinned face in dim video light reads dark). It says how
light or dark the face looks in the picture judged. (The Individual Typology Angle, planned first,
runs towards -90 degrees wherever white balance leaves b* near 0, and put light faces under bluish
light among the darkest: rule 129's amendment.) The turn is rough: the mesh is less sure of a face
in profile.
"""

from __future__ import annotations

import argparse
import csv
import json
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import cv2
import numpy as np
from sklearn.metrics import roc_auc_score

from benchmarks.own_face_edits import NOSE_TIP, skin_mask
from pipeline.config import Settings, VerdictSettings, shared_data_dir
from pipeline.engine.ensemble import PICTURE, Ensemble
from pipeline.engine.faces import FaceFinder, face_turn
from pipeline.training.data import Sample, balanced_subset, read_rgb
from pipeline.training.evaluate import photo_verdicts, score_crops
from pipeline.training.prepare import media_faces
from pipeline.training.sources import SOURCES, face_landmarks, reshared_samples, source_samples

PER_CLASS = {"dfdc-faces": 600}
"""Crops drawn per class where a source has many (the others: every validation crop)."""
SEED = 129
LIGHTNESS_GROUPS = (
    ("65 and over", 65.0),
    ("55-65", 55.0),
    ("45-55", 45.0),
    ("35-45", 35.0),
    ("under 35", float("-inf")),
)
"""(group, lowest median skin L*), lightest first (rule 129's amendment)."""
TURN_GROUPS = (
    ("45 and over", 45.0),
    ("25-45", 25.0),
    ("10-25", 10.0),
    ("under 10", float("-inf")),
)
"""(group, lowest yaw in degrees), most turned first (rule 130)."""
FIVE_POINT_GROUPS = (("turned", VerdictSettings().turned_face), ("facing", float("-inf")))
"""(group, lowest `face_turn`): the engine's turned-face caveat and the rest (rule 131)."""
OUTLINE_RIGHT, OUTLINE_LEFT = 234, 454
"""Face mesh points: the face outline's ends (the person's right, then left)."""
MIN_SKIN_PIXELS = 50
MIN_GROUP = 30
"""A group is read only with this many faces of a class in it (rule 129)."""
COLUMNS = ("as they are", "re-shared")
VERDICTS = ("fake", "uncertain", "real")


def chosen_crops() -> list[Sample]:
    """Validation crops with their own face mesh, per `SOURCES` and `PER_CLASS` (seed `SEED`)."""
    chosen: list[Sample] = []
    for source in SOURCES:
        found = [s for s in source_samples(source, "val") if s.landmarks is not None and s.landmarks.exists()]
        chosen += balanced_subset(found, PER_CLASS[source], SEED) if source in PER_CLASS else found
    return chosen


def skin_lightness(crop: np.ndarray, points: np.ndarray) -> float:
    """The median CIELAB L* (0-100) of a face's skin pixels (`skin_mask` above one half); NaN
    where too little skin shows."""
    inside = skin_mask(crop.shape, points) > 0.5
    if inside.sum() < MIN_SKIN_PIXELS:
        return float("nan")
    lab = cv2.cvtColor(crop.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)
    return float(np.median(lab[..., 0][inside]))


def head_turn(points: np.ndarray) -> float:
    """How far a face is turned from the camera, in degrees (0 facing it, 90 where the nose tip
    lies outside the face's outline): arcsin(|2r - 1|), r the nose tip's place between the
    outline's ends (0.5 facing the camera)."""
    width = points[OUTLINE_LEFT, 0] - points[OUTLINE_RIGHT, 0]
    if abs(width) < 1e-6:
        return 90.0
    place = (points[NOSE_TIP, 0] - points[OUTLINE_RIGHT, 0]) / width
    return float(np.degrees(np.arcsin(min(1.0, abs(2.0 * place - 1.0)))))


@cache
def _originals(folder: Path) -> dict[str, str]:
    """A prepared folder's crops -> the shared pictures they were cut from (its metadata.csv)."""
    with (folder / "metadata.csv").open(newline="") as handle:
        return {row["file"]: row["source"] for row in csv.DictReader(handle)}


def _original(sample: Sample) -> Path:
    """The shared picture a prepared crop was cut from."""
    folder = sample.path.parent.parent
    return shared_data_dir() / folder.name / _originals(folder)[str(sample.path.relative_to(folder))]


def five_point_turns(samples: Sequence[Sample]) -> list[float]:
    """`face_turn` of each crop's face as the engine finds it in the picture the crop was cut from
    (NaN where it finds none now)."""
    settings = Settings()
    finder = FaceFinder(settings.faces)
    turns = []
    for sample in samples:
        found = list(media_faces(_original(sample), finder, settings, frames=1))
        turns.append(face_turn(found[0][1].landmarks) if found else float("nan"))
    return turns


def group_of(value: float, groups: Sequence[tuple[str, float]]) -> str:
    """The name of the first of `groups` (name, lowest value) that `value` reaches ("unmeasured"
    for NaN)."""
    if np.isnan(value):
        return "unmeasured"
    return next(name for name, lowest in groups if value >= lowest)


def group_figures(records: Sequence[dict], groups: Sequence[str], names: Sequence[str]) -> dict[str, dict]:
    """Per group of `names` (and "all"): real faces' verdict shares and median probability, fakes told
    `fake` and their median, ROC AUC where both classes hold `MIN_GROUP` faces."""
    figures: dict[str, dict] = {}
    for group in ["all", *names, "unmeasured"]:
        rows = [r for r, g in zip(records, groups, strict=True) if group in ("all", g)]
        reals = [r for r in rows if r["label"] == "real"]
        fakes = [r for r in rows if r["label"] == "fake"]
        entry: dict = {"reals": len(reals), "fakes": len(fakes)}
        if reals:
            entry["reals_told"] = {v: sum(r["verdict"] == v for r in reals) / len(reals) for v in VERDICTS}
            entry["reals_median"] = float(np.median([r["fake_probability"] for r in reals]))
        if fakes:
            entry["fakes_told_fake"] = sum(r["verdict"] == "fake" for r in fakes) / len(fakes)
            entry["fakes_median"] = float(np.median([r["fake_probability"] for r in fakes]))
        if len(reals) >= MIN_GROUP and len(fakes) >= MIN_GROUP:
            labels = [int(r["label"] == "fake") for r in reals + fakes]
            entry["roc_auc"] = float(roc_auc_score(labels, [r["fake_probability"] for r in reals + fakes]))
        if entry["reals"] or entry["fakes"]:
            figures[group] = entry
    return figures


def flagged(figures: dict[str, dict]) -> list[str]:
    """The groups rule 129 names: real faces told `fake` more than twice as often as all real
    faces and at least 3 points more, with `MIN_GROUP` real faces at the least."""
    overall = figures["all"]["reals_told"]["fake"]
    return [
        group
        for group, entry in figures.items()
        if group != "all"
        and entry["reals"] >= MIN_GROUP
        and entry["reals_told"]["fake"] > max(2 * overall, overall + 0.03)
    ]


def markdown(figures: dict[str, dict]) -> str:
    """One row per group: reals told fake / uncertain / real (median), fakes told fake (median), ROC AUC."""
    lines = [
        "| group | reals | told fake / uncertain / real | median | fakes | told fake | median | ROC AUC |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for group, e in figures.items():
        told = e.get("reals_told")
        shares = " / ".join(f"{100 * told[v]:.1f}" for v in VERDICTS) + "%" if told else "-"
        caught = f"{100 * e['fakes_told_fake']:.1f}%" if "fakes_told_fake" in e else "-"
        auc = f"{e['roc_auc']:.3f}" if "roc_auc" in e else "-"
        lines.append(
            f"| {group} | {e['reals']} | {shares} | {e.get('reals_median', float('nan')):.2f} | {e['fakes']} | "
            f"{caught} | {e.get('fakes_median', float('nan')):.2f} | {auc} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="write the figures and every face's record here")
    args = parser.parse_args()
    # Checked before 20 minutes of scoring, not after.
    if args.json and not args.json.parent.is_dir():
        parser.error(f"--json: no folder {args.json.parent}")
    samples = chosen_crops()
    measures: dict[str, list[float]] = {"skin lightness": [], "head turn": []}
    for sample in samples:
        crop = read_rgb(sample.path)
        points = face_landmarks(sample, crop.shape[0])
        measures["skin lightness"].append(skin_lightness(crop, points))
        measures["head turn"].append(head_turn(points))
    measures["five-point turn"] = five_point_turns(samples)
    kinds = {"skin lightness": LIGHTNESS_GROUPS, "head turn": TURN_GROUPS, "five-point turn": FIVE_POINT_GROUPS}
    groups = {kind: [group_of(v, kinds[kind]) for v in values] for kind, values in measures.items()}
    settings = Settings()
    ensemble = Ensemble(settings.models_dir)
    pictures = ensemble.spec.for_media(PICTURE)
    rows_of = {source: [i for i, s in enumerate(samples) if s.source == source] for source in SOURCES}
    result: dict = {"crops": len(samples), "turned_face": FIVE_POINT_GROUPS[0][1], "columns": {}}
    for column, scored in zip(COLUMNS, (samples, reshared_samples(samples)), strict=True):
        table = score_crops(ensemble, scored, spec=pictures, settings=settings.verdict)
        records = photo_verdicts(table, scored, pictures.decision_rule, pictures.aggregation, settings.verdict)
        for row, record in enumerate(records):
            record.update({kind: round(values[row], 4) for kind, values in measures.items()})
            record.update({f"{kind} group": kind_groups[row] for kind, kind_groups in groups.items()})
        result["columns"][column] = {"records": records}
        for kind, kind_groups in kinds.items():
            names = [name for name, _ in kind_groups]
            figures = {"all sources": group_figures(records, groups[kind], names)}
            for source, rows in rows_of.items():
                figures[source] = group_figures([records[i] for i in rows], [groups[kind][i] for i in rows], names)
            named = {name: flagged(f) for name, f in figures.items()}
            result["columns"][column][kind] = {"figures": figures, "flagged": named}
            for name, per_group in figures.items():
                print(f"\n{column}, {kind}, {name}:\n{markdown(per_group)}", flush=True)
            print(f"\nflagged ({column}, {kind}): {named}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
