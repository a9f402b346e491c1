"""`scan` on real Ray: a local two-node cluster (`ray.cluster_utils.Cluster`, every node on
127.0.0.1) with the history on a real PostgreSQL server, and the command line on a local Ray
instance with the history on SQLite.

Workers are really killed (SIGKILL on the actor's process) while they analyse a file: that file
is tried again once, on another worker, and stored once; a file whose worker dies twice is
recorded as failed with the reason; a bad file fails once and the scan goes on; Ctrl-C stops
the command cleanly (exit 130) and running it again resumes. Waits are on events and process
exits with deadlines, never sleeps. Inputs are small: face-crop clips, a photo, 4 frames.
"""

from __future__ import annotations

import inspect
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import media_factory as mf
import pytest
from streamlit.testing.v1 import AppTest

from pipeline.app.scan import (
    FileOutcome,
    ScanEvents,
    ScanItem,
    ScanReport,
    ScanRequest,
    Started,
    WorkerReady,
    find_media,
    readable,
    run_scan,
)
from pipeline.app.store import HistoryFilter, Store
from pipeline.config import DATA_HOME_ENV, DATABASE_URL_ENV, REPO_ROOT
from pipeline.signals import StopSignals
from tests.command_line import first_stdout_line, start_cli

pytestmark = pytest.mark.cluster

FRAMES = 4
CLIPS = ("0_aaqaifqrwn.mp4", "0_abhggqdift.mp4", "0_acagallncj.mp4", "0_acdkfksyev.mp4")
VICTIM = CLIPS[1]
"""Its worker is killed once while analysing it: tried again on another worker, stored once."""
DOOMED = CLIPS[2]
"""Its worker is killed every time it analyses it: recorded as failed."""
PHOTO = "gan-faces/real/cv_69000.jpg"
CLI_DEADLINE_S = 600.0
LOOPBACK = {"0100007F", "0000000000000000FFFF00000100007F", "00000000000000000000000001000000"}
"""127.0.0.1, ::ffff:127.0.0.1 and ::1 as /proc/net/tcp{,6} write them."""


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    """Four face-crop clips, a photo in a subfolder, a corrupt 'video', an empty one and files
    that are not media (left out), as a newsroom's folder might hold them."""
    root = tmp_path_factory.mktemp("to-scan")
    for name in CLIPS:
        shutil.copyfile(shared_data / "videos" / "fake" / name, root / name)
    (root / "photos").mkdir()
    shutil.copyfile(shared_data / PHOTO, root / "photos" / "face.jpg")
    (root / "corrupt.mp4").write_bytes(b"this is not a video")
    (root / "empty.mp4").write_bytes(b"")
    (root / "notes.txt").write_text("not media\n")
    (root / ".hidden.mp4").write_bytes((root / CLIPS[0]).read_bytes())
    return root


def test_folders_and_lists_give_each_media_file_once(folder: Path, tmp_path: Path) -> None:
    listing = tmp_path / "list.txt"
    listing.write_text(f"# the desk's list\n{folder / CLIPS[0]}\n\n{folder}/photos\n")
    relative = tmp_path / "lists" / "relative.lst"
    relative.parent.mkdir()
    relative.write_text(os.path.relpath(folder / CLIPS[3], relative.parent) + "\n")  # from the list's folder
    items, problems = find_media([listing, folder, relative, tmp_path / "missing.txt", folder / "nothing.mp4"])
    names = [Path(item.path).name for item in items]
    assert names == [CLIPS[0], "face.jpg", CLIPS[1], CLIPS[2], CLIPS[3], "corrupt.mp4", "empty.mp4", "nothing.mp4"]
    assert [p.item.shown for p in problems] == [str(tmp_path / "missing.txt")]
    assert problems[0].error == "the list of paths was not found"
    # What a worker could not open is set aside before the scan starts, with `analyze`'s message;
    # a file that opens but is not media (corrupt.mp4) is the worker's to find out.
    kept, unreadable = readable(items)
    assert [Path(item.path).name for item in kept] == names[:6]
    assert [(Path(o.item.path).name, o.status, o.error) for o in unreadable] == [
        ("empty.mp4", "failed", "'empty.mp4' is an empty file (0 bytes)."),
        ("nothing.mp4", "failed", "'nothing.mp4' was not found."),
    ]
    # A folder of phone photos: HEIC ones are media like any other.
    phone = tmp_path / "phone"
    phone.mkdir()
    (phone / "IMG_0001.HEIC").write_bytes(mf.HEIC_BYTES)
    (phone / "IMG_0002.heif").write_bytes(mf.HEIC_BYTES)
    (phone / "notes.txt").write_text("not media\n")
    items, _ = find_media([phone])
    kept, unreadable = readable(items)
    assert [Path(item.path).name for item in kept] == ["IMG_0001.HEIC", "IMG_0002.heif"] and unreadable == []


def test_typescript_sources_in_a_folder_are_not_media(tmp_path: Path) -> None:
    """`.ts` and `.mts` are camcorders' and broadcast video's suffixes, and TypeScript's: a folder
    scan takes such a file when its content is a video (or cannot be read, so that it says why),
    and passes over source code as over any text file; a file named on its own is still answered."""
    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    (project / "src" / "app.ts").write_text("export const answer: number = 42;\n")
    (project / "src" / "types.d.ts").write_text("declare module 'x';\n")
    (project / "src" / "module.mts").write_text("export default {};\n")
    mf.write_video_with_ffmpeg(project / "clip.ts", 12, "mpegts", "mpeg2video")
    mf.write_video_with_ffmpeg(project / "camcorder.mts", 12, "mpegts", "mpeg2video", {"mpegts_m2ts_mode": "1"})
    (project / "empty.ts").write_bytes(b"")
    items, problems = find_media([project, project / "src" / "app.ts"])
    assert [Path(item.path).relative_to(project).as_posix() for item in items] == [
        "camcorder.mts",
        "clip.ts",
        "empty.ts",
        "src/app.ts",
    ]
    assert problems == []
    kept, unreadable = readable(items)
    assert [(Path(o.item.path).name, o.error) for o in unreadable] == [
        ("empty.ts", "'empty.ts' is an empty file (0 bytes).")
    ]
    assert [Path(item.path).name for item in kept] == ["camcorder.mts", "clip.ts", "app.ts"]


def test_a_stop_is_raised_once_then_ignored_while_the_scan_saves() -> None:
    """Ctrl-C and SIGTERM raise KeyboardInterrupt; a stop while Ray starts waits until it has;
    once the scan saves, more presses are ignored; a signal ignored from the start (`nohup`)
    stays ignored; `restore` puts every handler back."""
    assert threading.current_thread() is threading.main_thread()  # only there can a handler be set
    # As a terminal starts a program, whatever this one was started with (`nohup` ignores SIGINT).
    started_with = signal.signal(signal.SIGINT, signal.default_int_handler)
    before = {number: signal.getsignal(number) for number in StopSignals.SIGNALS}
    stops = StopSignals()
    stops.install()
    try:
        assert all(signal.getsignal(number) not in (signal.SIG_DFL, signal.SIG_IGN) for number in StopSignals.SIGNALS)
        assert not stops.stopped
        for number in StopSignals.SIGNALS:
            with pytest.raises(KeyboardInterrupt):
                signal.raise_signal(number)
        assert stops.stopped
        went_on = False
        with pytest.raises(KeyboardInterrupt), stops.deferred():
            signal.raise_signal(signal.SIGTERM)
            went_on = True
        assert went_on
        stops.saving = True
        for number in StopSignals.SIGNALS:
            signal.raise_signal(number)  # ignored: nothing raised
    finally:
        stops.restore()
    assert {number: signal.getsignal(number) for number in StopSignals.SIGNALS} == before

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        started_ignoring = StopSignals()
        started_ignoring.install()
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
        started_ignoring.restore()
    finally:
        signal.signal(signal.SIGINT, started_with)


def test_ray_still_sets_its_sigterm_handler_where_the_scan_leaves_it_alone() -> None:
    """`ray.init` puts in its SIGTERM handler (an exit half-way through Ray's start) through a
    private function that the scan swaps for a no-op while Ray starts. A Ray upgrade that moved
    it would quietly bring back a crash on `kill` in the first seconds of a scan: this says so."""
    import ray._private.utils
    import ray._private.worker

    assert callable(ray._private.utils.set_sigterm_handler)
    assert "ray._private.utils.set_sigterm_handler(" in inspect.getsource(ray._private.worker.init)


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[object]:
    """Two Ray nodes of one CPU each, both on 127.0.0.1, no dashboard."""
    from ray.cluster_utils import Cluster

    loopback = {"node_ip_address": "127.0.0.1", "include_dashboard": False}
    terminate = signal.getsignal(signal.SIGTERM)  # a Ray node sets its own, for its clean-up
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, **loopback})
    cluster.add_node(num_cpus=1, **loopback)
    yield cluster
    cluster.shutdown()
    signal.signal(signal.SIGTERM, terminate)


def _descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        for child in children.get(pid, []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def listening_addresses(root: int) -> list[str]:
    """The local addresses (hex, as /proc/net writes them) of every TCP socket that a process
    started by `root` listens on."""
    inodes = set()
    for pid in _descendants(root):
        try:
            links = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
        except OSError:
            continue
        inodes.update(link[len("socket:[") : -1] for link in links if link.startswith("socket:["))
    addresses = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                addresses.append(fields[1].split(":")[0])
    return addresses


@dataclass
class KillingEvents(ScanEvents):
    """Kills the worker analysing VICTIM (its first try) and DOOMED (every try) with SIGKILL
    the moment it has begun the file (it is hashing or decoding it), and remembers what
    happened."""

    kill: bool = True
    started_on: dict[str, list[int]] = field(default_factory=dict)
    outcomes: list[FileOutcome] = field(default_factory=list)
    losses: list[tuple[str | None, bool]] = field(default_factory=list)
    ready: list[WorkerReady] = field(default_factory=list)
    listening: list[str] = field(default_factory=list)

    def worker_ready(self, ready: WorkerReady) -> None:
        self.ready.append(ready)

    def started(self, item: ScanItem, started: Started, attempt: int) -> None:
        name = Path(item.path).name
        self.started_on.setdefault(name, []).append(started.pid)
        if not self.listening:  # while the workers are at work
            self.listening = listening_addresses(os.getpid())
        if self.kill and ((name == VICTIM and attempt == 1) or name == DOOMED):
            os.kill(started.pid, signal.SIGKILL)

    def finished(self, outcome: FileOutcome) -> None:
        self.outcomes.append(outcome)

    def worker_lost(self, item: ScanItem | None, detail: str, retrying: bool) -> None:
        self.losses.append((Path(item.path).name if item else None, retrying))


@dataclass(frozen=True)
class ClusterScan:
    report: ScanReport
    events: KillingEvents
    store: Store
    url: str


@pytest.fixture(scope="module")
def cluster_scan(ray_cluster, folder: Path, postgresql_server, models_dir: Path, tmp_path_factory) -> ClusterScan:
    """One scan of `folder` by two workers on the two-node cluster, into a PostgreSQL history."""
    url = postgresql_server.create_database()
    store = Store(tmp_path_factory.mktemp("team-pictures"), url=url)
    events = KillingEvents()
    request = ScanRequest((folder,), frames=FRAMES, workers=2, address=ray_cluster.address, name="desk batch")
    report = run_scan(request, store, events)
    yield ClusterScan(report, events, store, url)
    store.close()
    postgresql_server.drop_database(url)


def test_a_killed_worker_costs_one_retry_on_another_worker_and_nothing_is_stored_twice(
    cluster_scan: ClusterScan,
) -> None:
    report, events, store = cluster_scan.report, cluster_scan.events, cluster_scan.store
    assert (report.status, report.total, report.done, report.skipped, report.failed) == ("finished", 7, 4, 0, 3)
    assert {ready.host for ready in events.ready} and len(events.ready) >= 2
    # VICTIM: killed on its first try, then analysed by another worker, once.
    first, second = events.started_on[VICTIM]
    assert first != second
    victim = next(o for o in events.outcomes if Path(o.item.path).name == VICTIM)
    assert (victim.status, victim.attempts) == ("done", 2)
    # DOOMED: its worker died twice: failed, with why.
    assert len(events.started_on[DOOMED]) == 2
    assert (VICTIM, True) in events.losses and (DOOMED, True) in events.losses and (DOOMED, False) in events.losses

    job = store.job(report.job_id)
    assert (job.name, job.status, job.total, job.done, job.skipped, job.failed) == (
        "desk batch",
        "finished",
        7,
        4,
        0,
        3,
    )
    failed = {Path(f.path).name: f for f in store.job_files(job.id, "failed")}
    assert set(failed) == {DOOMED, "corrupt.mp4", "empty.mp4"}
    assert failed[DOOMED].attempts == 2 and "worker died 2 times" in failed[DOOMED].error
    assert failed["corrupt.mp4"].attempts == 1 and "is not an image or a video" in failed["corrupt.mp4"].error
    # The empty file failed before any worker saw it.
    assert failed["empty.mp4"].attempts == 1 and failed["empty.mp4"].error == "'empty.mp4' is an empty file (0 bytes)."
    assert "empty.mp4" not in events.started_on and "corrupt.mp4" in events.started_on
    # Every result once, whole, with its pictures, linked to the job.
    summaries = store.summaries(HistoryFilter(job_id=job.id), order="most_suspicious")
    assert sorted(s.file_name for s in summaries) == sorted({*CLIPS} - {DOOMED} | {"face.jpg"})
    assert len(store.summaries()) == 4
    for summary in summaries:
        record = store.get(summary.id)
        assert record.result.frames_requested == FRAMES and record.pictures
        assert all(store.path(p).is_file() for p in record.pictures)
    probabilities = [s.fake_probability for s in summaries if s.fake_probability is not None]
    assert probabilities == sorted(probabilities, reverse=True)


def test_the_cluster_listens_on_127_0_0_1_only(cluster_scan: ClusterScan) -> None:
    listening = cluster_scan.events.listening
    assert len(listening) >= 4, listening  # GCS, raylets, workers
    assert set(listening) <= LOOPBACK, listening


def test_a_second_scan_skips_what_is_stored_and_does_the_rest(
    cluster_scan: ClusterScan, ray_cluster, folder: Path
) -> None:
    """Like a scan run again after it was stopped: stored files are skipped (and listed in the
    new job), the file that failed for its worker is analysed now, the corrupt and empty ones
    fail again."""
    store = cluster_scan.store
    events = KillingEvents(kill=False)
    report = run_scan(ScanRequest((folder,), frames=FRAMES, workers=2, address=ray_cluster.address), store, events)
    assert (report.done, report.skipped, report.failed) == (1, 4, 2)
    assert {Path(o.item.path).name for o in events.outcomes if o.status == "done"} == {DOOMED}
    assert len(store.summaries()) == 5
    assert len(store.summaries(HistoryFilter(job_id=report.job_id))) == 5
    assert store.job(report.job_id).name == f"scan of {folder}"


def test_the_history_page_filters_by_scan_job_and_shows_its_progress(
    cluster_scan: ClusterScan, models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = cluster_scan.store
    monkeypatch.setenv(DATA_HOME_ENV, str(store.root))
    monkeypatch.setenv(DATABASE_URL_ENV, cluster_scan.url)
    at = AppTest.from_file(str(REPO_ROOT / "app.py"), default_timeout=300).run()
    at.switch_page("pages/history.py").run()
    assert not at.exception, [e.value for e in at.exception]
    job = store.job(cluster_scan.report.job_id)
    picker = at.selectbox(key="history_job")
    assert any(option.startswith(f"#{job.id} · desk batch · finished · 7/7") for option in picker.options)
    picker.set_value(job.id).run()
    assert not at.exception, [e.value for e in at.exception]
    assert any(p.proto.text.startswith("7 of 7 files: 4 analysed, 0 skipped") for p in at.get("progress"))
    assert [(m.label, m.value) for m in at.metric] == [
        ("Analysed", "4"),
        ("Skipped", "0"),
        ("Failed", "3"),
        ("Total", "7"),
    ]
    tables = [table.value for table in at.dataframe]
    listed = next(t for t in tables if "verdict" in t.columns)
    stored = store.summaries(HistoryFilter(job_id=job.id), order="most_suspicious")
    assert list(listed["id"]) == [s.id for s in stored]  # the job's results, the most suspicious first
    failed = next(t for t in tables if "why" in t.columns)
    assert sorted(Path(p).name for p in failed["file"]) == sorted([DOOMED, "corrupt.mp4", "empty.mp4"])
    at.selectbox(key="history_open").set_value(stored[0].id).run()
    assert any(m.value.startswith("### Verdict:") for m in at.markdown)  # opens like an uploaded result


# -- the command line ----------------------------------------------------------------------------------


def _cli(home: Path, *args: str) -> subprocess.Popen[str]:
    return start_cli("scan", *args, env={DATA_HOME_ENV: str(home)}, unset=(DATABASE_URL_ENV,))


def _signal_masks(pid: int) -> str:
    """A process's blocked, ignored and caught signals, as /proc writes them (hex masks)."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError as error:
        return f"no signal masks: {error}"
    return " ".join(line for line in lines if line.startswith(("SigBlk", "SigIgn", "SigCgt")))


def _stop_after_first_result(home: Path, clips: list[str], out: Path, stop: Callable[[int], None]) -> Store:
    """Start a scan of `clips`, call `stop(pid)` once it prints its first result, and check that it
    stopped cleanly: exit 130, one line saying so, the job interrupted with what finished stored
    whole and listed in `out`. Returns the history."""
    scan = _cli(home, *clips, "--workers", "1", "--frames", str(FRAMES), "--json", str(out), "--name", "evening")
    try:
        first = first_stdout_line(scan, CLI_DEADLINE_S)
        # Its signal masks go into the failure message: whether the scan ignored, blocked or caught the signal.
        masks = _signal_masks(scan.pid)
        stop(scan.pid)
        stdout, stderr = scan.communicate(timeout=CLI_DEADLINE_S)
    finally:
        if scan.poll() is None:
            os.killpg(scan.pid, signal.SIGKILL)
            scan.wait()
    assert scan.returncode == 130, f"{masks}\nfirst line: {first!r}\nstdout: {stdout!r}\n{stderr}"
    assert "Traceback" not in stderr and "interrupted:" in stderr and "run the same command again" in stderr
    printed = [line for line in (first + stdout).splitlines() if line]
    assert printed and all(line.split("\t")[1] in ("fake", "real", "uncertain", "no_face") for line in printed)
    store = Store(home)
    (job,) = store.jobs()
    assert (job.name, job.status) == ("evening", "interrupted")
    assert job.done >= len(printed) and job.done < len(clips)
    assert len(store.summaries()) == job.done  # whatever finished is stored whole, nothing else
    assert [e["status"] for e in json.loads(out.read_text())] == ["done"] * job.done
    return store


def _terminate(pid: int) -> None:
    os.kill(pid, signal.SIGTERM)


def _ctrl_c(pid: int) -> None:
    os.killpg(pid, signal.SIGINT)  # Ctrl-C in a terminal: the whole process group


def test_kill_stops_the_scan_as_ctrl_c_does(folder: Path, tmp_path: Path) -> None:
    clips = [str(folder / name) for name in CLIPS]
    # `kill PID`, as a batch system or `docker stop` ends a job: SIGTERM to the scan alone.
    store = _stop_after_first_result(tmp_path / "history", clips, tmp_path / "partial.json", _terminate)
    store.close()


def _ctrl_c_until_it_stops(pid: int) -> None:
    # A person who sees no answer at once presses Ctrl-C again and again: here every 30 ms until
    # the scan has ended (for 30 s at most), so later presses land while it stops and saves.
    ended = os.pidfd_open(pid)  # readable once the process has exited
    try:
        for _ in range(1000):
            try:
                os.killpg(pid, signal.SIGINT)
            except ProcessLookupError:
                return
            if select.select([ended], [], [], 0.03)[0]:
                return
    finally:
        os.close(ended)


def test_ctrl_c_pressed_again_and_again_still_stops_cleanly(folder: Path, tmp_path: Path) -> None:
    clips = [str(folder / name) for name in CLIPS]
    store = _stop_after_first_result(tmp_path / "history", clips, tmp_path / "partial.json", _ctrl_c_until_it_stops)
    store.close()


def test_ctrl_c_stops_the_scan_cleanly_and_running_it_again_resumes(folder: Path, tmp_path: Path) -> None:
    home = tmp_path / "history"
    clips = [str(folder / name) for name in CLIPS]
    store = _stop_after_first_result(home, clips, tmp_path / "partial.json", _ctrl_c)
    (job,) = store.jobs()

    again = _cli(home, *clips, "--workers", "1", "--frames", str(FRAMES), "--csv", str(tmp_path / "all.csv"))
    stdout, stderr = again.communicate(timeout=CLI_DEADLINE_S)
    assert again.returncode == 0, stderr
    lines = stdout.splitlines()
    assert len(lines) == len(CLIPS)
    assert sum("(in the history, #" in line for line in lines) == job.done
    assert f"{len(CLIPS) - job.done} analysed, {job.done} skipped" in stderr
    assert len(store.summaries()) == len(CLIPS)
    rows = (tmp_path / "all.csv").read_text().splitlines()
    assert len(rows) == 1 + len(CLIPS) and rows[0].startswith("path,status,verdict,fake_probability")
    probabilities = [float(row.split(",")[3]) for row in rows[1:]]
    assert probabilities == sorted(probabilities, reverse=True)
    store.close()


def test_command_line_mistakes_are_one_line_before_any_work(folder: Path, tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    for args, message in (
        ([str(folder), "--json", str(tmp_path / "no" / "folder" / "out.json")], "does not exist"),
        ([str(tmp_path / "empty")], "no image or video to scan"),
        ([str(folder), "--address", f"127.0.0.1:{port}"], f"cannot join the Ray cluster at 127.0.0.1:{port}"),
        ([str(folder), "--address", "nowhere"], "is not a Ray address"),
    ):
        (tmp_path / "empty").mkdir(exist_ok=True)
        run = _cli(tmp_path / "history", *args)
        stdout, stderr = run.communicate(timeout=CLI_DEADLINE_S)
        assert run.returncode == 1 and stdout == "" and message in stderr and "Traceback" not in stderr
        assert len(stderr.strip().splitlines()) == 1, stderr
    bad = _cli(tmp_path / "history", str(folder), "--workers", "0")
    _, stderr = bad.communicate(timeout=CLI_DEADLINE_S)
    assert bad.returncode == 2 and "must be at least 1" in stderr


def test_files_that_cannot_be_read_are_answered_without_starting_a_scan(folder: Path, tmp_path: Path) -> None:
    """Only files no worker could open: a line each, in order, then why nothing was scanned;
    Ray is not started and no job goes into the history."""
    home = tmp_path / "history"
    (tmp_path / "no-media").mkdir()
    notes = tmp_path / "notes.txt.md"
    notes.write_text("not media\n")
    run = _cli(home, str(folder / "empty.mp4"), str(tmp_path / "nothing.mp4"), str(tmp_path / "no-media"), str(notes))
    stdout, stderr = run.communicate(timeout=CLI_DEADLINE_S)
    assert run.returncode == 1 and stdout == "" and "Traceback" not in stderr
    lines = stderr.splitlines()
    assert lines[:2] + lines[3:] == [
        f"error: {folder / 'empty.mp4'}: 'empty.mp4' is an empty file (0 bytes).",
        f"error: {tmp_path / 'nothing.mp4'}: 'nothing.mp4' was not found.",
        "error: none of the files given can be read: nothing to scan",
    ], stderr
    assert lines[2].startswith(f"error: {notes}: 'notes.txt.md' has an unsupported type ('.md'); supported are images")
    assert Store(home).jobs() == []
