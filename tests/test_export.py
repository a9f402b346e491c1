"""Exports: the history as CSV, a result as JSON, a result as a self-contained HTML report."""

from __future__ import annotations

import base64
import csv
import io
import json
import re
from dataclasses import replace
from html import escape, unescape
from html.parser import HTMLParser
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from PIL import Image

from pipeline.app.export import CSV_COLUMNS, history_csv, html_report, result_json
from pipeline.app.sections import EXPLANATION_NOTE, NOT_READ
from pipeline.app.store import Record, Store
from pipeline.engine.analyze import AnalysisResult
from pipeline.engine.provenance import NO_PROVENANCE, read_provenance
from pipeline.results import GRADCAM_MAP, PATCH_PUSH_MAP, PATCH_SCORE_MAP
from tests import provenance_factory as pf

if TYPE_CHECKING:
    from dashboard_fixtures import Analysed

pytest_plugins = ["dashboard_fixtures"]  # session fixtures: one engine, analyses made once
SIGNER = f"{pf.SIGNER_NAME} ({pf.SIGNER_ORGANISATION})"


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
    table = list(csv.DictReader(io.StringIO(history_csv(store.records()))))
    assert tuple(table[0]) == CSV_COLUMNS
    # Newest first (the session's analyses may have been made in either order).
    newest_first = sorted([image_record, video_record], key=lambda r: (r.result.created, r.id), reverse=True)
    assert [int(row["id"]) for row in table] == [r.id for r in newest_first]
    row = next(row for row in table if int(row["id"]) == video_record.id)
    result = video_record.result
    assert (row["file_name"], row["kind"], row["verdict"], row["sha256"]) == (
        result.file,
        "video",
        result.verdict,
        result.sha256,
    )
    assert float(row["fake_probability"]) == pytest.approx(result.fake_probability)
    assert (row["provenance_ai_generated"], row["provenance"], row["last_saved"]) == ("false", NO_PROVENANCE, "")
    assert history_csv([]).strip() == ",".join(CSV_COLUMNS)


def test_csv_has_the_provenance_of_each_row(
    store: Store, image_record: Record, analysed_generated_image: Analysed, analysed_image: Analysed
) -> None:
    generated = store.save(
        analysed_generated_image.result, analysed_generated_image.pictures, analysed_generated_image.preview_scale
    )
    # A result stored before provenance was read (another file, so another history key).
    old = store.save(
        replace(analysed_image.result, provenance=None, sha256="0" * 64, file="old.jpg"),
        analysed_image.pictures,
        analysed_image.preview_scale,
    )
    rows = {int(row["id"]): row for row in csv.DictReader(io.StringIO(history_csv(store.records())))}
    assert rows[generated.id]["provenance_ai_generated"] == "true"
    assert rows[generated.id]["provenance"] == generated.result.provenance.summary
    assert rows[generated.id]["provenance"].startswith("AI-generated according to Content Credentials (valid signature")
    assert (rows[image_record.id]["provenance_ai_generated"], rows[image_record.id]["provenance"]) == (
        "false",
        NO_PROVENANCE,
    )
    assert (rows[old.id]["provenance_ai_generated"], rows[old.id]["provenance"]) == ("", NOT_READ)
    # How each image was last saved (the shared photo: quality 90); unknown for the old result.
    assert (rows[image_record.id]["last_saved"], rows[old.id]["last_saved"]) == ("JPEG at quality 90", "")


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
    # Beside the maps, what they show: the CLIP map does not show where a face was changed (rule 69).
    assert "does not show where a face was changed" in html
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


def test_html_report_shows_the_provenance_beside_the_verdict(store: Store, analysed_generated_image: Analysed) -> None:
    record = store.save(
        analysed_generated_image.result, analysed_generated_image.pictures, analysed_generated_image.preview_scale
    )
    text = unescape(html_report(record, store))
    provenance = record.result.provenance
    (claim,) = provenance.ai_claims
    headline = text.index(f'<p class="provenance ai">Provenance: {provenance.summary}</p>')
    assert text.index(record.result.reason) < headline < text.index("<h2>Model scores</h2>")
    section = text[text.index("<h2>Provenance</h2>") : text.index("<h2>Timings</h2>")]
    for expected in (
        f"<p><b>AI-generated according to {claim}.</b></p>",
        "<tr><th>signature</th><td>valid</td></tr>",
        f"<tr><th>signer</th><td>{SIGNER} (not on a trust list)</td></tr>",
        "<tr><th>actions</th><td>c2pa.created: trainedAlgorithmicMedia (made by a trained AI model), by Test Diffusion</td></tr>",
        "absence proves nothing",
    ):
        assert expected in section, expected
    assert "Could not be read" not in section


def test_html_report_escapes_hostile_metadata_and_lists_problems(
    store: Store, analysed_image: Analysed, tmp_path: Path
) -> None:
    hostile = "<img src=x onerror=alert(1)> Midjourney"
    path = pf.save_png_with_text(tmp_path / "hostile.png", {"Software": hostile})
    junk = pf.insert_png_chunks(path, tmp_path / "junk.png", pf.png_chunk(b"caBX", b"not a manifest" * 10))
    provenance = read_provenance(junk, "image")
    assert provenance.ai_generated and len(provenance.problems) == 1
    record = store.save(replace(analysed_image.result, provenance=provenance), analysed_image.pictures, 1.0)
    html = html_report(record, store)
    assert "<img src=x" not in html and escape(hostile, quote=False) in html
    assert f"<li>{provenance.problems[0]}</li>" in unescape(html)


def test_html_report_of_a_result_stored_before_provenance(store: Store, analysed_image: Analysed) -> None:
    record = store.save(replace(analysed_image.result, provenance=None), analysed_image.pictures, 1.0)
    assert f'<p class="provenance">Provenance: {NOT_READ}</p>' in unescape(html_report(record, store))


def test_html_report_says_when_a_picture_is_missing(store: Store, video_record: Record) -> None:
    gone = video_record.pictures_of("explanation_face")[0]
    store.path(gone).unlink()
    html = html_report(video_record, store)
    assert "picture missing from the history folder" in html


def test_the_note_beside_the_maps_says_what_each_model_s_map_is(
    store: Store, analysed_image: Analysed, tmp_path: Path
) -> None:
    """A result records the kind of map each model made (Grad-CAM for the CNNs, the class-token
    probe's patch push for the CLIP member), and the report says what each kind shows, naming its
    models. A result stored before maps were told apart gets the note that held for every model
    shipped until then; a patch probe's map is said to be its own patch scores."""
    result = analysed_image.result
    assert set(result.explanation_maps) == set(result.models)
    assert sorted(set(result.explanation_maps.values())) == [GRADCAM_MAP, PATCH_PUSH_MAP]
    cnns = [name for name, kind in result.explanation_maps.items() if kind == GRADCAM_MAP]
    html = unescape(html_report(store.save(result, analysed_image.pictures, 1.0), store))
    assert f"{', '.join(cnns)}: Grad-CAM" in html and "does not show where a face was changed" in html

    earlier = Store(tmp_path / "earlier")  # each store keeps one result of the same file and settings
    before = earlier.save(replace(result, explanation_maps={}), analysed_image.pictures, 1.0)
    assert (stored := earlier.get(before.id)) is not None and stored.result.explanation_maps == {}
    assert EXPLANATION_NOTE in unescape(html_report(before, earlier))

    clips = [name for name, kind in result.explanation_maps.items() if kind == PATCH_PUSH_MAP]
    patches = replace(result, explanation_maps={**result.explanation_maps, **dict.fromkeys(clips, PATCH_SCORE_MAP)})
    later = Store(tmp_path / "later")
    html = unescape(html_report(later.save(patches, analysed_image.pictures, 1.0), later))
    assert f"{', '.join(clips)}: its probe's score of each patch" in html and "does not show where" not in html
