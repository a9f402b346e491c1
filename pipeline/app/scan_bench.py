"""`python -m pipeline bench --scan`: throughput of a scan with 1 and 2 workers against the same
files analysed in one process (`analyze`, and the dashboard's full path: analysis, pictures,
explanation maps, history) and against the seed-style way; peak memory of each worker.
Prints a Markdown report (benchmarks/README.md keeps the figures)."""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

from pipeline.app.pictures import collect
from pipeline.app.scan import ScanRequest, WorkerMemory, find_media, peak_memory_mb, run_scan
from pipeline.app.service import AnalysisRequest, AnalysisService
from pipeline.app.store import Store
from pipeline.config import ScanSettings, Settings, shared_data_dir
from pipeline.engine.bench import machine, seed_style_analyze
from pipeline.engine.media import probe

SCENE_MIN_HEIGHT = 720
"""A video this tall (on its shorter side) is a full scene; smaller ones are face-crop clips."""


@dataclass(frozen=True)
class Way:
    """One way of analysing the files, measured."""

    name: str
    files: int
    seconds: float
    """Analysing the files, models already loaded."""
    startup_seconds: float
    note: str = ""
    by_kind: dict[str, float] | None = None
    """Seconds per file, by kind of file (one-process ways only: a scan's files overlap)."""

    @property
    def per_minute(self) -> float:
        return 60.0 * self.files / self.seconds if self.seconds else 0.0


def default_files() -> list[Path]:
    """Every video in the shared `videos/` folder (6 full-scene 1080p clips, 22 face crops)."""
    items, _ = find_media([shared_data_dir() / "videos"])
    return [Path(item.path) for item in items]


def kind_of(path: Path) -> str:
    """'full scene' or 'face crop' (by the video's size)."""
    info = probe(path)
    return "full scene" if min(info.width, info.height) >= SCENE_MIN_HEIGHT else "face crop"


def _timed(files: list[Path], analyse: object) -> tuple[float, dict[str, float]]:
    """Total seconds of `analyse(path)` over the files, and the mean seconds per file by kind."""
    per_kind: dict[str, list[float]] = {}
    for path in files:
        clock = time.perf_counter()
        analyse(path)  # type: ignore[operator]
        per_kind.setdefault(kind_of(path), []).append(time.perf_counter() - clock)
    total = sum(sum(times) for times in per_kind.values())
    return total, {kind: sum(times) / len(times) for kind, times in sorted(per_kind.items())}


def _in_one_process(files: list[Path], frames: int, seed: bool) -> tuple[list[Way], float]:
    """`analyze` and the dashboard's path (and the seed-style way) in this process; its peak
    memory."""
    from pipeline.engine.analyze import Engine
    from pipeline.engine.faces import FaceFinder

    clock = time.perf_counter()
    engine = Engine(Settings())
    service = AnalysisService(engine)
    engine.ensemble, engine.face_finder  # noqa: B018  (load now, timed separately)
    load = time.perf_counter() - clock
    # Warm-up: the first calls trace the graphs (scoring, and the explanation maps a worker makes).
    collect(engine.ensemble, engine.analyze(files[0], frames=frames))
    ways = []
    seconds, by_kind = _timed(files, lambda path: engine.analyze(path, frames=frames))
    ways.append(Way("`analyze`, one process", len(files), seconds, load, "verdicts only", by_kind))
    with tempfile.TemporaryDirectory(prefix="bench-history-") as home:
        store = Store(Path(home))
        request = AnalysisRequest(frames, engine.ensemble.spec.aggregation)
        seconds, by_kind = _timed(files, lambda path: service.analyze(path, request, store))
        store.close()
    ways.append(
        Way(
            "one process, what a scan worker does",
            len(files),
            seconds,
            load,
            "+ pictures, explanation maps, history",
            by_kind,
        )
    )
    if seed:
        faces = replace(engine.settings.faces, detect_max_side=1_000_000)
        finder = FaceFinder(faces)
        seconds, by_kind = _timed(files, lambda path: seed_style_analyze(path, frames, finder, engine.ensemble, faces))
        ways.append(
            Way(
                "seed-style, one process",
                len(files),
                seconds,
                load,
                "OpenCV reads every frame, full-resolution MTCNN, one face at a time",
                by_kind,
            )
        )
    return ways, peak_memory_mb()


def run_scan_benchmark(
    files: list[Path] | None = None, frames: int = 32, workers: tuple[int, ...] = (1, 2), seed: bool = True
) -> str:
    """Measure every way on `files` (default: the shared videos) and return a Markdown report."""
    files = files or default_files()
    load_before = os.getloadavg()
    scans: list[Way] = []
    memory: dict[int, list[WorkerMemory]] = {}
    busy: dict[int, float] = {}
    # The scans first, while this process has no models loaded (its workers are other processes).
    for count in workers:
        with tempfile.TemporaryDirectory(prefix="bench-scan-") as home:
            store = Store(Path(home))
            report = run_scan(ScanRequest(tuple(files), frames=frames, workers=count), store, measure_memory=True)
            store.close()
        scans.append(
            Way(
                f"`scan --workers {count}`",
                report.done + report.skipped + report.failed,
                report.seconds,
                report.startup_seconds,
                "+ pictures, explanation maps, history",
            )
        )
        memory[count] = sorted(report.memory.values(), key=lambda m: m.peak_mb)
        busy[count] = sum(m.cpu_seconds for m in memory[count]) / report.seconds if report.seconds else 0.0
    local, driver_peak = _in_one_process(files, frames, seed)
    load_after = os.getloadavg()
    ways = local + scans
    baseline = next((w for w in ways if w.name.startswith("seed")), None)
    lines = [
        f"Machine: {machine()}. {len(files)} files, {frames} frames sampled per video. Load average (1, 5, 15 min) "
        f"before: {', '.join(f'{v:.1f}' for v in load_before)}; after: {', '.join(f'{v:.1f}' for v in load_after)}.",
        "",
        "| way | files | seconds | files per minute | vs seed-style | start-up (s) | does |",
        "|---|---|---|---|---|---|---|",
    ]
    for way in ways:
        ratio = f"{way.per_minute / baseline.per_minute:.1f}x" if baseline and baseline.per_minute else "-"
        lines.append(
            f"| {way.name} | {way.files} | {way.seconds:.1f} | {way.per_minute:.1f} | {ratio} | "
            f"{way.startup_seconds:.1f} | {way.note} |"
        )
    by_count = {int(w.name.split()[-1].rstrip("`")): w for w in scans}
    if 1 in by_count and 2 in by_count and by_count[1].per_minute:
        lines += ["", f"2 workers / 1 worker: {by_count[2].per_minute / by_count[1].per_minute:.2f}x."]
    lines += [
        "",
        "Cores the workers kept busy (their CPU time over the scan's time): "
        + "; ".join(f"{count} worker{'s' if count != 1 else ''}: {cores:.2f}" for count, cores in busy.items())
        + f" of {os.cpu_count()}.",
    ]
    kinds = sorted({kind for way in local for kind in (way.by_kind or {})})
    if kinds:
        lines += [
            "",
            "Seconds per file in one process, by kind of file:",
            "",
            "| way | " + " | ".join(kinds) + " |",
            "|---|" + "---|" * len(kinds),
        ]
        lines += [
            f"| {way.name} | " + " | ".join(f"{(way.by_kind or {}).get(k, 0.0):.2f}" for k in kinds) + " |"
            for way in local
        ]
    lines += [
        "",
        "Peak memory per worker, VmHWM (private peak, RssAnon): "
        + "; ".join(
            f"{count} worker{'s' if count != 1 else ''}: "
            + ", ".join(f"{m.peak_mb:.0f} MB ({m.private_peak_mb:.0f} MB)" for m in peaks)
            for count, peaks in memory.items()
        )
        + f". The process that ran the one-process ways: VmHWM {driver_peak:.0f} MB.",
        f"Start-up: Ray and the first worker's models (scans); loading the models once (one process). "
        f"Cores per worker: {ScanSettings().cpus_per_worker:g} unless --workers shares them out.",
    ]
    return "\n".join(lines)
