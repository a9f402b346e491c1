"""Small, real media files for the tests, made on the fly with OpenCV, Pillow and a few byte
patches. Nothing here needs ffmpeg.

Video frames carry their own frame number as a bar code (`INDEX_BITS` vertical stripes, black
or white), so a test can check that a sampled frame really is the frame it claims to be.
"""

from __future__ import annotations

import struct
import zlib
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

INDEX_BITS = 12
STRIPE_PX = 8
VIDEO_SIZE = (INDEX_BITS * STRIPE_PX, 64)  # (width, height); even sizes suit every codec


class WriterUnavailable(RuntimeError):
    """This OpenCV build cannot write that container/codec pair."""


# ------------------------------------------------------------------------------------- video


def index_frame_bgr(index: int, size: tuple[int, int] = VIDEO_SIZE) -> np.ndarray:
    """A BGR frame whose stripes spell `index` in binary (most significant bit on the left)."""
    width, height = size
    frame = np.zeros((height, width, 3), np.uint8)
    for bit in range(INDEX_BITS):
        if index >> (INDEX_BITS - 1 - bit) & 1:
            frame[:, bit * STRIPE_PX : (bit + 1) * STRIPE_PX] = 255
    return frame


def read_index(rgb: np.ndarray) -> int:
    """The frame number spelled by an `index_frame_bgr` frame (after lossy coding)."""
    index = 0
    for bit in range(INDEX_BITS):
        # The middle of each stripe: codecs smear the edges.
        stripe = rgb[:, bit * STRIPE_PX + 2 : (bit + 1) * STRIPE_PX - 2]
        index = index << 1 | int(stripe.mean() > 127)
    return index


def write_video(
    path: Path,
    frames: int,
    fps: float = 25.0,
    fourcc: str = "mp4v",
    size: tuple[int, int] = VIDEO_SIZE,
    draw=index_frame_bgr,
) -> Path:
    """Write `frames` frames made by `draw(index, size)` with cv2.VideoWriter."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, size)
    if not writer.isOpened():
        raise WriterUnavailable(f"OpenCV cannot write {fourcc} into {path.suffix}")
    try:
        for index in range(frames):
            writer.write(draw(index, size))
    finally:
        writer.release()
    return path


def write_animation(path: Path, delays_ms: list[int], size: tuple[int, int] = VIDEO_SIZE, **options) -> Path:
    """An animated GIF, WebP, AVIF or PNG (by the suffix; Pillow) of `index_frame_bgr` frames,
    frame k shown for `delays_ms[k]` (GIF keeps delays in hundredths of a second)."""
    frames = [Image.fromarray(index_frame_bgr(index, size)[:, :, ::-1]) for index in range(len(delays_ms))]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=delays_ms, loop=0, **options)
    return path


def raw_gif(path: Path, screen: tuple[int, int], pictures: int, picture: tuple[int, int] = (1, 1)) -> Path:
    """A GIF written byte by byte, so that its header may say anything: a screen of `screen`
    pixels and `pictures` pictures of `picture` pixels (one LZW code each, 0.1 s apart)."""
    data = b"GIF89a" + struct.pack("<HH", *screen) + bytes([0x80, 0, 0, 0, 0, 0, 255, 255, 255])
    for _ in range(pictures):
        data += b"\x21\xf9\x04\x00\x0a\x00\x00\x00"  # graphic control: a delay of 10/100 s
        data += b"\x2c" + struct.pack("<HHHH", 0, 0, *picture) + b"\x00\x02\x02\x4c\x01\x00"
    path.write_bytes(data + b"\x3b")
    return path


def set_webp_canvas(path: Path, size: tuple[int, int]) -> Path:
    """Make an animated WebP claim a canvas of `size` (its frames unchanged)."""
    data = bytearray(path.read_bytes())
    at = data.index(b"VP8X") + 12  # the chunk's header and flags, then width - 1 and height - 1
    data[at : at + 6] = (size[0] - 1).to_bytes(3, "little") + (size[1] - 1).to_bytes(3, "little")
    path.write_bytes(data)
    return path


def write_video_with_ffmpeg(
    path: Path,
    frames: int,
    container: str,
    codec: str,
    options: dict[str, str] | None = None,
    fps: int = 25,
    colour: int | None = None,
) -> Path:
    """Write `index_frame_bgr` frames with PyAV (FFmpeg's muxers and encoders): the containers
    OpenCV cannot write. A keyframe every 12 frames, as OpenCV's MPEG-4 writer does. `colour`
    (an ISO/IEC 23091-2 code, e.g. 1 for BT.709) is written as the primaries, transfer and matrix."""
    import av

    with av.open(str(path), "w", format=container, options=options or {}) as output:
        stream = output.add_stream(codec, rate=fps)
        stream.width, stream.height = VIDEO_SIZE
        stream.pix_fmt = "yuv420p"
        stream.codec_context.gop_size = 12
        if colour is not None:
            context = stream.codec_context
            context.colorspace = context.color_primaries = context.color_trc = colour
        for index in range(frames):
            rgb = np.ascontiguousarray(index_frame_bgr(index)[:, :, ::-1])
            output.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        output.mux(stream.encode())
    return path


BT709_TO_BT2020 = np.array([[0.6274, 0.3293, 0.0433], [0.0691, 0.9195, 0.0114], [0.0164, 0.0880, 0.8956]])
"""Linear BT.709 (sRGB's primaries) to linear BT.2020, as ITU-R BT.2087 publishes it."""


def hdr_signal(srgb: np.ndarray, transfer: int) -> np.ndarray:
    """The HDR signal (... x 3, 0..1, BT.2020) of sRGB colours (... x 3, 0..255) as a camera records
    them, by ITU-R BT.2100's formulas and BT.2408's levels (reference white: scene light 0.265,
    75% HLG, 203 nits in PQ), written out here apart from the app's own reader. `transfer` 18 is
    HLG, 16 PQ (HLG's scene light shown on a 1,000-nit display, each channel alone)."""
    encoded = np.asarray(srgb, np.float32) / 255  # float32: a 1080p frame in a third of a second
    linear = np.where(encoded <= 0.04045, encoded / 12.92, ((encoded + 0.055) / 1.055) ** 2.4)
    scene = np.clip(linear @ BT709_TO_BT2020.T.astype(np.float32), 0.0, 1.0) * 0.26497
    if transfer == 18:  # HLG's OETF
        a, b = 0.17883277, 0.28466892
        return np.where(scene <= 1 / 12, np.sqrt(3 * scene), a * np.log(np.maximum(12 * scene - b, 1e-9)) + 0.55991073)
    relative = scene**1.2 / 10  # HLG's OOTF on a 1,000-nit display, over PQ's 10,000 nits
    power = relative**0.1593017578125  # PQ's inverse EOTF
    return ((0.8359375 + 18.8515625 * power) / (1 + 18.6875 * power)) ** 78.84375


def write_10bit_hevc(path: Path, signal: np.ndarray, transfer: int, frames: int = 3, primaries: int = 9) -> Path:
    """Write a video as phones record HDR: HEVC at 10 bits (x265), limited range, every frame
    `signal` (H x W x 3 R'G'B', 0..1) stated in ITU-T H.273 `transfer` (18 HLG, 16 PQ; 1 BT.709
    or 14 BT.2020's own for standard range) and `primaries` (9 BT.2020, 12 Display P3), BT.2020's
    colour matrix."""
    import av
    from av.video.reformatter import Colorspace

    height, width = signal.shape[:2]
    transfer_name = {18: "arib-std-b67", 16: "smpte2084", 1: "bt709", 14: "bt2020-10"}[transfer]
    primaries_name = {9: "bt2020", 12: "smpte432"}[primaries]
    with av.open(str(path), "w") as output:
        stream = output.add_stream("libx265", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p10le"
        stream.options = {
            "x265-params": f"log-level=error:colorprim={primaries_name}:transfer={transfer_name}:colormatrix=bt2020nc"
        }
        context = stream.codec_context
        context.color_primaries, context.color_trc, context.colorspace, context.color_range = primaries, transfer, 9, 1
        coded = av.VideoFrame.from_ndarray(np.round(signal * 65535).astype(np.uint16), format="rgb48le")
        coded = coded.reformat(format="yuv420p10le", dst_colorspace=Colorspace.BT2020)
        for index in range(frames):
            frame = coded.reformat()
            frame.color_primaries, frame.color_trc, frame.colorspace, frame.color_range = primaries, transfer, 9, 1
            frame.pts = index
            output.mux(stream.encode(frame))
        output.mux(stream.encode())
    return path


def write_with_pixel_aspect(path: Path, rgb: np.ndarray, aspect: Fraction, container: str, codec: str) -> Path:
    """Write a 5-frame video of `rgb` (stored pixels) whose stream states pixels `aspect` times as
    wide as tall, as camcorders (HDV, AVCHD: 1440 x 1080 at 4/3) and DVDs (720 x 480 at 8/9 or
    32/27) store video."""
    import av

    height, width = rgb.shape[:2]
    with av.open(str(path), "w", format=container) as output:
        stream = output.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.sample_aspect_ratio = aspect
        picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24").reformat(format="yuv420p")
        for index in range(5):
            frame = picture.reformat()
            frame.pts = index
            output.mux(stream.encode(frame))
        output.mux(stream.encode())
    return path


def write_interlaced(path: Path, pictures: list[np.ndarray]) -> Path:
    """Write `pictures` (RGB, each its two fields woven: even rows one moment, odd rows the next)
    as interlaced MPEG-2 in an MPEG transport stream, as broadcast TV and HDV camcorders record."""
    import av

    height, width = pictures[0].shape[:2]
    with av.open(str(path), "w", format="mpegts") as output:
        stream = output.add_stream("mpeg2video", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.flags |= av.codec.context.Flags.interlaced_dct | av.codec.context.Flags.interlaced_me
        stream.options = {"top": "1", "qscale": "2"}
        for index, rgb in enumerate(pictures):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24").reformat(format="yuv420p")
            frame.pts = index
            output.mux(stream.encode(frame))
        output.mux(stream.encode())
    return path


def write_hdr_avif(path: Path, signal: np.ndarray, transfer: int) -> Path:
    """Write an AVIF picture of `signal` (H x W x 3 R'G'B', 0..1) coded at 8 bits, its `nclx`
    stating BT.2020 primaries and `transfer` (18 HLG, 16 PQ) as an HDR AVIF's does (Pillow writes
    no such codes: its own are overwritten in place)."""
    Image.fromarray(np.round(signal * 255).astype(np.uint8)).save(path, "AVIF", quality=100)
    data = bytearray(path.read_bytes())
    at = data.index(b"colrnclx") + 8
    data[at : at + 4] = struct.pack(">HH", 9, transfer)
    path.write_bytes(bytes(data))
    return path


def corner_marker_bgr(index: int, size: tuple[int, int]) -> np.ndarray:
    """Gray frame with a red block in the stored top-left corner (to see where rotation puts it)."""
    width, height = size
    frame = np.full((height, width, 3), 128, np.uint8)
    frame[: height // 2, : width // 3] = (0, 0, 255)  # BGR red
    return frame


def truncate_copy(source: Path, target: Path, fraction: float) -> Path:
    """Copy the first `fraction` of `source`'s bytes (an upload cut short)."""
    data = source.read_bytes()
    target.write_bytes(data[: int(len(data) * fraction)])
    return target


# MP4 boxes ------------------------------------------------------------------------------


def _boxes(data: bytes | bytearray, start: int, end: int):
    """(type, offset, header size, total size) of the ISO-BMFF boxes in data[start:end]."""
    offset = start
    while offset + 8 <= end:
        size, kind = struct.unpack(">I4s", data[offset : offset + 8])
        header = 8
        if size == 1:
            size = struct.unpack(">Q", data[offset + 8 : offset + 16])[0]
            header = 16
        elif size == 0:
            size = end - offset
        if size < header:
            raise ValueError(f"bad box at {offset}")
        yield kind, offset, header, size
        offset += size


_CONTAINER_BOXES = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts"}


def _find_boxes(data: bytes | bytearray, wanted: bytes) -> list[tuple[int, int]]:
    """(payload offset, payload size) of every `wanted` box, searching inside moov/trak/..."""
    found: list[tuple[int, int]] = []

    def walk(start: int, end: int) -> None:
        for kind, offset, header, size in _boxes(data, start, end):
            if kind == wanted:
                found.append((offset + header, size - header))
            if kind in _CONTAINER_BOXES:
                walk(offset + header, offset + size)

    walk(0, len(data))
    return found


def set_mp4_rotation(path: Path, degrees: int) -> Path:
    """Write a display matrix rotating the video `degrees` clockwise into every track header
    (`tkhd`), the way phones mark portrait video. Same result as ffmpeg's
    `-metadata:s:v rotate=degrees` / `-display_rotation`, without ffmpeg."""
    cos, sin = {0: (1, 0), 90: (0, 1), 180: (-1, 0), 270: (0, -1)}[degrees]
    data = bytearray(path.read_bytes())
    for payload, _size in _find_boxes(data, b"tkhd"):
        version = data[payload]
        # version+flags, times, track id, reserved, duration, reserved, layer, group, volume...
        matrix_at = payload + (4 + 8 + 8 + 4 + 4 + 8 if version == 1 else 4 + 4 + 4 + 4 + 4 + 4)
        matrix_at += 8 + 2 + 2 + 2 + 2
        fixed = [cos, sin, 0, -sin, cos, 0]
        values = [v * 0x10000 & 0xFFFFFFFF for v in fixed] + [0, 0, 0x40000000]
        data[matrix_at : matrix_at + 36] = struct.pack(">9I", *values)
    path.write_bytes(bytes(data))
    return path


def make_faststart(path: Path) -> Path:
    """Move the index (`moov`) in front of the media data (`mdat`), as web encoders do
    ("faststart"), fixing the chunk offsets. Cut short, such a file still opens and its index
    still promises every frame: the frame count in the header is then a lie."""
    data = path.read_bytes()
    top = list(_boxes(data, 0, len(data)))
    kinds = [kind for kind, *_ in top]
    if kinds.index(b"moov") < kinds.index(b"mdat"):
        return path
    moov = next(box for box in top if box[0] == b"moov")
    others = [box for box in top if box[0] != b"moov"]
    ftyp_end = others[0][1] + others[0][3] if others[0][0] == b"ftyp" else 0
    shift = moov[3]  # everything after ftyp moves down by the size of moov
    moved = bytearray(data[moov[1] : moov[1] + moov[3]])
    for payload, _size in _find_boxes(moved, b"stco"):
        (count,) = struct.unpack(">I", moved[payload + 4 : payload + 8])
        for i in range(count):
            at = payload + 8 + 4 * i
            (offset,) = struct.unpack(">I", moved[at : at + 4])
            moved[at : at + 4] = struct.pack(">I", offset + shift)
    for payload, _size in _find_boxes(moved, b"co64"):
        (count,) = struct.unpack(">I", moved[payload + 4 : payload + 8])
        for i in range(count):
            at = payload + 8 + 8 * i
            (offset,) = struct.unpack(">Q", moved[at : at + 8])
            moved[at : at + 8] = struct.pack(">Q", offset + shift)
    rest = b"".join(data[o : o + s] for kind, o, _h, s in others if o >= ftyp_end)
    path.write_bytes(data[:ftyp_end] + bytes(moved) + rest)
    return path


# AVI headers -------------------------------------------------------------------------------


def patch_avi_frame_count(path: Path, claimed: int) -> Path:
    """Make an AVI's headers claim `claimed` frames (main header dwTotalFrames and the video
    stream header dwLength), as broken muxers and crashed recorders leave them."""
    data = bytearray(path.read_bytes())
    avih = data.find(b"avih")
    strh = data.find(b"strh")
    if avih < 0 or strh < 0:
        raise ValueError(f"{path} has no AVI headers")
    struct.pack_into("<I", data, avih + 8 + 16, claimed)  # MainAVIHeader.dwTotalFrames
    struct.pack_into("<I", data, strh + 8 + 32, claimed)  # AVIStreamHeader.dwLength
    dmlh = data.find(b"dmlh")  # OpenDML total, when present
    if dmlh >= 0:
        struct.pack_into("<I", data, dmlh + 8, claimed)
    path.write_bytes(bytes(data))
    return path


def blank_mjpeg_frames(path: Path) -> Path:
    """Zero the JPEG data of every frame of an MJPG AVI: the file opens, its index and headers
    are intact, and no frame can be decoded."""
    data = bytearray(path.read_bytes())
    movi = data.find(b"movi")
    offset = movi + 4
    while True:
        chunk = data.find(b"00dc", offset)
        if chunk < 0:
            break
        (size,) = struct.unpack("<I", data[chunk + 4 : chunk + 8])
        data[chunk + 8 : chunk + 8 + size] = bytes(size)
        offset = chunk + 8 + size
    path.write_bytes(bytes(data))
    return path


# ------------------------------------------------------------------------------------ images


def quadrant_image(width: int = 60, height: int = 40) -> Image.Image:
    """RGB image: red top-left, green top-right, blue bottom-left, white bottom-right."""
    pixels = np.zeros((height, width, 3), np.uint8)
    half_w, half_h = width // 2, height // 2
    pixels[:half_h, :half_w] = (255, 0, 0)
    pixels[:half_h, half_w:] = (0, 255, 0)
    pixels[half_h:, :half_w] = (0, 0, 255)
    pixels[half_h:, half_w:] = (255, 255, 255)
    return Image.fromarray(pixels, "RGB")


def quadrant_colours(rgb: np.ndarray) -> dict[str, tuple[int, int, int]]:
    """Mean colour at the centre of each quadrant, rounded, as {"tl": (r, g, b), ...}."""
    height, width = rgb.shape[:2]
    centres = {
        "tl": (height // 4, width // 4),
        "tr": (height // 4, 3 * width // 4),
        "bl": (3 * height // 4, width // 4),
        "br": (3 * height // 4, 3 * width // 4),
    }
    colours = {}
    for name, (y, x) in centres.items():
        patch = rgb[max(y - 2, 0) : y + 3, max(x - 2, 0) : x + 3].reshape(-1, 3).mean(axis=0)
        colours[name] = tuple(int(round(c)) for c in patch)
    return colours


HEIC_BYTES = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64)
"""The first box of a HEIC photo as iPhones write it, and padding: recognised, not a picture."""


def save_with_exif_orientation(image: Image.Image, path: Path, orientation: int) -> Path:
    """Save as JPEG (or AVIF, by the suffix) with an EXIF Orientation tag, the stored pixels
    unchanged (Pillow turns it into AVIF's own rotation and mirror boxes)."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    image.save(path, "AVIF" if path.suffix == ".avif" else "JPEG", quality=95, exif=exif.tobytes())
    return path


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)


def png_bomb(path: Path, width: int, height: int) -> Path:
    """A valid-looking 8-bit gray PNG header claiming `width` x `height` pixels, followed by the
    compressed data of its first rows only (Pillow decodes the missing rows as black). A few
    hundred bytes on disk; decoding it would allocate width * height bytes, then three times
    that as RGB."""
    rows = b"".join(b"\x00" + bytes(width) for _ in range(4))  # filter byte + pixels, 4 rows
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(rows, 9))
        + _png_chunk(b"IEND", b"")
    )
    return path


def gray16_gradient(width: int = 256, height: int = 4) -> np.ndarray:
    """uint16 rows running 0 .. 65535 left to right, with 32768 at column `width // 2`."""
    row = np.linspace(0, 65535, width).round().astype(np.uint16)
    row[width // 2] = 32768
    return np.tile(row, (height, 1))


def large_png(path: Path, width: int, height: int, rgb: tuple[int, int, int] = (90, 120, 150)) -> Path:
    """A real, valid RGB PNG of one colour, `width` x `height`, written row by row (the picture
    never exists in memory): 8900 x 8900 is 79 megapixels in about 250 KB."""
    compressor = zlib.compressobj(9)
    row = b"\x00" + bytes(rgb) * width  # filter byte + pixels
    chunks = [compressor.compress(row) for _ in range(height)]
    data = b"".join(chunks) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", data) + _png_chunk(b"IEND", b"")
    )
    return path


def jpeg_claiming_size(source: Path, target: Path, width: int, height: int) -> Path:
    """A copy of a real baseline JPEG whose frame header (SOF0) claims another size: the
    picture data stays that of the small original, so most of the claimed picture is missing."""
    data = bytearray(source.read_bytes())
    at = data.find(b"\xff\xc0")
    if at < 0:
        raise ValueError(f"{source} is not a baseline JPEG")
    data[at + 5 : at + 9] = struct.pack(">HH", height, width)
    target.write_bytes(bytes(data))
    return target


def tiff_claiming_size(source: Path, target: Path, width: int, height: int) -> Path:
    """A copy of a little-endian one-page TIFF whose first directory claims another size (its
    picture data unchanged)."""
    data = bytearray(source.read_bytes())
    directory = struct.unpack_from("<I", data, 4)[0]
    for entry in range(struct.unpack_from("<H", data, directory)[0]):
        at = directory + 2 + 12 * entry
        tag = struct.unpack_from("<H", data, at)[0]
        if tag in (256, 257):  # ImageWidth, ImageLength, as one LONG each
            struct.pack_into("<HII", data, at + 2, 4, 1, width if tag == 256 else height)
    target.write_bytes(bytes(data))
    return target


def zero_picture_data(source: Path, target: Path) -> Path:
    """A copy of an AVIF (or other ISO-BMFF file) whose `mdat` payload, the coded pictures, is all
    zeros: its structure intact, nothing in it decodable."""
    data = bytearray(source.read_bytes())
    ((offset, size),) = _find_boxes(data, b"mdat")
    data[offset : offset + size] = bytes(size)
    target.write_bytes(bytes(data))
    return target


def rename_codec(source: Path, target: Path, codec_tag: bytes, unknown: bytes) -> Path:
    """A copy of a video whose codec's name as its container writes it (`avc1`, `FMP4`,
    `V_MPEG4/ISO/AVC`) is replaced by `unknown`, of the same length, which no decoder knows."""
    data = source.read_bytes()
    assert codec_tag in data and len(unknown) == len(codec_tag), codec_tag
    target.write_bytes(data.replace(codec_tag, unknown))
    return target


def set_mpeg2_colour_matrix(path: Path, matrix: int) -> Path:
    """Overwrite the matrix coefficients of every MPEG-2 sequence display extension in `path` (a
    video written with a colour description), e.g. with a reserved code."""
    data = bytearray(path.read_bytes())
    at, changed = 0, 0
    while (at := data.find(b"\x00\x00\x01\xb5", at + 1)) >= 0:
        if data[at + 4] >> 4 == 2 and data[at + 4] & 1:  # extension 2, with a colour description
            data[at + 7] = matrix  # after the primaries and the transfer
            changed += 1
    assert changed, f"{path} has no colour description"
    path.write_bytes(bytes(data))
    return path


def set_track_timescale(path: Path, timescale: int) -> Path:
    """Overwrite the time scale (units per second) of every track of an ISO-BMFF file (an animated
    AVIF, an MP4) in place."""
    data = bytearray(path.read_bytes())
    for offset, _ in _find_boxes(data, b"mdhd"):
        # version and flags, then creation and modification times: 4 bytes each, or 8 in version 1
        struct.pack_into(">I", data, offset + 4 + (16 if data[offset] == 1 else 8), timescale)
    path.write_bytes(bytes(data))
    return path


def append_flv_audio_tag(path: Path, at_ms: int) -> Path:
    """Append to a video-only FLV one audio tag (MP3 silence) at `at_ms`: a stream the demuxer
    meets only when it gets there, long after the header was read."""
    body = bytes([0x2E]) + bytes(64)  # MP3, 44.1 kHz, 16-bit stereo
    header = (
        bytes([8])
        + len(body).to_bytes(3, "big")
        + (at_ms & 0xFFFFFF).to_bytes(3, "big")
        + bytes([at_ms >> 24, 0, 0, 0])
    )
    with path.open("ab") as flv:
        flv.write(header + body + struct.pack(">I", len(header) + len(body)))  # each tag ends with its size
    return path


# Colour profiles -------------------------------------------------------------------------

SRGB_TO_XYZ_D50 = np.array(
    [[0.4360747, 0.3850649, 0.1430804], [0.2225045, 0.7168786, 0.0606169], [0.0139322, 0.0971045, 0.7141733]]
)
"""Linear sRGB to XYZ under D50 (Bradford), as published (Lindbloom): the profile connection
space's XYZ of a colour, owing nothing to the app's own profile writer."""

INKS = {"cyan": (0.02, 0.35, 0.75), "magenta": (0.75, 0.05, 0.35), "yellow": (0.95, 0.80, 0.05), "black": (0.03,) * 3}
"""How much of sRGB's linear red, green and blue each full ink lets through, in `cmyk_profile`."""


def ink_srgb(inks: tuple[int, int, int, int]) -> np.ndarray:
    """sRGB 0..255 that `cmyk_profile` gives inks each at none (0) or full (255): white paper
    under the inks laid, each letting through its share of the light (`INKS`)."""
    linear = np.ones(3)
    for amount, passed in zip(inks, INKS.values(), strict=True):
        linear = linear * (np.array(passed) if amount else 1.0)
    return np.where(linear <= 0.0031308, linear * 12.92, 1.055 * linear ** (1 / 2.4) - 0.055) * 255


def cmyk_profile(name: str = "Test press CMYK") -> bytes:
    """An ICC printer profile of a four-ink press (`INKS`): an `mft2` table from CMYK to XYZ with
    a corner at each ink's none and full, as a press profile's A2B0 tag is (with two points a
    side instead of 33)."""
    from pipeline.engine import colour

    corners = [
        SRGB_TO_XYZ_D50 @ ((ink_srgb((c, m, y, k)) / 255 + 0.055) / 1.055) ** 2.4
        for c in (0, 255)
        for m in (0, 255)
        for y in (0, 255)
        for k in (0, 255)
    ]
    identity = struct.pack(">9i", *(65536 if row == column else 0 for row in range(3) for column in range(3)))
    table = b"mft2" + bytes(4) + bytes([4, 3, 2, 0]) + identity + struct.pack(">HH", 2, 2)
    table += struct.pack(">8H", *(0, 65535) * 4)  # input curves: straight
    table += np.round(np.clip(np.array(corners) * 32768, 0, 65535)).astype(">u2").tobytes()  # XYZ, 1.0 at 0x8000
    table += struct.pack(">6H", *(0, 65535) * 3)  # output curves: straight
    return colour.icc_profile(b"prtr", b"CMYK", name, [(b"A2B0", table)])


def gray_profile(gamma: float | None, name: str) -> bytes:
    """An ICC profile of gray pictures whose level v means light (v / 255) ** gamma, or (`gamma`
    None) sRGB's light of the gray (v, v, v), as a 1,024-point curve."""
    from pipeline.engine import colour

    if gamma is None:
        curve = (
            struct.pack(">I", 1024)
            + np.round(colour.srgb_linear(np.linspace(0, 1, 1024)) * 65535).astype(">u2").tobytes()
        )
    else:
        curve = struct.pack(">IH", 1, round(gamma * 256))
    return colour.icc_profile(b"mntr", b"GRAY", name, [(b"kTRC", b"curv" + bytes(4) + curve)])
