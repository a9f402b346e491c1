"""The dashboard's use of the engine: stored results reopened instead of re-analysed, concurrent
analyses, user errors, upload names, Grad-CAM of a stored face."""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

from pipeline.app.service import AnalysisRequest, AnalysisService, safe_upload_name, uploaded_file
from pipeline.app.store import Store
from pipeline.errors import MediaError, PipelineError
from tests.subsets import models_described_as

if TYPE_CHECKING:
    from dashboard_fixtures import Analysed, Media

pytest_plugins = ["dashboard_fixtures"]  # session fixtures: one engine, analyses made once


def request(service: AnalysisService, frames: int = 8, **changes: object) -> AnalysisRequest:
    """The ensemble's default rule and every model, unless changed."""
    return replace(AnalysisRequest(frames, service.ensemble.spec.aggregation), **changes)


def test_same_file_and_settings_open_the_stored_result(
    service: AnalysisService, media: Media, tmp_path: Path, counted: list[str]
) -> None:
    store = Store(tmp_path)
    video, frames = media.video, media.video_frames
    first = service.analyze(video, request(service, frames), store)
    assert not first.from_history and counted == [video.name]
    # Same bytes under another name, same settings: no second analysis.
    with uploaded_file("renamed copy.mp4", video.read_bytes()) as copy:
        again = service.analyze(copy, request(service, frames, models=tuple(service.member_names)), store)
    assert again.from_history and again.record.id == first.record.id and counted == [video.name]
    # Any setting changed: a new analysis.
    other_rule = next(rule for rule in ("mean", "confident") if rule != first.record.result.aggregation)
    for changed in (
        request(service, frames - 2),
        request(service, frames, aggregation=other_rule),
        request(service, frames, models=(service.member_names[0],)),
    ):
        outcome = service.analyze(video, changed, store)
        assert not outcome.from_history
    assert len(counted) == 4
    assert list(outcome.record.result.models) == [service.member_names[0]]
    assert len(store.summaries()) == 4


def test_a_release_that_weighs_or_decides_otherwise_analyses_again(
    service: AnalysisService, media: Media, tmp_path: Path, models_dir: Path
) -> None:
    """A release may keep every model file and change how they are weighed or decided (v7.1-v7.3
    did): a file in the history from the other ensemble is analysed again, not shown as it was."""
    from pipeline.config import Settings
    from pipeline.engine.analyze import Engine
    from pipeline.engine.ensemble import ENSEMBLE_FILE, EnsembleSpec

    store = Store(tmp_path / "history")
    first = service.analyze(media.image, request(service), store)
    assert first.record.result.ensemble_version == service.ensemble.spec.for_media("image").version
    shipped = EnsembleSpec.load(models_dir / ENSEMBLE_FILE)
    pictures = shipped.for_media("image")
    halved = replace(shipped, pictures=replace(pictures, threshold=pictures.threshold / 2))
    copy = models_described_as(models_dir, tmp_path / "models", halved)
    reweighed = AnalysisService(Engine(Settings(models_dir=copy)))
    again = reweighed.analyze(media.image, request(reweighed), store)
    assert not again.from_history and again.record.id != first.record.id
    assert again.record.result.models == first.record.result.models  # the same model files
    assert again.record.result.threshold == pictures.threshold / 2
    # Each ensemble finds its own result again, without analysing it again.
    for analysing, stored in ((reweighed, again), (service, first)):
        found = analysing.analyze(media.image, request(analysing), store)
        assert found.from_history and found.record.id == stored.record.id


def test_an_image_reopens_whatever_the_frame_count(
    service: AnalysisService, media: Media, tmp_path: Path, counted: list[str]
) -> None:
    store = Store(tmp_path)
    first = service.analyze(media.image, request(service, frames=8), store)
    again = service.analyze(media.image, request(service, frames=32), store)
    assert again.from_history and again.record.id == first.record.id and len(counted) == 1


def test_two_sessions_analysing_at_once_both_land_in_history(
    service: AnalysisService, media: Media, tmp_path: Path
) -> None:
    store = Store(tmp_path)
    stages: dict[Path, list[str]] = {media.image: [], media.other_image: []}
    failures: list[BaseException] = []

    def session(path: Path) -> None:
        try:
            service.analyze(path, request(service), store, lambda stage, d, t: stages[path].append(stage))
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=session, args=(path,)) for path in stages]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not failures
    assert {s.file_name for s in store.summaries()} == {media.image.name, media.other_image.name}
    assert all(stages[path][-1] == "saved" for path in stages)


def test_user_errors_are_pipeline_errors(service: AnalysisService, tmp_path: Path, media: Media) -> None:
    store = Store(tmp_path / "history")
    with uploaded_file("holiday.jpg", b"not a picture") as picture, pytest.raises(MediaError, match="holiday.jpg"):
        service.analyze(picture, request(service), store)
    with uploaded_file("notes.txt", b"hello") as text, pytest.raises(PipelineError):
        service.analyze(text, request(service), store)
    with pytest.raises(PipelineError, match="unknown model"):
        service.analyze(media.image, request(service, models=("no_such_model",)), store)
    with pytest.raises(PipelineError, match="unknown aggregation"):
        service.analyze(media.image, request(service, aggregation="median"), store)
    assert store.summaries() == []


@pytest.mark.parametrize(
    ("uploaded", "safe"),
    [
        ("clip.mp4", "clip.mp4"),
        ("../../etc/passwd.jpg", "passwd.jpg"),
        ("C:\\Users\\me\\face.png", "face.png"),
        ("we<ird>|name?.jpg", "we_ird__name_.jpg"),
        (".hidden.mp4", "hidden.mp4"),
        ("", "upload"),
        ("x" * 300 + ".mov", "x" * 196 + ".mov"),
        ("日本" * 70 + ".jpg", "日本" * 32 + "日.jpg"),  # cut by bytes (3 per character), not characters
        ("vidéo été.mp4", "vidéo été.mp4"),
    ],
)
def test_upload_names_are_made_safe(uploaded: str, safe: str) -> None:
    assert safe_upload_name(uploaded) == safe


def test_a_long_non_latin_upload_name_can_be_written() -> None:
    """70 x "日本" is 140 characters but 420 bytes: more than a file name may hold."""
    name = "日本" * 70 + ".jpg"
    with uploaded_file(name, b"bytes") as path:
        assert path.read_bytes() == b"bytes" and path.suffix == ".jpg"
        assert len(path.name.encode()) <= 255


def test_upload_file_is_private_and_removed(tmp_path: Path) -> None:
    with uploaded_file("../face.jpg", b"bytes") as path:
        assert path.name == "face.jpg" and path.read_bytes() == b"bytes"
        folder = path.parent
    assert not folder.exists()


def test_grad_cam_of_a_stored_face(service: AnalysisService, analysed_video: Analysed, tmp_path: Path) -> None:
    store = Store(tmp_path)
    record = store.save(analysed_video.result, analysed_video.pictures, analysed_video.preview_scale)
    frame = next(i for i, f in enumerate(record.result.frames) if f.faces)
    overlays = service.explain(record, store, frame, 0)
    assert set(overlays) == set(record.result.models)
    for on_face, on_frame in overlays.values():
        assert on_face.shape == (224, 224, 3) and on_face.dtype == np.uint8
        assert on_frame.shape[:2] == (
            round(record.result.height * record.preview_scale),
            round(record.result.width * record.preview_scale),
        )
    changed = replace(record, result=replace(record.result, models=dict.fromkeys(record.result.models, "f" * 12)))
    with pytest.raises(PipelineError, match="not the ones loaded now"):
        service.explain(changed, store, frame, 0)
