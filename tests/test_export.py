"""Exports: the history as CSV, a result as JSON, a result as a self-contained HTML report."""

from __future__ import annotations

import base64
import csv
import io
import json
import re
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from PIL import Image

from pipeline.app.export import CSV_COLUMNS, history_csv, html_report, result_json
from pipeline.app.store import Record, Store
from pipeline.engine.analyze import AnalysisResult

if TYPE_CHECKING:
    from dashboard_fixtures import Analysed

pytest_plugins = ["dashboard_fixtures"]  # session fixtures: one engine, analyses made once


class _Resources(HTMLParser):
    """Every address an HTML page would load or link to."""

    def __init__(self) -> None:
        super().__init__()
        self.addresses: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href", "srcset", "poster", "data", "action"):
                self.addresses.append((tag, name, value or ""))


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path)


@pytest.fixture
def video_record(store: Store, analysed_video: Analysed) -> Record:
    return store.save(analysed_video.result, analysed_video.pictures, analysed_video.preview_scale)


@pytest.fixture
def image_record(store: Store, analysed_image: Analysed) -> Record:
    return store.save(analysed_image.result, analysed_image.pictures, analysed_image.preview_scale)


def test_csv_lists_every_row(store: Store, video_record: Record, image_record: Record) -> None:
    table = list(csv.DictReader(io.StringIO(history_csv(store.summaries()))))
    assert tuple(table[0]) == CSV_COLUMNS
    assert [int(row["id"]) for row in table] == [image_record.id, video_record.id]
    row = table[1]
    result = video_record.result
    assert (row["file_name"], row["kind"], row["verdict"], row["sha256"]) == (
        result.file,
        "video",
        result.verdict,
        result.sha256,
    )
    assert float(row["fake_probability"]) == pytest.approx(result.fake_probability)
    assert history_csv([]).strip() == ",".join(CSV_COLUMNS)


def test_json_is_the_whole_result(video_record: Record) -> None:
    data = json.loads(result_json(video_record))
    assert data == video_record.result.to_json()
    assert AnalysisResult.from_json(data) == video_record.result


def _images(html: str) -> list[bytes]:
    return [
        base64.b64decode(b) for b in re.findall(r"src=[\"']data:image/(?:png|jpeg);base64,([A-Za-z0-9+/=]+)[\"']", html)
    ]


def test_html_report_is_self_contained(store: Store, video_record: Record) -> None:
    html = html_report(video_record, store)
    parser = _Resources()
    parser.feed(html)
    assert parser.addresses, "the report has pictures"
    assert all(value.startswith("data:image/") for _, _, value in parser.addresses), parser.addresses
    assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/|<script|<link|@import|url\(", html, re.IGNORECASE)
    result = video_record.result
    for text in (
        result.file,
        result.sha256,
        result.reason.split(";")[0],
        result.verdict.upper(),
        f"{result.fake_probability:.3f}",
    ):
        assert text in html
    for name, version in result.models.items():
        assert name in html and version in html
    for stage in result.timing:
        assert f"<td>{stage}</td>" in html
    pictures = _images(html)
    persons = len({p.track for p in video_record.pictures_of("explanation_face")})
    # the timeline, then a face and a frame overlay per model and person
    assert len(pictures) == 1 + 2 * len(result.models) * persons
    assert pictures[0].startswith(b"\x89PNG")
    for picture in pictures:
        assert Image.open(io.BytesIO(picture)).size[0] > 50


def test_html_report_of_an_image_has_no_timeline_and_escapes_text(store: Store, analysed_image: Analysed) -> None:
    record = store.save(
        replace(analysed_image.result, file="<b>me & you</b>.jpg"),
        analysed_image.pictures,
        analysed_image.preview_scale,
    )
    html = html_report(record, store)
    assert "<b>me" not in html and "&lt;b&gt;me &amp; you&lt;/b&gt;.jpg" in html
    assert "Timeline" not in html
    assert len(_images(html)) == 2 * len(record.result.models)


def test_html_report_says_when_a_picture_is_missing(store: Store, video_record: Record) -> None:
    gone = video_record.pictures_of("explanation_face")[0]
    store.path(gone).unlink()
    html = html_report(video_record, store)
    assert "picture missing from the history folder" in html
