"""The history store, on SQLite and on a real PostgreSQL server (every test that takes `open_store`
runs on both): round trip, filters, deletion, the analysis cache key, scan jobs, schema
versions, concurrent writers, and crash safety (child processes really killed with SIGKILL in
the middle of an analysis and of a save)."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import selectors
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import sqlalchemy

from pipeline.app.store import (
    SCHEMA_VERSION,
    HistoryFilter,
    JobFile,
    Store,
    result_settings_key,
    settings_key,
)
from pipeline.config import DATA_HOME_ENV, DATABASE_URL_ENV, REPO_ROOT, data_home
from pipeline.errors import StoreError
from tests.store_crash_child import CRASH_POINTS

if TYPE_CHECKING:
    from dashboard_fixtures import Analysed, Media

pytest_plugins = ["dashboard_fixtures"]  # session fixtures: one engine, analyses made once


CHILD = Path(__file__).with_name("store_crash_child.py")
CHILD_DEADLINE_S = 240.0
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.cluster)]

OpenStore = Callable[[Path], Store]


@pytest.fixture(params=BACKENDS)
def database(request: pytest.FixtureRequest) -> str:
    """The history database of a test: '' for SQLite in the store's folder, or the URL of a
    fresh database on the session's PostgreSQL server."""
    return "" if request.param == "sqlite" else request.getfixturevalue("postgresql_url")


@pytest.fixture
def open_store(database: str) -> Iterator[OpenStore]:
    """Opens the history whose pictures live in a folder, on the test's database (as the
    dashboard does when it starts); every store opened is closed after the test."""
    opened: list[Store] = []

    def open_(root: Path) -> Store:
        opened.append(Store(root, url=database or None))
        return opened[-1]

    yield open_
    for store in opened:
        store.close()


def save(store: Store, analysed: Analysed, **changes: object):
    """Save a real analysis, optionally with some result fields changed."""
    return store.save(replace(analysed.result, **changes), analysed.pictures, analysed.preview_scale)


def files_on_disk(store: Store) -> set[str]:
    return {p.name for p in store.files_dir.glob("??/*")}


def rows(store: Store) -> tuple[list[tuple], int]:
    """(analyses rows (id, file), picture rows count), read with a connection of its own."""
    engine = sqlalchemy.create_engine(store.url, poolclass=sqlalchemy.NullPool)
    try:
        with engine.connect() as connection:
            analyses = [tuple(r) for r in connection.exec_driver_sql("SELECT id, file_name FROM analyses ORDER BY id")]
            pictures = connection.exec_driver_sql("SELECT COUNT(*) FROM pictures").scalar_one()
            if store.backend == "sqlite":
                assert connection.exec_driver_sql("PRAGMA integrity_check").scalar_one() == "ok"
    finally:
        engine.dispose()
    return analyses, pictures


def env_for(store: Store) -> dict[str, str]:
    """The environment that makes a child process open the same history."""
    return {DATABASE_URL_ENV: "" if store.backend == "sqlite" else store.url.render_as_string(hide_password=False)}


def test_data_home_is_outside_the_repository_and_movable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(DATA_HOME_ENV, raising=False)
    assert REPO_ROOT not in data_home().parents
    monkeypatch.setenv(DATA_HOME_ENV, str(tmp_path / "elsewhere"))
    assert data_home() == tmp_path / "elsewhere"


def test_round_trip_keeps_the_result_and_pictures_named_by_content(
    tmp_path: Path, analysed_video: Analysed, open_store: OpenStore
) -> None:
    store = open_store(tmp_path)
    saved = save(store, analysed_video)
    loaded = open_store(tmp_path).get(saved.id)
    assert loaded is not None
    assert loaded.result.to_json() == analysed_video.result.to_json()
    assert loaded.preview_scale == analysed_video.preview_scale
    assert len(loaded.pictures) == len(saved.pictures) and set(loaded.pictures) == set(saved.pictures)
    frames = len(analysed_video.result.frames)
    faces = sum(len(f.faces) for f in analysed_video.result.frames)
    assert len(loaded.pictures_of("frame")) == frames
    assert len(loaded.pictures_of("face")) == faces
    assert {p.model for p in loaded.pictures_of("explanation_face")} == set(analysed_video.result.models)
    assert all(p.crop_box for p in loaded.pictures_of("face"))
    for picture in loaded.pictures:
        data = store.path(picture).read_bytes()
        assert store.path(picture).name == hashlib.sha256(data).hexdigest() + ".jpg"
    assert not any(analysed_video.path.stem in p.name for p in store.root.rglob("*"))
    if store.backend == "sqlite":
        with sqlite3.connect(store.database) as connection:
            assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    else:
        assert not (store.root / "history.sqlite3").exists()


def test_filters(tmp_path: Path, analysed_image: Analysed, analysed_video: Analysed, open_store: OpenStore) -> None:
    store = open_store(tmp_path)
    image = save(
        store, analysed_image, file="holiday_100%_face.jpg", verdict="real", created="2024-03-01T10:00:00+00:00"
    )
    video = save(store, analysed_video, verdict="uncertain", created="2024-03-05T23:59:59+00:00")
    old = save(
        store, analysed_image, sha256="0" * 64, file="old.jpg", verdict="fake", created="2023-12-31T12:00:00+00:00"
    )

    def ids(**where: object) -> list[int]:
        return [s.id for s in store.summaries(HistoryFilter(**where))]

    assert ids() == [video.id, image.id, old.id]  # newest first
    assert ids(kinds=("video",)) == [video.id]
    assert ids(kinds=("image",)) == [image.id, old.id]
    assert ids(verdicts=("fake",)) == [old.id]
    assert ids(verdicts=("real", "uncertain")) == [video.id, image.id]
    assert ids(name_contains="HOLIDAY") == [image.id]
    # % and _ are characters to find, not SQL wildcards ("_f" would match "...aif..." otherwise).
    assert ids(name_contains="%") == [image.id]
    assert ids(name_contains="_f") == [image.id]
    assert ids(since=date(2024, 3, 1)) == [video.id, image.id]
    assert ids(since=date(2024, 3, 2), until=date(2024, 3, 5)) == [video.id]  # the last day is included
    assert ids(until=date(2024, 3, 4)) == [image.id, old.id]
    assert ids(kinds=("image",), since=date(2024, 1, 1)) == [image.id]
    assert ids(since=date.today() + timedelta(days=1)) == []
    ranked = [s.id for s in store.summaries(order="most_suspicious")]
    by_probability = sorted(
        store.summaries(), key=lambda s: (s.fake_probability is None, -(s.fake_probability or 0), -s.id)
    )
    assert ranked == [s.id for s in by_probability]


def test_delete_removes_the_row_and_the_files_no_other_row_uses(
    tmp_path: Path, analysed_image: Analysed, analysed_video: Analysed, open_store: OpenStore
) -> None:
    store = open_store(tmp_path)
    image = save(store, analysed_image)
    video = save(store, analysed_video)
    copy = save(store, analysed_image, aggregation="confident")  # same pictures, another result
    image_files = {p.file for p in image.pictures}
    video_files = {p.file for p in video.pictures}
    assert files_on_disk(store) == image_files | video_files

    assert store.delete(video.id)
    assert store.get(video.id) is None
    assert files_on_disk(store) == image_files
    assert store.delete(image.id)
    assert files_on_disk(store) == image_files  # still used by the copy
    assert store.get(copy.id) is not None
    assert store.delete(copy.id)
    assert files_on_disk(store) == set()
    assert rows(store) == ([], 0)
    assert not store.delete(copy.id)


def test_find_by_file_hash_and_settings(
    tmp_path: Path, analysed_image: Analysed, analysed_video: Analysed, open_store: OpenStore
) -> None:
    store = open_store(tmp_path)
    video = save(store, analysed_video)
    image = save(store, analysed_image)
    result = video.result
    assert store.find(result_settings_key(result)).id == video.id
    same = settings_key(
        result.sha256,
        "video",
        result.frames_requested,
        result.aggregation,
        dict(reversed(result.models.items())),
        result.ensemble_version,
    )
    assert result.ensemble_version and store.find(same).id == video.id
    # A result stored before the ensemble's version was kept keeps the key it was stored under.
    earlier = replace(result, ensemble_version="")
    assert result_settings_key(earlier) == settings_key(
        result.sha256, "video", result.frames_requested, result.aggregation, result.models
    )
    other_models = dict.fromkeys(result.models, "0" * 12)
    for key in (
        settings_key(result.sha256, "video", result.frames_requested + 1, result.aggregation, result.models),
        settings_key(
            result.sha256,
            "video",
            result.frames_requested,
            "mean" if result.aggregation != "mean" else "confident",
            result.models,
        ),
        settings_key(
            result.sha256, "video", result.frames_requested, result.aggregation, dict(list(result.models.items())[:1])
        ),
        settings_key(result.sha256, "video", result.frames_requested, result.aggregation, other_models),
        settings_key("0" * 64, "video", result.frames_requested, result.aggregation, result.models),
        # The same model files weighed or decided otherwise (another `EnsembleSpec.version`).
        settings_key(result.sha256, "video", result.frames_requested, result.aggregation, result.models, "0" * 12),
    ):
        assert store.find(key) is None
    # An image has one frame whatever the request: the frame count does not matter.
    picture = image.result
    key = settings_key(picture.sha256, "image", 99, picture.aggregation, picture.models, picture.ensemble_version)
    assert store.find(key).id == image.id


def test_orphan_files_are_cleaned_when_the_store_opens(
    tmp_path: Path, analysed_image: Analysed, open_store: OpenStore
) -> None:
    store = open_store(tmp_path)
    kept = save(store, analysed_image)
    orphan = store.files_dir / "ab" / ("ab" + "0" * 62 + ".jpg")
    orphan.parent.mkdir(exist_ok=True)
    orphan.write_bytes(b"left by a crash")
    partial = store.tmp_dir / "unfinished.jpg"
    partial.write_bytes(b"half")
    open_store(tmp_path)
    assert not orphan.exists() and not partial.exists()
    assert files_on_disk(store) == {p.file for p in kept.pictures}


def _run_child(*args: str, env: dict[str, str] | None = None, stdin: int | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(CHILD), *args],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), **(env or {})},
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )


@pytest.mark.parametrize("crash_point", CRASH_POINTS)
def test_a_crash_during_a_save_leaves_earlier_rows_and_no_partial_row(
    tmp_path: Path, crash_point: str, analysed_image: Analysed, analysed_video: Analysed, open_store: OpenStore
) -> None:
    """The child process saves a real analysis and is killed by SIGKILL at `crash_point`:
    after its pictures are written, or after its rows are inserted but before the commit."""
    store = open_store(tmp_path / "history")
    earlier = save(store, analysed_image)
    before = rows(store)
    pending = tmp_path / "pending.pickle"
    pending.write_bytes(pickle.dumps((analysed_video.result, analysed_video.pictures, analysed_video.preview_scale)))

    child = _run_child("save", str(store.root), str(pending), crash_point, env=env_for(store))
    output, _ = child.communicate(timeout=CHILD_DEADLINE_S)
    assert child.returncode == -signal.SIGKILL, output
    assert b"saved" not in output

    assert rows(store) == before  # nothing half-written, nothing earlier lost
    new_files = {p.file for p in analysed_video.pictures} - {p.file for p in earlier.pictures}
    assert new_files <= files_on_disk(store)  # it died after writing its pictures: orphans
    reopened = open_store(store.root)  # what the dashboard does when it starts
    assert files_on_disk(reopened) == {p.file for p in earlier.pictures}
    assert reopened.get(earlier.id).result.to_json() == earlier.result.to_json()
    assert [s.id for s in reopened.summaries()] == [earlier.id]
    assert reopened.get(save(reopened, analysed_video).id) is not None  # and it works on


def _wait_for_line(child: subprocess.Popen[bytes], prefix: bytes, deadline_s: float) -> list[bytes]:
    """Lines the child printed until one starts with `prefix` (or it exited, or the deadline)."""
    selector = selectors.DefaultSelector()
    selector.register(child.stdout, selectors.EVENT_READ)
    seen, buffered = [], b""
    deadline = time.monotonic() + deadline_s
    while (left := deadline - time.monotonic()) > 0:
        if not selector.select(timeout=left):
            break
        chunk = os.read(child.stdout.fileno(), 4096)
        if not chunk:
            break  # the child exited
        *lines, buffered = (buffered + chunk).split(b"\n")
        seen += lines
        if any(line.startswith(prefix) for line in lines):
            break
    selector.close()
    return seen


def test_killing_the_process_in_the_middle_of_an_analysis_loses_nothing(
    tmp_path: Path, media: Media, analysed_image: Analysed, open_store: OpenStore
) -> None:
    """A real analysis of a 1080p video in a child process, killed by SIGKILL once it is finding
    faces (more frames to go, nothing saved yet)."""
    store = open_store(tmp_path)
    earlier = save(store, analysed_image)
    before = rows(store)
    child = _run_child("analyze", str(store.root), str(media.long_video), "32", env=env_for(store))
    try:
        lines = _wait_for_line(child, b"progress finding faces", CHILD_DEADLINE_S)
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    assert child.returncode == -signal.SIGKILL
    finding = [line.split()[-2:] for line in lines if line.startswith(b"progress finding faces")]
    assert finding, lines
    done, total = (int(v) for v in finding[-1])
    assert done < total  # killed with frames still to go
    assert not any(line.startswith(b"saved") for line in lines)
    assert rows(store) == before
    reopened = open_store(store.root)
    assert [s.id for s in reopened.summaries()] == [earlier.id]
    assert files_on_disk(reopened) == {p.file for p in earlier.pictures}


def test_scan_jobs_count_their_files_and_filter_the_history(
    tmp_path: Path, analysed_image: Analysed, analysed_video: Analysed, open_store: OpenStore
) -> None:
    store = open_store(tmp_path)
    earlier = save(store, analysed_image)
    job = store.start_job("newsroom batch", {"frames": 8}, total=4)
    assert (job.name, job.status, job.total, job.processed, job.settings) == (
        "newsroom batch",
        "running",
        4,
        0,
        {"frames": 8},
    )

    video = save_for_job(store, analysed_video, JobFile(job.id, "/media/a.mp4"))
    assert store.record_job_file(JobFile(job.id, "/media/b.jpg"), "skipped", earlier.id) == "skipped"
    assert store.record_job_file(JobFile(job.id, "/media/c.mp4", attempts=2), "failed", error="corrupt") == "failed"
    # A retry of a file whose worker died after storing it: stored once, counted once, still 'done'.
    assert save_for_job(store, analysed_video, JobFile(job.id, "/media/a.mp4", attempts=2)).id == video.id
    assert store.record_job_file(JobFile(job.id, "/media/a.mp4", attempts=2), "skipped", video.id) == "done"
    assert rows(store)[0] == [(earlier.id, analysed_image.result.file), (video.id, analysed_video.result.file)]

    counted = store.job(job.id)
    assert (counted.done, counted.skipped, counted.failed, counted.processed) == (1, 1, 1, 3)
    (failed,) = store.job_files(job.id, "failed")
    assert (failed.path, failed.error, failed.attempts, failed.analysis_id) == ("/media/c.mp4", "corrupt", 2, None)
    other = store.start_job("other", {}, total=1)
    # A file stored by anyone before the job's save: the job found it, it did not make it.
    save_for_job(store, analysed_image, JobFile(other.id, "/elsewhere/b.jpg"))
    assert store.job(other.id).skipped == 1

    assert {s.id for s in store.summaries(HistoryFilter(job_id=job.id))} == {video.id, earlier.id}
    assert [s.id for s in store.summaries(HistoryFilter(job_id=other.id))] == [earlier.id]
    assert [s.id for s in store.summaries(HistoryFilter(job_id=other.id + 1))] == []
    assert [j.id for j in store.jobs()] == [other.id, job.id]  # newest first

    ended = store.finish_job(job.id, "interrupted", "stopped by Ctrl-C")
    assert (ended.status, ended.message) == ("interrupted", "stopped by Ctrl-C") and ended.finished
    # Deleting a result keeps the job's record of the file, without the result.
    assert store.delete(video.id)
    assert [s.id for s in store.summaries(HistoryFilter(job_id=job.id))] == [earlier.id]
    assert {f.path: f.analysis_id for f in store.job_files(job.id)}["/media/a.mp4"] is None
    assert open_store(tmp_path).job(job.id).done == 1


def save_for_job(store: Store, analysed: Analysed, job: JobFile):
    return store.save(analysed.result, analysed.pictures, analysed.preview_scale, job=job)


V1_SCHEMA = """
CREATE TABLE analyses (id INTEGER PRIMARY KEY AUTOINCREMENT, settings_key TEXT NOT NULL, sha256 TEXT NOT NULL,
    file_name TEXT NOT NULL, kind TEXT NOT NULL, verdict TEXT NOT NULL, fake_probability REAL, created TEXT NOT NULL,
    preview_scale REAL NOT NULL, result_json TEXT NOT NULL);
CREATE INDEX analyses_by_settings ON analyses (settings_key);
CREATE TABLE pictures (analysis_id INTEGER NOT NULL REFERENCES analyses (id) ON DELETE CASCADE, role TEXT NOT NULL,
    frame INTEGER NOT NULL, face INTEGER NOT NULL, track INTEGER NOT NULL, model TEXT NOT NULL,
    crop_box TEXT NOT NULL, file TEXT NOT NULL);
PRAGMA user_version=1;
"""


def test_a_first_release_sqlite_store_is_upgraded_and_still_read(tmp_path: Path, analysed_image: Analysed) -> None:
    """Schema 1 (the first release: `frame` column, Grad-CAM role names, a key stored twice)."""
    result = analysed_image.result
    face = next(p for p in analysed_image.pictures if p.role == "face")
    with sqlite3.connect(tmp_path / "history.sqlite3") as connection:
        connection.executescript(V1_SCHEMA)
        for _ in range(2):  # two tabs at once could store one key twice
            connection.execute(
                "INSERT INTO analyses (settings_key, sha256, file_name, kind, verdict, fake_probability, created,"
                " preview_scale, result_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    result_settings_key(result),
                    result.sha256,
                    result.file,
                    result.kind,
                    result.verdict,
                    result.fake_probability,
                    result.created,
                    1.0,
                    json.dumps(result.to_json()),
                ),
            )
        connection.execute(
            "INSERT INTO pictures VALUES (1, 'gradcam_face', 0, 0, 0, 'mobilenetv2', 'null', ?)", (face.file,)
        )
    store = Store(tmp_path)
    with sqlite3.connect(store.database) as connection:
        assert connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
    (summary,) = store.summaries()
    record = store.get(summary.id)
    assert record.result.to_json() == result.to_json()
    assert [(p.role, p.position) for p in record.pictures] == [("explanation_face", 0)]
    assert store.jobs() == []
    with sqlite3.connect(store.database) as connection, pytest.raises(sqlite3.IntegrityError):  # unique now
        connection.execute(
            "INSERT INTO analyses SELECT NULL, settings_key, sha256, file_name, kind, verdict, fake_probability,"
            " created, preview_scale, result_json FROM analyses"
        )


def test_a_store_from_a_newer_app_is_refused(tmp_path: Path, open_store: OpenStore) -> None:
    store = open_store(tmp_path)
    engine = sqlalchemy.create_engine(store.url, poolclass=sqlalchemy.NullPool)
    with engine.begin() as connection:
        if store.backend == "sqlite":
            connection.exec_driver_sql("PRAGMA user_version=99")
        else:
            connection.exec_driver_sql("UPDATE history_schema SET version = 99")
    engine.dispose()
    with pytest.raises(StoreError, match=r"newer version of this app \(schema 99; this one reads up to 3\)"):
        open_store(tmp_path)


def test_an_unreachable_database_is_one_line_without_its_password(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(StoreError) as raised:
        Store(tmp_path, url=f"postgresql://team:s3cret@127.0.0.1:{port}/history")
    message = str(raised.value)
    assert message.startswith("cannot open the history database postgresql+psycopg://team:***@127.0.0.1")
    assert "s3cret" not in message and "\n" not in message
    with pytest.raises(StoreError, match="SQLite or PostgreSQL, not mysql"):
        Store(tmp_path, url="mysql://team@127.0.0.1/history")


def test_writers_in_several_processes_at_once_store_each_result_once_and_lose_no_picture(
    tmp_path: Path, analysed_video: Analysed, open_store: OpenStore
) -> None:
    """Three processes save the same result, one saves it with another rule (same pictures), and
    one deletes an earlier result that uses the same pictures: all at the same moment."""
    store = open_store(tmp_path / "history")
    earlier = save(store, analysed_video, aggregation="max_face_mean")
    same = tmp_path / "same.pickle"
    same.write_bytes(pickle.dumps((analysed_video.result, analysed_video.pictures, analysed_video.preview_scale)))
    other = tmp_path / "other.pickle"
    changed = replace(analysed_video.result, aggregation="confident")
    other.write_bytes(pickle.dumps((changed, analysed_video.pictures, analysed_video.preview_scale)))
    commands = [("save-on-go", str(same))] * 3 + [("save-on-go", str(other)), ("delete-on-go", str(earlier.id))]
    children = [
        _run_child(mode, str(store.root), arg, env=env_for(store), stdin=subprocess.PIPE) for mode, arg in commands
    ]
    try:
        for child in children:  # every child has opened the store and waits
            assert any(line == b"ready" for line in _wait_for_line(child, b"ready", CHILD_DEADLINE_S))
        for child in children:
            child.stdin.write(b"go\n")
            child.stdin.close()
        for child in children:
            child.wait(timeout=CHILD_DEADLINE_S)
        outputs = [child.stdout.read().decode().split() for child in children]
    finally:
        for child in children:
            child.kill()
            child.wait()
    assert [child.returncode for child in children] == [0] * len(children), outputs
    saved_ids = [int(words[-1]) for words in outputs[:4]]
    assert len(set(saved_ids[:3])) == 1 and saved_ids[3] != saved_ids[0]
    assert outputs[4][-1] == "deleted"
    reopened = open_store(store.root)
    assert sorted(s.id for s in reopened.summaries()) == sorted(set(saved_ids))
    for summary in reopened.summaries():
        record = reopened.get(summary.id)
        assert len(record.pictures) == len(analysed_video.pictures)
        assert all(reopened.path(p).is_file() for p in record.pictures)  # nothing a row uses was deleted
    assert files_on_disk(reopened) == {p.file for p in analysed_video.pictures}
