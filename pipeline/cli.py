"""Command line: `python -m pipeline analyze|bench|prepare|train|train-ensemble|evaluate`.

Thin by design: parse arguments, call `pipeline`, print. A `PipelineError` becomes one line on
stderr and a non-zero exit; it never shows a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from pipeline.config import Settings
from pipeline.errors import PipelineError

EXIT_ERROR = 1
EXIT_NO_FACE = 3


def import_tensorflow_quietly() -> None:
    """Import TensorFlow with its start-up chatter hidden.

    TensorFlow 2.21 prints C++ log lines (oneDNN notice, absl warning) to stderr before any log
    level applies, so stderr is pointed at /dev/null for the import alone. An import error is
    still raised as usual. Under another Keras backend (KERAS_BACKEND=jax on a GPU machine without
    TensorFlow, for training) there is nothing to import.
    """
    if os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow":
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _progress_bar(label: str) -> tuple[Callable[[str, int, int], None], Callable[[], None]]:
    from tqdm import tqdm

    bar = tqdm(total=1, desc=label, unit="step", file=sys.stderr, leave=False, dynamic_ncols=True)

    def update(stage: str, done: int, total: int) -> None:
        bar.set_description(f"{label}: {stage}")
        bar.total = max(total, 1)
        bar.n = min(done, bar.total)
        bar.refresh()

    return update, bar.close


def cmd_analyze(args: argparse.Namespace) -> int:
    from pipeline.analyze import Engine
    from pipeline.report import write_gradcam_pictures

    settings = Settings() if args.models_dir is None else Settings(models_dir=args.models_dir)
    engine = Engine(settings)
    results = []
    failed = no_face = False
    for path in args.files:
        update, close = _progress_bar(path.name)
        try:
            analysis = engine.analyze(
                path,
                frames=args.frames,
                aggregation=args.aggregation,
                models=args.models.split(",") if args.models else None,
                progress=update,
            )
        except PipelineError as error:
            close()
            print(f"error: {path}: {error}", file=sys.stderr)
            failed = True
            continue
        close()
        result = analysis.result
        results.append(result.to_json())
        if result.verdict == "no_face":
            print(f"{path}: no_face: {result.reason}", file=sys.stderr)
            no_face = True
        probability = "-" if result.fake_probability is None else f"{result.fake_probability:.3f}"
        models = " ".join(f"{k}={v:.3f}" for k, v in result.model_scores.items())
        print(f"{path}\t{result.verdict}\t{probability}\t{models}\t({result.timing['total']:.1f} s)")
        if args.cam:
            for written in write_gradcam_pictures(engine.detector, analysis, args.cam):
                print(f"  grad-cam: {written}", file=sys.stderr)
    if args.json:
        payload = results[0] if len(args.files) == 1 and results else results
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return EXIT_ERROR if failed else EXIT_NO_FACE if no_face else 0


def cmd_bench(args: argparse.Namespace) -> int:
    from pipeline.bench import run_benchmark

    print(run_benchmark(args.videos, frames=args.frames, repeat=args.repeat, memory_video=args.memory_video, memory_minutes=args.memory_minutes))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipeline", description="Deepfake analysis engine.")
    commands = parser.add_subparsers(dest="command", required=True)

    analyze = commands.add_parser("analyze", help="score the faces in images or videos")
    analyze.add_argument("files", nargs="+", type=Path)
    analyze.add_argument("--json", type=Path, help="write the result(s) as JSON to this file")
    analyze.add_argument("--frames", type=int, default=None, help="frames to sample from a video (default 32)")
    analyze.add_argument("--cam", type=Path, help="write Grad-CAM pictures of the most suspicious faces here")
    analyze.add_argument("--aggregation", default=None, help="mean, max_face_mean or confident")
    analyze.add_argument("--models", default=None, help="comma-separated ensemble members to use")
    analyze.add_argument("--models-dir", type=Path, default=None, help="folder with ensemble.json")
    analyze.set_defaults(run=cmd_analyze)

    bench = commands.add_parser("bench", help="time each stage on videos and print a table")
    bench.add_argument("videos", nargs="*", type=Path, help="videos (default: the shared 1080p ones)")
    bench.add_argument("--frames", type=int, default=32)
    bench.add_argument("--repeat", type=int, default=2)
    bench.add_argument("--memory-video", type=Path, default=None, help="also measure peak memory on this long video (made by looping the first video if missing)")
    bench.add_argument("--memory-minutes", type=float, default=5.0, help="length of the long video to make")
    bench.set_defaults(run=cmd_bench)

    from pipeline import training_cli  # train, prepare, evaluate live with the training code

    training_cli.add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import_tensorflow_quietly()
    try:
        return int(args.run(args))
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
