"""The history store: round trip, filters, deletion, the analysis cache key, and crash safety
(child processes really killed with SIGKILL in the middle of an analysis and of a save)."""

from __future__ import annotations

import hashlib
import os
import pickle
import selectors
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from pipeline.app.store import HistoryFilter, Store, result_settings_key, settings_key
from pipeline.config import DATA_HOME_ENV, REPO_ROOT, data_home
from tests.store_crash_child import CRASH_POINTS

if TYPE_CHECKING:
    from dashboard_fixtures import Analysed, Media

pytest_plugins = ["dashboard_fixtures"]  # session fixtures: one engine, analyses made once


CHILD = Path(__file__).with_name("store_crash_child.py")
CHILD_DEADLINE_S = 240.0


def save(store: Store, analysed: Analysed, **changes: object):
    """Save a real analysis, optionally with some result fields changed."""
    return store.save(replace(analysed.result, **changes), analysed.pictures, analysed.preview_scale)


def files_on_disk(store: Store) -> set[str]:
    return {p.name for p in store.files_dir.glob("??/*")}


def rows(store: Store) -> tuple[list[tuple], int]:
    """(analyses rows (id, file), picture rows count), read with plain sqlite3."""
    with sqlite3.connect(store.database) as connection:
        analyses = connection.execute("SELECT id, file_name FROM analyses ORDER BY id").fetchall()
        pictures = connection.execute("SELECT COUNT(*) FROM pictures").fetchone()[0]
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    return analyses, pictures


def test_data_home_is_outside_the_repository_and_movable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(DATA_HOME_ENV, raising=False)
    assert REPO_ROOT not in data_home().parents
    monkeypatch.setenv(DATA_HOME_ENV, str(tmp_path / "elsewhere"))
    assert data_home() == tmp_path / "elsewhere"


def test_round_trip_keeps_the_result_and_pictures_named_by_content(tmp_path: Path, analysed_video: Analysed) -> None:
    store = Store(tmp_path)
    saved = save(store, analysed_video)
    loaded = Store(tmp_path).get(saved.id)
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
    with sqlite3.connect(store.database) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_filters(tmp_path: Path, analysed_image: Analysed, analysed_video: Analysed) -> None:
    store = Store(tmp_path)
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


def test_delete_removes_the_row_and_the_files_no_other_row_uses(
    tmp_path: Path, analysed_image: Analysed, analysed_video: Analysed
) -> None:
    store = Store(tmp_path)
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


def test_find_by_file_hash_and_settings(tmp_path: Path, analysed_image: Analysed, analysed_video: Analysed) -> None:
    store = Store(tmp_path)
    video = save(store, analysed_video)
    image = save(store, analysed_image)
    result = video.result
    assert store.find(result_settings_key(result)).id == video.id
    same = settings_key(
        result.sha256, "video", result.frames_requested, result.aggregation, dict(reversed(result.models.items()))
    )
    assert store.find(same).id == video.id
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
    ):
        assert store.find(key) is None
    # An image has one frame whatever the request: the frame count does not matter.
    picture = image.result
    assert store.find(settings_key(picture.sha256, "image", 99, picture.aggregation, picture.models)).id == image.id


def test_orphan_files_are_cleaned_when_the_store_opens(tmp_path: Path, analysed_image: Analysed) -> None:
    store = Store(tmp_path)
    kept = save(store, analysed_image)
    orphan = store.files_dir / "ab" / ("ab" + "0" * 62 + ".jpg")
    orphan.parent.mkdir(exist_ok=True)
    orphan.write_bytes(b"left by a crash")
    partial = store.tmp_dir / "unfinished.jpg"
    partial.write_bytes(b"half")
    Store(tmp_path)
    assert not orphan.exists() and not partial.exists()
    assert files_on_disk(store) == {p.file for p in kept.pictures}


def _run_child(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(CHILD), *args],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )


@pytest.mark.parametrize("crash_point", CRASH_POINTS)
def test_a_crash_during_a_save_leaves_earlier_rows_and_no_partial_row(
    tmp_path: Path, crash_point: str, analysed_image: Analysed, analysed_video: Analysed
) -> None:
    """The child process saves a real analysis and is killed by SIGKILL at `crash_point`:
    after its pictures are written, or after its rows are inserted but before the commit."""
    store = Store(tmp_path / "history")
    earlier = save(store, analysed_image)
    before = rows(store)
    pending = tmp_path / "pending.pickle"
    pending.write_bytes(pickle.dumps((analysed_video.result, analysed_video.pictures, analysed_video.preview_scale)))

    child = _run_child("save", str(store.root), str(pending), crash_point)
    output, _ = child.communicate(timeout=CHILD_DEADLINE_S)
    assert child.returncode == -signal.SIGKILL, output
    assert b"saved" not in output

    assert rows(store) == before  # nothing half-written, nothing earlier lost
    new_files = {p.file for p in analysed_video.pictures} - {p.file for p in earlier.pictures}
    assert new_files <= files_on_disk(store)  # it died after writing its pictures: orphans
    reopened = Store(store.root)  # what the dashboard does when it starts
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
    tmp_path: Path, media: Media, analysed_image: Analysed
) -> None:
    """A real analysis of a 1080p video in a child process, killed by SIGKILL once it is finding
    faces (more frames to go, nothing saved yet)."""
    store = Store(tmp_path)
    earlier = save(store, analysed_image)
    before = rows(store)
    child = _run_child("analyze", str(store.root), str(media.long_video), "32")
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
    reopened = Store(store.root)
    assert [s.id for s in reopened.summaries()] == [earlier.id]
    assert files_on_disk(reopened) == {p.file for p in earlier.pictures}
