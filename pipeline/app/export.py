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
from functools import lru_cache
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from pipeline.app.charts import timeline_png
from pipeline.app.sections import last_saved, provenance_section, result_sections
from pipeline.app.store import Record, Store

SUMMARY_COLUMNS = ("id", "created", "file_name", "kind", "verdict", "fake_probability", "sha256")
PROVENANCE_COLUMNS = ("provenance_ai_generated", "provenance", "last_saved")
"""Whether the provenance says AI made the file (`true`, `false`, or empty for a result stored
before provenance was read), its one-line summary, and how an image was last saved (e.g. `JPEG at
quality 75`; empty for a video or an older result)."""
CSV_COLUMNS = SUMMARY_COLUMNS + PROVENANCE_COLUMNS
MIME_TYPES = {".jpg": "image/jpeg", ".png": "image/png"}
TEMPLATES = Path(__file__).with_name("templates")


def _provenance_cells(record: Record) -> list[str]:
    provenance = record.result.provenance
    if provenance is None:
        return ["", provenance_section(None).summary, ""]
    return ["true" if provenance.ai_generated else "false", provenance.summary, last_saved(provenance.file_history)]


def history_csv(records: Sequence[Record]) -> str:
    """The history list as CSV, one row per stored analysis (`Store.records`, newest first)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for record in records:
        summary = record.summary
        writer.writerow([getattr(summary, column) for column in SUMMARY_COLUMNS] + _provenance_cells(record))
    return buffer.getvalue()


def result_json(record: Record) -> str:
    """A stored result as the same JSON the CLI writes."""
    return json.dumps(record.result.to_json(), indent=2) + "\n"


def data_uri(data: bytes, mime: str) -> str:
    """Bytes embedded in a page as a base64 data URI."""
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _file_uri(path: Path) -> str:
    return data_uri(path.read_bytes(), MIME_TYPES[path.suffix])


def _probability(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _milliseconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


@lru_cache(maxsize=1)
def _environment() -> Environment:
    environment = Environment(
        loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html", "j2"]), undefined=StrictUndefined
    )
    environment.filters.update(probability=_probability, milliseconds=_milliseconds, data_uri=_file_uri)
    return environment


def html_report(record: Record, store: Store) -> str:
    """A self-contained HTML report of one stored result: verdict and provenance, timeline, model
    scores and versions, people, explanation maps and timings (every picture embedded, no
    script)."""
    result = record.result
    timeline = None
    if result.kind == "video" and any(frame.faces for frame in result.frames):
        timeline = data_uri(timeline_png(result), "image/png")
    sections = result_sections(record, store)
    return (
        _environment()
        .get_template("report.html.j2")
        .render(
            v=sections.verdict,
            s=sections,
            sha256=result.sha256,
            record_id=record.id,
            generated=datetime.now(UTC).isoformat(timespec="seconds"),
            timeline=timeline,
        )
    )
