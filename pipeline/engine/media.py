"""First stage of the engine: an image or a video file becomes upright RGB frames.

Images are decoded with Pillow, videos with OpenCV's FFmpeg backend. Every limit comes from
`MediaSettings`; every problem a user can cause (empty, corrupt, mislabelled, too large) is
raised as a `MediaError` subclass whose message is one line naming the file.

Videos are read as a stream: at most one decoded frame is alive inside this module at any time,
so a long 1080p video never sits in memory. Reading a video is two passes:

1. A *packet scan* (`_scan_video`): the container is demuxed without decoding
   (`CAP_PROP_FORMAT = -1`), which counts the frames that are really in the file, notes the
   keyframes and the presentation-time span. It took 0.3-1.8 s on a 1.1 GB, 10-minute 1080p
   H.264 file whose full decode takes about 40 s here, so frame counts and frame rates from the
   container header never have to be trusted: they are often wrong (0, huge, an estimate from a
   guessed duration, a file cut short by an interrupted upload).
2. The *sampling pass* (`_iter_video_frames`): N frame indices evenly spaced over the frames
   that exist; frames between samples are `grab()`bed (decoded, never converted to RGB) or,
   where that saves much decoding, skipped by seeking. See `_SEEK_MIN_SKIPPED_FRAMES`.
"""

from __future__ import annotations

import bisect
import hashlib
import math
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from pipeline.config import MediaSettings
from pipeline.errors import MediaError, MediaTooLargeError, UnsupportedMediaError

MediaKind = Literal["image", "video"]

__all__ = [
    "Frame",
    "MediaInfo",
    "MediaKind",
    "detect_kind",
    "load_image",
    "probe",
    "read_frames",
    "check_readable",
    "sample_frames",
    "sha256_file",
]


@dataclass(frozen=True)
class Frame:
    """One upright RGB frame of an image or a video."""

    frame_number: int
    """Frame number in the source video (0 for an image)."""
    time_s: float
    """Presentation time in seconds (0.0 for an image; NaN only for a video with no usable
    timestamps and no usable frame rate)."""
    rgb: np.ndarray
    """H x W x 3 uint8, RGB, already rotated upright."""


@dataclass(frozen=True)
class MediaInfo:
    """What `probe` learns about a file without decoding all of it."""

    path: Path
    kind: MediaKind
    width: int
    """Upright width, after EXIF orientation / video rotation."""
    height: int
    """Upright height, after EXIF orientation / video rotation."""
    fps: float | None
    """Average frames per second (None for images, or for a video whose timing is unusable)."""
    frame_count: int | None
    """Frames present in the file, counted by demuxing it, not the container's claim."""
    duration_s: float | None
    rotation: int
    """Degrees (0/90/180/270) the stored pixels were rotated clockwise to make them upright.
    An EXIF mirror (orientations 2, 4, 5, 7) is applied too but is not part of this number."""


# --------------------------------------------------------------------------------------------
# Files and types
# --------------------------------------------------------------------------------------------

_HASH_CHUNK_BYTES = 1 << 20
_SNIFF_BYTES = 32

_PILLOW_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF")
"""The only Pillow decoders we let near user files (Pillow would otherwise try dozens)."""

# Boxes a QuickTime/MP4 file may start with: `ftyp` in anything modern; old QuickTime files
# can start straight with `moov`, `mdat`, or padding boxes.
_QUICKTIME_FIRST_BOXES = (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot")


def _name(path: Path) -> str:
    """The file name as shown in messages: the name only (one line, no private folders)."""
    return f"'{path.name}'"


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _supported_types(settings: MediaSettings) -> str:
    return (
        f"images {', '.join(settings.image_suffixes)}; videos {', '.join(settings.video_suffixes)}"
    )


def _human_bytes(size: int) -> str:
    if size < 1024**2:
        return f"{size:,} bytes"
    if size < 1024**3:
        return f"{size / 1024**2:.1f} MB"
    return f"{size / 1024**3:.2f} GB"


def check_readable(path: Path, settings: MediaSettings = MediaSettings()) -> None:
    """Raise a `MediaError` unless `path` is a readable regular file within the size limit."""
    _check_file(Path(path), settings)


def _check_file(path: Path, settings: MediaSettings) -> None:
    """Refuse what is not a readable, non-empty regular file within the size limit."""
    if not path.exists():
        raise MediaError(f"{_name(path)} was not found.")
    if not path.is_file():
        raise MediaError(f"{_name(path)} is not a file.")
    size = path.stat().st_size
    if size == 0:
        raise MediaError(f"{_name(path)} is an empty file (0 bytes).")
    if size > settings.max_file_bytes:
        raise MediaTooLargeError(
            f"{_name(path)} is {_human_bytes(size)}; files up to "
            f"{_human_bytes(settings.max_file_bytes)} are accepted."
        )


def _sniff(head: bytes) -> tuple[MediaKind, str] | None:
    """(kind, container) from a file's first bytes, or None for anything we do not read."""
    if head.startswith(b"\xff\xd8\xff"):
        return "image", "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image", "PNG"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image", "WebP"
    if head.startswith(b"BM"):
        return "image", "BMP"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):  # TIFF and BigTIFF
        return "image", "TIFF"
    if head[4:8] in _QUICKTIME_FIRST_BOXES:
        return "video", "MP4/MOV"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "video", "AVI"
    if head.startswith(b"\x1a\x45\xdf\xa3"):  # EBML header: Matroska and WebM
        return "video", "MKV/WebM"
    return None


def detect_kind(path: Path, settings: MediaSettings = MediaSettings()) -> MediaKind:
    """Whether `path` is an image or a video, decided by its content (magic bytes).

    The suffix must be one of the supported ones, and the content must be one of the supported
    containers; when both are known the content wins (a PNG named `.jpg` is read as a PNG).

    Raises:
        UnsupportedMediaError: unknown suffix, or content that is no supported image/video.
        MediaTooLargeError: file larger than `settings.max_file_bytes`.
        MediaError: missing or empty file.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in settings.image_suffixes + settings.video_suffixes:
        shown = f"'{suffix}'" if suffix else "no suffix"
        raise UnsupportedMediaError(
            f"{_name(path)} has an unsupported type ({shown}); supported are "
            f"{_supported_types(settings)}."
        )
    _check_file(path, settings)
    with path.open("rb") as stream:
        head = stream.read(_SNIFF_BYTES)
    sniffed = _sniff(head)
    if sniffed is None:
        raise UnsupportedMediaError(
            f"{_name(path)} is not an image or a video this app can read (its content is none of "
            f"JPEG, PNG, WebP, BMP, TIFF, MP4/MOV, AVI, MKV/WebM); it may be corrupt or "
            f"mislabelled. Supported are {_supported_types(settings)}."
        )
    return sniffed[0]


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB chunks (constant memory)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as stream:
        while chunk := stream.read(_HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------

# Clockwise degrees that EXIF orientations turn the stored pixels by (2/4/5/7 also mirror).
_EXIF_ORIENTATION_TAG = 0x0112
_EXIF_ROTATION = {1: 0, 2: 0, 3: 180, 4: 180, 5: 270, 6: 90, 7: 90, 8: 270}

# Pillow raises these (and only these, by design) for corrupt or truncated data.
_PILLOW_DECODE_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError)


def _open_image(path: Path, settings: MediaSettings) -> Image.Image:
    """Open lazily (header only) and refuse a decompression bomb before any pixel is decoded."""
    try:
        image = Image.open(path, formats=_PILLOW_FORMATS)
    except Image.DecompressionBombError as exc:
        # Pillow's own guard fires in `open` above 2 x Image.MAX_IMAGE_PIXELS (~179 MP); ours
        # (below) is the one that normally decides. Between ~89 and ~179 MP Pillow only emits a
        # DecompressionBombWarning, which our check then turns into this same error.
        raise MediaTooLargeError(
            f"{_name(path)} is too large to decode safely ({_one_line(exc)}); the limit is "
            f"{settings.max_image_pixels / 1e6:.1f} megapixels."
        ) from exc
    except _PILLOW_DECODE_ERRORS as exc:
        raise MediaError(f"{_name(path)} is not a readable image: {_one_line(exc)}") from exc
    width, height = image.size
    if width * height > settings.max_image_pixels:
        image.close()
        raise MediaTooLargeError(
            f"{_name(path)} is {width} x {height} pixels ({width * height / 1e6:.1f} megapixels);"
            f" images up to {settings.max_image_pixels / 1e6:.1f} megapixels are accepted."
        )
    if width <= 0 or height <= 0:
        image.close()
        raise MediaError(f"{_name(path)} has no pixels ({width} x {height}).")
    return image


def _exif_rotation(image: Image.Image) -> int:
    try:
        orientation = image.getexif().get(_EXIF_ORIENTATION_TAG, 1)
    except _PILLOW_DECODE_ERRORS:  # a broken EXIF block must not make the picture unreadable
        return 0
    return _EXIF_ROTATION.get(orientation, 0)


def _scale_to_uint8(values: np.ndarray, full_scale: float | None) -> np.ndarray:
    """Map high-bit-depth gray values to 0..255 by scaling, never by clipping.

    `full_scale` is the value that becomes 255 (65535 for 16-bit data, 1.0 for float data in
    0..1); None stretches the image's own finite range instead (data of unknown range).
    """
    data = values.astype(np.float64)
    finite = np.isfinite(data)
    if not finite.all():
        data = np.where(finite, data, 0.0)
    if full_scale is not None:
        low, span = 0.0, full_scale
    else:
        low = float(data.min())
        span = float(data.max()) - low or 1.0
    return np.clip(np.rint((data - low) * (255.0 / span)), 0, 255).astype(np.uint8)


def _high_depth_gray_to_uint8(image: Image.Image) -> np.ndarray:
    """Gray 8-bit array from Pillow's 16-bit ('I;16*'), 32-bit int ('I') or float ('F') modes."""
    values = np.asarray(image)
    if image.mode.startswith("I;16"):
        return _scale_to_uint8(values, 65535.0)
    if image.mode == "I":
        # Pillow uses 'I' for 16-bit PNG/TIFF data too: values within 0..65535 are read as
        # 16-bit; anything else (true 32-bit data) is stretched over its own range.
        in_16_bit_range = values.size and values.min() >= 0 and values.max() <= 65535
        return _scale_to_uint8(values, 65535.0 if in_16_bit_range else None)
    # 'F': float images are conventionally 0..1; other ranges are stretched.
    finite = values[np.isfinite(values)]
    in_unit_range = finite.size and finite.min() >= 0.0 and finite.max() <= 1.0
    return _scale_to_uint8(values, 1.0 if in_unit_range else None)


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info


def _pillow_to_rgb(image: Image.Image) -> np.ndarray:
    """H x W x 3 uint8 RGB from any Pillow mode we may meet.

    Transparency is composited onto white rather than dropped: fully transparent pixels often
    hold arbitrary colour (black, or leftovers of an editor) which dropping alpha would expose,
    while white is what a person sees in a viewer or a document, and what a face finder
    should see.
    """
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        gray = _high_depth_gray_to_uint8(image)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if _has_alpha(image):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.array(Image.alpha_composite(white, rgba).convert("RGB"))
    if image.mode != "RGB":
        image = image.convert("RGB")  # L, 1, P, CMYK, YCbCr, RGBX
    return np.array(image)


def _decode_image(path: Path, settings: MediaSettings) -> tuple[np.ndarray, int]:
    """(upright RGB pixels, clockwise rotation applied) of an image file."""
    with _open_image(path, settings) as image:
        rotation = _exif_rotation(image)
        try:
            image.load()
        except _PILLOW_DECODE_ERRORS as exc:
            raise MediaError(f"{_name(path)} is corrupt or truncated: {_one_line(exc)}") from exc
        try:
            upright = ImageOps.exif_transpose(image)
        except _PILLOW_DECODE_ERRORS:  # a broken EXIF block must not make the picture unreadable
            upright, rotation = image, 0
        try:
            rgb = _pillow_to_rgb(upright)
        except _PILLOW_DECODE_ERRORS as exc:  # e.g. a colour mode Pillow cannot convert (LAB)
            raise UnsupportedMediaError(
                f"{_name(path)} uses a colour mode that cannot be shown as RGB ({image.mode})."
            ) from exc
    return np.ascontiguousarray(rgb), rotation


def _require_kind(path: Path, settings: MediaSettings, kind: MediaKind) -> None:
    found = detect_kind(path, settings)
    if found != kind:
        raise UnsupportedMediaError(f"{_name(path)} is a {found}, not an {kind}.")


def load_image(path: Path, settings: MediaSettings = MediaSettings()) -> np.ndarray:
    """Decode an image file to an upright H x W x 3 uint8 RGB array.

    EXIF orientation is applied; palette, gray, CMYK and 16-bit/float images become 8-bit RGB
    (high bit depths are scaled, 65535 -> 255); transparency is composited onto white.

    Raises:
        MediaTooLargeError: more pixels than `settings.max_image_pixels` (checked from the
            header, before decoding) or a file over `settings.max_file_bytes`.
        MediaError: empty, truncated or corrupt file; UnsupportedMediaError for other types.
    """
    path = Path(path)
    _require_kind(path, settings, "image")
    return _decode_image(path, settings)[0]


def _probe_image(path: Path, settings: MediaSettings) -> MediaInfo:
    with _open_image(path, settings) as image:
        rotation = _exif_rotation(image)
        width, height = image.size
    if rotation in (90, 270):
        width, height = height, width
    return MediaInfo(path, "image", width, height, None, None, None, rotation)


# --------------------------------------------------------------------------------------------
# Videos
# --------------------------------------------------------------------------------------------

_MAX_PLAUSIBLE_FPS = 1000.0
"""Above this a frame rate is noise (e.g. a 1/90000 time base read as a rate); slow-motion
cameras store at most 960 fps."""

_MAX_FPS_FOR_BOUNDS = 240.0
"""Every loop over a video's packets or frames stops after
`settings.max_video_seconds * _MAX_FPS_FOR_BOUNDS` steps, whatever the file claims."""

_SEEK_MIN_SKIPPED_FRAMES = 32
"""Seek (instead of `grab()`bing forward) only when the seek skips decoding at least this many
frames.

Why: `grab()` does decode a frame (it only skips the conversion to BGR), and OpenCV's seek decodes
forward from the keyframe before the target; so a seek saves `keyframe - position` decodes and
costs a fixed overhead, measured at about 0-3 decodes on x264 1080p and 6 decodes on the DFDC
1080p H.264 (B-frames). 32 leaves a wide margin. Both ways give identical frames; measured
probe + 32 samples, 2 busy cores, 1080p H.264 (sequential grab / this rule):
- abofeumbvv.mp4, 10 s, keyframes at 0 and 163: 2.2 s / 2.2 s (no seek pays: same path)
- synthetic 3 min, keyframe every 30 frames: 18.3 s / 3.0 s
- synthetic 10 min, keyframe every 250 frames (x264 default): 50.9 s / 11.6 s
Seeking to every sample regardless (no keyframe rule) took 12-18 s on the 10 s clip, because
each seek there decodes from frame 0 or 163: the keyframe positions from the packet scan are
what make the choice right for short and long GOPs alike.
"""

_OPENCV_SEEK_BACKOFF_FRAMES = 16
"""OpenCV's FFmpeg seek (cap_ffmpeg_impl.hpp, `seek`) aims 16 frames before the target and
then decodes forward, so decoding really starts at the last keyframe at or before
`target - 16`."""

_OPENCV_ROTATES = True
"""Let OpenCV apply the container's rotation (CAP_PROP_ORIENTATION_AUTO). We read the setting
back and rotate ourselves only if OpenCV says it does not, so rotation happens exactly once.
A module flag so that tests can exercise our own rotation path."""


def _is_plausible_fps(fps: float | None) -> bool:
    return fps is not None and math.isfinite(fps) and 0.0 < fps <= _MAX_PLAUSIBLE_FPS


def _max_steps(settings: MediaSettings) -> int:
    return math.ceil(settings.max_video_seconds * _MAX_FPS_FOR_BOUNDS) + 1


def _format_seconds(seconds: float) -> str:
    whole = int(round(seconds))
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


class _Capture:
    """A `cv2.VideoCapture` on one file, with rotation handled exactly once."""

    def __init__(self, path: Path, *, raw_packets: bool = False) -> None:
        self.path = path
        # CAP_FFMPEG explicitly: with CAP_ANY, OpenCV may treat a name holding '%' as an image
        # sequence pattern.
        self.cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
        if not self.cap.isOpened():
            self.cap.release()
            raise MediaError(
                f"{_name(path)} could not be opened as a video; it may be truncated (for example"
                f" an unfinished upload) or corrupt."
            )
        self.rotation = self._container_rotation()
        self.manual_rotation = 0
        if raw_packets:
            # Demux only: grab() reads one packet and decodes nothing.
            self.raw = bool(self.cap.set(cv2.CAP_PROP_FORMAT, -1))
            return
        self.raw = False
        self.cap.set(cv2.CAP_PROP_ORIENTATION_AUTO, 1 if _OPENCV_ROTATES else 0)
        opencv_rotates = self.cap.get(cv2.CAP_PROP_ORIENTATION_AUTO) == 1
        self.manual_rotation = 0 if opencv_rotates else self.rotation

    def _container_rotation(self) -> int:
        degrees = self.cap.get(cv2.CAP_PROP_ORIENTATION_META)
        if not math.isfinite(degrees):
            return 0
        return int(round(degrees / 90.0)) % 4 * 90

    def get(self, prop: int) -> float:
        return float(self.cap.get(prop))

    def grab(self) -> bool:
        return bool(self.cap.grab())

    def retrieve_rgb(self) -> np.ndarray | None:
        """The grabbed frame, upright RGB, or None if it could not be decoded."""
        ok, bgr = self.cap.retrieve()
        if not ok or bgr is None or bgr.ndim != 3 or bgr.shape[2] != 3 or bgr.size == 0:
            return None
        if self.manual_rotation == 90:
            bgr = cv2.rotate(bgr, cv2.ROTATE_90_CLOCKWISE)
        elif self.manual_rotation == 180:
            bgr = cv2.rotate(bgr, cv2.ROTATE_180)
        elif self.manual_rotation == 270:
            bgr = cv2.rotate(bgr, cv2.ROTATE_90_COUNTERCLOCKWISE)
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def seek(self, index: int) -> bool:
        return bool(self.cap.set(cv2.CAP_PROP_POS_FRAMES, float(index)))

    def release(self) -> None:
        self.cap.release()

    def __enter__(self) -> _Capture:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


@dataclass(frozen=True)
class _VideoScan:
    """What the packet scan found. Internal: read_frames passes it on to the sampler."""

    packets: int
    keyframes: array | None
    """Packet indices of keyframes, ascending (8 bytes each: at most ~20 MB for a 3-hour
    all-keyframe video); None when the backend cannot tell, and then nothing seeks."""
    container_frame_count: float
    container_fps: float
    pts_span_s: float | None
    """Last minus first presentation time, when the timestamps look usable."""


def _scan_video(path: Path, settings: MediaSettings) -> _VideoScan:
    """Count the frames really present by demuxing (not decoding) the whole file. Bounded."""
    max_steps = _max_steps(settings)
    keyframes: array | None = array("q")
    first_ms, last_ms = math.inf, -math.inf
    with _Capture(path, raw_packets=True) as capture:
        container_frame_count = capture.get(cv2.CAP_PROP_FRAME_COUNT)
        container_fps = capture.get(cv2.CAP_PROP_FPS)
        if not capture.raw:
            keyframes = None  # this backend cannot demux only: count by decoding, never seek
        packets = 0
        while packets < max_steps and capture.grab():
            if keyframes is not None and capture.get(cv2.CAP_PROP_LRF_HAS_KEY_FRAME):
                keyframes.append(packets)
            # Packets come in decode order; with B-frames the extremes still bound the span.
            ms = capture.get(cv2.CAP_PROP_POS_MSEC)
            if math.isfinite(ms):
                first_ms, last_ms = min(first_ms, ms), max(last_ms, ms)
            packets += 1
        if packets >= max_steps and capture.grab():
            raise MediaTooLargeError(
                f"{_name(path)} has more than {max_steps - 1} frames; videos up to "
                f"{_format_seconds(settings.max_video_seconds)} are accepted."
            )
    span_s = (last_ms - first_ms) / 1000.0 if packets >= 2 and last_ms > first_ms else None
    if keyframes is not None and (not keyframes or keyframes[0] != 0):
        keyframes = None  # keyframe flags unusable (or a stream not starting at one): no seeking
    return _VideoScan(packets, keyframes, container_frame_count, container_fps, span_s)


def _video_fps(scan: _VideoScan) -> float | None:
    """Average frame rate: from the timestamps of the frames present when they are usable
    (right for variable frame rate too), else the container's rate when plausible."""
    if scan.pts_span_s is not None:
        measured = (scan.packets - 1) / scan.pts_span_s
        if _is_plausible_fps(measured):
            return measured
    return scan.container_fps if _is_plausible_fps(scan.container_fps) else None


def _can_seek(scan: _VideoScan, fps: float | None) -> bool:
    """Whether OpenCV's frame seeking can be trusted on this file.

    OpenCV turns a frame index into a timestamp with the container's frame rate, clamps it to
    the container's frame count, and reports the landing frame from timestamps. That is exact
    for constant-frame-rate files whose header is right, and wrong otherwise; so seek only when
    the header agrees with what the packet scan found.
    """
    if scan.keyframes is None or fps is None or scan.packets < 2:
        return False
    if int(round(scan.container_frame_count)) != scan.packets:
        return False
    return _is_plausible_fps(scan.container_fps) and abs(scan.container_fps - fps) <= 0.01 * fps


def _probe_video(path: Path, settings: MediaSettings) -> tuple[MediaInfo, _VideoScan, bool]:
    """(info, scan, seekable). Decodes the first frame, so that an undecodable video fails here."""
    scan = _scan_video(path, settings)
    fps = _video_fps(scan)
    frame_count = scan.packets
    if scan.container_frame_count > scan.packets > 1:
        # The header promises more frames than the file holds: the file was cut short (an
        # unfinished upload) or its header lies. The last packet of a cut file is most likely
        # cut too, and decoders hide that by repeating an earlier frame: leave it out.
        frame_count -= 1
    duration_s = frame_count / fps if fps is not None else None
    if duration_s is not None and duration_s > settings.max_video_seconds:
        raise MediaTooLargeError(
            f"{_name(path)} is {_format_seconds(duration_s)} long; videos up to "
            f"{_format_seconds(settings.max_video_seconds)} are accepted."
        )
    with _Capture(path) as capture:
        stored_w = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        stored_h = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        _check_video_pixels(path, stored_w, stored_h, settings)  # before decoding anything
        first = capture.retrieve_rgb() if scan.packets and capture.grab() else None
        rotation = capture.rotation
    if first is None:
        raise MediaError(f"{_name(path)}: could not decode any frame of this video.")
    height, width = first.shape[:2]  # the decoded, upright frame is the truth about its size
    _check_video_pixels(path, width, height, settings)
    info = MediaInfo(path, "video", width, height, fps, frame_count, duration_s, rotation)
    return info, scan, _can_seek(scan, fps)


def _check_video_pixels(path: Path, width: int, height: int, settings: MediaSettings) -> None:
    if width * height > settings.max_video_pixels:
        raise MediaTooLargeError(
            f"{_name(path)} has {width} x {height} frames; videos up to "
            f"{settings.max_video_pixels / 1e6:.1f} megapixels per frame (4K) are accepted."
        )


def _sample_indices(frame_count: int, samples: int) -> list[int]:
    """`samples` frame indices evenly spaced over `frame_count` frames: the middle of each of
    `samples` equal spans (so neither the often black first frame nor the last one, which is
    the likeliest to be damaged). Every frame when there are no more frames than samples.

    Evenly spaced indices are evenly spaced times for constant-frame-rate video (cameras, phones
    in good light, every DFDC clip); for variable frame rate the spacing follows the frames.
    """
    if frame_count <= samples:
        return list(range(frame_count))
    return [int((k + 0.5) * frame_count / samples) for k in range(samples)]


def _seek_saves_decoding(keyframes: array, position: int, target: int) -> bool:
    """Whether seeking to `target` from `position` (the next frame grab() would decode) saves
    at least `_SEEK_MIN_SKIPPED_FRAMES` decodes compared with grabbing forward."""
    aim = max(target - _OPENCV_SEEK_BACKOFF_FRAMES, 0)
    decode_from = keyframes[bisect.bisect_right(keyframes, aim) - 1]
    return decode_from - position >= _SEEK_MIN_SKIPPED_FRAMES


def _frame_time_s(
    capture: _Capture, index: int, fps: float | None, duration_s: float | None, previous: float
) -> float:
    """CAP_PROP_POS_MSEC when sane (finite, within the video, after the previous sample), else
    index / fps."""
    seconds = capture.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
    upper = (duration_s + 1.0) if duration_s is not None else math.inf
    if math.isfinite(seconds) and 0.0 <= seconds <= upper and seconds > previous:
        return seconds
    return index / fps if fps is not None else math.nan


def _iter_video_frames(
    path: Path, info: MediaInfo, scan: _VideoScan, seekable: bool, samples: int,
    settings: MediaSettings,
) -> Iterator[Frame]:
    """Yield the sampled frames, holding one decoded frame at a time. Bounded: at most
    `info.frame_count` (itself bounded by `_max_steps`) grabs plus one per sample."""
    assert info.frame_count is not None
    targets = _sample_indices(info.frame_count, samples)
    yielded = 0
    previous_time = -math.inf
    capture = _Capture(path)
    try:
        position = 0  # index of the frame the next grab() decodes
        for target in targets:
            landed = False
            if seekable and scan.keyframes is not None and _seek_saves_decoding(
                scan.keyframes, position, target
            ):
                # After a seek and a grab OpenCV reports the frame after the one grabbed.
                landed = (
                    capture.seek(target)
                    and capture.grab()
                    and capture.get(cv2.CAP_PROP_POS_FRAMES) == target + 1
                )
                if landed:
                    position = target + 1
                else:
                    # The seek missed: start again from the top and read sequentially, which
                    # is always exact.
                    capture.release()
                    capture = _Capture(path)
                    position, seekable = 0, False
            if not landed:
                while position < target and capture.grab():
                    position += 1
                if position < target or not capture.grab():
                    break  # the stream ended early (damaged end): keep what was read
                position += 1
            rgb = capture.retrieve_rgb()
            if rgb is None:
                continue  # one undecodable frame: skip it, the next sample may be fine
            _check_video_pixels(path, rgb.shape[1], rgb.shape[0], settings)
            time_s = _frame_time_s(capture, target, info.fps, info.duration_s, previous_time)
            previous_time = time_s if math.isfinite(time_s) else previous_time
            yield Frame(target, time_s, rgb)
            yielded += 1
            del rgb  # hold nothing while grabbing towards the next sample
    finally:
        capture.release()
    if yielded == 0:
        raise MediaError(f"{_name(path)}: could not decode any frame of this video.")


# --------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------


def probe(path: Path, settings: MediaSettings = MediaSettings()) -> MediaInfo:
    """Describe an image or a video: kind, upright size, rotation, and for videos the frame
    rate, the number of frames really in the file and the duration.

    An image's header is read, not its pixels. A video is demuxed once (cheap) and its first
    frame decoded, so a video that probes fine can be sampled.

    Raises:
        MediaTooLargeError: pixels, duration or file size over the limits in `settings`.
        UnsupportedMediaError: not a supported type. MediaError: empty, corrupt, undecodable.
    """
    path = Path(path)
    if detect_kind(path, settings) == "image":
        return _probe_image(path, settings)
    return _probe_video(path, settings)[0]


def _frame_count_to_sample(frames: int | None, settings: MediaSettings) -> int:
    count = settings.frames if frames is None else frames
    if count < 1:
        raise ValueError(f"frames must be at least 1, not {count}")
    return count


def _yield_one(frame: Frame) -> Iterator[Frame]:
    yield frame


def read_frames(
    path: Path, settings: MediaSettings = MediaSettings(), frames: int | None = None
) -> tuple[MediaInfo, Iterator[Frame]]:
    """Probe a file and return its info with an iterator over its frames.

    An image gives one Frame (index 0, time 0.0), decoded now. A video gives `frames`
    (default `settings.frames`) frames evenly spaced over the whole video, decoded lazily while
    iterating, one at a time; fewer if the video has fewer frames or its end is damaged.
    Errors about the file as a whole (type, size, limits, unreadable) are raised here, not
    while iterating.
    """
    path = Path(path)
    samples = _frame_count_to_sample(frames, settings)
    if detect_kind(path, settings) == "image":
        rgb, rotation = _decode_image(path, settings)
        height, width = rgb.shape[:2]
        info = MediaInfo(path, "image", width, height, None, None, None, rotation)
        return info, _yield_one(Frame(0, 0.0, rgb))
    info, scan, seekable = _probe_video(path, settings)
    return info, _iter_video_frames(path, info, scan, seekable, samples, settings)


def sample_frames(
    path: Path, settings: MediaSettings = MediaSettings(), frames: int | None = None
) -> Iterator[Frame]:
    """A generator of `frames` (default `settings.frames`) upright RGB frames evenly spaced over
    a video (one frame for an image). See `read_frames`, which also returns the `MediaInfo`."""
    return read_frames(path, settings, frames)[1]
