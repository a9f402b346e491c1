"""Odd and hostile input, as a new user would try it: through the command line, the engine and
the dashboard's service and pages. Nothing may show a traceback, hang, drop the other files, or
lose a result."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import heif_factory as hf
import media_factory as mf
import numpy as np
import pytest
from PIL import Image

from pipeline.app.service import AnalysisRequest, AnalysisService, uploaded_file
from pipeline.app.store import Store
from pipeline.config import REPO_ROOT, MediaSettings
from pipeline.engine import media
from pipeline.engine.analyze import Engine
from pipeline.engine.provenance import read_provenance
from pipeline.errors import MediaError, UnsupportedMediaError
from tests.command_line import run_cli, run_python

if TYPE_CHECKING:
    from dashboard_fixtures import Media

pytest_plugins = ["dashboard_fixtures"]  # session fixtures: one engine, the shared media

NOISE = ("Traceback", "[ WARN", "WARNING:tensorflow", "retracing", "oneDNN")


def assert_quiet(stderr: str) -> None:
    """stderr holds our own lines only: no traceback, no library chatter."""
    for noise in NOISE:
        assert noise not in stderr, stderr


@pytest.fixture(scope="module")
def odd_files(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> dict[str, Path]:
    """Real odd files, made once."""
    folder = tmp_path_factory.mktemp("odd")
    face = shared_data / "gan-faces" / "real" / "cv_69000.jpg"
    files = {
        "missing": folder / "missing.jpg",
        "folder": folder / "a_folder.jpg",
        "loop": folder / "loop.jpg",
        "dangling": folder / "dangling.jpg",
        "fifo": folder / "fifo.mp4",
        "face": folder / "face.jpg",
        "newline": folder / "two\nlines.jpg",
        "wide_bmp": folder / "wide.bmp",
        "wide_png": folder / "wide.png",
        "wide_video": folder / "wide.avi",
        "lying_jpeg": mf.jpeg_claiming_size(face, folder / "lying.jpg", 8000, 8700),
        "heic": folder / "IMG_0001.HEIC",
        "notes": folder / "notes.txt",
    }
    files["heic"].write_bytes(mf.HEIC_BYTES)
    files["notes"].write_text("not media\n")
    files["folder"].mkdir()
    os.symlink(files["loop"], files["loop"])
    os.symlink(folder / "gone.jpg", files["dangling"])
    os.mkfifo(files["fifo"])
    files["face"].write_bytes(face.read_bytes())
    files["newline"].write_bytes(face.read_bytes())
    Image.new("RGB", (100_000, 1), (120, 130, 140)).save(files["wide_bmp"])
    Image.new("RGB", (2000, 1), (120, 130, 140)).save(files["wide_png"])
    writer = cv2.VideoWriter(str(files["wide_video"]), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (4000, 2))
    for i in range(12):
        writer.write(np.full((2, 4000, 3), 20 * i, np.uint8))
    writer.release()
    return files


BAD_PATHS = ("missing", "folder", "loop", "dangling", "fifo", "lying_jpeg", "heic")
GOOD_PATHS = ("face", "newline", "wide_bmp", "wide_png", "wide_video")


@pytest.fixture(scope="module")
def batch_run(
    odd_files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> tuple[subprocess.CompletedProcess[str], list]:
    """One `analyze` of every odd file, bad and good mixed, with --json."""
    out = tmp_path_factory.mktemp("json") / "out.json"
    order = [
        "missing",
        "face",
        "folder",
        "wide_bmp",
        "loop",
        "wide_png",
        "dangling",
        "wide_video",
        "fifo",
        "newline",
        "lying_jpeg",
        "heic",
    ]
    run = run_cli("analyze", *(str(odd_files[name]) for name in order), "--frames", "4", "--json", str(out))
    return run, [order, json.loads(out.read_text())]


def test_bad_paths_are_one_line_each_and_the_others_are_analysed(batch_run, odd_files: dict[str, Path]) -> None:
    run, (order, entries) = batch_run
    assert run.returncode == 1, run.stderr
    assert_quiet(run.stderr)
    errors = [line for line in run.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == len(BAD_PATHS), run.stderr
    for name, line in zip([n for n in order if n in BAD_PATHS], errors, strict=True):
        assert odd_files[name].name in line
    assert "folder, not a file" in errors[1] and "link loop" in errors[2] and "does not exist" in errors[3]
    assert "not a regular file" in errors[4] and "corrupt" in errors[5]
    assert errors[6].endswith("is a damaged HEIF picture: it has no description of its pictures (no meta box).")
    # The JSON holds every file in order: a result for each good one, an error for each bad one.
    assert [e["file"] for e in entries] == [odd_files[name].name for name in order]
    for name, entry in zip(order, entries, strict=True):
        assert ("error" in entry) == (name in BAD_PATHS), entry
    by_name = dict(zip(order, entries, strict=True))
    assert by_name["face"]["verdict"] in {"real", "fake", "uncertain"}
    for wide in ("wide_bmp", "wide_png", "wide_video"):
        assert by_name[wide]["verdict"] == "no_face"


def test_a_newline_in_a_file_name_keeps_one_line_per_file(batch_run) -> None:
    run, _ = batch_run
    lines = run.stdout.splitlines()
    assert len(lines) == len(GOOD_PATHS), run.stdout
    assert any("two\\nlines.jpg" in line for line in lines)


def test_outputs_are_checked_before_any_work(odd_files: dict[str, Path], tmp_path: Path) -> None:
    run = run_cli("analyze", str(odd_files["face"]), "--json", str(tmp_path / "no" / "such" / "folder" / "out.json"))
    assert run.returncode == 1 and run.stdout == ""
    assert run.stderr.strip().splitlines() == [
        f"error: cannot write {tmp_path}/no/such/folder/out.json: the folder {tmp_path}/no/such/folder does not exist"
    ]


@pytest.mark.parametrize("frames", ["-3", "0", "many"])
def test_a_bad_frame_count_is_refused(odd_files: dict[str, Path], frames: str) -> None:
    run = run_cli("analyze", str(odd_files["face"]), "--frames", frames)
    assert run.returncode == 2 and run.stdout == ""
    assert "argument --frames" in run.stderr and "Traceback" not in run.stderr


def test_one_failed_file_writes_one_json_object(odd_files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "one.json"
    run = run_cli("analyze", str(odd_files["missing"]), "--json", str(out))
    assert run.returncode == 1
    assert json.loads(out.read_text()) == {"file": "missing.jpg", "error": "'missing.jpg' was not found."}


_MAIN_SCRIPT = """
import sys
from pipeline.cli import main
status = main(sys.argv[1:])
print(status, "tensorflow" in sys.modules, "onnxruntime" in sys.modules)
"""


def test_files_that_cannot_be_read_are_answered_without_loading_the_models(
    odd_files: dict[str, Path], tmp_path: Path
) -> None:
    """The models and TensorFlow take seconds to load: when no file given can be read at all (or
    is of a type no one reads), `analyze` says so for each, in order, without them."""
    names = ("missing", "folder", "loop", "dangling", "fifo", "notes")
    out = tmp_path / "out.json"
    run = run_python("-c", _MAIN_SCRIPT, "analyze", *(str(odd_files[n]) for n in names), "--json", str(out))
    assert run.stdout.split() == ["1", "False", "False"], run.stderr
    assert_quiet(run.stderr)
    lines = run.stderr.strip().splitlines()
    for name, line in zip(names, lines, strict=True):
        assert line.startswith(f"error: {odd_files[name]}: "), line
    assert lines[1].endswith(
        "is a folder, not a file. To analyse every image and video in it, run `python -m pipeline scan` on it."
    )
    assert "unsupported type ('.txt')" in lines[-1]
    assert [entry["file"] for entry in json.loads(out.read_text())] == [odd_files[n].name for n in names]


def test_a_jpeg_claiming_70_megapixels_in_7_kb_is_corrupt(odd_files: dict[str, Path]) -> None:
    lying = odd_files["lying_jpeg"]
    assert lying.stat().st_size < 10_000
    with pytest.raises(MediaError, match="corrupt") as error:
        media.read_frames(lying)
    assert "8000 x 8700" in str(error.value)


_DECODE_MEMORY = """
import json, sys
from pathlib import Path
from pipeline.engine import media
def status_kb(field):
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
before = status_kb("VmRSS")
info, frames = media.read_frames(Path(sys.argv[1]))
frame = next(frames)
print(json.dumps({"growth_mb": (status_kb("VmHWM") - before) / 1024, "shape": frame.rgb.shape, "scale": frame.scale, "size": [info.width, info.height]}))
"""


def test_a_79_megapixel_png_is_decoded_no_larger_than_analysis_needs(tmp_path: Path) -> None:
    """8900 x 8900 RGB in 250 KB: the decoder needs its 237 MB once; nothing else is full size."""
    png = mf.large_png(tmp_path / "huge.png", 8900, 8900)
    assert png.stat().st_size < 400_000
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", _DECODE_MEMORY, str(png)], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    side = MediaSettings().max_decoded_side
    assert measured["size"] == [8900, 8900] and measured["shape"] == [side, side, 3]
    assert measured["scale"] == pytest.approx(side / 8900)
    assert measured["growth_mb"] < 450, measured


def test_animations_whose_headers_ask_for_too_much_are_one_line_or_sampled(tmp_path: Path) -> None:
    """A GIF's screen size (a WebP's canvas) is what a decoder allocates for every frame: one of
    3.6 gigapixels is refused before any pixel exists (still or animated); an animated one within
    the picture limit but over the video limit is refused as a video; 20,000 tiny frames are
    sampled."""
    limits = MediaSettings()
    for name, pictures in (("huge_still.gif", 1), ("huge_animated.gif", 2)):
        path = mf.raw_gif(tmp_path / name, (60000, 60000), pictures)
        with pytest.raises(MediaError, match=r"too large to decode safely.*the limit is 80.0 megapixels") as error:
            media.read_frames(path)
        assert "\n" not in str(error.value) and name in str(error.value)
    wide = mf.raw_gif(tmp_path / "wide_animated.gif", (5000, 3000), 2)
    with pytest.raises(MediaError, match="has 5000 x 3000 frames; videos up to 9.4 megapixels"):
        media.read_frames(wide, limits)
    sticker = mf.write_animation(tmp_path / "sticker.webp", [100, 100], lossless=True)
    with pytest.raises(MediaError, match="has 8000 x 8000 frames; videos up to 9.4 megapixels"):
        media.read_frames(mf.set_webp_canvas(sticker, (8000, 8000)), limits)
    with pytest.raises(MediaError, match="too large to decode safely"):
        media.read_frames(mf.set_webp_canvas(sticker, (16383, 16383)), limits)
    info, frames = media.read_frames(mf.raw_gif(tmp_path / "long.gif", (8, 8), 20_000), limits, frames=4)
    assert (info.kind, info.frame_count) == ("video", 20_000)
    assert [f.frame_number for f in frames] == [2500, 7500, 12500, 17500]


def test_damage_found_by_mutating_files_at_random_is_one_line_each(tmp_path: Path) -> None:
    """What a random mutation sweep (`benchmarks/fuzz_readers.py`) found raising a library's own
    error (an AttributeError, an IndexError, a RuntimeError: a traceback for the user), each
    made again on purpose: a video whose codec no decoder knows, a video whose colour matrix is a
    reserved code (FFmpeg's scaler refused every frame: OSError), an FLV whose second stream
    first appears at its end (PyAV's flush: IndexError), a GIF cut inside its second
    picture's header, AVIF pictures whose coded data is zeros, an AVIF animation whose time scale
    is 0 (ZeroDivisionError in Pillow), a TIFF whose first directory
    claims 900 megapixels (its metadata read on its own), a HEIC with a box of exabytes before its
    description (OSError)."""
    for name, container, codec, tag, unknown in (
        ("clip.mp4", "mp4", "libx264", b"avc1", b"qqqq"),
        ("clip.avi", "avi", "mpeg4", b"FMP4", b"QQQQ"),
        ("clip.mkv", "matroska", "libx264", b"V_MPEG4/ISO/AVC", b"V_QQQQQ/ISO/AVC"),  # V_: still a video track
    ):
        video = mf.write_video_with_ffmpeg(tmp_path / name, 12, container, codec)
        renamed = mf.rename_codec(video, tmp_path / f"renamed_{name}", tag, unknown)
        with pytest.raises(UnsupportedMediaError, match="holds video in a format this app cannot decode"):
            media.read_frames(renamed)
    # A colour matrix FFmpeg's scaler does not know (a reserved code): read as BT.601.
    odd_colour = mf.write_video_with_ffmpeg(tmp_path / "colour.ts", 24, "mpegts", "mpeg2video", colour=1)
    info, frames = media.read_frames(mf.set_mpeg2_colour_matrix(odd_colour, 65), frames=4)
    assert [(f.frame_number, mf.read_index(f.rgb)) for f in frames] == [(i, i) for i in (3, 9, 15, 21)]
    # A stream met only at the end of a 12 s FLV (its header says video only): every frame is read.
    late = mf.append_flv_audio_tag(mf.write_video_with_ffmpeg(tmp_path / "late.flv", 300, "flv", "libx264"), 11_000)
    info, frames = media.read_frames(late, frames=300)
    assert [mf.read_index(f.rgb) for f in frames] == list(range(300))
    # A GIF that ends right after its second picture's descriptor is its first picture.
    gif = mf.raw_gif(tmp_path / "two.gif", (8, 8), 2).read_bytes()
    cut = tmp_path / "cut.gif"
    cut.write_bytes(gif[: gif.rfind(b"\x2c") + 10])
    info, frames = media.read_frames(cut)
    assert info.kind == "image" and next(frames).rgb.shape == (8, 8, 3)
    pictures = [Image.fromarray(np.full((32, 32, 3), value, np.uint8)) for value in (30, 140, 250)]
    pictures[0].save(tmp_path / "still.avif")
    pictures[0].save(tmp_path / "moving.avif", save_all=True, append_images=pictures[1:], duration=100)
    with pytest.raises(MediaError, match="'still.avif' is corrupt or truncated: Failed to decode"):
        media.read_frames(mf.zero_picture_data(tmp_path / "still.avif", tmp_path / "still.avif"))
    untimed = tmp_path / "untimed.avif"
    untimed.write_bytes((tmp_path / "moving.avif").read_bytes())
    with pytest.raises(MediaError, match="'untimed.avif': could not decode any frame of this animation"):
        media.read_frames(mf.set_track_timescale(untimed, 0))
    with pytest.raises(MediaError, match="'moving.avif': could not decode any frame of this animation"):
        media.read_frames(mf.zero_picture_data(tmp_path / "moving.avif", tmp_path / "moving.avif"))
    Image.new("RGB", (96, 64), (90, 120, 150)).save(tmp_path / "page.tif")
    claiming = mf.tiff_claiming_size(tmp_path / "page.tif", tmp_path / "claiming.tif", 30000, 30000)
    with pytest.raises(MediaError, match="too large to decode safely"):
        media.read_frames(claiming)
    problems = read_provenance(claiming, "image").problems
    assert len(problems) == 1 and problems[0].startswith(
        "the metadata could not be read: Image size (900000000 pixels)"
    )
    # A box claiming a 64-bit size of exabytes before a HEIC's description: the walk stops at the
    # file's end rather than seeking where no file can be (OSError: invalid argument).
    heic = hf.write_heic(tmp_path / "photo.heic", np.zeros((16, 16, 3), np.uint8)).read_bytes()
    ftyp_size = int.from_bytes(heic[:4], "big")
    exabytes = tmp_path / "exabytes.heic"
    exabytes.write_bytes(heic[:ftyp_size] + struct.pack(">I4sQ", 1, b"free", 2**63 + 16) + heic[ftyp_size:])
    with pytest.raises(MediaError, match="'exabytes.heic' is a damaged HEIF picture: it has no description"):
        media.read_frames(exabytes)
    assert all(line.startswith("the ") for line in read_provenance(exabytes, "image").problems)


def test_a_32_bit_integer_tiff_of_8_bit_values_keeps_its_brightness(tmp_path: Path) -> None:
    values = np.tile(np.arange(256, dtype=np.int32), (8, 1))
    path = tmp_path / "int32.tif"
    Image.fromarray(values, "I").save(path)
    assert Image.open(path).mode == "I"
    rgb = media.load_image(path)
    assert np.array_equal(rgb[..., 0], values.astype(np.uint8))


def test_extreme_aspect_ratios_have_no_face_and_no_error(engine: Engine, odd_files: dict[str, Path]) -> None:
    for name in ("wide_bmp", "wide_png", "wide_video"):
        result = engine.analyze(odd_files[name], frames=4).result
        assert result.verdict == "no_face", name


def request(service: AnalysisService) -> AnalysisRequest:
    return AnalysisRequest(8, service.ensemble.spec.aggregation)


def test_the_same_file_in_two_tabs_at_once_is_analysed_and_stored_once(
    service: AnalysisService, media: Media, tmp_path: Path, counted: list[str]
) -> None:
    store = Store(tmp_path)
    outcomes, failures = [], []

    def tab() -> None:
        try:
            outcomes.append(service.analyze(media.image, request(service), store))
        except BaseException as error:
            failures.append(error)

    tabs = [threading.Thread(target=tab) for _ in range(2)]
    for thread in tabs:
        thread.start()
    for thread in tabs:
        thread.join(timeout=300)
    assert not failures and len(outcomes) == 2
    assert counted == [media.image.name]
    assert len(store.summaries()) == 1
    assert {o.record.id for o in outcomes} == {store.summaries()[0].id}
    assert sorted(o.from_history for o in outcomes) == [False, True]


def test_messages_never_show_the_upload_folder(service: AnalysisService, tmp_path: Path) -> None:
    store = Store(tmp_path)
    for name, data in (
        ("holiday.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64),
        ("holiday.jpg", b"\xff\xd8\xff" + b"\x00" * 64),
    ):
        with uploaded_file(name, data) as path, pytest.raises(MediaError) as error:
            service.analyze(path, request(service), store)
        message = str(error.value)
        assert name in message and str(path.parent) not in message and "deepfake-upload-" not in message, message


def test_a_corrupt_upload_does_not_store_anything(
    service: AnalysisService, tmp_path: Path, odd_files: dict[str, Path]
) -> None:
    store = Store(tmp_path)
    with pytest.raises(MediaError):
        service.analyze(odd_files["lying_jpeg"], request(service), store)
    assert store.summaries() == [] and not list(store.files_dir.glob("??/*"))


def test_engine_settings_bound_the_frame_count(engine: Engine, odd_files: dict[str, Path]) -> None:
    for frames in (0, -3, MediaSettings().max_frames + 1):
        with pytest.raises(Exception, match="frames must be between"):
            engine.analyze(odd_files["face"], frames=frames)
    assert replace(MediaSettings(), frames=1).frames == 1
