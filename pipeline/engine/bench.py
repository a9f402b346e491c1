"""`python -m pipeline bench`: time each stage of the engine on real videos and measure peak
memory on a long one. Prints a Markdown table (benchmarks/README.md keeps the figures)."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import cv2

from pipeline.config import FaceSettings, Settings, cache_dir, shared_data_dir
from pipeline.engine.analyze import STAGES as ANALYSIS_STAGES
from pipeline.engine.ensemble import Ensemble
from pipeline.engine.faces import Box, FaceFinder, crop_box_for, crop_square, iou
from pipeline.engine.media import read_frames, sha256_file
from pipeline.files import whole_file

STAGES = (*ANALYSIS_STAGES, "total")


def default_videos() -> list[Path]:
    """The shared full-scene 1080p DFDC videos."""
    root = shared_data_dir() / "videos"
    rows = (root / "metadata.csv").read_text().splitlines()[1:]
    return [root / r.split(",")[0] for r in rows if r.endswith(",dfdc")]


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}"


def make_long_video(source: Path, target: Path, minutes: float) -> Path:
    """A long 1080p video made by looping a short one (for the memory measurement)."""
    if target.exists():
        return target
    capture = cv2.VideoCapture(str(source))
    fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok or len(frames) >= 60:
            break
        frames.append(frame)
    capture.release()
    height, width = frames[0].shape[:2]
    with whole_file(target) as partial:
        writer = cv2.VideoWriter(str(partial), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
        for i in range(round(minutes * 60 * fps)):
            # Ping-pong through the clip so consecutive frames stay continuous.
            cycle = i % (2 * len(frames) - 2)
            writer.write(frames[cycle if cycle < len(frames) else 2 * len(frames) - 2 - cycle])
        writer.release()
    return target


def peak_memory_mb(video: Path, frames: int) -> dict[str, float]:
    """Peak resident memory of a fresh process that loads the engine and analyses `video`.

    Read from /proc/self/status (VmHWM, the high-water mark of this address space): getrusage's
    ru_maxrss survives exec on Linux, so a child would report its parent's peak. VmHWM counts the
    library pages the process touched, and how many the kernel maps in varies with the page
    cache (by 0.2 GB on one machine within an hour), so the memory of the process's own
    (RssAnon), which has no high-water mark, is sampled too: the figure to compare across runs.
    """
    code = (
        "import json, re, threading, time\n"
        "from pathlib import Path\n"
        "def status(field):\n"
        "    return int(re.search(field + r':\\s+(\\d+)', Path('/proc/self/status').read_text()).group(1)) / 1024\n"
        "def peak():\n"
        "    return status('VmHWM')\n"
        "private = [0.0]\n"
        "def watch():\n"
        "    while True:\n"
        "        private[0] = max(private[0], status('RssAnon'))\n"
        "        time.sleep(0.005)\n"
        "threading.Thread(target=watch, daemon=True).start()\n"
        "from pipeline.engine.analyze import Engine\n"
        "engine = Engine(); engine.load()\n"
        "loaded = peak()\n"
        f"result = engine.analyze(Path({str(video)!r}), frames={frames}).result\n"
        "import sys\n"
        "print(json.dumps({'after_load_mb': loaded, 'peak_mb': peak(), 'seconds': result.timing['total'], "
        "'faces': sum(len(f.faces) for f in result.frames), 'jax': 'jax' in sys.modules, 'private_mb': private[0]}))\n"
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def seed_style_analyze(path: Path, frames: int, finder: FaceFinder, ensemble: Ensemble, settings: FaceSettings) -> int:
    """Analyse a video the way the project's seed did, as the baseline `bench --scan` measures
    against: OpenCV decodes and converts every frame, MTCNN runs on each sampled frame at full
    resolution one frame at a time (`finder` should not downscale), and each face is scored
    alone by each model. Returns the faces found."""
    capture = cv2.VideoCapture(str(path))
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    wanted = {round(i * (count - 1) / max(frames - 1, 1)) for i in range(frames)} if count > 0 else set()
    index = faces = 0
    try:
        while True:
            ok, bgr = capture.read()
            if not ok:
                break
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)  # every frame, as the seed did
            if index in wanted:
                for detection in finder.detect([rgb])[0]:
                    crop = crop_square(rgb, crop_box_for(detection.box, settings), settings.crop_size)
                    for name in ensemble.member_names:
                        ensemble.score(crop[None], [name])
                    faces += 1
            index += 1
    finally:
        capture.release()
    return faces


def portrait_photo(target: Path) -> Path:
    """A 1024 x 1024 JPEG portrait (a shared FFHQ photo enlarged): the photo timing's input."""
    if not target.exists():
        source = sorted((shared_data_dir() / "swap-faces" / "real").glob("*.jpg"))[0]
        picture = cv2.resize(cv2.imread(str(source)), (1024, 1024), interpolation=cv2.INTER_CUBIC)
        target.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(target), picture, [cv2.IMWRITE_JPEG_QUALITY, 92])
    return target


RECALL_IOU = 0.4
"""A reference face counts as found when one of the engine's faces overlaps it this much."""


def reference_faces(video: Path, frames: int, finder: FaceFinder) -> list[list[Box]]:
    """Boxes MTCNN finds at full resolution in each sampled frame of `video` (the slow way the
    engine's fast pass is measured against). Cached by the video's hash: about 40 s a 1080p
    clip on 2 cores."""
    key = f"{sha256_file(video)[:16]}-{frames}-{hash_settings(finder.settings)}"
    cached = cache_dir() / "bench" / f"reference-faces-{key}.json"
    if cached.exists():
        return [[tuple(box) for box in boxes] for boxes in json.loads(cached.read_text())]
    _, sampled = read_frames(video, frames=frames)
    boxes = [[d.box for d in finder.detect([frame.rgb])[0]] for frame in sampled]
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_text(json.dumps(boxes))
    return boxes


def hash_settings(settings: FaceSettings) -> str:
    return hashlib.sha256(json.dumps(asdict(settings), sort_keys=True).encode()).hexdigest()[:8]


def recall(found: list[list[Box]], reference: list[list[Box]]) -> tuple[int, int]:
    """(reference faces the engine found, reference faces) over the sampled frames."""
    hits = sum(
        1
        for boxes, wanted in zip(found, reference, strict=True)
        for box in wanted
        if any(iou(box, b) >= RECALL_IOU for b in boxes)
    )
    return hits, sum(len(wanted) for wanted in reference)


def run_benchmark(
    videos: list[Path], frames: int = 32, repeat: int = 2, memory_video: Path | None = None, memory_minutes: float = 5.0
) -> str:
    """Median seconds per stage for each video over `repeat` runs (after one warm-up), face
    recall against full-resolution MTCNN, and the peak memory of analysing a long 1080p video.
    Returns a Markdown report."""
    from pipeline.engine.analyze import Engine

    videos = videos or default_videos()
    clock = time.perf_counter()
    engine = Engine(Settings())
    engine.load()  # now, timed separately
    load_seconds = time.perf_counter() - clock
    engine.analyze(videos[0], frames=frames)  # warm-up: first calls trace the graphs
    lines = [
        f"Machine: {machine()}. Frames sampled per video: {frames}; median of {repeat} runs after one warm-up.",
        f"Loading MTCNN, the ensemble and the CLIP encoder once per process: {load_seconds:.1f} s (not counted below).",
        "",
        "| video | size | faces | found / full-res faces | " + " | ".join(f"{s} (s)" for s in STAGES) + " |",
        "|---|---|---|---|" + "---|" * len(STAGES),
    ]
    totals = []
    found_total = wanted_total = 0
    full_resolution = FaceFinder(replace(engine.settings.faces, detect_max_side=1_000_000))
    for video in videos:
        runs = [engine.analyze(video, frames=frames).result for _ in range(repeat)]
        timing = {s: statistics.median(r.timing[s] for r in runs) for s in STAGES}
        totals.append(timing["total"])
        found, wanted = recall(
            [[tuple(face.box) for face in frame.faces] for frame in runs[0].frames],
            reference_faces(video, frames, full_resolution),
        )
        found_total, wanted_total = found_total + found, wanted_total + wanted
        lines.append(
            f"| {video.name} | {runs[0].width}x{runs[0].height} | {runs[0].face_count} | {found}/{wanted} | "
            + " | ".join(f"{timing[s]:.2f}" for s in STAGES)
            + " |"
        )
    share = found_total / wanted_total if wanted_total else 1.0
    lines += [
        "",
        f"Median end-to-end time per video: {statistics.median(totals):.2f} s (target: 8 s).",
        f"Face recall against MTCNN at full resolution on the same frames: {found_total}/{wanted_total} = "
        f"{100 * share:.1f}% (target: 95%).",
    ]
    photo = portrait_photo(cache_dir() / "bench" / "portrait_1024.jpg")
    engine.analyze(photo)  # warm-up at this size
    photo_runs = [engine.analyze(photo).result.timing["total"] for _ in range(max(3, repeat))]
    lines.append(
        f"One photo ({photo.name}, 1024x1024, one face), warm: median {statistics.median(photo_runs):.2f} s "
        "(target: 1.5 s)."
    )
    per_face = runs[0].model_seconds_per_face
    lines.append(
        "Model inference per face (batched): " + ", ".join(f"{m} {s * 1000:.1f} ms" for m, s in per_face.items()) + "."
    )
    if memory_video is not None:
        long_video = make_long_video(videos[0], memory_video, memory_minutes)
        memory = peak_memory_mb(long_video, frames)
        lines += [
            "",
            f"Peak resident memory (VmHWM) analysing {long_video.name} ({memory_minutes:g} min, 1080p) in a fresh process: "
            f"{memory['peak_mb']:.0f} MB (after loading the models: {memory['after_load_mb']:.0f} MB; "
            f"analysis took {memory['seconds']:.1f} s, {memory['faces']} faces). Target: under 1500 MB. "
            f"Of its own (RssAnon, sampled every 5 ms; no library pages, which vary with the page cache): "
            f"{memory['private_mb']:.0f} MB at most.",
        ]
        if memory["jax"]:
            # TensorFlow Lite's converter imports jax whenever it is installed (about 0.14 GB).
            lines.append(
                "This environment has jax (a development package, for training on Keras's JAX backend), which "
                "TensorFlow loads whenever it is installed: an install of requirements.txt alone peaks lower."
            )
    return "\n".join(lines)
