"""Evaluation of the ensemble on any `real/` + `fake/` folder of face crops or videos.

Image folders are taken as face crops (the shared data sets' format, and what `prepare`
writes) and scored directly. Video folders go through the whole engine: frame-level metrics are
over every face found, video-level metrics over each video's verdict probability (once per
aggregation rule, which is how the default rule is chosen).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
    roc_curve,
)

from pipeline.config import VerdictSettings
from pipeline.engine.ensemble import PICTURE, Ensemble, EnsembleSpec
from pipeline.engine.faces import face_focus, is_toned
from pipeline.engine.quiet import quiet_libraries
from pipeline.engine.verdict import AGGREGATIONS, DecisionRule, Label, ScoredFace, decide
from pipeline.errors import DataError, PipelineError
from pipeline.training.augment import ReshareSettings
from pipeline.training.calibration import expected_calibration_error
from pipeline.training.data import Sample, balanced_subset, is_video, load_samples, read_face
from pipeline.training.prepare import prepared_samples
from pipeline.training.sources import reshared_samples

ENSEMBLE = "ensemble"


@dataclass
class ScoreTable:
    """Scores of one set of items (faces or videos) by every model and the ensemble."""

    labels: np.ndarray
    sources: list[str]
    probabilities: dict[str, np.ndarray]
    """Model name (and "ensemble") -> calibrated fake probability per item."""
    seconds_per_face: dict[str, float] = field(default_factory=dict)
    focus: np.ndarray | None = None
    """Per face crop, `face_focus` of the crop as the members were given it (None for videos)."""
    toned: np.ndarray | None = None
    """Per face crop, whether it is toned black-and-white (`is_toned`, read on the crop as it is:
    the picture it was cut from is not known here; None for videos)."""


def equal_error_rate(labels: np.ndarray, probabilities: np.ndarray) -> float:
    fpr, tpr, _ = roc_curve(labels, probabilities)
    fnr = 1 - tpr
    i = int(np.nanargmin(np.abs(fnr - fpr)))
    return float((fpr[i] + fnr[i]) / 2)


def binary_metrics(labels: np.ndarray, probabilities: np.ndarray, threshold: float) -> dict[str, Any]:
    """The standard detection metrics for one model on one set (scikit-learn for all but ECE)."""
    predictions = (probabilities >= threshold).astype(int)
    both = len(set(labels.tolist())) == 2
    tn, fp, fn, tp = confusion_matrix(labels, predictions, labels=[0, 1]).ravel()
    return {
        "n": int(len(labels)),
        "roc_auc": float(roc_auc_score(labels, probabilities)) if both else None,
        "average_precision": float(average_precision_score(labels, probabilities)) if both else None,
        "eer": equal_error_rate(labels, probabilities) if both else None,
        "accuracy": float(accuracy_score(labels, predictions)),
        "precision": float(precision_score(labels, predictions, zero_division=0)),
        "recall": float(recall_score(labels, predictions, zero_division=0)),
        "f1": float(f1_score(labels, predictions, zero_division=0)),
        "confusion": {"tn": int(tn), "fp": int(fp), "fn": int(fn), "tp": int(tp)},
        "ece": expected_calibration_error(probabilities, labels.astype(float)),
    }


def join_tables(first: ScoreTable, second: ScoreTable) -> ScoreTable:
    """One table of the items of both (e.g. face crops and faces found in videos)."""
    n_first, n_second = len(first.labels), len(second.labels)
    seconds = {
        m: (first.seconds_per_face.get(m, 0.0) * n_first + second.seconds_per_face.get(m, 0.0) * n_second)
        / (n_first + n_second)
        for m in first.seconds_per_face.keys() | second.seconds_per_face.keys()
    }
    return ScoreTable(
        np.concatenate([first.labels, second.labels]),
        first.sources + second.sources,
        {k: np.concatenate([first.probabilities[k], second.probabilities[k]]) for k in first.probabilities},
        seconds,
        None if first.focus is None or second.focus is None else np.concatenate([first.focus, second.focus]),
        None if first.toned is None or second.toned is None else np.concatenate([first.toned, second.toned]),
    )


def table_metrics(table: ScoreTable, threshold: float) -> dict[str, Any]:
    """Metrics per model and for the ensemble, overall and per source."""
    out: dict[str, Any] = {}
    sources = sorted(set(table.sources))
    for name, probabilities in table.probabilities.items():
        scored = np.isfinite(probabilities)  # a costly member scores some faces only
        out[name] = {"all": binary_metrics(table.labels[scored], probabilities[scored], threshold)}
        if len(sources) > 1:
            for source in sources:
                picked = np.asarray([s == source for s in table.sources]) & scored
                out[name][source] = binary_metrics(table.labels[picked], probabilities[picked], threshold)
        if name in table.seconds_per_face:
            out[name]["seconds_per_face"] = table.seconds_per_face[name]
    return out


def score_crops(
    ensemble: Ensemble,
    samples: list[Sample],
    batch_size: int = 64,
    spec: EnsembleSpec | None = None,
    settings: VerdictSettings = VerdictSettings(),
) -> ScoreTable:
    """Score face-crop images with every member, the ensemble combining them as `spec` says
    (default: the ensemble's own); crops are read at the engine's crop size, and whether each is
    toned is judged with `settings`, those the verdicts will be decided with."""
    from tqdm import tqdm

    labels, sources = [], []
    members: dict[str, list[np.ndarray]] = {n: [] for n in ensemble.member_names}
    combined: list[np.ndarray] = []
    focus: list[float] = []
    toned: list[bool] = []
    seconds = dict.fromkeys(ensemble.member_names, 0.0)
    for start in tqdm(range(0, len(samples), batch_size), desc="scoring crops", file=sys.stderr, leave=False):
        batch = samples[start : start + batch_size]
        crops = np.stack([read_face(s.path, 224) for s in batch])
        scores = ensemble.score(crops, spec=spec)
        focus += [face_focus(crop) for crop in crops]
        toned += [is_toned(crop, settings) for crop in crops]
        for name in ensemble.member_names:
            members[name].append(scores.members[name])
            seconds[name] += scores.seconds[name]
        combined.append(scores.ensemble)
        labels += [s.label for s in batch]
        sources += [s.source for s in batch]
    probabilities = {n: np.concatenate(v) for n, v in members.items()}
    probabilities[ENSEMBLE] = np.concatenate(combined)
    return ScoreTable(
        np.asarray(labels),
        sources,
        probabilities,
        {n: s / len(samples) for n, s in seconds.items()},
        np.asarray(focus),
        np.asarray(toned),
    )


def photo_verdicts(
    table: ScoreTable,
    samples: list[Sample],
    decision: DecisionRule,
    rule: str,
    settings: VerdictSettings = VerdictSettings(),
) -> list[dict[str, Any]]:
    """The verdict each scored crop (`samples`, the table's rows in order) would get uploaded
    alone as a one-face photo (the engine's `decide`: threshold, uncertain band, members'
    disagreement, the crop's focus and tone), one record per crop, so that two ensembles can be compared
    face by face."""
    members = [name for name in table.probabilities if name != ENSEMBLE]
    records = []
    for row, sample in enumerate(samples):
        probability = float(table.probabilities[ENSEMBLE][row])
        model_scores = {m: float(table.probabilities[m][row]) for m in members}
        focus = None if table.focus is None else float(table.focus[row])
        toned = table.toned is not None and bool(table.toned[row])
        records.append(
            {
                "file": str(sample.path),
                "source": sample.source,
                "label": "fake" if sample.label else "real",
                "fake_probability": round(probability, 6),
                "model_scores": {m: round(p, 6) for m, p in model_scores.items()},
                "focus": None if focus is None else round(focus, 3),
                "toned": toned,
                "verdict": photo_verdict(probability, model_scores, decision, rule, focus, settings, toned),
            }
        )
    return records


def photo_verdict(
    fake_probability: float,
    model_scores: dict[str, float],
    decision: DecisionRule,
    rule: str,
    focus: float | None = None,
    settings: VerdictSettings = VerdictSettings(),
    toned: bool = False,
) -> Label:
    """The label one face gets as the only face of a photo (one frame, one person), with the
    engine's focus floor for pictures in `settings`; `focus`, its crop's `face_focus` (None: not
    judged too soft); `toned`, whether its crop is toned black-and-white (`is_toned`)."""
    face = ScoredFace(0, 0, fake_probability, model_scores, focus, toned)
    soft_is_uncertain = PICTURE in settings.uncertain_when_soft
    return decide(
        [face], 1, rule, decision, settings.min_track_fraction, settings.trained_face_focus, soft_is_uncertain
    ).label


def verdict_counts(records: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, int]]]:
    """`photo_verdicts`' records counted per subset ("all" and each source) and class:
    {subset: {"real" | "fake": {"fake": n, "uncertain": n, "real": n}}}."""
    counts: dict[str, dict[str, dict[str, int]]] = {}
    for record in records:
        for subset in ("all", record["source"]):
            per_label = counts.setdefault(subset, {}).setdefault(record["label"], {})
            per_label[record["verdict"]] = per_label.get(record["verdict"], 0) + 1
    return counts


@dataclass
class VideoScores:
    faces: ScoreTable
    videos: dict[str, ScoreTable]
    """Aggregation rule -> one row per video with at least one face."""
    no_face: list[str]


def score_videos(engine: Any, samples: list[Sample], frames: int | None = None) -> VideoScores:
    """Run the engine on each video; keep face-level and video-level (per rule) scores."""
    from tqdm import tqdm

    names = engine.ensemble.member_names
    face_labels, face_sources = [], []
    face_probs: dict[str, list[float]] = {n: [] for n in [*names, ENSEMBLE]}
    per_rule: dict[str, dict[str, list[float]]] = {rule: {n: [] for n in [*names, ENSEMBLE]} for rule in AGGREGATIONS}
    video_labels, video_sources, no_face = [], [], []
    seconds = dict.fromkeys(names, 0.0)
    faces_seen = 0
    decision = engine.ensemble.spec.decision_rule
    for sample in tqdm(samples, desc="analysing videos", file=sys.stderr, leave=False):
        try:
            result = engine.analyze(sample.path, frames=frames).result
        except PipelineError as error:
            print(f"warning: {sample.path}: {error}", file=sys.stderr)
            no_face.append(str(sample.path))
            continue
        scored = [
            ScoredFace(position, face.track, face.fake_probability, face.model_scores)
            for position, frame in enumerate(result.frames)
            for face in frame.faces
        ]
        if not scored:
            no_face.append(str(sample.path))
            continue
        for face in scored:
            face_labels.append(sample.label)
            face_sources.append(sample.source)
            face_probs[ENSEMBLE].append(face.fake_probability)
            for n in names:
                face_probs[n].append(face.model_scores.get(n, np.nan))  # a costly member skips some faces
        for n in names:
            seconds[n] += result.model_seconds_per_face.get(n, 0.0) * len(scored)
        faces_seen += len(scored)
        for rule in AGGREGATIONS:
            verdict = decide(scored, len(result.frames), rule, decision)
            per_rule[rule][ENSEMBLE].append(verdict.fake_probability)
            for n in names:
                per_rule[rule][n].append(verdict.model_scores.get(n, np.nan))
        video_labels.append(sample.label)
        video_sources.append(sample.source)
    if not video_labels:
        raise DataError("no face was found in any of the videos")
    faces = ScoreTable(
        np.asarray(face_labels),
        face_sources,
        {n: np.asarray(v) for n, v in face_probs.items()},
        {n: s / max(faces_seen, 1) for n, s in seconds.items()},
    )
    videos = {
        rule: ScoreTable(np.asarray(video_labels), video_sources, {n: np.asarray(v) for n, v in probs.items()})
        for rule, probs in per_rule.items()
    }
    return VideoScores(faces, videos, no_face)


def evaluate(
    roots: list[Path],
    split: str | None,
    models_dir: Path,
    per_class: int | None = None,
    frames: int | None = None,
    report_dir: Path | None = None,
    seed: int = 0,
    reshare: bool = False,
) -> dict[str, Any]:
    """Evaluate the ensemble in `models_dir` on the given folders; returns the metrics. With
    `reshare`, every face crop is scored re-shared (downscaled and JPEG-compressed as
    `ReshareSettings` says, the cross-source table's second column): how the verdicts move when
    the same faces have been passed around before they are uploaded."""
    from pipeline.config import Settings
    from pipeline.engine.analyze import Engine

    # The folders first: a wrong one is one line before the models (and TensorFlow) load.
    samples: list[Sample] = []
    for root in roots:
        found = load_samples(root, split)
        samples += balanced_subset(found, per_class, seed) if per_class else found
    videos = [s for s in samples if is_video(s.path)]
    images = [s for s in samples if not is_video(s.path)]
    if reshare and videos:
        raise PipelineError(
            f"re-sharing applies to pictures, not videos: {len(videos)} video(s) among the folders to evaluate."
        )
    quiet_libraries()
    engine = Engine(Settings(models_dir=models_dir))
    ensemble = engine.ensemble
    pictures = ensemble.spec.for_media(PICTURE)
    # Pictures are combined and decided as the engine decides a picture; with videos among them,
    # the frame-level table is read at the videos' threshold.
    frame_spec = ensemble.spec if videos else pictures
    threshold = ensemble.spec.threshold
    report: dict[str, Any] = {
        "data": [str(r) for r in roots],
        "split": split or "all",
        "threshold": frame_spec.threshold,
        "uncertain_band": [frame_spec.uncertain_low, frame_spec.uncertain_high],
        "weights": frame_spec.weights,
        "models": ensemble.versions(),
    }
    started = time.perf_counter()
    tables: dict[str, ScoreTable] = {}
    if images:
        # Images are scored as the engine frames them: through `prepare` (cached).
        images, faceless = prepared_samples(images, engine.settings)
        report["images_without_faces"] = [str(s.path) for s in faceless]
        if reshare:
            reshare_settings = ReshareSettings()  # one object: the copies and the report say the same
            images = reshared_samples(images, reshare_settings)
            report["reshared"] = asdict(reshare_settings)
        tables["frame"] = score_crops(ensemble, images, spec=pictures, settings=engine.settings.verdict)
        report["photos"] = photo_verdicts(
            tables["frame"],
            images,
            pictures.decision_rule,
            pictures.aggregation,
            engine.settings.verdict,
        )
        report["photo_verdicts"] = verdict_counts(report["photos"])
    if videos:
        video_scores = score_videos(engine, videos, frames)
        # Faces found in videos join the face crops (if any) in the frame-level table.
        tables["frame"] = join_tables(tables["frame"], video_scores.faces) if images else video_scores.faces
        report["video_level"] = {rule: table_metrics(t, threshold) for rule, t in video_scores.videos.items()}
        report["video_level_default_rule"] = ensemble.spec.aggregation
        report["videos_without_faces"] = video_scores.no_face
        tables["video"] = video_scores.videos[ensemble.spec.aggregation]
    report["frame_level"] = table_metrics(tables["frame"], frame_spec.threshold)
    report["seconds"] = round(time.perf_counter() - started, 1)
    if report_dir is not None:
        from pipeline.training.plots import write_report

        write_report(report, tables, ensemble, images, report_dir)
    return report


def share_of_reals_called_fake(confusion: dict[str, int]) -> float | None:
    """The share of the real items called fake at the threshold; None without real items (the
    share of fakes caught is the metrics' `recall`)."""
    reals = confusion["tn"] + confusion["fp"]
    return confusion["fp"] / reals if reals else None


def print_summary(report: dict[str, Any]) -> None:
    """Human-readable table of the main metrics on stdout."""
    for level in ("frame_level", "video_level"):
        if level not in report:
            continue
        blocks = (
            report[level]
            if level == "frame_level"
            else {
                f"{rule}{' (default)' if rule == report['video_level_default_rule'] else ''}": m
                for rule, m in report[level].items()
            }
        )
        if level == "frame_level":
            blocks = {"": blocks}
        for rule, models in blocks.items():
            print(f"\n{level.replace('_', '-')}{' — ' + rule if rule else ''}")
            print(
                f"{'model':<20}{'subset':<14}{'n':>6}{'AUC':>8}{'AP':>8}{'EER':>8}{'acc':>8}{'F1':>8}{'ECE':>8}"
                f"{'real→fake':>11}{'caught':>8}"
            )
            for model, subsets in models.items():
                for subset, m in subsets.items():
                    if not isinstance(m, dict):
                        continue
                    fmt = lambda v: f"{v:8.4f}" if isinstance(v, float) else f"{'-':>8}"  # noqa: E731
                    confusion = m["confusion"]
                    called_fake = share_of_reals_called_fake(confusion)
                    caught = m["recall"] if confusion["tp"] + confusion["fn"] else None  # no fakes: nothing to catch
                    print(
                        f"{model:<20}{subset:<14}{m['n']:>6}{fmt(m['roc_auc'])}{fmt(m['average_precision'])}{fmt(m['eer'])}{fmt(m['accuracy'])}{fmt(m['f1'])}{fmt(m['ece'])}"
                        f"   {fmt(called_fake)}{fmt(caught)}"
                    )


def print_photo_verdicts(report: dict[str, Any]) -> None:
    """The verdicts of the crops as one-face photos, as shares of each class, on stdout."""
    if "photo_verdicts" not in report:
        return
    print("\nverdicts, each crop as a one-face photo (share of the class called fake / uncertain / real)")
    for subset, classes in report["photo_verdicts"].items():
        for label, verdicts in sorted(classes.items(), reverse=True):
            total = sum(verdicts.values())
            shares = " / ".join(f"{100 * verdicts.get(v, 0) / total:.1f}%" for v in ("fake", "uncertain", "real"))
            print(f"{subset:<14}{label + ' faces':<12}{total:>6}  {shares}")


def write_json(report: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(report, indent=2) + "\n")
