"""Every page of the dashboard, driven in-process with Streamlit's AppTest and the real engine.

AppTest (Streamlit 1.67) supports `st.file_uploader`: `set_value([(name, bytes, mime), ...])`
sends the files through Streamlit's own upload manager, so the pages are tested with real
uploads and no test-only code path.
"""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import heif_factory as hf
import media_factory as mf
import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from pages._views import get_service
from pipeline.app.store import JobFile, Store
from pipeline.config import DATA_HOME_ENV, MODELS_DIR_ENV, REPO_ROOT
from pipeline.engine.media import sample_frames
from pipeline.engine.provenance import NO_PROVENANCE

if TYPE_CHECKING:
    from dashboard_fixtures import Analysed, Media

pytest_plugins = ["dashboard_fixtures"]  # session fixture: media

APP = str(REPO_ROOT / "app.py")
TIMEOUT_S = 300  # a script run that analyses; the first one also loads the models


def figures(at: AppTest) -> list[dict[str, Any]]:
    """The plotly figures on the page, as the browser receives them."""
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def values(array: Any) -> list[float]:
    """A plotly array, which plotly sends as base64 typed arrays ({dtype, bdata})."""
    if isinstance(array, dict):
        return np.frombuffer(base64.b64decode(array["bdata"]), dtype=array["dtype"]).tolist()
    return list(array)


def messages(at: AppTest) -> list[str]:
    return [m.value for kind in (at.error, at.warning, at.success, at.info) for m in kind]


def verdicts(at: AppTest) -> list[str]:
    """The verdict lines on the page."""
    return [m.value for m in at.markdown if m.value.startswith("### Verdict:")]


def verdict_line(verdict: str, probability: float | None) -> str:
    """How the page states a verdict (the label on a coloured background, then the probability)."""
    label = verdict.replace("_", " ").upper()
    return f"[{label}]" + ("" if probability is None else f" · fake probability **{probability:.2f}**")


def captions(at: AppTest) -> list[str]:
    return [caption for image in at.image for caption in image.captions]


def upload(at: AppTest, *paths: Path) -> AppTest:
    mime = {".jpg": "image/jpeg", ".mp4": "video/mp4"}
    at.file_uploader(key="analyze_uploads").set_value([(p.name, p.read_bytes(), mime[p.suffix]) for p in paths])
    return at.run()


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The dashboard's data folder for this module's tests."""
    with pytest.MonkeyPatch.context() as patch:
        folder = tmp_path_factory.mktemp("dashboard-home")
        patch.setenv(DATA_HOME_ENV, str(folder))
        yield folder


@pytest.fixture(scope="module")
def analysed(home: Path, models_dir: Path, media: Media) -> AppTest:
    """The Analyze page after uploading a video and an image and pressing Analyze (8 frames)."""
    at = AppTest.from_file(APP, default_timeout=TIMEOUT_S).run()
    assert_clean(at)
    upload(at, media.video, media.image)
    at.slider(key="analyze_frames").set_value(media.video_frames)
    return at.button(key="analyze_run").click().run()


def show(at: AppTest, home: Path, file_name: str) -> int:
    """Show the result of one upload on the Analyze page; returns its record id."""
    record_id = next(s.id for s in Store(home).summaries() if s.file_name == file_name)
    at.selectbox(key="analyze_shown").set_value(record_id).run()
    return record_id


def test_upload_limit_is_shown(home: Path, models_dir: Path) -> None:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT_S).run()
    limit = at.get("file_uploader")[0]
    assert "up to 500 MB" in limit.label  # .streamlit/config.toml server.maxUploadSize


def test_each_upload_gets_a_verdict(analysed: AppTest, home: Path, media: Media) -> None:
    assert_clean(analysed)
    stored = {s.file_name: s for s in Store(home).summaries()}
    assert set(stored) == {media.video.name, media.image.name}
    for name, summary in stored.items():
        show(analysed, home, name)
        (shown,) = verdicts(analysed)
        assert shown.endswith(verdict_line(summary.verdict, summary.fake_probability))
        result = Store(home).get(summary.id).result
        assert any(result.reason in c.value for c in analysed.caption)


def test_video_timeline_has_a_line_per_person_and_the_threshold(analysed: AppTest, home: Path, media: Media) -> None:
    record_id = show(analysed, home, media.video.name)
    result = Store(home).get(record_id).result
    timeline = figures(analysed)[0]
    people = sorted({f.track + 1 for frame in result.frames for f in frame.faces})
    assert [t["name"] for t in timeline["data"]] == [f"person {p} · ensemble" for p in people]
    first = timeline["data"][0]
    assert values(first["x"]) == [f.time_s for f in result.frames if any(x.track + 1 == people[0] for x in f.faces)]
    assert "frame %{customdata[0]} at %{customdata[1]:.2f} s" in first["hovertemplate"]
    shapes = {s.get("name"): s for s in timeline["layout"]["shapes"]}
    assert shapes["threshold"]["y0"] == result.threshold
    assert [shapes["uncertain band"]["y0"], shapes["uncertain band"]["y1"]] == result.uncertain_band

    analysed.multiselect(key=f"analyze_{record_id}_sources").set_value(["ensemble", *result.models]).run()
    names = [t["name"] for t in figures(analysed)[0]["data"]]
    assert names == [f"person {p} · {s}" for p in people for s in ["ensemble", *result.models]]


def test_stored_grad_cam_faces_and_timings_are_shown(analysed: AppTest, home: Path, media: Media) -> None:
    record_id = show(analysed, home, media.video.name)
    record = Store(home).get(record_id)
    shown = captions(analysed)
    for model in record.result.models:
        assert f"{model}: map on the face" in shown and f"{model}: map on the frame" in shown
    thumbnails = [c for c in shown if re.fullmatch(r"frame \d+ \([\d.]+ s\): [01]\.\d\d", c)]
    assert len(thumbnails) == min(12, sum(len(f.faces) for f in record.result.frames))
    timings = [df.value for df in analysed.dataframe if "stage" in df.value.columns][0]
    assert list(timings["stage"]) == list(record.result.timing)
    assert [b.label for b in analysed.download_button] == ["Download the result (JSON)", "Download the report (HTML)"]


def test_picking_a_frame_shows_it_with_boxes_and_its_grad_cam(analysed: AppTest, home: Path, media: Media) -> None:
    record_id = show(analysed, home, media.video.name)
    result = Store(home).get(record_id).result
    position = next(i for i, f in enumerate(result.frames) if f.faces and i > 0)
    analysed.select_slider(key=f"analyze_{record_id}_frame").set_value(position).run()
    frame = result.frames[position]
    assert f"frame {frame.frame_number} ({frame.time_s:.2f} s)" in captions(analysed)
    before = captions(analysed).count(f"{next(iter(result.models))}: map on the face")
    analysed.button(key=f"analyze_{record_id}_explain_{position}").click().run()
    assert_clean(analysed)
    after = captions(analysed).count(f"{next(iter(result.models))}: map on the face")
    assert after == before + len(frame.faces)


def test_the_same_file_and_settings_open_the_stored_result(analysed: AppTest, home: Path, media: Media) -> None:
    rows = len(Store(home).summaries())
    at = AppTest.from_file(APP, default_timeout=TIMEOUT_S).run()
    upload(at, media.image)
    at.button(key="analyze_run").click().run()
    assert_clean(at)
    assert any(m.startswith("Opened from the history") for m in messages(at))
    assert len(verdicts(at)) == 1
    assert len(Store(home).summaries()) == rows


def test_a_file_the_engine_cannot_read_is_an_error_message(home: Path, models_dir: Path) -> None:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT_S).run()
    at.file_uploader(key="analyze_uploads").set_value([("broken.mp4", b"\x00" * 2048, "video/mp4")])
    at.run()
    at.button(key="analyze_run").click().run()
    assert not at.exception
    assert len(at.error) == 1 and at.error[0].value.startswith("broken.mp4: ")


def test_a_heic_photo_upload_is_analysed_and_a_damaged_one_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, models_dir: Path, media: Media
) -> None:
    """A phone's HEIC photo (a grid of HEVC tiles, turned upright by its `irot` as the phone was
    held, the camera in its EXIF) is taken by the uploader and analysed at its upright size, the
    camera in its provenance; a HEIC file that is only a header gets its line (in a history of
    its own: the module's tests count the images in theirs)."""
    from tests import provenance_factory as pf

    monkeypatch.setenv(DATA_HOME_ENV, str(tmp_path))
    face = np.asarray(Image.open(media.image).convert("RGB"))
    sideways = np.ascontiguousarray(np.rot90(face, -1))  # stored as the sensor saw it, held upright
    photo = hf.write_heic(
        tmp_path / "IMG_0001.HEIC", sideways, tile=128, quarter_turns=1, exif=pf.camera_exif().tobytes()
    )
    at = AppTest.from_file(APP, default_timeout=TIMEOUT_S).run()
    assert ".heic" in at.get("file_uploader")[0].proto.type
    at.file_uploader(key="analyze_uploads").set_value(
        [("IMG_0001.HEIC", photo.read_bytes(), "image/heic"), ("IMG_0002.HEIC", mf.HEIC_BYTES, "image/heic")]
    )
    at.run()
    at.button(key="analyze_run").click().run()
    assert not at.exception
    assert [e.value for e in at.error] == [
        "IMG_0002.HEIC: 'IMG_0002.HEIC' is a damaged HEIF picture: it has no description of its pictures (no meta box)."
    ]
    assert len(verdicts(at)) == 1
    (summary,) = Store(tmp_path).summaries()
    result = Store(tmp_path).get(summary.id).result
    assert (result.file, result.kind, result.width, result.height) == (
        "IMG_0001.HEIC",
        "image",
        face.shape[1],
        face.shape[0],
    )
    assert len(result.frames[0].faces) == 1 and result.verdict in {"real", "fake", "uncertain"}
    assert result.provenance.metadata.camera == "Canon EOS R5" and result.provenance.file_history.format == "HEIF"
    assert result.reason.endswith(f"; {result.provenance.file_history.caveat}")  # what HEVC coding does (rule 27)


def test_an_animated_gif_upload_is_analysed_as_a_video(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, models_dir: Path, media: Media
) -> None:
    """The shared face clip as an animated GIF: taken by the uploader, one verdict, and a timeline
    of the person at the times the GIF shows its frames (in a history of its own: the module's
    tests count the videos in theirs)."""
    monkeypatch.setenv(DATA_HOME_ENV, str(tmp_path))
    pictures = [Image.fromarray(frame.rgb) for frame in sample_frames(media.video, frames=6)]
    gif = io.BytesIO()
    pictures[0].save(gif, "GIF", save_all=True, append_images=pictures[1:], duration=120, loop=0)
    at = AppTest.from_file(APP, default_timeout=TIMEOUT_S).run()
    assert ".gif" in at.get("file_uploader")[0].proto.type
    at.file_uploader(key="analyze_uploads").set_value([("reaction.gif", gif.getvalue(), "image/gif")])
    at.run()
    at.button(key="analyze_run").click().run()
    assert_clean(at)
    assert len(verdicts(at)) == 1
    (summary,) = Store(tmp_path).summaries()
    result = Store(tmp_path).get(summary.id).result
    assert result.kind == "video" and [f.time_s for f in result.frames] == pytest.approx(
        [0.0, 0.12, 0.24, 0.36, 0.48, 0.6]
    )
    timeline = figures(at)[0]
    assert [t["name"] for t in timeline["data"]] == ["person 1 · ensemble"]
    assert values(timeline["data"][0]["x"]) == [f.time_s for f in result.frames if f.faces]
    # Beside the verdict, what a GIF's palette does to it (rule 24), as the stored reason says.
    assert "the file is a GIF, whose 256 colours" in result.reason
    assert any(result.reason in caption.value for caption in at.caption)


def test_odd_uploads_each_get_a_line_and_the_others_go_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, models_dir: Path, media: Media
) -> None:
    """A 2000 x 1 picture, a 420-byte non-Latin name, and an upload that breaks the engine with
    an unexpected exception (injected here): each gets its own outcome, the others are stored."""
    from pipeline.engine.analyze import Engine

    monkeypatch.setenv(DATA_HOME_ENV, str(tmp_path))
    real_analyze = Engine.analyze

    def breaking(self, path, *args, **kwargs):
        if path.name == "explode.jpg":
            raise RuntimeError("a library failed")
        return real_analyze(self, path, *args, **kwargs)

    monkeypatch.setattr(Engine, "analyze", breaking)
    sliver = io.BytesIO()
    Image.new("RGB", (2000, 1), (120, 130, 140)).save(sliver, format="PNG")
    long_name = "日本" * 70 + ".jpg"
    at = AppTest.from_file(APP, default_timeout=TIMEOUT_S).run()
    at.file_uploader(key="analyze_uploads").set_value(
        [
            ("sliver.png", sliver.getvalue(), "image/png"),
            ("explode.jpg", media.image.read_bytes(), "image/jpeg"),
            (long_name, media.other_image.read_bytes(), "image/jpeg"),
            (media.image.name, media.image.read_bytes(), "image/jpeg"),
        ]
    )
    at.run()
    at.button(key="analyze_run").click().run()
    assert not at.exception
    assert [e.value.split(":")[0] for e in at.error] == ["explode.jpg"]
    assert "unexpected error (RuntimeError)" in at.error[0].value and "Traceback" not in at.error[0].value
    stored = {s.file_name: s.verdict for s in Store(tmp_path).summaries()}
    assert len(stored) == 3 and stored["sliver.png"] == "no_face" and media.image.name in stored
    assert any(name.startswith("日本日本") and name.endswith(".jpg") for name in stored)


def test_an_image_without_a_face_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, models_dir: Path) -> None:
    monkeypatch.setenv(DATA_HOME_ENV, str(tmp_path))
    sky = np.zeros((240, 320, 3), np.uint8)
    sky[..., 2] = np.linspace(120, 250, 320, dtype=np.uint8)  # a plain gradient: no face anywhere
    buffer = io.BytesIO()
    Image.fromarray(sky).save(buffer, format="PNG")
    at = AppTest.from_file(APP, default_timeout=TIMEOUT_S).run()
    at.file_uploader(key="analyze_uploads").set_value([("sky.png", buffer.getvalue(), "image/png")])
    at.run()
    at.button(key="analyze_run").click().run()
    assert_clean(at)
    assert verdicts(at) == ["### Verdict: :gray-background[NO FACE]"]
    assert "No face found: nothing to explain." in [c.value for c in at.caption]


def provenance_tab(at: AppTest):
    """The Provenance tab of the result on the page."""
    return next(tab for tab in at.tabs if tab.label == "Provenance")


def test_the_provenance_tab_shows_ai_generated_evidence_beside_the_verdict(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, models_dir: Path, media: Media, generated_image: Path
) -> None:
    """The shared photo signed with Content Credentials saying AI-generated, beside the same photo
    without: the models' verdict is the same for both, and the provenance stands beside it."""
    monkeypatch.setenv(DATA_HOME_ENV, str(tmp_path))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT_S).run()
    upload(at, generated_image, media.image)
    at.button(key="analyze_run").click().run()
    assert_clean(at)
    stored = {s.file_name: s for s in Store(tmp_path).summaries()}
    generated, photo = stored[generated_image.name], stored[media.image.name]
    assert (generated.verdict, generated.fake_probability) == (photo.verdict, photo.fake_probability)

    show(at, tmp_path, generated_image.name)
    result = Store(tmp_path).get(generated.id).result
    provenance = result.provenance
    (shown,) = verdicts(at)
    assert shown.endswith(verdict_line(generated.verdict, generated.fake_probability))
    beside = [m.value for m in at.markdown if "-badge[Provenance]" in m.value]
    assert beside == [f":violet-badge[Provenance] {provenance.summary}"]
    assert provenance.summary == f"AI-generated according to {provenance.ai_claims[0]}."
    assert "; provenance says AI-generated: Content Credentials (valid signature" in result.reason
    assert any(result.reason in c.value for c in at.caption)
    tab = provenance_tab(at)
    texts = [m.value for m in tab.markdown]
    assert f"**{provenance.summary}**" in texts
    table = tab.dataframe[0].value
    rows = dict(zip(table["what"], table["value"], strict=True))
    assert rows["signature"] == "valid"
    assert rows["signer"] == "Test Signer (Provenance Test Lab) (not on a trust list)"
    assert rows["actions"].startswith("c2pa.created: trainedAlgorithmicMedia (made by a trained AI model)")
    # How the file was last saved: the shared photo's quality, as the training photos', so no caveat.
    assert "**How the file was last saved**" in texts
    saved = tab.dataframe[-1].value
    assert dict(zip(saved["what"], saved["value"], strict=True))["JPEG quality"] == "90 of 100 (libjpeg's own tables)"
    assert len(tab.warning) == 0
    assert any("absence proves nothing" in c.value.lower() for c in tab.caption)

    show(at, tmp_path, media.image.name)
    assert [m.value for m in at.markdown if "-badge[Provenance]" in m.value] == [
        f":gray-badge[Provenance] {NO_PROVENANCE}"
    ]
    assert f"**{NO_PROVENANCE}**" in [m.value for m in provenance_tab(at).markdown]

    at.switch_page("pages/history.py").run()
    at.selectbox(key="history_open").set_value(generated.id).run()
    assert_clean(at)
    assert f"**{provenance.summary}**" in [m.value for m in provenance_tab(at).markdown]


def test_metadata_cannot_put_links_or_pictures_on_the_page(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, models_dir: Path
) -> None:
    """Markdown in a file's metadata stays text: a picture there would make the browser fetch it."""
    from tests import provenance_factory as pf

    monkeypatch.setenv(DATA_HOME_ENV, str(tmp_path))
    hostile = "![pixel](http://127.0.0.1:9/pixel.png) [click](javascript:alert(1)) <b>Midjourney</b>"
    path = pf.save_png_with_text(tmp_path / "hostile.png", {"Software": hostile})
    at = AppTest.from_file(APP, default_timeout=TIMEOUT_S).run()
    at.file_uploader(key="analyze_uploads").set_value([(path.name, path.read_bytes(), "image/png")])
    at.run()
    at.button(key="analyze_run").click().run()
    assert_clean(at)
    shown = [m.value for m in at.markdown] + [c.value for c in at.caption]
    assert any("Midjourney" in text for text in shown)
    for text in shown:
        assert "![pixel]" not in text and "[click]" not in text and "<b>" not in text and "http://" not in text
    assert any("\\!\\[pixel\\](http\\://127.0.0.1:9/pixel.png)" in text for text in shown)


def test_history_lists_filters_opens_and_exports(analysed: AppTest, home: Path) -> None:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT_S).run()
    at.switch_page("pages/history.py").run()
    assert_clean(at)
    stored = Store(home).summaries()
    table = at.dataframe[0].value
    assert sorted(table["id"]) == sorted(s.id for s in stored)
    assert at.download_button(key="history_csv").label == "Download this list (CSV)"
    for summary in stored:
        at.selectbox(key="history_open").set_value(summary.id).run()
        assert_clean(at)
        (shown,) = verdicts(at)
        assert shown.endswith(verdict_line(summary.verdict, summary.fake_probability))
        assert at.download_button(key=f"history_{summary.id}_json") and at.download_button(
            key=f"history_{summary.id}_html"
        )
        assert f"**{NO_PROVENANCE}**" in [m.value for m in provenance_tab(at).markdown]
    video = next(s for s in stored if s.kind == "video")
    at.multiselect(key="history_kinds").set_value(["video"]).run()
    assert list(at.dataframe[0].value["id"]) == [video.id]
    at.text_input(key="history_name").set_value("no such file").run()
    assert at.dataframe[0].value.empty and any(m.startswith("No stored analysis matches") for m in messages(at))


def test_opening_a_result_in_history_loads_the_models_meanwhile(
    analysed: AppTest, home: Path, models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server whose first page is History (a link to it) starts loading the models once a result
    is open, as Analyze does, so that its explanation maps do not wait for them as well. A models
    folder of its own (links to the shipped files) gives the page an engine no other test used."""
    own_models = tmp_path / "models"
    own_models.mkdir()
    for file in models_dir.iterdir():
        (own_models / file.name).symlink_to(file)
    monkeypatch.setenv(MODELS_DIR_ENV, str(own_models))
    service = get_service()  # the process's one engine for this folder, as the pages get it
    at = AppTest.from_file(APP, default_timeout=TIMEOUT_S)
    at.switch_page("pages/history.py").run()
    assert_clean(at)
    assert [title.value for title in at.title] == ["History"]
    assert service.load_started
    shipped = json.loads((models_dir / "ensemble.json").read_text())["members"]
    assert service.member_names == [member["name"] for member in shipped]  # loaded by then, or waited for


def test_compare_models_for_one_result_and_across_history(analysed: AppTest, home: Path) -> None:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT_S).run()
    at.switch_page("pages/compare.py").run()
    assert_clean(at)
    video = next(s for s in Store(home).summaries() if s.kind == "video")
    at.selectbox(key="compare_record").set_value(video.id).run()
    result = Store(home).get(video.id).result
    models = list(result.models)
    charts = figures(at)
    timeline, scores = charts[0], charts[1]
    assert len(timeline["data"]) == len({f.track for fr in result.frames for f in fr.faces}) * (1 + len(models))
    assert list(scores["data"][0]["x"]) == ["ensemble", *result.models]
    assert values(scores["data"][0]["y"]) == [result.fake_probability, *(result.model_scores[m] for m in models)]
    times = [df.value for df in at.dataframe if "ms_per_face" in df.value.columns][0]
    assert list(times["model"]) == sorted(result.model_seconds_per_face)
    if len(models) >= 2:
        scatter = charts[2]
        # One point per face both models scored (a costly member, CLIP, scores only some).
        both = sum(set(models[:2]) <= set(f.model_scores) for fr in result.frames for f in fr.faces)
        assert both and sum(len(values(t["x"])) for t in scatter["data"]) == both
        worst = [df.value for df in at.dataframe if "difference" in df.value.columns][0]
        assert list(worst["difference"]) == sorted(worst["difference"], reverse=True)

    at.radio(key="compare_scope").set_value("Every result in the history").run()
    assert_clean(at)
    table = [df.value for df in at.dataframe if "verdict" in df.value.columns][0]
    assert len(table) == len(Store(home).summaries())


def test_delete_from_history_removes_row_and_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, models_dir: Path, media: Media
) -> None:
    monkeypatch.setenv(DATA_HOME_ENV, str(tmp_path))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT_S).run()
    upload(at, media.image)
    at.button(key="analyze_run").click().run()
    store = Store(tmp_path)
    (record,) = store.summaries()
    files = [store.path(p) for p in store.get(record.id).pictures]
    assert files and all(f.is_file() for f in files)

    at.switch_page("pages/history.py").run()
    assert at.button(key=f"history_delete_{record.id}").disabled
    at.checkbox(key=f"history_confirm_{record.id}").check().run()
    at.button(key=f"history_delete_{record.id}").click().run()
    assert_clean(at)
    assert store.summaries() == [] and not any(f.exists() for f in files)
    assert any(m.startswith("No analysis yet") for m in messages(at))


def test_history_shows_a_running_scan_jobs_progress_and_its_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, models_dir: Path, analysed_video: Analysed
) -> None:
    """The progress of a scan still running, as its workers write it (the scan itself runs on
    Ray in tests/test_scan.py)."""
    monkeypatch.setenv(DATA_HOME_ENV, str(tmp_path))
    store = Store(tmp_path)
    job = store.start_job("night desk", {"frames": 8, "aggregation": "mean", "models": {}, "workers": 2}, total=5)
    stored = store.save(
        analysed_video.result, analysed_video.pictures, analysed_video.preview_scale, job=JobFile(job.id, "/in/a.mp4")
    )
    store.record_job_file(JobFile(job.id, "/in/b.mp4", attempts=2), "failed", error="its worker died 2 times")
    at = AppTest.from_file(APP, default_timeout=TIMEOUT_S).run()
    at.switch_page("pages/history.py").run()
    assert_clean(at)
    picker = at.selectbox(key="history_job")
    assert picker.options == [
        "Every analysis",
        f"#{job.id} · night desk · running · 2/5 · {job.started.replace('T', ' ')[:16]}",
    ]
    picker.set_value(job.id).run()
    assert_clean(at)
    (progress,) = at.get("progress")
    assert progress.proto.text == "2 of 5 files: 1 analysed, 0 skipped (already in the history), 1 failed"
    assert any(m.value == f"**Scan #{job.id}: night desk** · running" for m in at.markdown)
    listed = next(t.value for t in at.dataframe if "verdict" in t.value.columns)
    assert list(listed["id"]) == [stored.id]
    # More files come in: the page reads the store again (the fragment refreshes itself).
    store.record_job_file(JobFile(job.id, "/in/c.mp4"), "failed", error="corrupt")
    at.run()
    assert at.get("progress")[0].proto.text.startswith("3 of 5 files")


def test_model_card_page(home: Path, models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT_S).run()
    at.switch_page("pages/model_card.py").run()
    assert_clean(at)
    assert at.title[0].value == "Model card"
    members = at.dataframe[0].value
    assert len(members) >= 1 and "SHA-256" in members.columns
    # A folder without a card or plots says so.
    monkeypatch.setenv("DEEPFAKE_MODELS_DIR", str(tmp_path))
    at.run()
    assert not at.exception
    warnings = [w.value for w in at.warning]
    assert any(w.startswith("No model card") for w in warnings) and any(
        w.startswith("No evaluation plots") for w in warnings
    )


def test_the_analyze_page_takes_uploads_while_the_models_load_and_says_when_they_cannot(
    home: Path, models_dir: Path, media: Media, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Near the end of this module: it replaces the cached engine (the cache holds one models folder).
    # The ensemble's description without its member files: the form shows from the description
    # alone (the models load behind it), and pressing Analyze is what meets the missing files.
    (tmp_path / "ensemble.json").write_bytes((models_dir / "ensemble.json").read_bytes())
    monkeypatch.setenv("DEEPFAKE_MODELS_DIR", str(tmp_path))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT_S).run()
    assert_clean(at)
    members = json.loads((models_dir / "ensemble.json").read_text())["members"]
    assert at.multiselect(key="analyze_models").value == [m["name"] for m in members]
    upload(at, media.image)
    at.button(key="analyze_run").click().run()
    assert not at.exception
    missing = f"{tmp_path / 'ensemble.json'} names {members[0]['file']}, which is not in {tmp_path}"
    assert [e.value for e in at.error] == [missing]
    assert not verdicts(at)


def test_missing_models_are_an_error_message_not_a_traceback(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Last in this module: it replaces the cached engine (the cache holds one models folder).
    monkeypatch.setenv("DEEPFAKE_MODELS_DIR", str(tmp_path))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT_S).run()
    assert not at.exception
    assert len(at.error) == 1 and "no trained models" in at.error[0].value
    at.switch_page("pages/history.py").run()  # the history still opens without models
    assert_clean(at)
