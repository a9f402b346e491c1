"""Scan at scale: every image and video under some folders (or in a list of paths) analysed on
Ray, into the same history the dashboard shows, as a named job.

How it runs. Each worker is a Ray actor (`ScanWorker`) that loads the engine once and keeps it;
it analyses one file at a time with `AnalysisService` (the dashboard's own path: same hash, same
settings key, same pictures) and writes the result, its pictures and the job's record of the
file straight into the history, so only a few numbers travel back. The driver (`run_scan`)
streams paths to the workers with back-pressure: at most `ScanSettings.in_flight_per_worker`
files queued on each, the next one sent when one comes back, so a list of millions is never
scheduled at once.

Files already in the history with the same bytes, settings and model versions are skipped (and
linked to the job), so a stopped scan resumes where it was when it is run again.

Faults. A worker that dies (killed, out of memory, a crash inside a library) takes down the
file it was analysing and the ones queued behind it. The one it was analysing is tried once
more on another worker; after `ScanSettings.attempts` deaths it is recorded as failed with the
reason. The queued ones go back to the queue as they were. A replacement worker is started. A
file that is bad (corrupt, unsupported, too large) fails once, with the same one-line reason as
`analyze`, and the scan goes on. Results are stored by the worker in one transaction with the
job's record of the file, and the history keeps one row per settings key, so a retried file is
never stored twice. Ctrl-C, or `kill` (SIGTERM, as a batch system or `docker stop` sends), stops
the workers, marks the job interrupted and reports what was done; pressed again while the scan
saves, it is ignored.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import re
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.app.service import AnalysisRequest, AnalysisService
from pipeline.app.store import HistoryFilter, JobFile, Store, StoreSettings
from pipeline.config import MediaSettings, MemorySettings, ScanSettings, Settings
from pipeline.engine.media import check_without_opening, detect_kind
from pipeline.engine.quiet import quiet_settings
from pipeline.errors import PipelineError, ScanError, StoreError, UnsupportedMediaError
from pipeline.files import whole_file
from pipeline.signals import StopSignals

log = logging.getLogger("pipeline.scan")

RAY_LOCAL_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}
"""A local Ray instance keeps every node on 127.0.0.1 (it listens on no other address; Ray
reads this when it is imported) and never reports usage statistics."""

RAY_DRIVER_ENV = {"RAY_DISABLE_FAILURE_SIGNAL_HANDLER": "1"}
"""The scan's own process (Ray reads this when it is imported): Ray's crash handler would take
SIGTERM from `StopSignals`, and give it back at its default when Ray shuts down, so a second
`kill` while the scan saves would end it there. Its workers keep the handler (`WORKER_ENV`)."""

WORKER_ENV = {"RAY_DISABLE_FAILURE_SIGNAL_HANDLER": "0"}
"""A worker's own: Ray's crash handler writes a crashed worker's stack to Ray's logs."""

# -- what the user asked, what came back ----------------------------------------------------------


@dataclass(frozen=True)
class ScanRequest:
    """What a scan is asked to do."""

    paths: tuple[Path, ...]
    """Folders (searched for images and videos), media files, and lists of paths."""
    frames: int | None = None
    aggregation: str | None = None
    models: tuple[str, ...] = ()
    """Ensemble members to use; empty for all of them."""
    workers: int | None = None
    """None: as many as the machine (or the cluster) has room for."""
    address: str | None = None
    """None: a local Ray instance; else a cluster to join (`auto`, `HOST:PORT`, `ray://HOST:PORT`)."""
    name: str = ""
    """The job's name in the history ('' for one made from the paths)."""
    models_dir: Path | None = None


@dataclass(frozen=True)
class ScanItem:
    """One file to analyse: how the user sees its path, and its absolute path (what workers open)."""

    shown: str
    path: str


@dataclass(frozen=True)
class Started:
    """A worker has begun a file (the first thing a worker's `analyze` yields)."""

    pid: int
    host: str


@dataclass(frozen=True)
class FileOutcome:
    """What became of one file."""

    item: ScanItem
    status: str
    """'done' (analysed and stored), 'skipped' (in the history already) or 'failed'."""
    analysis_id: int | None = None
    verdict: str = ""
    fake_probability: float | None = None
    model_scores: dict[str, float] = field(default_factory=dict)
    reason: str = ""
    """The verdict's one-line reason."""
    seconds: float = 0.0
    """The analysis's own time (0 when skipped)."""
    error: str = ""
    attempts: int = 1


@dataclass(frozen=True)
class WorkerReady:
    """A worker with its models loaded (or the reason it cannot work)."""

    pid: int = 0
    host: str = ""
    frames: int = 0
    aggregation: str = ""
    models: dict[str, str] = field(default_factory=dict)
    """Model name -> version: what every result of this scan is made with."""
    error: str = ""


@dataclass(frozen=True)
class ScanReport:
    """A finished (or stopped) scan."""

    job_id: int | None
    """None when it stopped before its job was created (no worker ever started)."""
    status: str
    """'finished', 'interrupted' or 'failed'."""
    total: int
    done: int
    skipped: int
    failed: int
    no_face: int
    seconds: float
    """From the first file sent to the last one back (the workers at work)."""
    startup_seconds: float
    """Before that: starting Ray and the first worker (loading its models)."""
    workers: int
    worker_starts: int
    """Workers started, replacements included."""
    memory: dict[int, WorkerMemory] = field(default_factory=dict)
    """Worker pid -> its peak memory, for the workers alive at the end (with `measure_memory`)."""

    @property
    def files_per_minute(self) -> float:
        """Throughput over the files that went through."""
        processed = self.done + self.skipped + self.failed
        return 60.0 * processed / self.seconds if self.seconds > 0 else 0.0


class ScanEvents:
    """What a scan tells its caller as it goes (the CLI prints it; tests act on it)."""

    def job_started(self, job_id: int, total: int) -> None:
        """The scan's job is in the history; `total` files to go through."""

    def worker_ready(self, ready: WorkerReady) -> None:
        """A worker has loaded its models."""

    def started(self, item: ScanItem, started: Started, attempt: int) -> None:
        """A worker has begun a file."""

    def finished(self, outcome: FileOutcome) -> None:
        """A file went through (analysed, skipped or failed)."""

    def worker_lost(self, item: ScanItem | None, detail: str, retrying: bool) -> None:
        """A worker died, while analysing `item` (None: while starting or idle)."""


# -- finding the files ------------------------------------------------------------------------------


def _media_under(folder: Path, media: MediaSettings) -> Iterator[Path]:
    """Images and videos under a folder, in name order; hidden files and folders are left out
    (a `.DS_Store`, an AppleDouble `._clip.mp4`, a `.git`), and so are files of a suffix source
    code shares (`MediaSettings.shared_suffixes`) whose content is no video (a TypeScript file)."""
    suffixes = media.image_suffixes + media.video_suffixes
    for top, folders, files in os.walk(folder):
        folders[:] = sorted(f for f in folders if not f.startswith("."))
        for name in sorted(files):
            suffix = Path(name).suffix.lower()
            if name.startswith(".") or suffix not in suffixes:
                continue
            path = Path(top) / name
            if suffix in media.shared_suffixes and not _holds_media(path, media):
                continue
            yield path


def _holds_media(path: Path, media: MediaSettings) -> bool:
    """Whether a file's content is an image or a video (its first bytes); a file that cannot be
    read at all counts as media, so that the scan says why."""
    try:
        detect_kind(path, media)
    except UnsupportedMediaError:
        return False
    except PipelineError:
        pass  # unreadable, too large, ...: one line in the scan's output
    return True


def _listed(list_file: Path) -> list[Path]:
    """The paths in a list file, one per line (blank lines and # comments left out); a relative
    path is relative to the list's folder, so a list travels with its files."""
    try:
        lines = list_file.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise ScanError("it is not a list of paths (one per line, UTF-8 text)") from None
    except OSError as error:
        raise ScanError(f"the list cannot be read: {error.strerror or error}") from None
    entries = [line.strip() for line in lines]
    return [list_file.parent / entry for entry in entries if entry and not entry.startswith("#")]


def find_media(
    arguments: Sequence[Path], media: MediaSettings = MediaSettings(), scan: ScanSettings = ScanSettings()
) -> tuple[list[ScanItem], list[FileOutcome]]:
    """The files a scan of `arguments` goes through, each once, in the order given (folders in
    name order), and the lists that could not be read (as failed outcomes).

    A folder gives the images and videos under it; a file whose suffix is one of
    `ScanSettings.list_suffixes` is a list of paths (files or folders); anything else is a file
    to analyse (`readable` then sets aside one that is missing, unreadable or of a type no worker
    reads, with `analyze`'s message)."""
    items: list[ScanItem] = []
    problems: list[FileOutcome] = []
    seen: set[str] = set()

    def add(path: Path) -> None:
        absolute = os.path.abspath(path)  # not resolved: a link keeps the name it was given under
        if absolute not in seen:
            seen.add(absolute)
            items.append(ScanItem(str(path), absolute))

    def expand(path: Path, from_list: bool) -> None:
        if path.is_dir():
            for found in _media_under(path, media):
                add(found)
        elif not from_list and path.suffix.lower() in scan.list_suffixes:
            try:
                listed = _listed(path)
            except ScanError as error:
                item = ScanItem(str(path), os.path.abspath(path))
                problems.append(FileOutcome(item, "failed", error=str(error)))
                return
            for entry in listed:
                expand(entry, from_list=True)
        else:
            add(path)

    for argument in arguments:
        if not argument.exists() and argument.suffix.lower() in scan.list_suffixes:
            item = ScanItem(str(argument), os.path.abspath(argument))
            problems.append(FileOutcome(item, "failed", error="the list of paths was not found"))
            continue
        expand(argument, from_list=False)
    return items, problems


def readable(items: list[ScanItem], media: MediaSettings = MediaSettings()) -> tuple[list[ScanItem], list[FileOutcome]]:
    """The items a worker can open, and the others as failed outcomes with the message `analyze`
    gives (`check_without_opening`: a stat and the name). Checked here, before Ray starts, since
    the workers see the media at the same paths as this machine."""
    kept: list[ScanItem] = []
    unreadable: list[FileOutcome] = []
    for item in items:
        try:
            check_without_opening(Path(item.path), media)
        except PipelineError as error:
            unreadable.append(FileOutcome(item, "failed", error=str(error)))
        else:
            kept.append(item)
    return kept, unreadable


def default_job_name(arguments: Sequence[Path]) -> str:
    """A job name made from what was scanned."""
    first = str(arguments[0]) if arguments else "nothing"
    return f"scan of {first}" + (f" and {len(arguments) - 1} more" if len(arguments) > 1 else "")


# -- the worker -----------------------------------------------------------------------------------


def _limit_threads(threads: int) -> None:
    """Give this worker's libraries `threads` threads: workers side by side on one machine
    would otherwise each start one thread per core and fight over them. TensorFlow takes its
    thread counts only before it first runs anything."""
    quiet_settings()
    import cv2

    cv2.setNumThreads(threads)
    if os.environ.get("KERAS_BACKEND", "tensorflow") == "tensorflow":
        import tensorflow as tf

        tf.get_logger().setLevel(logging.ERROR)
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)


def _status_mb(field_name: str) -> float:
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return 0.0
    found = re.search(rf"{field_name}:\s+(\d+)", status)
    return int(found.group(1)) / 1024 if found else 0.0


def peak_memory_mb() -> float:
    """This process's peak resident memory (VmHWM), in MB; 0 where /proc is missing. It counts
    the pages of shared libraries it touched (TensorFlow's alone is about 450 MB), which every
    worker on a machine shares."""
    return _status_mb("VmHWM")


def private_memory_mb() -> float:
    """This process's resident memory of its own (RssAnon: not files, not shared), in MB."""
    return _status_mb("RssAnon")


@dataclass(frozen=True)
class WorkerMemory:
    """A worker's peak memory, and the processor time it spent on files."""

    peak_mb: float
    """VmHWM: everything it ever had resident, shared library pages included."""
    private_peak_mb: float
    """The most memory of its own (RssAnon) seen while it analysed: what one more worker costs."""
    cpu_seconds: float = 0.0
    """CPU time of all its threads since its models were loaded (divided by the scan's time:
    the cores it kept busy)."""


class ScanWorker:
    """One Ray actor: the engine and the history, opened once, analysing one file at a time.

    Its methods return problems as values (a `WorkerReady.error`, a failed `FileOutcome`): a
    bad file is an outcome, not an exception."""

    def __init__(
        self, models_dir: str, store_root: str, database_url: str | None, threads: int, scan: ScanSettings
    ) -> None:
        self._models_dir = Path(models_dir)
        self._store_root = Path(store_root)
        self._database_url = database_url
        self._threads = threads
        self._scan = scan
        self._service: AnalysisService | None = None
        self._store: Store | None = None
        self._request: AnalysisRequest | None = None
        self._host = socket.gethostname()
        self._private_peak_mb = 0.0
        self._cpu_at_ready = 0.0

    def ready(self, frames: int | None, aggregation: str | None, models: tuple[str, ...]) -> WorkerReady:
        """Load the models and open the history; the request with its defaults filled in."""
        try:
            _limit_threads(self._threads)
            from pipeline.engine.analyze import Engine

            engine = Engine(Settings(models_dir=self._models_dir))
            service = AnalysisService(engine)
            frames, rule, chosen = engine.check_request(frames, aggregation, list(models) or None)
            engine.face_finder  # noqa: B018  (load MTCNN now, not with the first file)
            # The driver cleaned the history's folder when it opened it.
            store_settings = StoreSettings(pool_size=self._scan.store_pool_size, max_overflow=0)
            self._store = Store(self._store_root, url=self._database_url, settings=store_settings, clean=False)
        except PipelineError as error:
            return WorkerReady(os.getpid(), self._host, error=str(error))
        versions = service.ensemble.versions()
        self._cpu_at_ready = time.process_time()
        self._service = service
        self._request = AnalysisRequest(frames, rule, tuple(chosen))
        return WorkerReady(os.getpid(), self._host, frames, rule, {n: versions[n] for n in chosen})

    def analyze(self, job_id: int, item: ScanItem, attempt: int) -> Iterator[Started | FileOutcome]:
        """Analyse one file into the history: says `Started`, then yields its `FileOutcome`."""
        yield Started(os.getpid(), self._host)
        yield self._analyze(job_id, item, attempt)

    def _analyze(self, job_id: int, item: ScanItem, attempt: int) -> FileOutcome:
        assert self._service is not None and self._store is not None and self._request is not None
        job = JobFile(job_id, item.path, attempt)
        clock = time.perf_counter()
        try:
            outcome = self._service.analyze(
                Path(item.path), self._request, self._store, progress=self._sample_memory, job=job
            )
        except StoreError:
            raise  # the history is unreachable: the driver stops the scan (nothing is lost)
        except PipelineError as error:
            message = str(error)
        except Exception as error:  # a bug, or a file that breaks a library: this file only
            log.debug("analysing %s failed", item.path, exc_info=True)
            message = f"unexpected error ({type(error).__name__}: {error})"
        else:
            record = outcome.record
            # A retry after a worker died having stored the file keeps the first word: 'done'.
            status = self._store.record_job_file(job, "skipped", record.id) if outcome.from_history else "done"
            result = record.result
            return FileOutcome(
                item,
                status,
                record.id,
                result.verdict,
                result.fake_probability,
                dict(result.model_scores),
                result.reason,
                0.0 if outcome.from_history else time.perf_counter() - clock,
                attempts=attempt,
            )
        self._store.record_job_file(job, "failed", error=message)
        return FileOutcome(item, "failed", error=message, attempts=attempt)

    def _sample_memory(self, _stage: str, _done: int, _total: int) -> None:
        # Called at every step of an analysis: frequent enough to see the peaks of detection
        # and scoring, which /proc does not keep for private memory.
        self._private_peak_mb = max(self._private_peak_mb, private_memory_mb())

    def memory(self) -> WorkerMemory:
        """This worker's peak memory so far."""
        self._private_peak_mb = max(self._private_peak_mb, private_memory_mb())
        return WorkerMemory(peak_memory_mb(), self._private_peak_mb, time.process_time() - self._cpu_at_ready)


# -- Ray --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Cluster:
    cpus: float
    local: bool
    machines: int


def _first_line(error: BaseException) -> str:
    return " ".join(str(error).strip().splitlines()[:1]) or type(error).__name__


RAY_ADDRESS_ENV = "RAY_ADDRESS"
RAY_CURRENT_CLUSTER_FILE = Path(os.environ.get("TMPDIR", "/tmp")) / "ray" / "ray_current_cluster"
"""Where `ray start --head` writes its address on this machine (what `--address auto` finds)."""


def _host_and_port(address: str) -> tuple[str, int] | None:
    """The host and port a Ray address points at, or None when it names none."""
    if address == "auto":
        address = os.environ.get(RAY_ADDRESS_ENV, "").strip()
        if not address:
            try:
                address = RAY_CURRENT_CLUSTER_FILE.read_text().strip()
            except OSError:
                raise ScanError(
                    "no Ray cluster runs on this machine (start one with `ray start --head`, or give its address)"
                ) from None
    address = address.removeprefix("ray://")
    host, _, port = address.rpartition(":")
    return (host.strip("[]"), int(port)) if host and port.isdigit() else None


def check_reachable(address: str, timeout_s: float) -> None:
    """Raise `ScanError` unless something answers at a Ray address within `timeout_s` (Ray's
    own client retries an address nobody listens on for ever, and prints as it does)."""
    target = _host_and_port(address)
    if target is None:
        raise ScanError(f"{address!r} is not a Ray address: use auto, HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection(target, timeout=timeout_s).close()
    except OSError as error:
        why = "no answer" if isinstance(error, TimeoutError) else (error.strerror or str(error))
        raise ScanError(f"cannot join the Ray cluster at {address}: {why} at {target[0]}:{target[1]}") from None


@contextmanager
def _sigterm_left_alone(ray: Any) -> Iterator[None]:
    """While it lasts, `ray.init` leaves SIGTERM's handler as it is. On the main thread it puts
    in one that exits at once, half-way through Ray's start, and Ray left half started can crash
    as the program exits (measured: SIGSEGV after a `kill` 3 to 4.5 s into a scan); with ours left
    in place, the stop is noted and raised once Ray has started. The function Ray uses for it is
    private: where it is missing, nothing is changed (and `ray_session` handles Ray's exit)."""
    utils = getattr(getattr(ray, "_private", None), "utils", None)
    original = getattr(utils, "set_sigterm_handler", None)
    if original is None:
        yield
        return
    utils.set_sigterm_handler = lambda _handler: None
    try:
        yield
    finally:
        utils.set_sigterm_handler = original


def _shut_down_half_started(ray: Any, stops: StopSignals) -> None:
    """Ray stopped while it started: shut it down whatever is pressed meanwhile."""
    stops.install()  # SIGTERM back from Ray's handler, if it put one in
    stops.saving = True
    ray.shutdown()


@contextmanager
def ray_session(address: str | None, scan: ScanSettings, stops: StopSignals) -> Iterator[_Cluster]:
    """Ray for one scan: a local instance sized to this machine (on 127.0.0.1 only, no
    dashboard), shut down afterwards, or the cluster at `address`, left running. A stop by
    `stops` while Ray starts is raised once it has started (and it is shut down)."""
    if address is None:
        if "ray" in sys.modules and os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER") != "0":
            raise ScanError(
                "Ray was loaded before the scan could keep its local instance on 127.0.0.1; "
                "set RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 or pass --address"
            )
        for name, value in RAY_LOCAL_ENV.items():
            os.environ.setdefault(name, value)
    else:
        check_reachable(address, scan.connect_timeout_s)
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    for name, value in RAY_DRIVER_ENV.items():
        os.environ.setdefault(name, value)
    import ray

    options: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.ERROR}
    if address is None:
        options.update(
            address="local",  # never join a cluster someone started on this machine by accident
            num_cpus=os.cpu_count() or 1,
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            object_store_memory=scan.object_store_bytes,
        )
    else:
        options.update(address=address)
    try:
        with stops.deferred(), _sigterm_left_alone(ray):  # a stop while Ray starts is raised once it has
            ray.init(**options)
    except (ConnectionError, RuntimeError, ValueError) as error:
        where = "start a local Ray instance" if address is None else f"join the Ray cluster at {address}"
        raise ScanError(f"cannot {where}: {_first_line(error)}") from None
    except SystemExit as stop:
        # SIGTERM while Ray starts, where Ray put in its handler after all: it exits; a stop instead.
        if stop.code != signal.SIGTERM:
            raise
        _shut_down_half_started(ray, stops)
        raise KeyboardInterrupt from None
    except KeyboardInterrupt:
        _shut_down_half_started(ray, stops)
        raise
    try:
        nodes = [node for node in ray.nodes() if node.get("Alive")]
        machines = len({node.get("NodeManagerAddress") for node in nodes}) or 1
        yield _Cluster(float(ray.cluster_resources().get("CPU", 1.0)), address is None, machines)
    finally:
        ray.shutdown()


def default_workers(cluster: _Cluster, scan: ScanSettings) -> int:
    """As many workers as there are cores for (`ScanSettings.cpus_per_worker` each); on this
    machine, no more than fit in its free memory."""
    workers = max(1, int(cluster.cpus // max(scan.cpus_per_worker, 0.01)))
    if cluster.local:
        # MemAvailable counts the page cache the kernel would give back, which free memory does not.
        try:
            meminfo = Path("/proc/meminfo").read_text()
        except OSError:
            return workers
        found = re.search(r"MemAvailable:\s+(\d+) kB", meminfo)
        if found:
            workers = min(workers, max(1, int(found.group(1)) * 1024 // scan.worker_memory_bytes))
    return workers


# -- the driver -------------------------------------------------------------------------------------


@dataclass
class _Task:
    item: ScanItem
    attempts: int = 0
    """Times a worker died while analysing it."""
    avoid: int | None = None
    """The worker it last killed (a retry goes elsewhere when it can)."""
    started: bool = False


@dataclass
class _Worker:
    number: int
    handle: Any
    since: float
    info: WorkerReady | None = None
    tasks: list[_Task] = field(default_factory=list)
    """Files sent to it, in the order it takes them."""


def _death_detail(error: BaseException) -> str:
    """Ray's reason a worker died, in one short line."""
    text = " ".join(str(error).split())
    found = re.search(r"Worker exit detail: (.+?\.)", text)
    return found.group(1) if found else _first_line(error)


class _Driver:
    """The state of one scan: its workers, the files queued and in flight, the counts."""

    def __init__(
        self, request: ScanRequest, store: Store, events: ScanEvents, scan: ScanSettings, cluster: _Cluster
    ) -> None:
        import ray

        self.ray = ray
        self.request, self.store, self.events, self.scan = request, store, events, scan
        if request.workers is None:
            self.workers_wanted = default_workers(cluster, scan)
            cpus = scan.cpus_per_worker
        else:
            # The cores shared out: one worker gets them all, more workers than cores get
            # fractions (every worker finds a place).
            self.workers_wanted = request.workers
            cpus = cluster.cpus / request.workers
        self.cpus_per_worker = max(0.01, round(cpus, 2))
        self.threads = max(1, int(self.cpus_per_worker))
        self.actor_class = ray.remote(ScanWorker).options(
            num_cpus=self.cpus_per_worker,
            max_restarts=0,  # the driver replaces a dead worker and decides what to retry
            max_task_retries=0,
            runtime_env={"env_vars": {**MemorySettings().environment(), **WORKER_ENV}},
        )
        self.workers: dict[int, _Worker] = {}
        self.started_workers = 0
        self.start_failures = 0
        self.waiting: dict[Any, tuple[str, _Worker]] = {}
        self.tasks_of: dict[Any, _Task] = {}
        self.todo: deque[_Task] = deque()
        self.retries: deque[_Task] = deque()
        self.job_id: int | None = None
        self.settings: WorkerReady | None = None
        self.counts = {"done": 0, "skipped": 0, "failed": 0, "no_face": 0}
        self.first_sent: float | None = None
        self.last_back: float | None = None

    # workers

    def start_worker(self) -> None:
        handle = self.actor_class.remote(
            str(self.request.models_dir or Settings().models_dir),
            str(self.store.root),
            self.store.url.render_as_string(hide_password=False) if self.store.backend != "sqlite" else None,
            self.threads,
            self.scan,
        )
        worker = _Worker(self.started_workers, handle, time.monotonic())
        self.started_workers += 1
        self.workers[worker.number] = worker
        ref = handle.ready.remote(self.request.frames, self.request.aggregation, tuple(self.request.models))
        self.waiting[ref] = ("ready", worker)

    def ready_workers(self) -> list[_Worker]:
        return [w for w in self.workers.values() if w.info is not None]

    def on_ready(self, worker: _Worker, info: WorkerReady) -> None:
        if info.error:
            raise ScanError(info.error)
        if self.settings is None:
            self.settings = info
        elif (info.frames, info.aggregation, info.models) != (
            self.settings.frames,
            self.settings.aggregation,
            self.settings.models,
        ):
            raise ScanError(
                f"the worker on {info.host} has other models than the first one "
                f"({', '.join(f'{n} {v}' for n, v in info.models.items())}); every machine needs the same models"
            )
        worker.info = info
        self.start_failures = 0
        self.events.worker_ready(info)

    def lose_worker(self, worker: _Worker, error: BaseException, while_starting: bool) -> None:
        """A worker died: charge the file it was on, requeue the others, start a replacement."""
        detail = _death_detail(error)
        self.workers.pop(worker.number, None)
        for ref in [ref for ref, (_, owner) in self.waiting.items() if owner is worker]:
            del self.waiting[ref]
            self.tasks_of.pop(ref, None)
        self.ray.kill(worker.handle)
        if while_starting:
            self.start_failures += 1
            self.events.worker_lost(None, detail, retrying=False)
            if self.start_failures >= self.scan.max_start_failures and not self.ready_workers():
                raise ScanError(f"the workers could not start ({self.start_failures} tries): {detail}")
        elif not worker.tasks:
            self.events.worker_lost(None, detail, retrying=False)
        else:
            # An actor takes its files in the order they were sent: the first one is the one
            # it was analysing; the others had not started.
            running, *queued = worker.tasks
            for task in reversed(queued):
                task.started = False
                self.todo.appendleft(task)
            running.attempts += 1
            retrying = running.attempts < self.scan.attempts
            self.events.worker_lost(running.item, detail, retrying)
            if retrying:
                running.avoid, running.started = worker.number, False
                self.retries.append(running)
            else:
                reason = (
                    f"its worker died {running.attempts} times while analysing it (out of memory, killed, "
                    f"or a crash in a library); the last time: {detail}"
                )
                self.record_failure(running.item, reason, running.attempts)
        if self.todo or self.retries or any(kind == "file" for kind, _ in self.waiting.values()):
            self.start_worker()

    # files

    def record_failure(self, item: ScanItem, reason: str, attempts: int) -> None:
        assert self.job_id is not None
        self.store.record_job_file(JobFile(self.job_id, item.path, attempts), "failed", error=reason)
        self.finish(FileOutcome(item, "failed", error=reason, attempts=attempts))

    def finish(self, outcome: FileOutcome) -> None:
        self.counts[outcome.status] += 1
        if outcome.verdict == "no_face":
            self.counts["no_face"] += 1
        self.last_back = time.monotonic()
        self.events.finished(outcome)

    def next_task(self, worker: _Worker) -> _Task | None:
        others = [w for w in self.workers.values() if w is not worker]
        for task in list(self.retries):
            # Elsewhere than where it died, unless there is no elsewhere.
            if task.avoid != worker.number or not others:
                self.retries.remove(task)
                return task
        return self.todo.popleft() if self.todo else None

    def dispatch(self) -> None:
        for worker in self.ready_workers():
            while len(worker.tasks) < self.scan.in_flight_per_worker:
                task = self.next_task(worker)
                if task is None:
                    return
                assert self.job_id is not None
                generator = worker.handle.analyze.remote(self.job_id, task.item, task.attempts + 1)
                worker.tasks.append(task)
                self.waiting[generator] = ("file", worker)
                self.tasks_of[generator] = task
                if self.first_sent is None:
                    self.first_sent = time.monotonic()

    def on_file_event(self, generator: Any, worker: _Worker) -> None:
        task = self.tasks_of[generator]
        unrecorded = ""
        try:
            value = self.ray.get(next(generator))
        except StopIteration:
            value, unrecorded = None, "the worker returned no result"
        except self.ray.exceptions.RayTaskError as error:  # raised in the worker: it recorded nothing
            cause = getattr(error, "cause", None) or error
            if isinstance(cause, StoreError):
                raise StoreError(str(cause)) from None
            value, unrecorded = None, f"unexpected error ({type(cause).__name__}: {_first_line(cause)})"
        except self.ray.exceptions.RayError as error:  # the worker died (or is out of reach)
            self.lose_worker(worker, error, while_starting=False)
            return
        if isinstance(value, Started):
            task.started = True
            self.events.started(task.item, value, task.attempts + 1)
            return
        del self.waiting[generator]
        del self.tasks_of[generator]
        worker.tasks.remove(task)
        if value is None:
            self.record_failure(task.item, unrecorded, task.attempts + 1)
        else:
            self.finish(value)

    def files_in_flight(self) -> bool:
        return any(kind == "file" for kind, _ in self.waiting.values())

    def wait_timeout(self) -> float | None:
        """No deadline while a worker is working; else until the oldest start's deadline."""
        if self.ready_workers():
            return None
        starting = [w.since for w in self.workers.values() if w.info is None]
        if not starting:
            raise ScanError("no worker is left to analyse the remaining files")
        return max(0.0, min(starting) + self.scan.worker_start_timeout_s - time.monotonic())

    def run(self, items: list[ScanItem], problems: list[FileOutcome], job_name: str) -> None:
        self.todo.extend(_Task(item) for item in items)
        for _ in range(self.workers_wanted):
            self.start_worker()
        while self.todo or self.retries or self.files_in_flight():
            self.dispatch()
            timeout = self.wait_timeout()
            ready, _ = self.ray.wait(list(self.waiting), num_returns=1, timeout=timeout)
            if not ready:
                raise ScanError(
                    f"no worker started in {self.scan.worker_start_timeout_s:.0f} s (is there room on the "
                    f"cluster for a worker of {self.cpus_per_worker:g} CPU and about "
                    f"{self.scan.worker_memory_bytes / 1024**3:.1f} GB?)"
                )
            kind, worker = self.waiting[ready[0]]
            if kind == "file":
                self.on_file_event(ready[0], worker)
                continue
            del self.waiting[ready[0]]
            try:
                info = self.ray.get(ready[0])
            except self.ray.exceptions.RayError as error:
                self.lose_worker(worker, error, while_starting=True)
                continue
            self.on_ready(worker, info)
            if self.job_id is None:
                self.start_job(items, problems, job_name)

    def start_job(self, items: list[ScanItem], problems: list[FileOutcome], job_name: str) -> None:
        assert self.settings is not None
        settings = {
            "frames": self.settings.frames,
            "aggregation": self.settings.aggregation,
            "models": self.settings.models,
            "workers": self.workers_wanted,
            "address": self.request.address or "local",
            "paths": [str(p) for p in self.request.paths],
        }
        self.job_id = self.store.start_job(job_name, settings, len(items) + len(problems)).id
        self.events.job_started(self.job_id, len(items) + len(problems))
        for problem in problems:
            self.record_failure(problem.item, problem.error, 1)

    def memory(self) -> dict[int, WorkerMemory]:
        workers = self.ready_workers()
        try:
            peaks = self.ray.get([w.handle.memory.remote() for w in workers], timeout=60)
        except self.ray.exceptions.RayError:
            return {}
        return {w.info.pid: peak for w, peak in zip(workers, peaks) if w.info is not None}

    def stop_workers(self) -> None:
        for worker in list(self.workers.values()):
            self.ray.kill(worker.handle)


def run_scan(
    request: ScanRequest,
    store: Store,
    events: ScanEvents | None = None,
    scan: ScanSettings = ScanSettings(),
    measure_memory: bool = False,
    stops: StopSignals | None = None,
) -> ScanReport:
    """Analyse every file `request` names on Ray into `store`, as a scan job.

    Returns a report (also when stopped by Ctrl-C or SIGTERM: status 'interrupted'); raises
    `ScanError` or `StoreError` when the scan cannot start or go on (the job, if it was
    created, is marked failed with the message). Ctrl-C and SIGTERM are handled by `stops`,
    left saving when this returns (a program that ends after the scan passes its own, so a
    press while it writes its outputs or exits is ignored); by default, one installed for the
    scan and put back after it."""
    events = events or ScanEvents()
    if not request.paths:
        raise ScanError("nothing to scan: give folders, files or lists of paths")
    if request.workers is not None and request.workers < 1:
        raise ScanError(f"workers must be at least 1, not {request.workers}")
    items, problems = find_media(request.paths, scan=scan)
    items, unreadable = readable(items)
    problems += unreadable
    if not items:  # said without starting Ray, and no job is recorded
        for problem in problems:
            events.finished(problem)
        if unreadable:
            raise ScanError("none of the files given can be read: nothing to scan")
        raise ScanError("no image or video to scan in the paths given")
    name = request.name.strip() or default_job_name(request.paths)
    own_stops = stops is None
    stops = stops or StopSignals()
    stops.install()
    try:
        return _run_on_ray(request, store, events, scan, measure_memory, stops, items, problems, name)
    finally:
        stops.saving = True
        if own_stops:
            stops.restore()


def _run_on_ray(
    request: ScanRequest,
    store: Store,
    events: ScanEvents,
    scan: ScanSettings,
    measure_memory: bool,
    stops: StopSignals,
    items: list[ScanItem],
    problems: list[FileOutcome],
    name: str,
) -> ScanReport:
    started = time.monotonic()
    status, message = "finished", ""
    driver: _Driver | None = None
    peaks: dict[int, WorkerMemory] = {}
    try:
        with ray_session(request.address, scan, stops) as cluster:
            if store.backend == "sqlite" and cluster.machines > 1:
                raise ScanError(
                    f"the Ray cluster spans {cluster.machines} machines but the history is SQLite on this one; "
                    "set DEEPFAKE_DATABASE_URL to a PostgreSQL database and DEEPFAKE_DATA_HOME to a folder every "
                    "machine shares"
                )
            driver = _Driver(request, store, events, scan, cluster)
            try:
                driver.run(items, problems, name)
                if measure_memory:
                    peaks = driver.memory()
            except KeyboardInterrupt:
                # One not raised by `stops` is a stop too. The status is settled below, so a
                # further stop landing in this block changes nothing.
                stops.stopped = True
            except PipelineError as error:
                status, message = "failed", str(error)
                raise
            finally:
                stops.saving = True  # from here on, a press cannot cut the saving short
                if stops.stopped and status == "finished":
                    status, message = "interrupted", "stopped (Ctrl-C or SIGTERM); run the same scan again to resume"
                driver.stop_workers()
                if driver.job_id is not None:
                    store.finish_job(driver.job_id, status, message)
    except KeyboardInterrupt:  # while Ray started, before any job existed: nothing to save
        stops.saving = True
        status = "interrupted"
    if driver is None:
        return ScanReport(None, status, len(items) + len(problems), 0, 0, 0, 0, 0.0, time.monotonic() - started, 0, 0)
    counts = driver.counts
    first_sent = driver.first_sent or time.monotonic()
    return ScanReport(
        driver.job_id,
        status,
        len(items) + len(problems),
        counts["done"],
        counts["skipped"],
        counts["failed"],
        counts["no_face"],
        max(0.0, (driver.last_back or first_sent) - first_sent),
        first_sent - started,
        driver.workers_wanted,
        driver.started_workers,
        peaks,
    )


# -- outputs ------------------------------------------------------------------------------------------

CSV_COLUMNS = ("path", "status", "verdict", "fake_probability", "file", "sha256", "history_id", "error", "attempts")


@dataclass(frozen=True)
class _Row:
    path: str
    status: str
    analysis_id: int | None
    error: str
    attempts: int
    fake_probability: float | None
    verdict: str


def _ranked(store: Store, job_id: int) -> list[_Row]:
    """A job's files, the most suspicious first: results by fake probability, then files with no
    face, then files that failed."""
    summaries = {s.id: s for s in store.summaries(HistoryFilter(job_id=job_id))}
    rows = []
    for entry in store.job_files(job_id):
        summary = summaries.get(entry.analysis_id) if entry.analysis_id is not None else None
        rows.append(
            _Row(
                entry.path,
                entry.status,
                entry.analysis_id,
                entry.error,
                entry.attempts,
                summary.fake_probability if summary else None,
                summary.verdict if summary else "",
            )
        )
    return sorted(
        rows, key=lambda r: (r.status == "failed", r.fake_probability is None, -(r.fake_probability or 0.0), r.path)
    )


def _atomic_write(path: Path, write: Any) -> None:
    with whole_file(path) as partial, partial.open("w", encoding="utf-8", newline="") as handle:
        write(handle)


def write_json(store: Store, job_id: int, path: Path) -> None:
    """A job's results as a JSON list, the most suspicious first: each stored result as
    `analyze --json` writes it, with `path`, `status` and `history_id`; a failed file as
    `{"file", "path", "status": "failed", "error"}`. Written atomically."""

    def write(handle: Any) -> None:
        handle.write("[")
        for number, row in enumerate(_ranked(store, job_id)):
            record = store.get(row.analysis_id) if row.analysis_id is not None else None
            if record is None:
                entry: dict[str, Any] = {"file": Path(row.path).name, "path": row.path, "status": row.status}
                entry["error"] = row.error or "the result was deleted from the history"
            else:
                entry = {"path": row.path, "status": row.status, "history_id": record.id, **record.result.to_json()}
            handle.write(("," if number else "") + "\n" + json.dumps(entry, indent=2))
        handle.write("\n]\n")

    _atomic_write(path, write)


def write_csv(store: Store, job_id: int, path: Path) -> None:
    """A job's files as CSV, the most suspicious first, with each model's score."""
    job = store.job(job_id)
    models = list(job.settings.get("models", {})) if job else []

    def write(handle: Any) -> None:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow([*CSV_COLUMNS, *models])
        for row in _ranked(store, job_id):
            record = store.get(row.analysis_id) if row.analysis_id is not None else None
            result = record.result if record else None
            writer.writerow(
                [
                    row.path,
                    row.status,
                    row.verdict,
                    "" if row.fake_probability is None else f"{row.fake_probability:.4f}",
                    result.file if result else Path(row.path).name,
                    result.sha256 if result else "",
                    row.analysis_id or "",
                    row.error,
                    row.attempts,
                    *(f"{result.model_scores[m]:.4f}" if result and m in result.model_scores else "" for m in models),
                ]
            )

    _atomic_write(path, write)
