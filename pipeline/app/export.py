"""Exports of the history: the list as CSV, a result as JSON, and a result as a self-contained
HTML report (every picture embedded as a data URI, no script, no external address), which can be
mailed or archived and opened anywhere offline."""

from __future__ import annotations

import base64
import csv
import io
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from html import escape

from pipeline.results import AnalysisResult
from pipeline.app.charts import timeline_png
from pipeline.app.store import Picture, Record, Store, Summary

CSV_COLUMNS = ("id", "created", "file_name", "kind", "verdict", "fake_probability", "sha256")
MIME_TYPES = {".jpg": "image/jpeg", ".png": "image/png"}

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #1d3557; }
h1 { margin-bottom: 0; } .muted { color: #6c757d; }
.verdict { font-size: 1.6rem; font-weight: 700; padding: .6rem 1rem; border-radius: .4rem; display: inline-block; }
.fake { background: #fde2e4; color: #9d0208; } .real { background: #d8f3dc; color: #1b4332; }
.uncertain { background: #fff3bf; color: #7f5539; } .no_face { background: #e9ecef; color: #343a40; }
table { border-collapse: collapse; margin: .5rem 0 1.5rem; }
th, td { border: 1px solid #dee2e6; padding: .3rem .6rem; text-align: left; }
figure { display: inline-block; margin: .4rem; vertical-align: top; } figcaption { font-size: .85rem; color: #495057; }
img { max-width: 100%; } .crop { width: 224px; } .frame { max-width: 480px; }
"""


def history_csv(summaries: Sequence[Summary]) -> str:
    """The history list as CSV, one row per stored analysis."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in summaries:
        writer.writerow([getattr(row, column) for column in CSV_COLUMNS])
    return buffer.getvalue()


def result_json(record: Record) -> str:
    """A stored result as the same JSON the CLI writes."""
    return json.dumps(record.result.to_json(), indent=2) + "\n"


def data_uri(data: bytes, mime: str) -> str:
    """Bytes embedded in a page as a base64 data URI."""
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _picture_uri(store: Store, picture: Picture) -> str | None:
    path = store.path(picture)
    return data_uri(path.read_bytes(), MIME_TYPES[path.suffix]) if path.is_file() else None


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    head = "".join(f"<th>{escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(str(cell))}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _probability(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _face_time(result: AnalysisResult, frame: int) -> str:
    if result.kind == "image":
        return "the image"
    sampled = result.frames[frame]
    return f"frame {sampled.frame_number} ({sampled.time_s:.2f} s)"


def _gradcam_section(record: Record, store: Store) -> str:
    result = record.result
    faces = sorted({(p.position, p.face, p.track) for p in record.pictures_of("explanation_face")})
    if not faces:
        return "<p class='muted'>No face was found, so there is nothing to explain.</p>"
    parts = []
    for frame, face, track in faces:
        probability = result.frames[frame].faces[face].fake_probability
        parts.append(
            f"<h3>Person {track + 1}, {escape(_face_time(result, frame))}: fake probability {probability:.3f}</h3>"
        )
        for model in result.models:
            for role, css, where in (("explanation_face", "crop", "face"), ("explanation_frame", "frame", "frame")):
                picture = next(
                    (p for p in record.pictures_of(role) if (p.position, p.face, p.model) == (frame, face, model)), None
                )
                uri = _picture_uri(store, picture) if picture else None
                caption = f"{model}: on the {where}"
                if uri:
                    parts.append(
                        f"<figure><img class='{css}' src='{uri}' alt='{escape(caption)}'>"
                        f"<figcaption>{escape(caption)}</figcaption></figure>"
                    )
                else:
                    parts.append(f"<p class='muted'>{escape(caption)}: picture missing from the history folder.</p>")
    return "\n".join(parts)


def html_report(record: Record, store: Store) -> str:
    """A self-contained HTML report of one stored result: verdict, timeline, Grad-CAM
    pictures, model scores and versions, people, and timings."""
    result = record.result
    title = f"Deepfake analysis: {result.file}"
    size = f"{result.width}×{result.height}" + (f", {result.duration_s:.1f} s" if result.duration_s else "")
    sampled = len(result.frames)
    timeline = ""
    if result.kind == "video" and any(frame.faces for frame in result.frames):
        timeline = (
            "<h2>Timeline</h2><p class='muted'>Ensemble fake probability of each person per sampled frame; "
            "dashed line: decision threshold; shaded: uncertain band.</p>"
            f"<img src='{data_uri(timeline_png(result), 'image/png')}' alt='timeline of fake probability'>"
        )
    model_rows = [
        [
            name,
            _probability(result.model_scores.get(name)),
            version,
            f"{1000 * result.model_seconds_per_face[name]:.1f}" if name in result.model_seconds_per_face else "-",
        ]
        for name, version in result.models.items()
    ]
    people_rows = [
        [t.track + 1, t.faces, f"{t.fake_probability:.3f}", t.verdict, "yes" if t.decides else "no (seen too briefly)"]
        + [f"{t.model_scores[m]:.3f}" for m in result.models]
        for t in result.tracks
    ]
    file_table = _table(
        ["file", "SHA-256", "kind", "size", "frames sampled", "aggregation rule"],
        [[result.file, result.sha256, result.kind, size, sampled, result.aggregation]],
    )
    models_table = _table(
        ["model", "fake probability", "version (file hash)", "ms per face"],
        [["ensemble", _probability(result.fake_probability), "", ""], *model_rows],
    )
    people_table = (
        _table(
            ["person", "faces", "fake probability", "verdict", "counts for the verdict", *result.models], people_rows
        )
        if people_rows
        else "<p class='muted'>No face found.</p>"
    )
    generated = datetime.now(UTC).isoformat(timespec="seconds")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title><style>{_STYLE}</style></head>
<body>
<h1>{escape(title)}</h1>
<p class="muted">Analysed {escape(result.created)} · history record {record.id} · report generated {generated}</p>
<p><span class="verdict {escape(result.verdict)}">{escape(result.verdict.replace("_", " ").upper())}</span>
 &nbsp; fake probability <b>{_probability(result.fake_probability)}</b>
 (threshold {result.threshold:.2f}, uncertain band {result.uncertain_band[0]:.2f}-{result.uncertain_band[1]:.2f})</p>
<p>{escape(result.reason)}</p>
{file_table}
{timeline}
<h2>Model scores</h2>
{models_table}
<h2>People</h2>
{people_table}
<h2>Grad-CAM: where each model looked</h2>
<p class="muted">The most suspicious face of each person; red areas raised the model's fake score most.</p>
{_gradcam_section(record, store)}
<h2>Timings</h2>
{_table(["stage", "seconds"], [[stage, f"{seconds:.3f}"] for stage, seconds in result.timing.items()])}
</body></html>
"""
