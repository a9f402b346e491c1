"""Private memory of one process that analyses the 28 shared videos one after another, as the
dashboard or a scan worker does (analysis service + history), printed after each file.

    python -m benchmarks.one_process_memory            # with the engine's allocator settings
    python -m benchmarks.one_process_memory --untuned  # without them (glibc's defaults)

Run it without MALLOC_* variables in the environment: they would set the same thing from the
start. Linux only (reads /proc/self/status). Results: benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import pipeline.engine.analyze as analyze
from pipeline.app.service import AnalysisRequest, AnalysisService
from pipeline.app.store import Store
from pipeline.config import shared_data_dir


def status_mb(field: str) -> int:
    """A memory figure of this process from /proc/self/status, in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) // 1024
    raise KeyError(field)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--untuned", action="store_true", help="leave glibc's allocator at its defaults")
    parser.add_argument("--frames", type=int, default=32)
    args = parser.parse_args()
    if args.untuned:
        analyze.tune_allocator = lambda memory: False
    files = sorted((shared_data_dir() / "videos").rglob("*.mp4"))
    service = AnalysisService(analyze.Engine())
    with tempfile.TemporaryDirectory(prefix="bench-history-") as home:
        store = Store(Path(home))
        request = AnalysisRequest(args.frames, service.ensemble.spec.aggregation)
        for number, path in enumerate(files, 1):
            service.analyze(path, request, store)
            print(
                f"{number:2d} {path.name}: {status_mb('RssAnon')} MB private, VmHWM {status_mb('VmHWM')} MB", flush=True
            )
        store.close()


if __name__ == "__main__":
    main()
