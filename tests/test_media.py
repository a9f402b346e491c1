"""Tests of pipeline.engine.media: real shared videos, and small real files made in tmp_path."""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import itertools
import json
import math
import os
import struct
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import cv2
import heif_factory as hf
import media_factory as mf
import numpy as np
import pytest
from PIL import Image, ImageFile

from pipeline.config import REPO_ROOT, MediaSettings
from pipeline.engine import colour, media
from pipeline.engine.media import Frame, MediaInfo
from pipeline.errors import MediaError, MediaTooLargeError, UnsupportedMediaError

FULL_SCENE = "videos/fake/abofeumbvv.mp4"  # DFDC, 1920x1080, 300 frames at 29.97 fps
FACE_CLIPS = ["videos/fake/0_aaqaifqrwn.mp4", "videos/real/xtpeyyltfi-1.mp4"]

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


def assert_user_message(error: pytest.ExceptionInfo, path: Path, *words: str) -> None:
    """A message for a person: one line, naming the file, saying what is wrong."""
    message = str(error.value)
    assert "\n" not in message
    assert path.name in message
    for word in words:
        assert word in message.lower()


def assert_close(colour: tuple[int, ...], expected: tuple[int, ...], tolerance: int) -> None:
    assert all(abs(a - b) <= tolerance for a, b in zip(colour, expected)), (colour, expected)


def spacing_ok(indices: list[int], frame_count: int, samples: int) -> bool:
    """Consecutive sample indices differ by floor or ceil of frame_count / samples."""
    step = frame_count / samples
    return all(math.floor(step) <= b - a <= math.ceil(step) for a, b in zip(indices, indices[1:]))


def sequential_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(media, "SEEK_MIN_SKIPPED_FRAMES", 10**12)


def record_seeks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The frame numbers of the keyframes the sampler seeks to, from now on."""
    seeks: list[int] = []
    real_seek = media._seek

    def recording_seek(container, stream, pts: int) -> None:
        seeks.append(pts)
        real_seek(container, stream, pts)

    monkeypatch.setattr(media, "_seek", recording_seek)
    return seeks


# ================================================================ real shared videos


@pytest.fixture(scope="module")
def full_scene(shared_data: Path) -> tuple[MediaInfo, list[tuple[int, float, tuple, str, float]]]:
    """Probe and 32 samples of the 1080p DFDC clip, summarised (the pixels are not kept)."""
    path = shared_data / FULL_SCENE
    info, frames = media.read_frames(path)
    summary = [(f.frame_number, f.time_s, f.rgb.shape, str(f.rgb.dtype), float(f.rgb.mean())) for f in frames]
    return info, summary


def test_full_scene_video_is_probed_from_its_content(full_scene, shared_data: Path) -> None:
    info, _ = full_scene
    assert info.path == shared_data / FULL_SCENE
    assert info.kind == "video"
    assert (info.width, info.height) == (1920, 1080)
    assert info.rotation == 0
    assert info.fps == pytest.approx(29.97, abs=0.01)
    assert info.frame_count == 300
    assert info.duration_s == pytest.approx(300 / 29.97, abs=0.01)


def test_full_scene_video_gives_32_frames_evenly_spaced_over_the_whole_video(full_scene) -> None:
    info, summary = full_scene
    indices = [index for index, *_ in summary]
    times = [time_s for _, time_s, *_ in summary]
    assert len(summary) == 32
    assert indices == sorted(set(indices))  # strictly increasing
    assert spacing_ok(indices, info.frame_count, 32)
    assert indices[0] < 300 / 32 and indices[-1] >= 300 - 300 / 32  # covers start to end
    assert all(0.0 <= t <= info.duration_s for t in times)
    assert times == sorted(set(times))
    for index, time_s, *_ in summary:
        assert time_s == pytest.approx(index / info.fps, abs=0.5 / info.fps)
    assert {shape for *_, shape, _, _ in summary} == {(1080, 1920, 3)}
    assert {dtype for *_, dtype, _ in summary} == {"uint8"}
    means = [mean for *_, mean in summary]
    assert min(means) > 10 and max(means) < 245  # real picture content, not blank frames


@pytest.mark.parametrize("clip", FACE_CLIPS)
def test_face_clip_videos_sample_at_their_own_size(shared_data: Path, clip: str) -> None:
    path = shared_data / clip
    info, frames = media.read_frames(path, frames=32)
    frames = list(frames)
    assert info.kind == "video" and info.frame_count >= 100
    assert len(frames) == 32
    indices = [f.frame_number for f in frames]
    assert indices == sorted(set(indices)) and indices[-1] < info.frame_count
    assert spacing_ok(indices, info.frame_count, 32)
    assert {f.rgb.shape for f in frames} == {(info.height, info.width, 3)}
    assert all(f.rgb.dtype == np.uint8 for f in frames)


def test_seeking_and_grabbing_give_identical_frames_on_real_h264(
    shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two samples of the DFDC clip (keyframes at 0 and 163): the second sample is reached by
    a seek to past the keyframe. Pixel for pixel the same as decoding every frame up to it."""
    path = shared_data / FULL_SCENE
    seeks = record_seeks(monkeypatch)
    seeking = list(media.sample_frames(path, frames=2))
    assert len(seeks) == 1  # to the keyframe at 163, on the way to frame 225
    sequential_only(monkeypatch)
    grabbing = list(media.sample_frames(path, frames=2))
    assert len(seeks) == 1
    assert [f.frame_number for f in seeking] == [f.frame_number for f in grabbing] == [75, 225]
    for a, b in zip(seeking, grabbing):
        assert a.time_s == pytest.approx(b.time_s)
        assert np.array_equal(a.rgb, b.rgb)


def test_real_mp4_cut_in_half_is_a_clean_media_error(shared_data: Path, tmp_path: Path) -> None:
    # DFDC files keep their index (moov) at the end: the first half alone cannot be opened.
    cut = mf.truncate_copy(shared_data / FULL_SCENE, tmp_path / "cut.mp4", 0.5)
    with pytest.raises(MediaError) as error:
        media.read_frames(cut)
    assert_user_message(error, cut, "truncated")


def test_sha256_file_matches_hashlib(shared_data: Path) -> None:
    path = shared_data / FULL_SCENE
    assert media.sha256_file(path) == hashlib.sha256(path.read_bytes()).hexdigest()


# ================================================================ synthetic videos

CONTAINERS = [
    (".mp4", "mp4v"),
    (".mov", "mp4v"),
    (".m4v", "mp4v"),
    (".avi", "MJPG"),
    (".avi", "XVID"),
    (".mkv", "MJPG"),
    (".mkv", "mp4v"),
    (".webm", "VP80"),
    (".webm", "VP90"),
]


def make_video(path: Path, frames: int, fps: float = 25.0, fourcc: str = "mp4v", **kw) -> Path:
    try:
        return mf.write_video(path, frames, fps, fourcc, **kw)
    except mf.WriterUnavailable as exc:
        pytest.skip(str(exc))


@pytest.mark.parametrize(("suffix", "fourcc"), CONTAINERS)
def test_every_video_container_gives_the_right_frames(tmp_path: Path, suffix: str, fourcc: str) -> None:
    path = make_video(tmp_path / f"clip{suffix}", 60, fps=25.0, fourcc=fourcc)
    assert media.detect_kind(path, MediaSettings()) == "video"
    info, frames = media.read_frames(path, frames=8)
    assert (info.kind, info.width, info.height, info.rotation) == ("video", *mf.VIDEO_SIZE, 0)
    assert (info.frame_count, info.fps) == (60, pytest.approx(25.0))
    assert info.duration_s == pytest.approx(2.4)
    frames = list(frames)
    assert [f.frame_number for f in frames] == [3, 11, 18, 26, 33, 41, 48, 56]
    for frame in frames:
        assert mf.read_index(frame.rgb) == frame.frame_number  # the frame is the one it claims to be
        assert frame.time_s == pytest.approx(frame.frame_number / 25.0, abs=1e-3)


# What OpenCV cannot write, written by FFmpeg: (name, muxer, encoder, muxer options).
FFMPEG_CONTAINERS = [
    ("phone.3gp", "3gp", "mpeg4", {}),
    ("broadcast.ts", "mpegts", "mpeg2video", {}),
    ("camcorder.mts", "mpegts", "libx264", {"mpegts_m2ts_mode": "1"}),  # AVCHD: 192-byte packets
    ("windows.wmv", "asf", "wmv2", {}),
    ("flash.flv", "flv", "flv", {}),
    ("disc.mpg", "mpeg", "mpeg1video", {}),
]


@pytest.mark.parametrize(
    ("name", "container", "codec", "options"), FFMPEG_CONTAINERS, ids=[c[0] for c in FFMPEG_CONTAINERS]
)
def test_phone_camcorder_and_older_web_videos_give_the_right_frames(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, container: str, codec: str, options: dict
) -> None:
    """Each sampled frame is the one it claims to be, in a long video too. MPEG transport and
    program streams are read in order: FFmpeg seeks in them by an estimated byte position (on
    MPEG-1 in a program stream that gave frames labelled with a neighbour's time)."""
    short = mf.write_video_with_ffmpeg(tmp_path / name, 60, container, codec, options)
    assert media.detect_kind(short, MediaSettings()) == "video"
    info, frames = media.read_frames(short, frames=8)
    assert (info.kind, info.width, info.height, info.frame_count, info.fps) == ("video", *mf.VIDEO_SIZE, 60, 25.0)
    frames = list(frames)
    assert [f.frame_number for f in frames] == [3, 11, 18, 26, 33, 41, 48, 56]
    assert [mf.read_index(f.rgb) for f in frames] == [f.frame_number for f in frames]
    assert [f.time_s for f in frames] == pytest.approx([f.frame_number / 25 for f in frames], abs=1e-3)

    long = mf.write_video_with_ffmpeg(tmp_path / f"long_{name}", 600, container, codec, options)
    seeks = record_seeks(monkeypatch)
    frames = list(media.sample_frames(long, frames=8))
    assert [f.frame_number for f in frames] == [37, 112, 187, 262, 337, 412, 487, 562]
    assert [mf.read_index(f.rgb) for f in frames] == [f.frame_number for f in frames]
    assert (seeks == []) == (container in ("mpegts", "mpeg"))


def test_a_video_shorter_than_the_sample_count_gives_every_frame(tmp_path: Path) -> None:
    path = make_video(tmp_path / "short.avi", 5, fourcc="MJPG")
    frames = list(media.sample_frames(path, frames=32))
    assert [f.frame_number for f in frames] == [0, 1, 2, 3, 4]
    assert [mf.read_index(f.rgb) for f in frames] == [0, 1, 2, 3, 4]


def test_long_video_is_sampled_by_seeking_to_the_exact_frames(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # OpenCV's MPEG-4 writer puts a keyframe every 12 frames: seeking pays between samples.
    path = make_video(tmp_path / "long.mp4", 600)
    seeks = record_seeks(monkeypatch)
    seeking = list(media.sample_frames(path, frames=8))
    assert len(seeks) >= 6
    assert [mf.read_index(f.rgb) for f in seeking] == [f.frame_number for f in seeking]
    sequential_only(monkeypatch)
    grabbing = list(media.sample_frames(path, frames=8))
    assert [f.frame_number for f in grabbing] == [f.frame_number for f in seeking]
    assert all(np.array_equal(a.rgb, b.rgb) for a, b in zip(seeking, grabbing))


@pytest.mark.parametrize("failure", ["raises", "lands-late"])
def test_a_failed_seek_falls_back_to_reading_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    import av

    path = make_video(tmp_path / "long.mp4", 600)
    real_seek = media._seek

    def bad_seek(container, stream, pts: int) -> None:
        if failure == "raises":
            raise av.error.InvalidDataError(1094995529, "seek failed")
        real_seek(container, stream, pts + 100 * 512)  # a keyframe far past the one asked for

    monkeypatch.setattr(media, "_seek", bad_seek)
    frames = list(media.sample_frames(path, frames=8))
    assert [f.frame_number for f in frames] == [37, 112, 187, 262, 337, 412, 487, 562]
    assert [mf.read_index(f.rgb) for f in frames] == [f.frame_number for f in frames]


ROTATED_RED_CORNER = {0: "tl", 90: "tr", 180: "br", 270: "bl"}


@pytest.mark.parametrize("degrees", [0, 90, 180, 270])
def test_video_rotation_metadata_is_applied_exactly_once(tmp_path: Path, degrees: int) -> None:
    """A phone-style display matrix: frames come upright, with the stored top-left corner
    where a viewer shows it."""
    path = make_video(tmp_path / "phone.mp4", 10, draw=mf.corner_marker_bgr)
    mf.set_mp4_rotation(path, degrees)
    info, frames = media.read_frames(path, frames=3)
    stored_w, stored_h = mf.VIDEO_SIZE
    upright = (stored_h, stored_w) if degrees in (90, 270) else (stored_w, stored_h)
    assert info.rotation == degrees
    assert (info.width, info.height) == upright
    for frame in frames:
        assert frame.rgb.shape == (upright[1], upright[0], 3)
        colours = mf.quadrant_colours(frame.rgb)
        red_corner = ROTATED_RED_CORNER[degrees]
        assert_close(colours[red_corner], RED, 40)
        for corner in set(colours) - {red_corner}:
            assert_close(colours[corner], (128, 128, 128), 40)


def test_a_1000_fps_header_is_believed_when_the_timestamps_agree(tmp_path: Path) -> None:
    path = make_video(tmp_path / "fast.mp4", 50, fps=1000.0)
    info, frames = media.read_frames(path, frames=5)
    assert info.fps == pytest.approx(1000.0)
    assert info.frame_count == 50 and info.duration_s == pytest.approx(0.05)
    for frame in frames:
        assert mf.read_index(frame.rgb) == frame.frame_number
        assert frame.time_s == pytest.approx(frame.frame_number / 1000.0, abs=1e-4)


@pytest.mark.parametrize("claimed", [0, 500, 2**31 - 1])
def test_avi_header_lying_about_the_frame_count(tmp_path: Path, claimed: int) -> None:
    """The header says 0, 10x or 2^31 frames; 50 are in the file. The frames that exist are
    sampled evenly (a header promising more than the file holds costs its last frame)."""
    path = mf.patch_avi_frame_count(make_video(tmp_path / "liar.avi", 50, fourcc="MJPG"), claimed)
    assert cv2.VideoCapture(str(path)).get(cv2.CAP_PROP_FRAME_COUNT) == claimed  # it does lie
    info, frames = media.read_frames(path, frames=10)
    expected_count = 50 if claimed < 50 else 49
    assert info.frame_count == expected_count
    assert info.duration_s == pytest.approx(expected_count / 25.0)
    frames = list(frames)
    assert len(frames) == 10
    assert spacing_ok([f.frame_number for f in frames], expected_count, 10)
    assert frames[-1].frame_number >= expected_count - 5
    assert [mf.read_index(f.rgb) for f in frames] == [f.frame_number for f in frames]


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("cut.avi", lambda p: make_video(p, 50, fourcc="MJPG")),  # headers first, index last
        ("cut.mp4", lambda p: mf.make_faststart(make_video(p, 50))),  # index first
    ],
)
def test_video_cut_short_gives_the_frames_that_are_there(tmp_path: Path, name: str, make) -> None:
    whole = make(tmp_path / f"whole_{name}")
    cut = mf.truncate_copy(whole, tmp_path / name, 0.5)
    info, frames = media.read_frames(cut, frames=8)
    frames = list(frames)
    assert 5 <= info.frame_count < 50  # what the first half of the bytes holds
    assert 1 <= len(frames) <= 8
    assert all(f.frame_number < info.frame_count for f in frames)
    assert [mf.read_index(f.rgb) for f in frames] == [f.frame_number for f in frames]


def test_video_whose_frames_cannot_be_decoded(tmp_path: Path) -> None:
    path = mf.blank_mjpeg_frames(make_video(tmp_path / "blank.avi", 20, fourcc="MJPG"))
    with pytest.raises(MediaError) as error:
        media.read_frames(path)
    assert not isinstance(error.value, UnsupportedMediaError)
    assert_user_message(error, path, "could not decode any frame")


def test_video_limits_come_from_settings(tmp_path: Path) -> None:
    path = make_video(tmp_path / "clip.mp4", 60, fps=25.0)  # 2.4 s, 96 x 64
    with pytest.raises(MediaTooLargeError) as error:
        media.probe(path, MediaSettings(max_video_seconds=2.0))
    assert_user_message(error, path, "long")
    with pytest.raises(MediaTooLargeError) as error:
        media.probe(path, MediaSettings(max_video_pixels=96 * 64 - 1))
    assert_user_message(error, path, "96 x 64")
    with pytest.raises(MediaTooLargeError) as error:
        media.probe(path, MediaSettings(max_file_bytes=path.stat().st_size - 1))
    assert_user_message(error, path)
    assert media.probe(path, MediaSettings(max_video_seconds=2.5)).frame_count == 60


def test_frame_loops_are_bounded_whatever_the_header_claims(tmp_path: Path) -> None:
    # 0.1 s x 240 fps bounds the scan to 25 packets, far fewer than the (lying) header's 2^31.
    path = mf.patch_avi_frame_count(make_video(tmp_path / "liar.avi", 60, fourcc="MJPG"), 2**31 - 1)
    with pytest.raises(MediaTooLargeError) as error:
        media.probe(path, MediaSettings(max_video_seconds=0.1))
    assert_user_message(error, path, "frames")


def test_sample_frames_is_a_lazy_generator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Frames are decoded as they are asked for, and closing the generator closes the file."""
    path = make_video(tmp_path / "clip.avi", 200, fourcc="MJPG")
    sequential_only(monkeypatch)
    decoded, closed = [], []
    real_decoded, real_open = media._decoded_frames, media._open_video

    def counting_decoded(container, stream, path):
        for frame in real_decoded(container, stream, path):
            decoded.append(1)
            yield frame

    class RecordingContainer:
        def __init__(self, container):
            self._container = container

        def close(self):
            closed.append(1)
            self._container.close()

        def __getattr__(self, name):
            return getattr(self._container, name)

    def recording_open(path):
        container, stream = real_open(path)
        return RecordingContainer(container), stream

    monkeypatch.setattr(media, "_decoded_frames", counting_decoded)
    monkeypatch.setattr(media, "_open_video", recording_open)
    generator = media.sample_frames(path, frames=4)  # the probe (scan + first frame) runs now
    assert inspect.isgenerator(generator)
    decoded.clear()
    closed.clear()
    first = next(generator)
    assert isinstance(first, Frame) and first.frame_number == 25
    assert len(decoded) == 26  # up to the first sample, not the 200 frames
    second = next(generator)
    assert second.frame_number == 75 and len(decoded) == 76
    assert not closed
    generator.close()
    assert closed


# Peak memory is measured in a fresh process, from Linux's /proc/self/status: the peak resident
# size after the work (VmHWM) minus the resident size before it (VmRSS). Pillow's and OpenCV's
# buffers are invisible to tracemalloc, and ru_maxrss can carry the parent's size across fork.
_RSS_BEFORE = """
def status_kb(field):
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(field)
before = status_kb("VmRSS")
"""

_PEAK_MEMORY_SCRIPT = (
    """
import json, sys
from pathlib import Path
from pipeline.engine import colour, media
media.SEEK_MIN_SKIPPED_FRAMES = 10**12  # decode every frame: where frames could pile up
"""
    + _RSS_BEFORE
    + """
info, frames = media.read_frames(Path(sys.argv[1]), frames=32)
count = sum(1 for frame in frames)
after = status_kb("VmHWM")
print(json.dumps({"frames": count, "decoded": info.frame_count, "growth_kb": after - before}))
"""
)


needs_proc = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="peak memory is read from Linux's /proc")


def run_python(script: str, *args: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@needs_proc
def test_sampling_a_long_video_holds_one_frame_at_a_time(tmp_path: Path) -> None:
    """1200 frames of 640x360 would take 830 MB as decoded frames; the peak memory of a process
    decoding all of them to sample 32 grows by a small fraction of that."""

    def moving_bar(index: int, size: tuple[int, int]) -> np.ndarray:
        frame = np.zeros((size[1], size[0], 3), np.uint8)
        frame[:, index * 4 % size[0] :][:, :40] = 255
        return frame

    path = make_video(tmp_path / "long.mp4", 1200, fps=30.0, size=(640, 360), draw=moving_bar)
    result = run_python(_PEAK_MEMORY_SCRIPT, str(path))
    assert result["frames"] == 32 and result["decoded"] == 1200
    all_frames_kb = 1200 * 640 * 360 * 3 // 1024
    assert result["growth_kb"] < all_frames_kb // 8, result


# ================================================================ bad input, any kind


@pytest.mark.parametrize("name", ["empty.mp4", "empty.jpg"])
def test_empty_file(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"")
    with pytest.raises(MediaError) as error:
        media.read_frames(path)
    assert_user_message(error, path, "empty")


@pytest.mark.parametrize("name", ["nowhere.mp4", "nowhere.heic", "nowhere.xyz"])
def test_missing_file(tmp_path: Path, name: str) -> None:
    """Not found, whatever its name says: the engine checks the file before its type, as
    `analyze` and `scan` do before anything loads (`media.check_without_opening`)."""
    path = tmp_path / name
    with pytest.raises(MediaError) as error:
        media.probe(path)
    assert_user_message(error, path, "not found")


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("random.mp4", np.random.default_rng(7).integers(0, 256, 4096, np.uint8).tobytes()),
        ("notes.mp4", b"These are my notes, not a video.\n" * 20),
        ("notes.jpg", b"Not a photo either.\n" * 20),
    ],
)
def test_content_that_is_no_media_is_refused_by_sniffing(tmp_path: Path, name: str, content: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(UnsupportedMediaError) as error:
        media.read_frames(path)
    assert_user_message(error, path, ".mp4", ".jpg", "supported")


def test_unknown_suffix_lists_the_supported_types(tmp_path: Path) -> None:
    path = tmp_path / "drawing.ico"
    Image.new("RGB", (16, 16)).save(path, "ICO")
    with pytest.raises(UnsupportedMediaError) as error:
        media.probe(path)
    assert_user_message(error, path, ".ico", ".png", ".gif", ".webm")


def test_content_decides_the_kind_not_the_suffix(tmp_path: Path) -> None:
    png_named_jpg = tmp_path / "really_a_png.jpg"
    mf.quadrant_image().save(png_named_jpg, "PNG")
    assert media.detect_kind(png_named_jpg, MediaSettings()) == "image"
    assert media.load_image(png_named_jpg).shape == (40, 60, 3)
    avi_named_mp4 = tmp_path / "really_an_avi.mp4"
    make_video(tmp_path / "clip.avi", 10, fourcc="MJPG").rename(avi_named_mp4)
    assert media.probe(avi_named_mp4).frame_count == 10


def _heic_test_picture(width: int, height: int) -> np.ndarray:
    """Quadrants of colour with a gradient across, so that a turn, a mirroring or a misplaced tile shows."""
    rgb = np.asarray(mf.quadrant_image(width, height)).copy()
    rgb[..., 1] = np.maximum(rgb[..., 1], np.linspace(0, 160, width, dtype=np.uint8)[None, :])
    return rgb


@pytest.mark.parametrize(
    ("layout", "options", "upright"),
    [
        ("one HEVC picture", {}, lambda rgb: rgb),
        ("a grid cropped to the photo", {"tile": 64}, lambda rgb: rgb),
        ("a grid turned a quarter", {"tile": 64, "quarter_turns": 1}, lambda rgb: np.rot90(rgb, 1)),
        (
            "turned three quarters, then mirrored",
            {"quarter_turns": 3, "mirror_axis": 1},
            lambda rgb: np.rot90(rgb, 3)[:, ::-1],
        ),
        ("mirrored top to bottom", {"mirror_axis": 0}, lambda rgb: rgb[::-1]),
        ("10 bits", {"bits": 10, "tile": 64}, lambda rgb: rgb),
        (
            "a turned grid turned again by an identity derivation",
            {"tile": 64, "quarter_turns": 1, "derived_turns": 2},
            lambda rgb: np.rot90(rgb, 3),
        ),
    ],
)
def test_a_heic_photo_is_read_as_phones_write_it(tmp_path: Path, layout: str, options: dict, upright) -> None:
    """HEIC, how iPhones save photos: a grid of HEVC tiles cropped to the photo's size (or one
    picture), turned (`irot`) and mirrored (`imir`) as a viewer shows it; its upright size and
    turn probed from its boxes, no pixel decoded; read by its content under any name, never as
    the MP4 its container resembles."""
    width, height = (150, 98) if "tile" not in options else (151, 97)  # a grid crops to odd sizes
    stored = _heic_test_picture(width, height)
    path = hf.write_heic(tmp_path / "IMG_0001.HEIC", stored, **options)
    expected = np.ascontiguousarray(upright(stored))
    for name in ("IMG_0001.HEIC", "IMG_0001.heif", "IMG_0001.jpg", "IMG_0001.mp4"):
        renamed = tmp_path / name
        renamed.write_bytes(path.read_bytes())
        info, frames = media.read_frames(renamed)
        rgb = next(frames).rgb
        assert (info.kind, info.width, info.height) == ("image", expected.shape[1], expected.shape[0]), name
        assert info.rotation == (4 - options.get("quarter_turns", 0) - options.get("derived_turns", 0)) % 4 * 90
        assert rgb.shape == expected.shape
        assert np.abs(rgb.astype(int) - expected).mean() < 4, layout  # what HEVC coding loses
        assert media.probe(renamed) == info


def test_damaged_or_unreadable_heic_files_are_one_line_each(tmp_path: Path) -> None:
    """Each refused before anything is decoded where it can be, in one line naming the file."""
    picture = _heic_test_picture(150, 98)
    grid = hf.write_heic(tmp_path / "grid.heic", picture, tile=64)
    data = grid.read_bytes()
    cases: dict[str, tuple[bytes, type[Exception], str]] = {
        "header only": (mf.HEIC_BYTES, MediaError, "is a damaged heif picture: it has no description of its pictures"),
        "cut in its pictures": (data[: len(data) - 200], MediaError, "data lies past the end of the file"),
        "cut in its description": (data[:120], MediaError, "is a damaged heif picture"),
        "a tile smaller than it says": (
            data.replace(struct.pack(">II", 64, 64), struct.pack(">II", 64, 182), 1),
            MediaError,
            "tile 1 of 6 is 64 x 64 pixels, not the 64 x 182 the file states",
        ),
        "a tile of zeros": (  # the first tile's coded data, from the start of `mdat`
            data[: data.index(b"mdat") + 4] + bytes(64) + data[data.index(b"mdat") + 68 :],
            MediaError,
            "tile 1 of 6 could not be decoded",
        ),
    }
    limits = MediaSettings()
    for name, (content, error_type, words) in cases.items():
        path = tmp_path / f"{name.replace(' ', '_')}.heic"
        path.write_bytes(content)
        with pytest.raises(error_type) as error:
            media.read_frames(path, limits)
        assert_user_message(error, path, words)
    # A grid of tiles claiming 30,000 x 30,000 pixels each, cropped to 60,000 x 60,000, is refused
    # from its boxes (a decoder would need gigabytes).
    huge = tmp_path / "huge.heic"
    claims = data.replace(struct.pack(">HH", 150, 98), struct.pack(">HH", 60000, 60000), 1)
    huge.write_bytes(claims.replace(struct.pack(">II", 64, 64), struct.pack(">II", 30000, 30000), 1))
    with pytest.raises(MediaTooLargeError) as error:
        media.probe(huge)
    assert_user_message(error, huge, "3600.0 megapixels")
    tiles = hf.write_heic(tmp_path / "tiles.heic", picture, tile=64)
    with pytest.raises(MediaTooLargeError) as error:
        media.read_frames(tiles, dataclasses.replace(limits, max_heif_tiles=4))
    assert_user_message(error, tiles, "a grid of 6 pictures; up to 4 are read")
    overlay = tmp_path / "overlay.heic"
    overlay.write_bytes(data.replace(b"grid", b"iovl", 1))
    with pytest.raises(UnsupportedMediaError) as error:
        media.read_frames(overlay)
    assert_user_message(error, overlay, "overlaid pictures (iovl)")
    jpeg_coded = tmp_path / "jpeg_coded.heif"
    jpeg_coded.write_bytes(hf.write_heic(tmp_path / "one.heic", picture).read_bytes().replace(b"hvc1", b"jpeg", 1))
    with pytest.raises(UnsupportedMediaError) as error:
        media.read_frames(jpeg_coded)
    assert_user_message(error, jpeg_coded, "coded as 'jpeg', not hevc")


# An animation of each format that may hold one: the name, and Pillow's options to write it.
ANIMATIONS = [
    ("reaction.gif", {}),
    ("sticker.webp", {"lossless": True}),
    ("clip.avif", {"quality": 90}),
    ("sticker.png", {}),  # APNG
]


@pytest.mark.parametrize(("name", "options"), ANIMATIONS, ids=["gif", "webp", "avif", "apng"])
def test_an_animation_is_sampled_in_time_like_a_video(tmp_path: Path, name: str, options: dict) -> None:
    """Each frame of an animated GIF, WebP, AVIF or PNG has its own delay: the samples are spread
    over the time the animation plays, and each is the frame it claims to be, as a viewer shows it."""
    delays = [100, 50, 300, 100, 100, 50, 200, 100]  # ms; frame k starts at the sum of those before
    path = mf.write_animation(tmp_path / name, delays, **options)
    starts = [sum(delays[:k]) / 1000 for k in range(len(delays))]
    assert media.detect_kind(path, MediaSettings()) == "video"
    info, frames = media.read_frames(path, frames=4)
    assert (info.kind, info.width, info.height, info.rotation) == ("video", *mf.VIDEO_SIZE, 0)
    assert info.frame_count == len(delays)
    frames = list(frames)
    # The middles of four equal spans of the time shown fall in frames 1 (0.10-0.15 s), 2
    # (0.15-0.45 s), 4 and 7; four samples by count would be frames 1, 3, 5 and 7.
    assert [f.frame_number for f in frames] == [1, 2, 4, 7]
    for frame in frames:
        assert mf.read_index(frame.rgb) == frame.frame_number
        assert frame.time_s == pytest.approx(starts[frame.frame_number], abs=1e-3)
    assert len(list(media.sample_frames(path, frames=32))) == len(delays)  # every frame, once


@pytest.mark.parametrize(("name", "options"), ANIMATIONS, ids=["gif", "webp", "avif", "apng"])
def test_frames_of_no_duration_are_timed_as_shown(tmp_path: Path, name: str, options: dict) -> None:
    """An animation made to play as fast as it can (delays of 0; AVIF stores 1 ms) is shown 100 ms
    a frame by browsers, and timed so by FFmpeg for a GIF: every format's frames get those times,
    not (nearly) all 0."""
    path = mf.write_animation(tmp_path / name, [0] * 6, **options)
    info, frames = media.read_frames(path, frames=3)
    assert (info.fps, info.duration_s) == (pytest.approx(10.0), pytest.approx(0.6))
    assert [(f.frame_number, f.time_s) for f in frames] == [(1, 0.1), (3, 0.3), (5, 0.5)]


def test_a_gif_drawn_over_its_previous_frame_is_read_as_shown(tmp_path: Path) -> None:
    """GIF frames may redraw only part of the picture over the last one (Pillow writes them so,
    with transparency for what did not change): the frame read is the whole picture shown."""
    path = mf.write_animation(tmp_path / "partial.gif", [100] * 6, optimize=True)
    with Image.open(path) as gif:
        shown = []
        for index in range(gif.n_frames):
            gif.seek(index)
            shown.append(np.array(gif.convert("RGB")))
    for frame in media.sample_frames(path, frames=6):
        assert np.array_equal(frame.rgb, shown[frame.frame_number])


@pytest.mark.parametrize("suffix", [".gif", ".png"])
def test_a_damaged_animation_gives_the_frames_before_the_damage_or_one_line(tmp_path: Path, suffix: str) -> None:
    whole = mf.write_animation(tmp_path / f"whole{suffix}", [100] * 8).read_bytes()
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(whole[: len(whole) // 2])
    frames = list(media.sample_frames(cut, frames=8))
    numbers = [f.frame_number for f in frames]
    assert 0 < len(numbers) < 8 and numbers == list(range(len(numbers)))
    assert [mf.read_index(f.rgb) for f in frames] == numbers
    header_only = tmp_path / f"header{suffix}"
    header_only.write_bytes(whole[:20])
    with pytest.raises(MediaError) as error:
        media.read_frames(header_only)
    assert_user_message(error, header_only, "not a readable image")


@pytest.mark.parametrize(("name", "options"), ANIMATIONS[1:3], ids=["webp", "avif"])
def test_a_cut_animated_webp_or_avif_is_one_line(tmp_path: Path, name: str, options: dict) -> None:
    """Pillow's decoders for these need the whole file: a cut one is refused, never half read."""
    whole = mf.write_animation(tmp_path / name, [100] * 8, **options).read_bytes()
    cut = tmp_path / f"cut_{name}"
    cut.write_bytes(whole[: len(whole) * 9 // 10])
    with pytest.raises(MediaError) as error:
        media.read_frames(cut)
    assert_user_message(error, cut, "not a readable image")


def test_a_see_through_animated_webp_is_shown_on_white(tmp_path: Path) -> None:
    frames = []
    for index in range(3):
        pixels = np.zeros((10, 30, 4), np.uint8)  # fully transparent black on the left
        pixels[:, 10:20, 3] = 128  # half see-through black in the middle
        pixels[:, 20:] = (255, 0, 0, 255) if index % 2 else (0, 0, 255, 255)
        frames.append(Image.fromarray(pixels, "RGBA"))
    path = tmp_path / "sticker.webp"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, lossless=True)
    shown = list(media.sample_frames(path))
    assert [f.frame_number for f in shown] == [0, 1, 2]
    assert [tuple(f.rgb[5, 5]) for f in shown] == [WHITE] * 3
    for frame in shown:
        assert_close(tuple(frame.rgb[5, 15]), (127, 127, 127), 1)
    assert [tuple(f.rgb[5, 25]) for f in shown] == [BLUE, RED, BLUE]


def test_an_animation_longer_than_the_video_limit_is_refused(tmp_path: Path) -> None:
    path = mf.write_animation(tmp_path / "long.webp", [1000] * 5, lossless=True)
    with pytest.raises(MediaTooLargeError) as error:
        media.read_frames(path, MediaSettings(max_video_seconds=4))
    assert_user_message(error, path, "0:00:05 long", "videos up to 0:00:04")
    with pytest.raises(MediaTooLargeError) as error:
        media.read_frames(path, MediaSettings(max_video_pixels=64 * 64))
    assert_user_message(error, path, "96 x 64 frames")


def test_frames_must_be_positive(tmp_path: Path) -> None:
    path = make_video(tmp_path / "clip.avi", 10, fourcc="MJPG")
    with pytest.raises(ValueError):
        media.sample_frames(path, frames=0)


# ================================================================ images

IMAGE_FORMATS = [
    ("photo.jpg", "JPEG", {"quality": 95}, 12),
    ("photo.png", "PNG", {}, 0),
    ("photo.webp", "WEBP", {"lossless": True}, 0),
    ("lossy.webp", "WEBP", {"quality": 90}, 16),
    ("photo.bmp", "BMP", {}, 0),
    ("photo.tif", "TIFF", {}, 0),
    ("deflate.tiff", "TIFF", {"compression": "tiff_deflate"}, 0),
    ("photo.avif", "AVIF", {"quality": 90}, 16),
    ("photo.gif", "GIF", {}, 0),  # one picture: an image (an animated GIF is a video, below)
]


@pytest.mark.parametrize(("name", "fmt", "options", "tolerance"), IMAGE_FORMATS)
def test_every_image_format_decodes_to_rgb(tmp_path: Path, name: str, fmt: str, options: dict, tolerance: int) -> None:
    path = tmp_path / name
    mf.quadrant_image().save(path, fmt, **options)
    assert media.detect_kind(path, MediaSettings()) == "image"
    rgb = media.load_image(path)
    assert rgb.shape == (40, 60, 3) and rgb.dtype == np.uint8
    colours = mf.quadrant_colours(rgb)
    for corner, expected in {"tl": RED, "tr": GREEN, "bl": BLUE, "br": WHITE}.items():
        assert_close(colours[corner], expected, tolerance)
    info, frames = media.read_frames(path)
    assert info == MediaInfo(path, "image", 60, 40, None, None, None, 0)
    (frame,) = list(frames)
    assert (frame.frame_number, frame.time_s) == (0, 0.0)
    assert np.array_equal(frame.rgb, rgb)
    assert media.probe(path) == info


# orientation -> (rotation reported, corner where the stored red top-left corner ends up)
EXIF_ORIENTATIONS = {1: (0, "tl"), 2: (0, "tr"), 3: (180, "br"), 6: (90, "tr"), 8: (270, "bl")}


@pytest.mark.parametrize("suffix", [".jpg", ".avif"])
@pytest.mark.parametrize("orientation", sorted(EXIF_ORIENTATIONS))
def test_exif_orientation_makes_the_picture_upright(tmp_path: Path, orientation: int, suffix: str) -> None:
    path = tmp_path / f"phone{suffix}"
    mf.save_with_exif_orientation(mf.quadrant_image(60, 40), path, orientation)
    rotation, red_corner = EXIF_ORIENTATIONS[orientation]
    upright = (40, 60) if rotation in (90, 270) else (60, 40)  # (width, height)
    info = media.probe(path)
    assert (info.width, info.height, info.rotation) == (*upright, rotation)
    rgb = media.load_image(path)
    assert rgb.shape == (upright[1], upright[0], 3)
    assert_close(mf.quadrant_colours(rgb)[red_corner], RED, 12)
    info, frames = media.read_frames(path)
    assert (info.width, info.height, info.rotation) == (*upright, rotation)
    assert next(frames).rgb.shape == rgb.shape


def test_palette_images_with_and_without_transparency(tmp_path: Path) -> None:
    plain = tmp_path / "palette.png"
    mf.quadrant_image().convert("P", palette=Image.Palette.ADAPTIVE, colors=4).save(plain)
    assert Image.open(plain).mode == "P"
    colours = mf.quadrant_colours(media.load_image(plain))
    assert (colours["tl"], colours["tr"], colours["bl"]) == (RED, GREEN, BLUE)

    transparent = tmp_path / "palette_transparent.png"
    image = Image.new("P", (20, 10), 0)
    image.putpalette([0, 0, 0, 255, 0, 0])  # index 0 black, index 1 red
    image.paste(1, (10, 0, 20, 10))
    image.save(transparent, transparency=0)  # the black half is see-through
    rgb = media.load_image(transparent)
    assert tuple(rgb[5, 2]) == WHITE  # composited on white, not the hidden black
    assert tuple(rgb[5, 15]) == RED


def test_alpha_is_composited_on_white(tmp_path: Path) -> None:
    pixels = np.zeros((10, 30, 4), np.uint8)
    pixels[:, :10] = (0, 0, 0, 0)  # fully transparent black
    pixels[:, 10:20] = (255, 0, 0, 128)  # half transparent red
    pixels[:, 20:] = (0, 0, 255, 255)  # opaque blue
    path = tmp_path / "alpha.png"
    Image.fromarray(pixels, "RGBA").save(path)
    rgb = media.load_image(path)
    assert tuple(rgb[5, 5]) == WHITE
    assert_close(tuple(rgb[5, 15]), (255, 127, 127), 1)
    assert tuple(rgb[5, 25]) == BLUE
    gray_alpha = tmp_path / "gray_alpha.png"
    Image.fromarray(pixels[:, :, [0, 3]].copy(), "LA").save(gray_alpha)
    assert tuple(media.load_image(gray_alpha)[5, 5]) == WHITE


def test_gray_and_bilevel_images(tmp_path: Path) -> None:
    gray = np.tile(np.arange(0, 256, 16, dtype=np.uint8), (4, 1))
    Image.fromarray(gray, "L").save(tmp_path / "gray.png")
    rgb = media.load_image(tmp_path / "gray.png")
    assert rgb.shape == (4, 16, 3)
    assert np.array_equal(rgb[..., 0], gray) and np.array_equal(rgb[..., 2], gray)
    Image.fromarray(gray > 127).save(tmp_path / "bilevel.bmp")
    assert set(np.unique(media.load_image(tmp_path / "bilevel.bmp"))) == {0, 255}


@pytest.mark.parametrize(("name", "fmt"), [("print.jpg", "JPEG"), ("print.tif", "TIFF")])
def test_cmyk_images(tmp_path: Path, name: str, fmt: str) -> None:
    path = tmp_path / name
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(path, fmt)  # pure red in ink
    assert Image.open(path).mode == "CMYK"
    assert_close(tuple(media.load_image(path)[8, 8]), RED, 3)


@pytest.mark.parametrize("name", ["depth16.png", "depth16.tif"])
def test_16_bit_gray_is_scaled_not_clipped(tmp_path: Path, name: str) -> None:
    values = mf.gray16_gradient()  # 0 .. 65535, with 32768 in the middle column
    path = tmp_path / name
    Image.fromarray(values).save(path)
    assert Image.open(path).mode.startswith("I;16")
    rgb = media.load_image(path)
    assert rgb.shape == (4, 256, 3) and rgb.dtype == np.uint8
    row = rgb[0, :, 0]
    assert (row[0], row[128], row[255]) == (0, 128, 255)
    assert np.all(np.diff(row.astype(int)) >= 0)  # monotonic: no wrap-around
    assert np.array_equal(row, np.rint(values[0] / 257).astype(np.uint8))
    assert np.array_equal(rgb[..., 0], rgb[..., 1])


def test_float_images_in_0_to_1_are_scaled(tmp_path: Path) -> None:
    values = np.tile(np.linspace(0.0, 1.0, 11, dtype=np.float32), (2, 1))
    path = tmp_path / "float.tif"
    Image.fromarray(values, "F").save(path)
    row = media.load_image(path)[0, :, 1]
    assert np.array_equal(row, np.rint(values[0].astype(np.float64) * 255).astype(np.uint8))


def test_truncated_jpeg_is_a_media_error(tmp_path: Path) -> None:
    whole = tmp_path / "whole.jpg"
    noise = np.random.default_rng(1).integers(0, 256, (120, 160, 3), np.uint8)
    Image.fromarray(noise).save(whole, "JPEG", quality=90)
    cut = mf.truncate_copy(whole, tmp_path / "cut.jpg", 0.5)
    assert media.probe(cut).width == 160  # the header is intact...
    with pytest.raises(MediaError) as error:
        media.load_image(cut)  # ...the pixels are not
    assert not isinstance(error.value, MediaTooLargeError)
    assert_user_message(error, cut, "truncated")
    with pytest.raises(MediaError):
        media.read_frames(cut)


@pytest.mark.parametrize(("width", "height"), [(30_000, 30_000), (9_000, 9_000)])
def test_decompression_bomb_is_refused_from_its_header(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, width: int, height: int
) -> None:
    """900 MP (Pillow's own guard fires) and 81 MP (just over our 80 MP limit): refused before a
    pixel is decoded."""
    path = mf.png_bomb(tmp_path / "bomb.png", width, height)
    assert path.stat().st_size < 1000

    def no_decoding(self):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    for read in (media.load_image, media.probe, media.read_frames):
        with pytest.raises(MediaTooLargeError) as error:
            read(path)
        assert_user_message(error, path, "megapixels")


_BOMB_MEMORY_SCRIPT = (
    """
import json, sys
from pathlib import Path
from pipeline.engine import colour, media
from pipeline.errors import MediaTooLargeError
"""
    + _RSS_BEFORE
    + """
refused = 0
for name in sys.argv[1:]:
    try:
        media.load_image(Path(name))
    except MediaTooLargeError:
        refused += 1
after = status_kb("VmHWM")
print(json.dumps({"refused": refused, "growth_kb": after - before}))
"""
)


@needs_proc
def test_decompression_bomb_does_not_take_memory(tmp_path: Path) -> None:
    bombs = [mf.png_bomb(tmp_path / f"bomb{side}.png", side, side) for side in (30_000, 9_000)]
    result = run_python(_BOMB_MEMORY_SCRIPT, *map(str, bombs))
    assert result["refused"] == 2
    # Decoding the 81 MP one to RGB raises the peak by about 750 MB (measured).
    assert result["growth_kb"] < 20 * 1024, result


def test_image_limits_come_from_settings(tmp_path: Path) -> None:
    path = tmp_path / "small.png"
    mf.quadrant_image(60, 40).save(path)
    with pytest.raises(MediaTooLargeError) as error:
        media.load_image(path, MediaSettings(max_image_pixels=60 * 40 - 1))
    assert_user_message(error, path, "60 x 40")
    with pytest.raises(MediaTooLargeError):
        media.read_frames(path, MediaSettings(max_file_bytes=10))
    assert media.load_image(path, MediaSettings(max_image_pixels=60 * 40)).shape == (40, 60, 3)


def test_sample_frames_of_an_image_is_one_frame(tmp_path: Path) -> None:
    path = tmp_path / "still.bmp"
    mf.quadrant_image().save(path)
    frames = list(media.sample_frames(path, frames=32))
    assert len(frames) == 1 and frames[0].frame_number == 0 and frames[0].time_s == 0.0
    assert frames[0].rgb.shape == (40, 60, 3)


# --------------------------------------------------------------------------------------------
# Colour profiles
# --------------------------------------------------------------------------------------------

P3_TO_SRGB = np.array([[1.2249, -0.2247, 0.0], [-0.0420, 1.0419, 0.0], [-0.0197, -0.0786, 1.0979]])
"""Linear Display P3 to linear sRGB (both with a D65 white), as published (CSS Color 4's
conversion matrices, rounded): an answer that owes nothing to LittleCMS or to the profile writer."""
DISPLAY_P3_ICC = colour.rgb_profile("Display P3", colour.DISPLAY_P3)


def _srgb_from_display_p3(rgb: np.ndarray) -> np.ndarray:
    """What a Display P3 picture's pixels are in sRGB (colours outside sRGB clipped)."""
    encoded = rgb.astype(np.float64) / 255
    linear = np.where(encoded <= 0.04045, encoded / 12.92, ((encoded + 0.055) / 1.055) ** 2.4)
    srgb = np.clip(linear @ P3_TO_SRGB.T, 0.0, 1.0)
    return np.where(srgb <= 0.0031308, srgb * 12.92, 1.055 * srgb ** (1 / 2.4) - 0.055) * 255


def _colour_chart() -> np.ndarray:
    """64 patches of 8 x 8 pixels: grays, then colours from dull to as saturated as 8 bits go."""
    patches = np.random.default_rng(28).integers(0, 256, (64, 3))
    patches[:8] = np.linspace(0, 255, 8).round()[:, None]
    return np.kron(patches.reshape(8, 8, 3), np.ones((8, 8, 1))).astype(np.uint8)


def _assert_converted_from_display_p3(read: np.ndarray, stored: np.ndarray) -> None:
    """`read` is `stored` (the file's own values, decoded) converted from Display P3 to sRGB, to a
    level of rounding; and that conversion moved the colours (so this fails for a reader that
    ignores the profile)."""
    expected = _srgb_from_display_p3(stored)
    assert np.abs(read - expected).max() <= 1.5
    assert np.abs(stored - expected).mean() > 5


@pytest.mark.parametrize(
    ("name", "fmt", "options"),
    [
        ("p3.png", "PNG", {}),
        ("p3.jpg", "JPEG", {"quality": 95}),
        ("p3.webp", "WEBP", {"lossless": True}),
        ("lossy_p3.webp", "WEBP", {"quality": 90}),
        ("p3.tif", "TIFF", {}),
        ("p3.avif", "AVIF", {"quality": 90}),
    ],
)
def test_a_display_p3_picture_is_converted_to_srgb(tmp_path: Path, name: str, fmt: str, options: dict) -> None:
    """Phones save photos in Display P3 and say so in an ICC profile: the models see the colours
    the photo shows (sRGB), not its values read as if they were sRGB."""
    path = tmp_path / name
    Image.fromarray(_colour_chart()).save(path, fmt, icc_profile=DISPLAY_P3_ICC, **options)
    with Image.open(path) as image:
        assert image.info["icc_profile"] == DISPLAY_P3_ICC
        stored = np.asarray(image.convert("RGB"))
    _assert_converted_from_display_p3(media.load_image(path), stored)
    assert media.converted_colour_space(path) == "Display P3"


def test_palette_see_through_and_animated_pictures_are_converted_too(tmp_path: Path) -> None:
    chart = _colour_chart()
    palette = tmp_path / "palette.png"
    Image.fromarray(chart).quantize(64).save(palette, icc_profile=DISPLAY_P3_ICC)
    with Image.open(palette) as image:
        assert image.mode == "P"
        stored = np.asarray(image.convert("RGB"))
    _assert_converted_from_display_p3(media.load_image(palette), stored)

    see_through = tmp_path / "see_through.png"
    rgba = np.dstack([chart, np.full(chart.shape[:2], 255, np.uint8)])
    rgba[:8, :8, 3] = 0  # the gray patch of black made fully transparent: white, as shown
    Image.fromarray(rgba, "RGBA").save(see_through, icc_profile=DISPLAY_P3_ICC)
    read = media.load_image(see_through)
    assert tuple(read[4, 4]) == WHITE
    stored = chart.copy()
    stored[:8, :8] = 255
    _assert_converted_from_display_p3(read, stored)

    animation = tmp_path / "sticker.png"
    pictures = [Image.fromarray(np.roll(chart, shift, axis=1)) for shift in (0, 16, 32)]
    pictures[0].save(animation, save_all=True, append_images=pictures[1:], duration=100, icc_profile=DISPLAY_P3_ICC)
    frames = list(media.sample_frames(animation))
    assert len(frames) == 3
    for frame, picture in zip(frames, pictures, strict=True):
        _assert_converted_from_display_p3(frame.rgb, np.asarray(picture))


@pytest.mark.parametrize(
    ("name", "fmt", "options"), [("press.jpg", "JPEG", {"quality": 95}), ("press.tif", "TIFF", {})]
)
def test_a_cmyk_picture_is_read_through_its_press_profile(tmp_path: Path, name: str, fmt: str, options: dict) -> None:
    """Pictures made for print (CMYK, from an editor) carry the press's profile: what each mix of
    inks looks like on its paper. Read through it, full cyan is the press's dull blue, not the
    (0, 255, 255) of Pillow's plain conversion, and bare paper stays white."""
    inks = list(itertools.product((0, 255), repeat=4))
    patches = np.kron(np.array(inks, np.uint8).reshape(4, 4, 4), np.ones((16, 16, 1), np.uint8))
    path = tmp_path / name
    Image.frombytes("CMYK", (64, 64), patches.tobytes()).save(path, fmt, icc_profile=mf.cmyk_profile(), **options)
    read = media.load_image(path)
    for index, mix in enumerate(inks):
        row, column = divmod(index, 4)
        assert_close(tuple(read[row * 16 + 8, column * 16 + 8]), tuple(mf.ink_srgb(mix)), 4)
    assert tuple(read[8, 8]) == WHITE
    assert tuple(read[8, 2 * 16 + 8]) != (0, 255, 255)  # full cyan alone: plain conversion's answer
    assert media.converted_colour_space(path) == "Test press CMYK"

    bare = tmp_path / ("bare" + path.suffix)
    Image.frombytes("CMYK", (64, 64), patches.tobytes()).save(bare, fmt, **options)
    with Image.open(bare) as image:
        assert np.array_equal(
            media.load_image(bare), np.asarray(image.convert("RGB"))
        )  # no profile: as Pillow reads it
    assert media.converted_colour_space(bare) is None


def test_a_gray_picture_is_read_through_its_gray_profile(tmp_path: Path) -> None:
    """Black-and-white photos from editors carry a gray profile (Gray Gamma 1.8, Dot Gain 20%...):
    level v means light (v / 255) ** gamma, shown in sRGB. One with transparency is composited onto
    white and read as stored."""
    ramp = np.tile(np.arange(256, dtype=np.uint8), (4, 1))
    for name, gamma in (("gamma18.png", 1.8), ("gamma22.jpg", 2.2)):
        path = tmp_path / name
        Image.fromarray(ramp).save(path, icc_profile=mf.gray_profile(gamma, f"Gray Gamma {gamma}"))
        with Image.open(path) as image:
            stored = np.asarray(image)[0].astype(np.float64)
        expected = colour.srgb_encoded((stored / 255) ** gamma) * 255
        read = media.load_image(path)
        assert np.abs(read[0] - expected[:, None]).max() <= 1.5, name
        assert np.abs(stored - expected).max() > 8  # the profile moved levels: read as stored fails this
        assert media.converted_colour_space(path) == f"Gray Gamma {gamma}"
    see_through = tmp_path / "see_through.png"
    Image.fromarray(np.dstack([ramp, np.full_like(ramp, 255)]), "LA").save(
        see_through, icc_profile=mf.gray_profile(1.8, "Gray Gamma 1.8")
    )
    assert np.array_equal(media.load_image(see_through)[..., 0], ramp)
    assert media.converted_colour_space(see_through) is None


def test_srgb_no_profile_damaged_profiles_and_gray_are_read_as_stored(tmp_path: Path) -> None:
    """Nothing converted where nothing should be: sRGB under its own profile (converting would
    only add rounding), a profile that cannot be read (read as sRGB, as browsers do), a profile of
    another space than the picture's (CMYK or gray given to RGB, RGB given to gray or CMYK), and a
    gray picture whose profile is sRGB's own gray."""
    from PIL import ImageCms

    chart = _colour_chart()
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    for name, profile in (
        ("srgb.png", srgb),
        ("own_srgb.png", colour.rgb_profile("sRGB", colour.SRGB)),
        ("none.png", None),
        ("junk.png", b"not a colour profile at all" * 20),
        ("cut.png", DISPLAY_P3_ICC[:300]),
        ("wrong_space.png", DISPLAY_P3_ICC[:16] + b"CMYK" + DISPLAY_P3_ICC[20:]),
    ):
        path = tmp_path / name
        Image.fromarray(chart).save(path, icc_profile=profile)
        assert np.array_equal(media.load_image(path), chart), name
        assert media.converted_colour_space(path) is None, name
    path = tmp_path / "gray_profile.png"
    Image.fromarray(chart).save(path, icc_profile=mf.gray_profile(1.8, "Gray Gamma 1.8"))
    assert np.array_equal(media.load_image(path), chart)
    for name, profile in (("gray.png", DISPLAY_P3_ICC), ("s_gray.png", mf.gray_profile(None, "sGray"))):
        gray = tmp_path / name
        Image.fromarray(chart[..., 0]).save(gray, icc_profile=profile)
        assert np.array_equal(media.load_image(gray)[..., 1], chart[..., 0]), name
        assert media.converted_colour_space(gray) is None, name
    cmyk = tmp_path / "cmyk.tif"
    Image.fromarray(chart).convert("CMYK").save(cmyk, icc_profile=DISPLAY_P3_ICC)
    with Image.open(cmyk) as image:
        assert np.array_equal(media.load_image(cmyk), np.asarray(image.convert("RGB")))
    assert media.converted_colour_space(cmyk) is None


@pytest.mark.parametrize(
    ("colours", "options", "converted"),
    [
        (b"prof" + DISPLAY_P3_ICC, {}, True),
        (b"nclx" + struct.pack(">HHHB", 12, 13, 1, 0x80), {"tile": 64}, True),  # P3 primaries, sRGB transfer
        (b"nclx" + struct.pack(">HHHB", 1, 13, 1, 0x80), {}, False),  # BT.709 primaries: sRGB's
        (b"prof" + b"junk" * 40, {"tile": 64}, False),
    ],
    ids=["icc", "nclx-p3-on-tiles", "nclx-bt709", "damaged-icc"],
)
def test_a_heic_photo_in_display_p3_is_converted_to_srgb(
    tmp_path: Path, colours: bytes, options: dict, converted: bool
) -> None:
    """An iPhone's HEIC states its colours in a `colr` property: an ICC profile, or codes (`nclx`)."""
    chart = _colour_chart()
    plain = hf.write_heic(tmp_path / "plain.heic", chart, crf=10, **options)
    described = hf.write_heic(tmp_path / "IMG_0002.HEIC", chart, crf=10, colours=colours, **options)
    stored = media.load_image(plain)  # the same HEVC pictures (x265 is deterministic), no profile
    read = media.load_image(described)
    if converted:
        _assert_converted_from_display_p3(read, stored)
        assert media.converted_colour_space(described) == "Display P3"
    else:
        assert np.array_equal(read, stored)
        assert media.converted_colour_space(described) is None


@pytest.mark.parametrize(
    ("name", "container", "codec", "stored", "aspect", "turn", "shown"),
    [
        ("hdv.mts", "mpegts", "libx264", (144, 108), Fraction(4, 3), 0, (192, 108)),  # HDV, AVCHD: 1440 x 1080
        ("dvd.mpg", "mpeg", "mpeg2video", (720, 480), Fraction(8, 9), 0, (720, 540)),  # a 4:3 DVD
        ("portrait.mp4", "mp4", "libx264", (144, 108), Fraction(4, 3), 90, (108, 192)),
    ],
    ids=["hdv", "dvd", "turned"],
)
def test_a_video_of_non_square_pixels_is_seen_as_players_show_it(
    tmp_path: Path, name: str, container: str, codec: str, stored: tuple, aspect: Fraction, turn: int, shown: tuple
) -> None:
    """Camcorders and DVDs store pixels that are not square and say so: a round face stored
    squeezed is round again, stretched (no stored pixel lost), before its faces are looked for."""
    width, height = stored
    rgb = np.zeros((height, width, 3), np.uint8)
    radius = height // 3  # a disc as shown: stored narrower (or flatter) by the pixels' shape
    cv2.ellipse(rgb, (width // 2, height // 2), (round(radius / aspect), radius), 0, 0, 360, (255, 255, 255), -1)
    path = mf.write_with_pixel_aspect(tmp_path / name, rgb, aspect, container, codec)
    if turn:
        mf.set_mp4_rotation(path, turn)
    info, frames = media.read_frames(path, frames=2)
    assert (info.width, info.height) == shown
    for frame in frames:
        assert frame.rgb.shape[:2] == (shown[1], shown[0])
        rows, columns = np.nonzero(frame.rgb[..., 0] > 128)
        across, down = columns.max() - columns.min() + 1, rows.max() - rows.min() + 1
        scale = shown[1] / height if not turn and aspect < 1 else 1.0  # a DVD's frame is stretched down
        assert abs(across - down) <= 3, (across, down)
        assert abs(max(across, down) - 2 * radius * scale) <= 4


def _combing(rgb: np.ndarray) -> float:
    """The largest amount by which an odd row's pixel stands out from both even rows around it
    (squared levels, mean over channels): teeth along moving edges when fields are two moments."""
    above, middle, below = (rgb[start::2][: (rgb.shape[0] - 1) // 2].astype(np.int32) for start in (0, 1, 2))
    return float(((middle - above) * (middle - below)).mean(axis=2).max())


def test_an_interlaced_video_is_seen_without_combing(tmp_path: Path) -> None:
    """Broadcast TV and camcorders record interlaced video: each frame's odd rows a field later than
    its even rows, so a moving edge is drawn twice, as teeth, which players remove and the models
    never saw. What moved loses its teeth; what stood still keeps its rows."""
    moving, still = [], np.zeros((96, 128, 3), np.uint8)
    cv2.circle(still, (110, 48), 14, (200, 180, 160), -1)  # right of where the bar goes
    for index in range(6):
        woven = still.copy()
        woven[0::2, 10 * index : 10 * index + 30] = (230, 230, 230)  # a bar moving right: the first field
        woven[1::2, 10 * index + 6 : 10 * index + 36] = (230, 230, 230)  # and a field later
        moving.append(woven)
    path = mf.write_interlaced(tmp_path / "broadcast.ts", moving)
    import av

    with av.open(str(path)) as container:
        decoded = next(container.decode(container.streams.video[0]))
        assert decoded.interlaced_frame
        as_stored = decoded.to_ndarray(format="rgb24")
    assert _combing(as_stored[:, :90]) > 100**2  # the teeth, as FFmpeg decodes the frame
    _, sampled = media.read_frames(path, frames=6)
    frames = list(sampled)
    assert len(frames) == 6 and frames[0].frame_number == 0
    for frame in frames:
        assert _combing(frame.rgb[:, :90]) <= 12**2  # at most what `media` leaves as detail
    # The still disc keeps its rows: only a few pixels of its coded edge (ringing) are evened out.
    changed = (frames[0].rgb[:, 90:] != as_stored[:, 90:]).any(axis=2)
    assert changed.mean() < 0.01


SRGB_TO_BT2020 = np.array([[0.6274, 0.3293, 0.0433], [0.0691, 0.9195, 0.0114], [0.0164, 0.0880, 0.8956]])
"""Linear BT.709 (sRGB's primaries) to linear BT.2020, as ITU-R BT.2087 publishes it."""


@pytest.mark.parametrize(
    ("primaries", "to_wide"), [(9, SRGB_TO_BT2020), (12, np.linalg.inv(P3_TO_SRGB))], ids=["BT2020", "P3"]
)
def test_a_standard_video_in_wide_gamut_primaries_is_converted_to_srgb(
    tmp_path: Path, primaries: int, to_wide: np.ndarray
) -> None:
    """A standard-range video whose stream states BT.2020 or Display P3 primaries holds its colours
    in that space: read as if it were BT.709, a skin tone comes out duller and greener."""
    patches = {"grey": (118, 118, 118), "skin": (190, 130, 105), "red": (200, 40, 40), "green": (60, 170, 80)}
    colours = np.array(list(patches.values()), np.float64) / 255
    wide = colour.srgb_encoded(np.clip(colour.srgb_linear(colours) @ to_wide.T, 0, 1))
    signal = np.kron(wide[None], np.ones((64, 32, 1)))
    path = mf.write_10bit_hevc(tmp_path / "wide.mp4", signal, 1, primaries=primaries)
    _, frames = media.read_frames(path, frames=1)
    frame = next(iter(frames))
    for column, (name, expected) in enumerate(patches.items()):
        read = tuple(frame.rgb[32, column * 32 + 16].astype(int))
        assert_close(read, expected, 3)
        if name != "grey":  # as stored (BT.709 assumed), each colour is a few levels off
            assert max(abs(a - b) for a, b in zip(np.round(wide[column] * 255), expected)) > 8, name


HDR_PATCHES = {"grey card": (118, 118, 118), "skin": (190, 130, 105), "white": (255, 255, 255)}


def _hdr_patches(transfer: int, height: int) -> np.ndarray:
    """The HDR signal (height x 96 x 3, 0..1) of `HDR_PATCHES`, 32 pixels wide each."""
    signal = np.zeros((height, 96, 3))
    for column, srgb in enumerate(HDR_PATCHES.values()):
        signal[:, column * 32 : (column + 1) * 32] = mf.hdr_signal(np.array(srgb), transfer)
    return signal


def _assert_hdr_patches_mapped(rgb: np.ndarray, row: int, skin_tolerance: int) -> None:
    read = {name: rgb[row, column * 32 + 16].astype(int) for column, name in enumerate(HDR_PATCHES)}
    assert_close(tuple(read["grey card"]), HDR_PATCHES["grey card"], 3)
    assert_close(tuple(read["skin"]), HDR_PATCHES["skin"], skin_tolerance)
    assert read["white"].min() >= 240  # rolled off a little below white: highlights keep detail


@pytest.mark.parametrize("transfer", [18, 16], ids=["HLG", "PQ"])
def test_an_hdr_video_is_seen_as_an_sdr_camera_would_record_it(tmp_path: Path, transfer: int) -> None:
    """Phones record HDR video (HLG) by default; read as standard video its faces come out dark and
    dull (white at about 190 of 255). BT.2408's anchors hold: an 18% grey card (38% HLG, 26 nits
    in PQ) is sRGB's 18% grey, 118, and reference white (75% HLG, 203 nits) nearly white; a skin
    tone comes back as the sRGB colour it was."""
    signal = _hdr_patches(transfer, 160)  # taller than the 128 rows converted at a time
    if transfer == 18:
        assert signal[0, 0, 0] == pytest.approx(0.38, abs=0.005) and signal[0, 64, 0] == pytest.approx(0.75, abs=0.001)
    path = mf.write_10bit_hevc(tmp_path / "IMG_0005.MOV", signal, transfer)
    info, frames = media.read_frames(path, frames=2)
    assert (info.width, info.height, info.frame_count) == (96, 160, 3)
    for frame in frames:
        for row in (32, 150):
            _assert_hdr_patches_mapped(frame.rgb, row, 4)


@pytest.mark.parametrize(("transfer", "options"), [(18, {}), (16, {"tile": 64})], ids=["HLG", "PQ-on-tiles"])
def test_an_hdr_heic_photo_is_seen_as_an_sdr_camera_would_record_it(
    tmp_path: Path, transfer: int, options: dict
) -> None:
    """Cameras save HDR photos as HEIF (10-bit HEVC, an `nclx` of PQ or HLG): decoded at its full
    depth and mapped as HDR video is, not read dark and dull."""
    signal = _hdr_patches(transfer, 96)
    hdr = hf.write_heic(
        tmp_path / "IMG_0007.HIF",
        np.round(signal * 65535).astype(np.uint16),
        bits=10,
        crf=8,
        colours=b"nclx" + struct.pack(">HHHB", 9, transfer, 9, 0),
        **options,
    )
    read = media.load_image(hdr)
    assert read.shape == (96, 96, 3)
    _assert_hdr_patches_mapped(read, 48, 4)
    assert media.converted_colour_space(hdr) == f"BT.2020 {'HLG' if transfer == 18 else 'PQ'}"


def test_an_hdr_avif_picture_is_mapped_too(tmp_path: Path) -> None:
    """An AVIF stating HLG in its `nclx` (Pillow decodes it at 8 bits, as coded) is mapped alike."""
    path = mf.write_hdr_avif(tmp_path / "hdr.avif", _hdr_patches(18, 64), 18)
    _assert_hdr_patches_mapped(media.load_image(path), 32, 6)
    assert media.converted_colour_space(path) == "BT.2020 HLG"
