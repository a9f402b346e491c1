"""First stage of the engine: an image or a video file becomes upright RGB frames.

Images are decoded with Pillow, HEIC photos by `pipeline.engine.heif` (FFmpeg's HEVC decoder),
videos with PyAV (FFmpeg); an animated GIF is a video to FFmpeg, an animated WebP, AVIF or PNG a
video whose frames Pillow decodes. Every limit comes from
`MediaSettings`; every problem a user can cause (missing, not a file, empty, corrupt,
mislabelled, too large) is raised as a `MediaError` subclass whose message is one line naming
the file, never its folder.

Videos are read as a stream: at most one decoded frame is alive inside this module at any time,
so a long 1080p video never sits in memory. Reading a video is two passes:

1. A *packet scan* (`_scan_video`): the container is demuxed without decoding, which gives the
   presentation time of every frame really in the file and which frames are keyframes (about
   0.02 s for a 10-second 1080p clip). Frame counts and rates from the container header are
   never trusted: they are often wrong (0, huge, an estimate from a guessed duration, a file cut
   short by an interrupted upload).
2. The *sampling pass* (`_iter_video_frames`): N frames evenly spaced in time over the frames
   that exist; frames between samples are decoded (they are references) but never converted to
   RGB, and where a keyframe lets the decoder skip many frames, it seeks there instead.
"""

from __future__ import annotations

import bisect
import contextlib
import errno
import hashlib
import math
import os
import stat
import struct
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from pipeline.config import MediaSettings
from pipeline.engine.colour import (
    HDR_TRANSFERS,
    hdr_name,
    hdr_to_sdr,
    nclx_profile,
    picture_to_srgb,
    profile_name,
    to_srgb,
)
from pipeline.engine.heif import decode_heif, read_hdr_signal, read_heif_layout
from pipeline.errors import MediaError, MediaTooLargeError, UnsupportedMediaError

MediaKind = Literal["image", "video"]

__all__ = [
    "PILLOW_DAMAGE_ERRORS",
    "Frame",
    "MediaInfo",
    "MediaKind",
    "check_readable",
    "check_suffix",
    "check_without_opening",
    "converted_colour_space",
    "detect_kind",
    "is_avif",
    "is_gif",
    "is_heif",
    "load_image",
    "probe",
    "read_frames",
    "sample_frames",
    "sha256_file",
]


@dataclass(frozen=True)
class Frame:
    """One upright RGB frame of an image or a video."""

    frame_number: int
    """Frame number in the source video (0 for an image)."""
    time_s: float
    """Presentation time in seconds from the first frame (0.0 for an image)."""
    rgb: np.ndarray
    """H x W x 3 uint8, RGB, already rotated upright."""
    scale: float = 1.0
    """Pixels of `rgb` per pixel of the original picture: below 1 for an image larger than
    `MediaSettings.max_decoded_side`, which is decoded smaller."""


@dataclass(frozen=True)
class MediaInfo:
    """What `probe` learns about a file without decoding all of it."""

    path: Path
    kind: MediaKind
    width: int
    """Upright width, after EXIF orientation / video rotation, in original pixels."""
    height: int
    """Upright height, after EXIF orientation / video rotation, in original pixels."""
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
_SNIFF_BYTES = 400
"""Enough of a file's start to recognise every container: an MPEG transport stream is told by
its sync byte at the start of two packets (188 or 192 bytes apart)."""
_ASF_HEADER = bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c")
"""The GUID an ASF file (WMV) starts with."""

_PILLOW_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "AVIF", "GIF")
"""The only Pillow decoders we let near user files (Pillow would otherwise try dozens)."""

# Brands of the `ftyp` box that open an ISO media file: AVIF pictures (still, sequence), and the
# HEIF family (HEIC: how iPhones save photos), which `pipeline.engine.heif` reads.
_AVIF_BRANDS = {b"avif", b"avis"}
_HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"mif1", b"msf1"}

_ANIMATED_PICTURES = ("GIF", "WebP", "AVIF", "PNG")
"""Picture formats that may hold an animation (APNG for PNG), which is then read as a video."""
_PILLOW_ANIMATIONS = ("WebP", "AVIF", "PNG")
"""Animations whose frames Pillow decodes: FFmpeg reads only the first picture of these."""

# Boxes a QuickTime/MP4 file may start with: `ftyp` in anything modern; old QuickTime files
# can start straight with `moov`, `mdat`, or padding boxes.
_QUICKTIME_FIRST_BOXES = (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot")


def _name(path: Path) -> str:
    """The file name as shown in messages: the name only (one line, no private folders)."""
    return f"'{path.name}'"


def _why(error: object, path: Path) -> str:
    """A library's error text on one line, with the file's folders taken out (a temporary
    upload folder is nobody's business)."""
    text = " ".join(str(error).split())
    for full in sorted(
        {str(path), str(path.absolute()), str(path.parent), str(path.absolute().parent)}, key=len, reverse=True
    ):
        if full not in ("", "."):
            text = text.replace(full + os.sep, "").replace(full, path.name)
    return text


def _supported_types(settings: MediaSettings) -> str:
    return f"images {', '.join(settings.image_suffixes)}; videos {', '.join(settings.video_suffixes)}"


def _human_bytes(size: int) -> str:
    if size < 1024**2:
        return f"{size:,} bytes"
    if size < 1024**3:
        return f"{size / 1024**2:.1f} MB"
    return f"{size / 1024**3:.2f} GB"


def check_readable(path: Path, settings: MediaSettings = MediaSettings()) -> None:
    """Raise a `MediaError` unless `path` is a readable, non-empty regular file within the size
    limit. Never opens anything that could block (a FIFO, a device)."""
    path = Path(path)
    try:
        info = os.stat(path)  # follows links: a loop or a dangling link fails here
    except FileNotFoundError:
        if os.path.lexists(path):
            raise MediaError(f"{_name(path)} is a link to a file that does not exist.") from None
        raise MediaError(f"{_name(path)} was not found.") from None
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise MediaError(f"{_name(path)} is a link that leads back to itself (a link loop).") from None
        if error.errno == errno.ENAMETOOLONG:
            raise MediaError(f"{_name(path)}: the file name is too long.") from None
        raise MediaError(f"{_name(path)} cannot be read: {error.strerror}.") from None
    if stat.S_ISDIR(info.st_mode):
        raise MediaError(f"{_name(path)} is a folder, not a file.")
    if not stat.S_ISREG(info.st_mode):
        raise MediaError(f"{_name(path)} is not a regular file (a pipe, socket or device); only files can be analysed.")
    if not os.access(path, os.R_OK):
        raise MediaError(f"{_name(path)} cannot be read: permission denied.")
    if info.st_size == 0:
        raise MediaError(f"{_name(path)} is an empty file (0 bytes).")
    if info.st_size > settings.max_file_bytes:
        raise MediaTooLargeError(
            f"{_name(path)} is {_human_bytes(info.st_size)}; files up to "
            f"{_human_bytes(settings.max_file_bytes)} are accepted."
        )


def check_suffix(path: Path, settings: MediaSettings = MediaSettings()) -> None:
    """Raise an `UnsupportedMediaError` unless `path` is named as a supported image or video.
    Reads nothing."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in settings.image_suffixes + settings.video_suffixes:
        shown = f"'{suffix}'" if suffix else "no suffix"
        raise UnsupportedMediaError(
            f"{_name(path)} has an unsupported type ({shown}); supported are {_supported_types(settings)}."
        )


def check_without_opening(path: Path, settings: MediaSettings = MediaSettings()) -> None:
    """What can be said of a file before anything loads to analyse it, nothing opened: that it
    is readable (`check_readable`, first, as `Engine.analyze` checks it), then that it is named
    as a supported type (`check_suffix`). `analyze` and `scan` call it before the models load or
    Ray starts."""
    check_readable(path, settings)
    check_suffix(path, settings)


def _ftyp_brands(head: bytes) -> set[bytes]:
    """The major and compatible brands of the `ftyp` box an ISO media file starts with (those
    within `head`); empty for any other file."""
    if head[4:8] != b"ftyp":
        return set()
    box = head[8 : int.from_bytes(head[:4], "big")]
    # The major brand, a minor version, then the compatible brands, four bytes each.
    return {box[:4]} | {box[i : i + 4] for i in range(8, len(box) - 3, 4)}


def is_gif(head: bytes) -> bool:
    """Whether a file's first bytes open a GIF (either version of the format)."""
    return head[:6] in (b"GIF87a", b"GIF89a")


def _is_animated(path: Path, settings: MediaSettings) -> bool:
    """Whether a GIF, WebP, AVIF or PNG holds more than one picture, from its structure (Pillow walks
    to the second picture, or reads the count the file states, decoding no pixel). One damaged
    after its first picture counts as one picture, so that decoding it gives its own message;
    one that cannot be opened at all, or is too large, is refused here as a picture would be."""
    with _open_image(path, settings) as image:
        try:
            return bool(image.is_animated)
        except PILLOW_DAMAGE_ERRORS:
            return False


def is_avif(head: bytes) -> bool:
    """Whether a file's first bytes (its `ftyp` box among them) open an AVIF picture."""
    return bool(_ftyp_brands(head) & _AVIF_BRANDS)


def is_heif(head: bytes) -> bool:
    """Whether a file's first bytes open a HEIF picture (HEIC) that is not an AVIF one."""
    return not is_avif(head) and bool(_ftyp_brands(head) & _HEIF_BRANDS)


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
    if is_gif(head):
        return "image", "GIF"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):  # TIFF and BigTIFF
        return "image", "TIFF"
    if is_avif(head):
        return "image", "AVIF"
    if is_heif(head):
        return "image", "HEIF"
    if head[4:8] in _QUICKTIME_FIRST_BOXES:
        return "video", "MP4/MOV/3GP"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "video", "AVI"
    if head.startswith(b"\x1a\x45\xdf\xa3"):  # EBML header: Matroska and WebM
        return "video", "MKV/WebM"
    if _is_transport_stream(head):
        return "video", "MPEG-TS"
    if head.startswith(b"\x00\x00\x01\xba"):  # an MPEG program stream's pack header
        return "video", "MPEG-PS"
    if head.startswith(_ASF_HEADER):
        return "video", "WMV/ASF"
    if head.startswith(b"FLV\x01"):
        return "video", "FLV"
    return None


def _is_transport_stream(head: bytes) -> bool:
    """Whether a file opens as an MPEG transport stream: 188-byte packets (broadcast, `.ts`) or
    192-byte ones behind a 4-byte time code (camcorders' AVCHD and Blu-ray, `.mts`/`.m2ts`),
    each starting with the sync byte 0x47."""
    return any(
        len(head) > skip + size and head[skip] == head[skip + size] == 0x47 for skip, size in ((0, 188), (4, 192))
    )


def detect_kind(path: Path, settings: MediaSettings = MediaSettings()) -> MediaKind:
    """Whether `path` is an image or a video, decided by its content (magic bytes).

    The suffix must be one of the supported ones, and the content must be one of the supported
    containers; when both are known the content wins (a PNG named `.jpg` is read as a PNG).
    A GIF, WebP, AVIF or PNG is an image when it holds one picture and a video when it is
    animated: its frames are sampled in time like any video's (a GIF's decoded by FFmpeg, which
    reads each frame's delay without decoding; the others by Pillow, as FFmpeg reads only their
    first picture).

    Raises:
        UnsupportedMediaError: unknown suffix, or content that is no supported image/video.
        MediaTooLargeError: file larger than `settings.max_file_bytes`.
        MediaError: missing, unreadable, not a regular file, or empty.
    """
    return _detect(Path(path), settings)[0]


def _detect(path: Path, settings: MediaSettings) -> tuple[MediaKind, str]:
    """(kind, container) of a file: `detect_kind`, and which reader its frames need."""
    check_without_opening(path, settings)
    with path.open("rb") as stream:
        head = stream.read(_SNIFF_BYTES)
    sniffed = _sniff(head)
    if sniffed is None:
        raise UnsupportedMediaError(
            f"{_name(path)} is not an image or a video this app can read (its content is none of "
            f"JPEG, PNG, WebP, BMP, TIFF, AVIF, GIF, HEIC, MP4/MOV/3GP, AVI, MKV/WebM, MPEG-TS, MPEG-PS, "
            f"WMV/ASF, FLV); it may be corrupt or "
            f"mislabelled. Supported are {_supported_types(settings)}."
        )
    if sniffed[1] in _ANIMATED_PICTURES and _is_animated(path, settings):
        return "video", sniffed[1]
    return sniffed


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB chunks (constant memory)."""
    digest = hashlib.sha256()
    try:
        with Path(path).open("rb") as stream:
            while chunk := stream.read(_HASH_CHUNK_BYTES):
                digest.update(chunk)
    except OSError as error:
        raise MediaError(f"{_name(Path(path))} cannot be read: {error.strerror or error}.") from None
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------

# Clockwise degrees that EXIF orientations turn the stored pixels by (2/4/5/7 also mirror).
_EXIF_ORIENTATION_TAG = 0x0112
_EXIF_ROTATION = {1: 0, 2: 0, 3: 180, 4: 180, 5: 270, 6: 90, 7: 90, 8: 270}

# Pillow raises these (and only these, by design) for corrupt or truncated data.
PILLOW_DAMAGE_ERRORS = (
    UnidentifiedImageError,
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    IndexError,
    struct.error,
    TypeError,
    KeyError,
    RuntimeError,
    ZeroDivisionError,
)
"""What Pillow raises for a damaged or hostile file: its own errors, and what its parsers let
through from a cut or odd structure (IndexError and struct.error from short reads, e.g. a GIF cut
inside a picture's header; TypeError from a TIFF page without a size; KeyError from a damaged TIFF
tag; RuntimeError from the AVIF decoder; ZeroDivisionError from an AVIF animation's time scale of
0). Caught only around calls into Pillow."""


def _open_image(path: Path, settings: MediaSettings) -> Image.Image:
    """Open lazily (header only) and refuse a decompression bomb before any pixel is decoded."""
    try:
        image = Image.open(path, formats=_PILLOW_FORMATS)
    except Image.DecompressionBombError as exc:
        # Pillow's own guard fires in `open` above 2 x Image.MAX_IMAGE_PIXELS (~179 MP); ours
        # (below) is the one that normally decides.
        raise MediaTooLargeError(
            f"{_name(path)} is too large to decode safely ({_why(exc, path)}); the limit is "
            f"{settings.max_image_pixels / 1e6:.1f} megapixels."
        ) from exc
    except PILLOW_DAMAGE_ERRORS as exc:
        raise MediaError(f"{_name(path)} is not a readable image: {_why(exc, path)}") from exc
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
    if image.format == "JPEG":
        _check_jpeg_size(path, width, height, settings)
    return image


def _check_jpeg_size(path: Path, width: int, height: int, settings: MediaSettings) -> None:
    """Refuse a JPEG far too small for the size its header claims.

    Its decoder would fill the missing data with grey and say nothing: a 7 KB file claiming
    8000 x 8700 pixels decodes to 70 megapixels of grey (and costs 900 MB) instead of an error.
    A Huffman-coded JPEG spends at least one bit on every 8 x 8 block."""
    blocks = math.ceil(width / 8) * math.ceil(height / 8)
    smallest = blocks * settings.min_jpeg_bits_per_block / 8
    size = path.stat().st_size
    if size < smallest:
        raise MediaError(
            f"{_name(path)} is corrupt: its header claims {width} x {height} pixels, which no JPEG "
            f"can hold in {_human_bytes(size)} (the picture data is missing or damaged)."
        )


def _exif_rotation(image: Image.Image) -> int:
    return _EXIF_ROTATION.get(_exif_orientation(image), 0)


def _scale_to_uint8(values: np.ndarray, full_scale: float | None) -> np.ndarray:
    """Map high-bit-depth gray values to 0..255 by scaling, never by clipping.

    `full_scale` is the value that becomes 255 (65535 for 16-bit data, 1.0 for float data in
    0..1); None stretches the image's own finite range instead (data of unknown range). Computed
    in float64 a band of rows at a time, so a large picture never exists at 8 bytes a pixel.
    """
    finite_values = values[np.isfinite(values)] if values.dtype.kind == "f" else values
    if full_scale is not None:
        low, span = 0.0, full_scale
    elif finite_values.size:
        low = float(finite_values.min())
        span = float(finite_values.max()) - low or 1.0
    else:
        low, span = 0.0, 1.0
    out = np.empty(values.shape, np.uint8)
    for start in range(0, values.shape[0], 512):
        band = values[start : start + 512].astype(np.float64)
        band[~np.isfinite(band)] = 0.0
        out[start : start + 512] = np.clip(np.rint((band - low) * (255.0 / span)), 0, 255)
    return out


def _high_depth_gray_to_uint8(image: Image.Image) -> np.ndarray:
    """Gray 8-bit array from Pillow's 16-bit ('I;16*'), 32-bit int ('I') or float ('F') modes."""
    values = np.asarray(image)
    if image.mode.startswith("I;16"):
        return _scale_to_uint8(values, 65535.0)
    if image.mode == "I":
        # 'I' holds 32-bit integers whatever the file's own depth: 8-bit data stored as 32-bit
        # (values within 0..255) is read as 8-bit, 16-bit data as 16-bit, and anything else
        # (true 32-bit data) is stretched over its own range.
        low, high = (int(values.min()), int(values.max())) if values.size else (0, 0)
        if low >= 0 and high <= 255:
            return values.astype(np.uint8)
        return _scale_to_uint8(values, 65535.0 if low >= 0 and high <= 65535 else None)
    # 'F': float images are conventionally 0..1; other ranges are stretched.
    finite = values[np.isfinite(values)]
    in_unit_range = finite.size and finite.min() >= 0.0 and finite.max() <= 1.0
    return _scale_to_uint8(values, 1.0 if in_unit_range else None)


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info


_PROFILE_MODES = dict.fromkeys(("RGB", "RGBA", "RGBX", "RGBa", "P", "PA"), "RGB") | {"CMYK": "CMYK", "L": "L"}
"""Pillow modes whose values the file's ICC profile describes, and the mode of the profile's
space: RGB colours (a palette's too), inks, and gray without transparency."""


def _embedded_profile(image: Image.Image) -> tuple[bytes, str] | None:
    """(ICC profile, the mode it is for) of a Pillow picture whose values its profile describes."""
    icc = image.info.get("icc_profile")
    mode = _PROFILE_MODES.get(image.mode)
    if not isinstance(icc, bytes) or mode is None or (mode == "L" and _has_alpha(image)):
        return None
    return icc, mode


def _pillow_to_rgb(image: Image.Image) -> np.ndarray:
    """H x W x 3 uint8 sRGB from any Pillow mode we may meet.

    Transparency is composited onto white rather than dropped: fully transparent pixels often
    hold arbitrary colour (black, or leftovers of an editor) which dropping alpha would expose,
    while white is what a person sees in a viewer or a document, and what a face finder
    should see. Colours the file's ICC profile describes (a wide-gamut RGB space, a printer's
    inks, a gray curve) are converted to sRGB (`pipeline.engine.colour`); white stays white.
    """
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        gray = _high_depth_gray_to_uint8(image)
        return np.repeat(gray[:, :, None], 3, axis=2)
    icc, space = _embedded_profile(image) or (None, None)
    if space in ("CMYK", "L"):
        converted = picture_to_srgb(image, icc)
        if converted is not None:
            return converted
    if _has_alpha(image):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        rgb = np.array(Image.alpha_composite(white, rgba).convert("RGB"))
    else:
        rgb = np.array(image if image.mode == "RGB" else image.convert("RGB"))  # L, 1, P, CMYK, YCbCr, RGBX
    return to_srgb(rgb, icc) if space == "RGB" else rgb


def _bounded_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    scale = min(1.0, max_side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


_EXIF_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
"""The transposition that makes a picture with each EXIF orientation upright (as Pillow's
`ImageOps.exif_transpose`, applied here after any reduction, which drops the EXIF block)."""


def _exif_orientation(image: Image.Image) -> int:
    try:
        return int(image.getexif().get(_EXIF_ORIENTATION_TAG, 1))
    except PILLOW_DAMAGE_ERRORS:  # a broken EXIF block must not make the picture unreadable
        return 1


def _decode_image(path: Path, settings: MediaSettings, container: str) -> tuple[np.ndarray, int, tuple[int, int]]:
    """(upright RGB pixels, clockwise rotation applied, upright original size) of an image.

    The pixels are at most `settings.max_decoded_side` on the longer side: a JPEG is decoded
    at a reduced DCT scale (it never exists at full size); other formats are reduced by whole
    factors right after decoding, before any copy is made; a HEIF picture is put together from
    its tiles, then made smaller."""
    if container == "HEIF":
        rgb, layout = decode_heif(path, settings)
        rotation, upright_original = layout.rotation, (layout.width, layout.height)
    else:
        rgb, rotation, upright_original = _decode_with_pillow(path, settings)
    if max(rgb.shape[:2]) > settings.max_decoded_side:
        bounded = _bounded_size(*upright_original, settings.max_decoded_side)
        rgb = cv2.resize(rgb, bounded, interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(rgb), rotation, upright_original


def _decode_with_pillow(path: Path, settings: MediaSettings) -> tuple[np.ndarray, int, tuple[int, int]]:
    """`_decode_image` for every format Pillow reads, before the last resize."""
    with _open_image(path, settings) as image:
        hdr = read_hdr_signal(path, settings) if image.format == "AVIF" else None
        orientation = _exif_orientation(image)
        rotation = _EXIF_ROTATION.get(orientation, 0)
        original = image.size
        target = _bounded_size(*original, settings.max_decoded_side)
        if target != original and image.format == "JPEG":
            image.draft(image.mode, target)  # the smallest DCT scale at least `target`
        try:
            image.load()
        except PILLOW_DAMAGE_ERRORS as exc:
            raise MediaError(f"{_name(path)} is corrupt or truncated: {_why(exc, path)}") from exc
        picture = image
        factor = max(picture.size) // settings.max_decoded_side
        if factor >= 2:
            with contextlib.suppress(ValueError):  # a mode Pillow cannot reduce: resized below
                picture = picture.reduce(factor)
        if orientation in _EXIF_TRANSPOSE:
            picture = picture.transpose(_EXIF_TRANSPOSE[orientation])
        if picture is not image:
            image.close()  # frees the full-size pixels before the copies below
        try:
            rgb = _pillow_to_rgb(picture)
            if hdr is not None:  # Pillow decodes an AVIF at 8 bits, its signal left as coded
                rgb = hdr_to_sdr(rgb.astype(np.uint16) * 257, *hdr)
        except PILLOW_DAMAGE_ERRORS as exc:  # e.g. a colour mode Pillow cannot convert (LAB)
            raise UnsupportedMediaError(
                f"{_name(path)} uses a colour mode that cannot be shown as RGB ({image.mode})."
            ) from exc
        del picture
    upright_original = original if rotation in (0, 180) else (original[1], original[0])
    return rgb, rotation, upright_original


def _require_kind(path: Path, settings: MediaSettings, kind: MediaKind) -> str:
    """The file's container, once it is known to be of `kind`."""
    found, container = _detect(path, settings)
    if found != kind:
        raise UnsupportedMediaError(f"{_name(path)} is a {found}, not an {kind}.")
    return container


def load_image(path: Path, settings: MediaSettings = MediaSettings()) -> np.ndarray:
    """Decode an image file to an upright H x W x 3 uint8 RGB array.

    EXIF orientation is applied; palette, gray, CMYK and 16-bit/float images become 8-bit RGB
    (high bit depths are scaled, 65535 -> 255); colours their profile describes (Display P3,
    Adobe RGB, a press's CMYK, a gray curve) are converted to sRGB, and an HDR photo's (PQ, HLG)
    mapped to it; transparency is composited onto white; pictures larger than
    `settings.max_decoded_side` come back that large.

    Raises:
        MediaTooLargeError: more pixels than `settings.max_image_pixels` (checked from the
            header, before decoding) or a file over `settings.max_file_bytes`.
        MediaError: empty, truncated or corrupt file; UnsupportedMediaError for other types.
    """
    path = Path(path)
    return _decode_image(path, settings, _require_kind(path, settings, "image"))[0]


def _probe_image(path: Path, settings: MediaSettings, container: str) -> MediaInfo:
    if container == "HEIF":
        layout = read_heif_layout(path, settings)
        return MediaInfo(path, "image", layout.width, layout.height, None, None, None, layout.rotation)
    with _open_image(path, settings) as image:
        rotation = _exif_rotation(image)
        width, height = image.size
    if rotation in (90, 270):
        width, height = height, width
    return MediaInfo(path, "image", width, height, None, None, None, rotation)


def converted_colour_space(path: Path, settings: MediaSettings = MediaSettings()) -> str | None:
    """The name of the colour space an image's colours are converted from to sRGB when it is read
    (its profile's own name, e.g. "Display P3", or an HDR signal's, e.g. "BT.2020 HLG"); None when
    there is none to convert (no profile, sRGB, a profile that cannot be read or is of another
    space than the picture's). Raises as `probe` for a file that cannot be read."""
    path = Path(path)
    if _require_kind(path, settings, "image") == "HEIF":
        layout = read_heif_layout(path, settings)
        return hdr_name(*layout.hdr) if layout.hdr is not None else profile_name(layout.icc)
    with _open_image(path, settings) as image:
        hdr = read_hdr_signal(path, settings) if image.format == "AVIF" else None
        if hdr is not None:
            return hdr_name(*hdr)
        profile = _embedded_profile(image)
        return profile_name(*profile) if profile is not None else None


# --------------------------------------------------------------------------------------------
# Videos
# --------------------------------------------------------------------------------------------

_MAX_PLAUSIBLE_FPS = 1000.0
"""Above this a frame rate is noise (e.g. a 1/90000 time base read as a rate); slow-motion
cameras store at most 960 fps."""

_MAX_FPS_FOR_BOUNDS = 240.0
"""Every loop over a video's packets or frames stops after
`settings.max_video_seconds * _MAX_FPS_FOR_BOUNDS` steps, whatever the file claims."""

SEEK_MIN_SKIPPED_FRAMES = 32
"""Seek (instead of decoding forward) only when the seek skips decoding at least this many
frames: a seek costs a fixed overhead (flushing the decoder, a few frames of start-up), so it
pays only over a long gap. Both ways give identical frames (tests/test_media.py)."""


def _is_plausible_fps(fps: float | None) -> bool:
    return fps is not None and math.isfinite(fps) and 0.0 < fps <= _MAX_PLAUSIBLE_FPS


def _max_steps(settings: MediaSettings) -> int:
    return math.ceil(settings.max_video_seconds * _MAX_FPS_FOR_BOUNDS) + 1


def _format_seconds(seconds: float) -> str:
    whole = int(round(seconds))
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


def _open_video(path: Path) -> tuple[Any, Any]:
    """(container, its first video stream) opened with PyAV, or a `MediaError`."""
    import av

    try:
        container = av.open(str(path), mode="r")
    except (av.FFmpegError, OSError, ValueError, UnicodeDecodeError) as exc:
        raise MediaError(
            f"{_name(path)} could not be opened as a video; it may be truncated (for example an unfinished"
            f" upload) or corrupt ({_why(exc, path)})."
        ) from exc
    if not container.streams.video:
        container.close()
        raise MediaError(f"{_name(path)} holds no video stream.")
    # A stream whose codec FFmpeg does not know (or whose codec tag is damaged) has no decoder.
    decodable = [stream for stream in container.streams.video if stream.codec_context is not None]
    if not decodable:
        container.close()
        raise UnsupportedMediaError(
            f"{_name(path)} holds video in a format this app cannot decode (its codec is unknown, or the file is damaged)."
        )
    return container, decodable[0]


@dataclass(frozen=True)
class _VideoScan:
    """What the packet scan found. Internal: read_frames passes it on to the sampler."""

    timestamps: array | None
    """Presentation timestamp of every frame, ascending (8 bytes each: at most ~20 MB for a
    3-hour 240 fps video); None when the file has none that can be trusted."""
    keyframes: array
    """Presentation timestamps of the keyframes, ascending."""
    packets: int
    time_base: Fraction
    container_fps: float | None
    exact_seeks: bool = True
    """Whether a seek lands on frames labelled with their own times (see `_SEEK_BY_BYTES`)."""


_SEEK_BY_BYTES = ("mpegts", "mpeg")
"""FFmpeg's demuxers for MPEG transport and program streams, which seek to a byte position
estimated from the bit rate. In a program stream the frames decoded after such a seek carried a
neighbour's time (MPEG-1, tests/test_media.py); in a transport stream the first seek landed past
the frame asked for, so the sampler started again in order. These are read in order, always
exact."""


def _scan_video(path: Path, settings: MediaSettings) -> _VideoScan:
    """Demux (not decode) the whole file: the frames really present and their timestamps."""
    import av

    max_steps = _max_steps(settings)
    timestamps, keyframes = array("q"), array("q")
    usable = True
    container, stream = _open_video(path)
    try:
        rate = stream.average_rate or stream.guessed_rate
        time_base = stream.time_base or Fraction(1, 1)
        claimed = stream.frames or 0
        format_name = container.format.name
        packets, last_pts = 0, None
        try:
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue  # a flush packet at the end, not a frame
                if packets >= max_steps:
                    raise MediaTooLargeError(
                        f"{_name(path)} has more than {max_steps - 1} frames; videos up to "
                        f"{_format_seconds(settings.max_video_seconds)} are accepted."
                    )
                packets += 1
                last_pts = packet.pts
                if packet.pts is None:
                    usable = False
                    continue
                timestamps.append(packet.pts)
                if packet.is_keyframe:
                    keyframes.append(packet.pts)
        except av.FFmpegError:
            pass  # a damaged end: the packets read so far are the video
        except IndexError:
            pass  # PyAV's flush, after the last packet, on a stream met after the header (see _decoded_frames)
    finally:
        container.close()
    if claimed > packets > 1:
        # The header promises more frames than the file holds: the file was cut short (an
        # unfinished upload) or its header lies. The last packet of a cut file is most likely
        # cut too, and decoders hide that by repeating an earlier frame: leave it out.
        packets -= 1
        if last_pts is not None and last_pts in timestamps:
            timestamps.remove(last_pts)
        if last_pts in keyframes:
            keyframes.remove(last_pts)
    ordered = array("q", sorted(timestamps))
    if not usable or len(set(ordered)) != len(ordered):
        ordered = None  # timestamps missing or repeated: count frames in decode order instead
    fps = float(rate) if rate else None
    return _VideoScan(
        ordered,
        array("q", sorted(keyframes)),
        packets,
        time_base,
        fps if _is_plausible_fps(fps) else None,
        exact_seeks=format_name not in _SEEK_BY_BYTES,
    )


def _video_fps(scan: _VideoScan) -> float | None:
    """Average frame rate: from the timestamps of the frames present when they are usable
    (right for variable frame rate too), else the container's rate when plausible."""
    stamps = scan.timestamps
    if stamps is not None and len(stamps) >= 2 and stamps[-1] > stamps[0]:
        measured = (len(stamps) - 1) / float((stamps[-1] - stamps[0]) * scan.time_base)
        if _is_plausible_fps(measured):
            return measured
    return scan.container_fps


def _check_video_pixels(path: Path, width: int, height: int, settings: MediaSettings) -> None:
    if width * height > settings.max_video_pixels:
        raise MediaTooLargeError(
            f"{_name(path)} has {width} x {height} frames; videos up to "
            f"{settings.max_video_pixels / 1e6:.1f} megapixels per frame (4K) are accepted."
        )


def _clockwise_rotation(frame: Any) -> int:
    """Degrees to turn a decoded frame clockwise to show it upright (FFmpeg's display matrix
    gives the counter-clockwise angle)."""
    degrees = getattr(frame, "rotation", 0) or 0
    return int(round(-degrees / 90.0)) % 4 * 90


_MAX_PIXEL_ASPECT = 4.0
"""A stated pixel shape wider or taller than this (width over height) is damage, not a format."""


def _pixel_aspect(stream: Any) -> float:
    """The width of a stored pixel over its height, as the file states it (its container's, else
    its codec's): 4/3 for HDV and AVCHD camcorders' 1440 x 1080, shown as 1920 x 1080; 8/9 or
    32/27 for a DVD's 720 x 480 shown as 4:3 or 16:9. 1 where nothing (or nothing plausible) is
    stated."""
    for stated in (
        getattr(stream, "sample_aspect_ratio", None),
        getattr(stream.codec_context, "sample_aspect_ratio", None),
    ):
        if stated and 1 / _MAX_PIXEL_ASPECT <= stated <= _MAX_PIXEL_ASPECT:
            return float(stated)
    return 1.0


def _shown_size(width: int, height: int, aspect: float, max_pixels: int) -> tuple[int, int]:
    """(width, height) of a stored frame shown with square pixels, as players show it: stretched
    along one side (no stored pixel is lost, and a face keeps its detail), or, where that would
    pass `max_pixels`, shrunk along the other."""
    if abs(aspect - 1.0) < 0.01:
        return width, height
    wider, taller = (max(1, round(width * aspect)), height), (width, max(1, round(height / aspect)))
    stretched, shrunk = (wider, taller) if aspect > 1 else (taller, wider)
    return stretched if stretched[0] * stretched[1] <= max_pixels else shrunk


def _deinterlaced(rgb: np.ndarray, comb_levels: int) -> np.ndarray:
    """An interlaced frame without its combing. Its two fields (even and odd rows) are taken a
    field apart in time, so what moves between them is drawn twice, as teeth along every moving
    edge, which players remove and the models never saw. Each pixel of the odd rows that combs
    against the even rows around it (its green, most of what the eye sees as brightness, brighter
    or darker than both by more than `comb_levels`) becomes their mean; still parts keep every row.
    (FFmpeg's deinterlacers compare neighbouring frames, which a sampled frame does not have.) 7-35
    ms a 1080i frame on 2 cores."""
    rows = (rgb.shape[0] - 1) // 2  # odd rows with an even row on both sides
    green = rgb[..., 1]
    above, middle, below = (green[start : start + 2 * rows : 2].astype(np.int32) for start in (0, 1, 2))
    teeth = (middle - above) * (middle - below) > comb_levels**2
    if not teeth.any():
        return rgb
    mended = rgb.copy()
    mean = (rgb[0 : 2 * rows : 2].astype(np.uint16) + rgb[2 : 2 * rows + 1 : 2] + 1) // 2
    mended[1 : 2 * rows : 2][teeth] = mean[teeth]
    return mended


def _upright_rgb(frame: Any, aspect: float, settings: MediaSettings) -> np.ndarray | None:
    """A decoded frame as upright sRGB with square pixels (HDR video mapped to it,
    `colour.hdr_to_sdr`; standard video in wide-gamut primaries, BT.2020 or Display P3, converted;
    interlaced video without its combing, `_deinterlaced`; pixels `aspect` times as wide as tall
    made square, `_shown_size`); None when FFmpeg cannot convert it."""
    try:
        transfer, primaries = frame.color_trc, frame.color_primaries
        if transfer in HDR_TRANSFERS:
            rgb = hdr_to_sdr(frame.to_ndarray(format="rgb48le"), transfer, primaries)
        else:
            rgb = to_srgb(frame.to_ndarray(format="rgb24"), nclx_profile(primaries, transfer))
    except av_errors():
        from av.video.reformatter import Colorspace

        # A colour matrix FFmpeg's scaler does not know (a damaged or odd header): read the
        # frame as BT.601, what FFmpeg assumes for video of unknown colour.
        try:
            rgb = frame.to_ndarray(format="rgb24", src_colorspace=Colorspace.ITU601)
        except av_errors():
            return None
    if frame.interlaced_frame and rgb.shape[0] >= 3:
        rgb = _deinterlaced(rgb, settings.comb_levels)
    height, width = rgb.shape[:2]
    shown = _shown_size(width, height, aspect, settings.max_video_pixels)
    if shown != (width, height):
        interpolation = cv2.INTER_AREA if shown[0] * shown[1] < width * height else cv2.INTER_LINEAR
        rgb = cv2.resize(rgb, shown, interpolation=interpolation)
    turns = _clockwise_rotation(frame) // 90
    return np.ascontiguousarray(np.rot90(rgb, k=-turns)) if turns else rgb


def _seek(container: Any, stream: Any, pts: int) -> None:
    """Move the decoder to the keyframe at `pts` (or the one before it)."""
    container.seek(pts, stream=stream, backward=True, any_frame=False)


def _decoded_frames(container: Any, stream: Any, path: Path) -> Iterator[Any]:
    """Decoded frames in presentation order; a damaged stream ends the iteration (the frames
    before the damage are kept)."""
    import av

    try:
        for packet in container.demux(stream):
            yield from packet.decode()
    except av.FFmpegError:
        return
    except IndexError:
        # PyAV's end-of-file flush looks up every stream FFmpeg knows and fails on one that first
        # appeared after the header (FLV and MPEG-TS add streams as they meet them); such a stream
        # comes after this one, whose flush has been decoded by then: nothing is lost.
        return


def _probe_video(path: Path, settings: MediaSettings) -> tuple[MediaInfo, _VideoScan]:
    """(info, scan). Decodes the first frame, so that an undecodable video fails here."""
    scan = _scan_video(path, settings)
    fps = _video_fps(scan)
    frame_count = scan.packets if scan.timestamps is None else len(scan.timestamps)
    duration_s = frame_count / fps if fps else None
    if duration_s is not None and duration_s > settings.max_video_seconds:
        raise MediaTooLargeError(
            f"{_name(path)} is {_format_seconds(duration_s)} long; videos up to "
            f"{_format_seconds(settings.max_video_seconds)} are accepted."
        )
    container, stream = _open_video(path)
    try:
        _check_video_pixels(path, stream.width or 0, stream.height or 0, settings)  # before decoding
        first = next((f for f in _decoded_frames(container, stream, path) if not f.is_corrupt), None)
        rotation = _clockwise_rotation(first) if first is not None else 0
        aspect = _pixel_aspect(stream)
        size = _shown_size(first.width, first.height, aspect, settings.max_video_pixels) if first is not None else None
    finally:
        container.close()
    if first is None or frame_count == 0 or size is None:
        raise MediaError(f"{_name(path)}: could not decode any frame of this video.")
    width, height = size if rotation in (0, 180) else (size[1], size[0])
    _check_video_pixels(path, width, height, settings)
    return MediaInfo(path, "video", width, height, fps, frame_count, duration_s, rotation), scan


def _sample_indices(frame_count: int, samples: int) -> list[int]:
    """`samples` frame indices evenly spaced over `frame_count` frames: the middle of each of
    `samples` equal spans (so neither the often black first frame nor the last one, which is
    the likeliest to be damaged). Every frame when there are no more frames than samples."""
    if frame_count <= samples:
        return list(range(frame_count))
    return [int((k + 0.5) * frame_count / samples) for k in range(samples)]


def _sample_by_time(timestamps: array, samples: int) -> list[int]:
    """Indices of `samples` frames evenly spaced in time: for each of `samples` equal spans of
    the video's duration, the last frame shown at or before the middle of the span (for a
    constant frame rate, the same frames as `_sample_indices`)."""
    count = len(timestamps)
    if count <= samples:
        return list(range(count))
    step = (timestamps[-1] - timestamps[0]) / (count - 1)  # mean frame duration
    span = timestamps[-1] - timestamps[0] + step
    chosen: list[int] = []
    for k in range(samples):
        target = timestamps[0] + (k + 0.5) * span / samples
        index = max(0, bisect.bisect_right(timestamps, target + 1e-9 * span) - 1)
        if chosen and index <= chosen[-1]:
            index = chosen[-1] + 1  # bursts of frames in time: keep the samples distinct
        if index >= count:
            break
        chosen.append(index)
    return chosen


def _iter_video_frames(
    path: Path, info: MediaInfo, scan: _VideoScan, samples: int, settings: MediaSettings
) -> Iterator[Frame]:
    """Yield the sampled frames, holding one decoded frame at a time. Bounded by the number of
    frames the scan found."""
    assert info.frame_count is not None
    stamps = scan.timestamps
    targets = _sample_by_time(stamps, samples) if stamps is not None else _sample_indices(info.frame_count, samples)
    position = {pts: i for i, pts in enumerate(stamps)} if stamps is not None else None
    first_pts = stamps[0] if stamps else 0
    yielded = 0
    container, stream = _open_video(path)
    stream.thread_type = "AUTO"  # frame and slice threads: decoding is most of a video's cost
    aspect = _pixel_aspect(stream)
    seekable = stamps is not None and len(scan.keyframes) > 0 and scan.exact_seeks
    try:
        decoded = _decoded_frames(container, stream, path)
        next_index = 0  # index of the next frame the decoder will give
        for target in targets:
            sought = False
            if seekable and _seek_saves_decoding(scan.keyframes, stamps, next_index, target):
                keyframe = scan.keyframes[bisect.bisect_right(scan.keyframes, stamps[target]) - 1]
                decoded.close()
                try:
                    _seek(container, stream, keyframe)
                    sought = True
                except av_errors():
                    container, stream, seekable = _reopen(container, path)
                    next_index = 0
                decoded = _decoded_frames(container, stream, path)
            found, next_index, overshot = _decode_until(decoded, position, next_index, target)
            if overshot and sought:
                # The seek landed past the frame asked for: read from the start, in order,
                # which is always exact.
                decoded.close()
                container, stream, seekable = _reopen(container, path)
                decoded = _decoded_frames(container, stream, path)
                found, next_index, _ = _decode_until(decoded, position, 0, target)
            usable = found is not None and not found.is_corrupt
            rgb = _upright_rgb(found, aspect, settings) if usable else None
            del found
            if rgb is None:
                continue
            _check_video_pixels(path, rgb.shape[1], rgb.shape[0], settings)
            if stamps is not None:
                time_s = float((stamps[target] - first_pts) * scan.time_base)
            else:
                time_s = target / info.fps if info.fps else math.nan
            yield Frame(target, time_s, rgb)
            yielded += 1
            del rgb  # hold nothing while decoding towards the next sample
    finally:
        container.close()
    if yielded == 0:
        raise MediaError(f"{_name(path)}: could not decode any frame of this video.")


def av_errors() -> tuple[type[BaseException], ...]:
    """The exceptions PyAV raises for a file it cannot read."""
    import av

    return (av.FFmpegError,)


def _reopen(container: Any, path: Path) -> tuple[Any, Any, bool]:
    """A fresh container on `path` for reading in order (seeking is off from then on)."""
    container.close()
    container, stream = _open_video(path)
    stream.thread_type = "AUTO"
    return container, stream, False


def _decode_until(
    decoded: Iterator[Any], position: dict[int, int] | None, next_index: int, target: int
) -> tuple[Any | None, int, bool]:
    """Decode up to frame `target`: (that frame or None, the index of the next frame, whether
    the first frame decoded was already past the target)."""
    first = True
    for frame in decoded:
        index = position.get(frame.pts) if position is not None else next_index
        if index is None:
            continue  # a frame the scan did not count (a decoder artefact)
        next_index = index + 1
        if index == target:
            return frame, next_index, False
        if index > target:
            return None, next_index, first  # the frame asked for cannot be decoded
        first = False
    return None, next_index, False


def _seek_saves_decoding(keyframes: array, stamps: array, next_index: int, target: int) -> bool:
    """Whether seeking to the keyframe before `target` skips at least `SEEK_MIN_SKIPPED_FRAMES`
    decodes compared with decoding forward from `next_index`."""
    at = bisect.bisect_right(keyframes, stamps[target]) - 1
    if at < 0:
        return False
    keyframe_index = bisect.bisect_left(stamps, keyframes[at])
    return keyframe_index - next_index >= SEEK_MIN_SKIPPED_FRAMES


# --------------------------------------------------------------------------------------------
# Animated WebP, AVIF and PNG pictures (Pillow)
# --------------------------------------------------------------------------------------------


def _probe_animation(path: Path, settings: MediaSettings) -> tuple[MediaInfo, array | None]:
    """(info, each frame's start in ms or None when the times cannot be trusted) of an animated
    WebP, AVIF or PNG. These formats keep each frame's duration beside its pixels, and Pillow gives
    it only once the frame is decoded: every frame is decoded once here (one at a time), and again
    up to the last sample when the frames are read. A damaged frame ends the animation; a frame
    of (nearly) no duration is timed as browsers show it (`MediaSettings.shown_frame_ms`)."""
    stamps, elapsed_ms = array("q"), 0.0
    at_most, shown = settings.shown_frame_ms
    with _open_image(path, settings) as image:
        _check_video_pixels(path, image.width, image.height, settings)  # before any frame is decoded
        frames = image.n_frames
        if frames >= _max_steps(settings):
            raise MediaTooLargeError(
                f"{_name(path)} has more than {_max_steps(settings) - 1} frames; videos up to "
                f"{_format_seconds(settings.max_video_seconds)} are accepted."
            )
        with contextlib.suppress(*PILLOW_DAMAGE_ERRORS):
            for index in range(frames):
                image.seek(index)
                image.load()
                stamps.append(round(elapsed_ms))
                duration = float(image.info.get("duration") or 0)
                elapsed_ms += shown if duration <= at_most else duration
        width, height = image.size
    if not stamps:
        raise MediaError(f"{_name(path)}: could not decode any frame of this animation.")
    usable = all(later > earlier for earlier, later in zip(stamps, stamps[1:]))
    shown_s = elapsed_ms / 1000 if usable and elapsed_ms > 0 else None
    if shown_s is not None and shown_s > settings.max_video_seconds:
        raise MediaTooLargeError(
            f"{_name(path)} is {_format_seconds(shown_s)} long; videos up to "
            f"{_format_seconds(settings.max_video_seconds)} are accepted."
        )
    fps = len(stamps) / shown_s if shown_s else None
    info = MediaInfo(path, "video", width, height, fps if _is_plausible_fps(fps) else None, len(stamps), shown_s, 0)
    return info, stamps if usable else None


def _iter_animation_frames(
    path: Path, info: MediaInfo, stamps: array | None, samples: int, settings: MediaSettings
) -> Iterator[Frame]:
    """Yield the sampled frames of an animated WebP, AVIF or PNG, decoding forward from one sample to
    the next (each frame is drawn over the ones before it)."""
    assert info.frame_count is not None
    targets = _sample_by_time(stamps, samples) if stamps is not None else _sample_indices(info.frame_count, samples)
    yielded = 0
    with _open_image(path, settings) as image:
        for target in targets:
            try:
                image.seek(target)
                image.load()
            except PILLOW_DAMAGE_ERRORS:
                break  # damaged since the probe read it: the frames so far are the animation
            time_s = (stamps[target] - stamps[0]) / 1000 if stamps is not None else math.nan
            yield Frame(target, time_s, _pillow_to_rgb(image))
            yielded += 1
    if not yielded:
        raise MediaError(f"{_name(path)}: could not decode any frame of this animation.")


# --------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------


def probe(path: Path, settings: MediaSettings = MediaSettings()) -> MediaInfo:
    """Describe an image or a video: kind, upright size, rotation, and for videos the frame
    rate, the number of frames really in the file and the duration.

    An image's header is read, not its pixels. A video is demuxed once (cheap) and its first
    frame decoded, so a video that probes fine can be sampled; an animated WebP, AVIF or PNG is
    decoded whole, one frame at a time, as that is how it tells each frame's time.

    Raises:
        MediaTooLargeError: pixels, duration or file size over the limits in `settings`.
        UnsupportedMediaError: not a supported type. MediaError: missing, empty, corrupt,
            undecodable.
    """
    path = Path(path)
    kind, container = _detect(path, settings)
    if kind == "image":
        return _probe_image(path, settings, container)
    if container in _PILLOW_ANIMATIONS:
        return _probe_animation(path, settings)[0]
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

    An image gives one Frame (frame number 0, time 0.0), decoded now. A video gives `frames`
    (default `settings.frames`) frames evenly spaced in time over the whole video, decoded
    lazily while iterating, one at a time; fewer if the video has fewer frames or its end is
    damaged. Errors about the file as a whole (type, size, limits, unreadable) are raised here,
    not while iterating.
    """
    path = Path(path)
    samples = _frame_count_to_sample(frames, settings)
    kind, container = _detect(path, settings)
    if kind == "image":
        rgb, rotation, (width, height) = _decode_image(path, settings, container)
        info = MediaInfo(path, "image", width, height, None, None, None, rotation)
        return info, _yield_one(Frame(0, 0.0, rgb, rgb.shape[1] / width))
    if container in _PILLOW_ANIMATIONS:
        info, stamps = _probe_animation(path, settings)
        return info, _iter_animation_frames(path, info, stamps, samples, settings)
    info, scan = _probe_video(path, settings)
    return info, _iter_video_frames(path, info, scan, samples, settings)


def sample_frames(path: Path, settings: MediaSettings = MediaSettings(), frames: int | None = None) -> Iterator[Frame]:
    """A generator of `frames` (default `settings.frames`) upright RGB frames evenly spaced over
    a video (one frame for an image). See `read_frames`, which also returns the `MediaInfo`."""
    return read_frames(path, settings, frames)[1]
