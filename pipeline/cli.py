"""Command line: `python -m pipeline analyze|scan|bench|...` (training commands: `pipeline.training.cli`).

Thin by design: parse arguments, call `pipeline`, print. Every problem with one input file
becomes one line on stderr and the other files go on; a problem with the command itself (a bad
option, an output that cannot be written) is reported before any work starts. Nothing shows a
traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.config import MediaSettings, Settings
from pipeline.engine.quiet import quiet_libraries, quiet_settings
from pipeline.errors import PipelineError
from pipeline.files import whole_file
from pipeline.signals import StopSignals

if TYPE_CHECKING:
    from pipeline.engine.analyze import Analysis, Engine

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NO_FACE = 3
EXIT_INTERRUPTED = 130

log = logging.getLogger("pipeline")


def printable(text: object) -> str:
    """`text` on one line: control characters (a newline in a file name) shown escaped."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in str(text))


def frame_count(value: str) -> int:
    """argparse type for --frames: a whole number from 1 to `MediaSettings.max_frames`."""
    limit = MediaSettings.max_frames
    try:
        frames = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if not 1 <= frames <= limit:
        raise argparse.ArgumentTypeError(f"must be between 1 and {limit}, not {frames}")
    return frames


def worker_count(value: str) -> int:
    """argparse type for --workers: a whole number, at least 1."""
    try:
        workers = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if workers < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {workers}")
    return workers


def worker_counts(value: str) -> tuple[int, ...]:
    """argparse type for a comma-separated list of worker counts."""
    return tuple(worker_count(part.strip()) for part in value.split(","))


OUTPUT_FILES = ("json", "csv", "markdown")
"""The options naming a file a command writes its results to (analyze, scan, evaluate, cross-source)."""


def check_output_file(path: Path | None) -> None:
    """Refuse, before any work, an output file that could not be written afterwards."""
    if path is None:
        return
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise PipelineError(f"cannot write {printable(path)}: it is a folder")
    if not folder.is_dir():
        raise PipelineError(f"cannot write {printable(path)}: the folder {printable(folder)} does not exist")
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise PipelineError(f"cannot write {printable(path)}: permission denied")


def check_output_folder(path: Path | None) -> None:
    """Create an output folder now, or refuse it, before any work."""
    if path is None:
        return
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise PipelineError(f"cannot create the folder {printable(path)}: {error.strerror}") from None
    if not os.access(path, os.W_OK):
        raise PipelineError(f"cannot write into {printable(path)}: permission denied")


def write_json(path: Path, payload: Any) -> None:
    """Write JSON atomically: a reader never sees half a file."""
    with whole_file(path) as partial:
        partial.write_text(json.dumps(payload, indent=2) + "\n")


def _progress_bar(label: str) -> tuple[Callable[[str, int, int], None], Callable[[], None]]:
    from tqdm import tqdm

    # Only on a terminal: in a log or a pipe, stderr holds one line per problem and nothing else.
    bar = tqdm(
        total=1,
        desc=label,
        unit="step",
        file=sys.stderr,
        leave=False,
        dynamic_ncols=True,
        disable=not sys.stderr.isatty(),
    )

    def update(stage: str, done: int, total: int) -> None:
        bar.set_description(f"{label}: {stage}")
        bar.total = max(total, 1)
        bar.n = min(done, bar.total)
        bar.refresh()

    return update, bar.close


def cmd_analyze(args: argparse.Namespace) -> int:
    from pipeline.engine.media import check_without_opening

    check_output_folder(args.cam)
    settings = Settings() if args.models_dir is None else Settings(models_dir=args.models_dir)
    # A file that cannot be read at all (a mistyped name, a folder, an empty file, a type no one
    # reads) is answered without the models, which take seconds to load; when no file can be
    # read they never load.
    unreadable: dict[Path, str] = {}
    for path in args.files:
        try:
            check_without_opening(path, settings.media)
        except PipelineError as error:
            unreadable[path] = printable(error)
            if path.is_dir():  # what the user most likely meant
                unreadable[path] += " To analyse every image and video in it, run `python -m pipeline scan` on it."
    engine: Engine | None = None
    models = args.models.split(",") if args.models else None
    if len(unreadable) < len(args.files):
        from pipeline.engine.analyze import Engine

        quiet_libraries()  # only now: a bad output or unreadable files were reported at once
        engine = Engine(settings)
        engine.check_request(args.frames, args.aggregation, models)  # a bad option fails before any file
    entries: list[dict[str, Any]] = []
    failed = no_face = False
    try:
        for path in args.files:
            shown = printable(path)
            if path in unreadable:
                analysis, explained, message = None, [], unreadable[path]
            else:
                analysis, explained, message = _analyse(engine, path, args, models)
            if message is not None:
                print(f"error: {shown}: {message}", file=sys.stderr)
                entries.append({"file": path.name, "error": message})
                failed = True
                continue
            result = analysis.result
            entries.append(result.to_json())
            if result.verdict == "no_face":
                print(f"{shown}: no_face: {result.reason}", file=sys.stderr)
                no_face = True
            probability = "-" if result.fake_probability is None else f"{result.fake_probability:.3f}"
            scores = " ".join(f"{k}={v:.3f}" for k, v in result.model_scores.items())
            print(f"{shown}\t{result.verdict}\t{probability}\t{scores}\t({result.timing['total']:.1f} s)", flush=True)
            history = result.provenance.file_history if result.provenance else None
            for caveat in (history.caveat if history else None, *analysis.caveats):
                if caveat:
                    print(f"  note: {printable(caveat)}", file=sys.stderr)
            for written in explained:
                print(f"  explanation map: {printable(written)}", file=sys.stderr)
    finally:
        args.stops.saving = True  # a press while the JSON is written cuts nothing short
        # Written even when interrupted: every finished file keeps its result.
        if args.json:
            write_json(args.json, entries[0] if len(args.files) == 1 and entries else entries)
    return EXIT_ERROR if failed else EXIT_NO_FACE if no_face else EXIT_OK


def _analyse(
    engine: Engine, path: Path, args: argparse.Namespace, models: list[str] | None
) -> tuple[Analysis | None, list[Path], str | None]:
    """(the analysis, the explanation maps written, None), or (None, [], the one-line message) when
    this file fails; a progress bar on a terminal meanwhile."""
    from pipeline.engine.explain import write_explanations

    update, close = _progress_bar(printable(path.name))
    try:
        analysis = engine.analyze(path, args.frames, args.aggregation, models, update)
        explained = write_explanations(engine.ensemble, analysis, args.cam) if args.cam else []
    except PipelineError as error:
        return None, [], printable(error)
    except Exception as error:  # a bug, or a file that breaks a library: this file only
        log.debug("analysing %s failed", path, exc_info=True)
        return None, [], printable(f"unexpected error ({type(error).__name__}: {error})")
    finally:
        close()
    return analysis, explained, None


class _LibraryChatter(io.TextIOBase):
    """Where library prints go during a scan (Ray prints a worker's death on stdout, which holds
    one line per file): into the debug log."""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        for line in text.splitlines():
            if line.strip():
                log.debug("library: %s", line)
        return len(text)


def _duration(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if minutes else f"{seconds:.1f} s"


def _scan_printer(out: Any, err: Any) -> Any:
    """The scan's events as `analyze` prints a file: one line per finished file on stdout,
    problems on stderr, a progress bar on stderr when it is a terminal."""
    from tqdm import tqdm

    from pipeline.app.scan import FileOutcome, ScanEvents, ScanItem

    class Printer(ScanEvents):
        def __init__(self) -> None:
            self.bar = tqdm(total=0, desc="scan", unit="file", file=err, dynamic_ncols=True, disable=not err.isatty())

        def say(self, line: str, stream: Any) -> None:
            with self.bar.external_write_mode(file=stream):
                print(line, file=stream, flush=True)

        def job_started(self, job_id: int, total: int) -> None:
            self.bar.total = total
            self.bar.set_description(f"scan #{job_id}")
            self.bar.refresh()

        def finished(self, outcome: FileOutcome) -> None:
            self.bar.update(1)
            shown = printable(outcome.item.shown)
            if outcome.status == "failed":
                self.say(f"error: {shown}: {printable(outcome.error)}", err)
                return
            if outcome.verdict == "no_face":
                self.say(f"{shown}: no_face: {printable(outcome.reason)}", err)
            probability = "-" if outcome.fake_probability is None else f"{outcome.fake_probability:.3f}"
            scores = " ".join(f"{k}={v:.3f}" for k, v in outcome.model_scores.items())
            when = (
                f"in the history, #{outcome.analysis_id}" if outcome.status == "skipped" else f"{outcome.seconds:.1f} s"
            )
            self.say(f"{shown}\t{outcome.verdict}\t{probability}\t{scores}\t({when})", out)

        def worker_lost(self, item: ScanItem | None, detail: str, retrying: bool) -> None:
            if item is None:
                what = "a worker stopped before it was working; starting another"
            else:
                then = "trying it again on another worker" if retrying else "it is recorded as failed"
                what = f"a worker died while analysing {printable(item.shown)}; {then}"
            self.say(f"warning: {what} ({printable(detail)})", err)

        def close(self) -> None:
            self.bar.close()

    return Printer()


def cmd_scan(args: argparse.Namespace) -> int:
    from pipeline.app.scan import ScanRequest, run_scan, write_csv, write_json
    from pipeline.app.store import Store

    store = Store()
    request = ScanRequest(
        paths=tuple(args.paths),
        frames=args.frames,
        aggregation=args.aggregation,
        models=tuple(args.models.split(",")) if args.models else (),
        workers=args.workers,
        address=args.address,
        name=args.name or "",
        models_dir=args.models_dir,
    )
    out, err = sys.stdout, sys.stderr
    printer = _scan_printer(out, err)
    try:
        with contextlib.redirect_stdout(_LibraryChatter()):
            # The program's own: the scan leaves it saving, so a press while this writes the
            # outputs cuts nothing short.
            report = run_scan(request, store, printer, stops=args.stops)
    finally:
        printer.close()
    if report.job_id is not None:
        # Written even when interrupted: every finished file keeps its result.
        if args.json:
            write_json(store, report.job_id, args.json)
        if args.csv:
            write_csv(store, report.job_id, args.csv)
    counts = f"{report.done} analysed, {report.skipped} skipped (already in the history), {report.failed} failed"
    if report.status == "interrupted":
        left = report.total - report.done - report.skipped - report.failed
        if report.job_id is None:  # stopped before the first worker was ready: no job was recorded
            print(f"scan interrupted while starting: nothing analysed, {left} not done", file=err)
        else:
            print(
                f"scan #{report.job_id} interrupted: {counts}, {left} not done; run the same command again to resume",
                file=err,
            )
        return EXIT_INTERRUPTED
    workers = f"{report.workers} worker{'s' if report.workers != 1 else ''}"
    if report.done:  # skipping is not a speed worth quoting
        workers += f" ({report.files_per_minute:.1f} files a minute)"
    print(
        f"scan #{report.job_id} finished: {report.total} files in {_duration(report.seconds)} with {workers}, "
        f"after {_duration(report.startup_seconds)} starting Ray and loading the models: {counts}",
        file=err,
    )
    return EXIT_ERROR if report.failed else EXIT_NO_FACE if report.no_face else EXIT_OK


def cmd_bench(args: argparse.Namespace) -> int:
    quiet_libraries()
    if args.scan:
        from pipeline.app.scan_bench import run_scan_benchmark

        out = sys.stdout
        with contextlib.redirect_stdout(_LibraryChatter()):
            report = run_scan_benchmark(args.videos, frames=args.frames, workers=args.workers, seed=not args.no_seed)
        print(report, file=out)
        return EXIT_OK
    from pipeline.engine.bench import run_benchmark

    print(
        run_benchmark(
            args.videos,
            frames=args.frames,
            repeat=args.repeat,
            memory_video=args.memory_video,
            memory_minutes=args.memory_minutes,
        )
    )
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """The whole command line."""
    parser = argparse.ArgumentParser(prog="python -m pipeline", description="Deepfake analysis engine.")
    commands = parser.add_subparsers(dest="command", required=True)

    analyze = commands.add_parser("analyze", help="score the faces in images or videos")
    analyze.add_argument("files", nargs="+", type=Path)
    analyze.add_argument("--json", type=Path, help="write the result(s) as JSON to this file")
    analyze.add_argument(
        "--frames",
        type=frame_count,
        default=None,
        help=f"frames to sample from a video (default {MediaSettings.frames})",
    )
    analyze.add_argument(
        "--cam", type=Path, help="write explanation maps of the most suspicious faces into this folder"
    )
    analyze.add_argument("--aggregation", default=None, help="mean, max_face_mean or confident")
    analyze.add_argument("--models", default=None, help="comma-separated ensemble members to use")
    analyze.add_argument("--models-dir", type=Path, default=None, help="folder with ensemble.json")
    analyze.set_defaults(run=cmd_analyze)

    scan = commands.add_parser(
        "scan", help="analyse every image and video under folders or in lists of paths, on Ray, into the history"
    )
    scan.add_argument(
        "paths", nargs="+", type=Path, help="folders, files, or lists of paths (.txt/.lst/.list/.csv, one per line)"
    )
    scan.add_argument(
        "--workers", type=worker_count, default=None, help="workers (default: one per core, as memory allows)"
    )
    scan.add_argument(
        "--address",
        default=None,
        help="join a Ray cluster: auto, HOST:PORT or ray://HOST:PORT (default: a local Ray instance)",
    )
    scan.add_argument(
        "--frames",
        type=frame_count,
        default=None,
        help=f"frames to sample from a video (default {MediaSettings.frames})",
    )
    scan.add_argument("--aggregation", default=None, help="mean, max_face_mean or confident")
    scan.add_argument("--models", default=None, help="comma-separated ensemble members to use")
    scan.add_argument("--models-dir", type=Path, default=None, help="folder with ensemble.json (on every machine)")
    scan.add_argument("--name", default=None, help="the scan job's name in the history")
    scan.add_argument("--json", type=Path, help="write every result as JSON, the most suspicious first")
    scan.add_argument("--csv", type=Path, help="write one row per file as CSV, the most suspicious first")
    scan.set_defaults(run=cmd_scan)  # only the workers load TensorFlow

    bench = commands.add_parser("bench", help="time each stage on videos and print a table")
    bench.add_argument("videos", nargs="*", type=Path, help="videos (default: the shared 1080p ones)")
    bench.add_argument("--frames", type=frame_count, default=MediaSettings.frames)
    bench.add_argument("--repeat", type=int, default=2)
    bench.add_argument(
        "--memory-video",
        type=Path,
        default=None,
        help="also measure peak memory on this long video (made by looping the first video if missing)",
    )
    bench.add_argument("--memory-minutes", type=float, default=5.0, help="length of the long video to make")
    bench.add_argument(
        "--scan",
        action="store_true",
        help="instead: files per minute of a scan against one process and the seed-style way "
        "(default files: every shared video)",
    )
    bench.add_argument(
        "--workers", type=worker_counts, default=(1, 2), help="with --scan: the worker counts to measure (default 1,2)"
    )
    bench.add_argument("--no-seed", action="store_true", help="with --scan: leave out the slow seed-style way")
    bench.set_defaults(run=cmd_bench)

    from pipeline.training import cli as training_cli  # prepare, train, evaluate live with the training code

    training_cli.add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit status. Made to be the program's last step: Ctrl-C and
    SIGTERM are ignored once it returns, so that neither cuts the last line or the exit short."""
    args = build_parser().parse_args(argv)
    quiet_settings()  # before any command loads OpenCV; each loads TensorFlow once its checks pass
    # `kill` stops every command as Ctrl-C does; once it has stopped, neither cuts the last line or
    # the exit short. Commands that save what they did mark it on `args.stops` (analyze, scan).
    stops = StopSignals()
    stops.install()
    args.stops = stops
    try:
        # Every command's output files, refused before any work if they could not be written after it.
        for name in OUTPUT_FILES:
            check_output_file(getattr(args, name, None))
        return int(args.run(args))
    except PipelineError as error:
        print(f"error: {printable(error)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        stops.saving = True
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        stops.ignore()
