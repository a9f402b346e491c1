"""Provenance: where a file says it comes from, read beside the models and without them.

One function per source of evidence:

- `read_credentials`: Content Credentials (C2PA manifests), read and checked with the official
  bindings (`c2pa`): who made or edited the file with what, whether an AI model generated it, who
  signed, and whether the signature still holds for these bytes.
- `read_exif`: the camera's make and model, the capture date and the software (EXIF), and the
  Stable Diffusion web UI's generation text in a JPEG's or WebP's `UserComment`.
- `read_xmp`: the IPTC `DigitalSourceType` (e.g. `trainedAlgorithmicMedia`), the creator tool,
  and where a remote manifest would be (XMP).
- `read_generator_texts`: the PNG text chunks image generators write (`parameters`, `prompt`),
  and a generator named in a GIF's or JPEG's comment.
- `read_container_tags`: a video container's encoder, creation date and camera tags (PyAV).
- `read_file_history`: how an image was last saved (a JPEG's quality, from its quantisation
  tables), and a caveat when that is more compressed than the models' training pictures.

A file's metadata is written by whoever made the file, so it is read as hostile input. The
file's structure is walked by hand (JPEG segments, PNG chunks, RIFF chunks, MP4 top-level boxes)
and only blocks within `ProvenanceSettings` limits are read; XMP is searched with patterns, never
given to an XML parser. Bad provenance never fails an analysis: every problem becomes one line in
`Provenance.problems`. Nothing here touches the network: c2pa is told to fetch neither remote
manifests nor certificate status, and no host is allowed.
"""

from __future__ import annotations

import contextlib
import functools
import html
import io
import json
import logging
import math
import re
import struct
import warnings
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from pipeline.config import ProvenanceSettings
from pipeline.engine.heif import box_header, read_heif_metadata
from pipeline.engine.media import PILLOW_DAMAGE_ERRORS, converted_colour_space, is_avif, is_gif, is_heif
from pipeline.errors import MediaError
from pipeline.results import (
    AI_SOURCE_TYPES,
    ContentCredentials,
    CredentialAction,
    FileHistory,
    Provenance,
    ProvenanceMetadata,
    describe_source_type,
    source_type_name,
)

__all__ = [
    "MetadataBlocks",
    "estimate_jpeg_quality",
    "read_container_tags",
    "read_credentials",
    "read_exif",
    "read_file_history",
    "read_generator_texts",
    "read_metadata_blocks",
    "read_provenance",
    "read_xmp",
    "verdict_reason",
]

log = logging.getLogger(__name__)

NO_PROVENANCE = (
    "No provenance information: no Content Credentials, and no camera, editor or generator in the "
    "metadata. Its absence proves nothing: most apps and platforms strip metadata."
)

_EXIF_HEADER = b"Exif\x00\x00"
_XMP_HEADER = b"http://ns.adobe.com/xap/1.0/\x00"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_XMP_KEY = "XML:com.adobe.xmp"
_C2PA_BMFF_UUID = bytes.fromhex("d8fec3d61b0e483c92975828877ec481")
"""The `uuid` box type under which MP4/MOV files carry a C2PA manifest store."""
# GIF application extensions by their identifier and authentication code (11 bytes): XMP as
# Adobe writes it, and Content Credentials as C2PA writes them.
_GIF_XMP_APPLICATION = b"XMP DataXMP"
_GIF_C2PA_APPLICATION = b"C2PA_GIF\x01\x00\x00"
_GIF_XMP_TRAILER = bytes([1, *range(255, -1, -1), 0])
"""What follows a GIF's XMP: 258 bytes that make the packet read as sub-blocks end where it does."""
_FAILURE_MEANINGS = {
    "assertion.dataHash.mismatch": "the file's content changed after it was signed",
    "assertion.bmffHash.mismatch": "the video's content changed after it was signed",
    "assertion.boxesHash.mismatch": "the file's content changed after it was signed",
    "assertion.hashedURI.mismatch": "a part of the manifest was changed after signing",
    "claimSignature.mismatch": "the signature does not match the manifest",
    "signingCredential.expired": "the signing certificate had expired",
    "signingCredential.revoked": "the signing certificate was revoked",
    "signingCredential.invalid": "the signing certificate is not fit for signing",
}
"""What the commonest failed checks mean, for the one-line summary."""
_UNTRUSTED = "signingCredential.untrusted"
"""The check that fails for a valid signature by a signer on no trust list (reported apart)."""

_JPEG_FRAME_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
"""Start-of-frame markers (0xC4, 0xC8 and 0xCC share the range but are other segments)."""
_JPEG_PROGRESSIVE_MARKERS = frozenset({0xC2, 0xC6, 0xCA, 0xCE})
# The JPEG standard's example tables (ITU T.81, Annex K), row by row, which libjpeg scales by
# quality; nearly every encoder uses them.
_LUMINANCE_STEPS = (
    (16, 11, 10, 16, 24, 40, 51, 61),
    (12, 12, 14, 19, 26, 58, 60, 55),
    (14, 13, 16, 24, 40, 57, 69, 56),
    (14, 17, 22, 29, 51, 87, 80, 62),
    (18, 22, 37, 56, 68, 109, 103, 77),
    (24, 35, 55, 64, 81, 104, 113, 92),
    (49, 64, 78, 87, 103, 121, 120, 101),
    (72, 92, 95, 98, 112, 100, 103, 99),
)
_CHROMINANCE_STEPS = (
    (17, 18, 24, 47, 99, 99, 99, 99),
    (18, 21, 26, 66, 99, 99, 99, 99),
    (24, 26, 56, 99, 99, 99, 99, 99),
    (47, 66, 99, 99, 99, 99, 99, 99),
    *((99,) * 8,) * 4,
)
_ZIGZAG = tuple(
    (row, diagonal - row)
    for diagonal in range(15)
    for row in (
        range(min(diagonal, 7), max(0, diagonal - 7) - 1, -1)
        if diagonal % 2 == 0
        else range(max(0, diagonal - 7), min(diagonal, 7) + 1)
    )
)
"""(row, column) of each of a block's 64 coefficients in the order a JPEG file stores them."""

# EXIF tags (TIFF numbering).
_MAKE, _MODEL, _SOFTWARE, _DATETIME = 0x010F, 0x0110, 0x0131, 0x0132
_EXIF_IFD, _DATETIME_ORIGINAL, _USER_COMMENT = 0x8769, 0x9003, 0x9286


_PICTURE_FORMATS = ("JPEG", "PNG", "WebP", "AVIF", "HEIF", "TIFF")
"""Containers whose pictures may carry a colour profile that the engine reads."""


@dataclass
class MetadataBlocks:
    """The raw metadata blocks of a file, each within `ProvenanceSettings.max_metadata_bytes`."""

    exif: bytes | None = None
    """The EXIF block (a TIFF structure)."""
    xmp: bytes | None = None
    texts: dict[str, str] = field(default_factory=dict)
    """PNG text chunks (key -> text), or a GIF's or JPEG's comment (key `Comment`)."""
    manifest_bytes: int | None = None
    """Bytes of C2PA manifest blocks (JUMBF) found; None for a format that is not walked."""
    format: str | None = None
    """The container, from the file's first bytes (JPEG, PNG, WebP, AVIF, HEIF, GIF, MP4, TIFF, BMP); None if unknown."""
    quantization: dict[int, tuple[int, ...]] = field(default_factory=dict)
    """A JPEG's quantisation tables: table number -> 64 steps in the file's (zigzag) order."""
    components: list[tuple[int, int, int]] = field(default_factory=list)
    """A JPEG's colour components: (horizontal sampling, vertical sampling, table number)."""
    progressive: bool = False
    lossy: bool = False
    """A WebP whose picture is stored with lossy (VP8) compression, not lossless (VP8L)."""
    pages: int | None = None
    """A TIFF's pages, counted up to `ProvenanceSettings.max_counted_pages`."""
    colour_space: str | None = None
    """The colour profile a picture's colours are converted from to sRGB for the models (its name)."""
    problems: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def _size(count: int) -> str:
    if count < 1024**2:
        return f"{count / 1024:.0f} KB" if count >= 1024 else f"{count} bytes"
    return f"{count / 1024**2:.1f} MB"


def _clean(value: object, limit: int) -> str | None:
    """A metadata value as one printable line of at most `limit` characters (None when empty)."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    text = " ".join(str(value).replace("\x00", " ").split())
    text = "".join(c if c.isprintable() else "?" for c in text)
    if len(text) > limit:
        text = text[: max(0, limit - 1)] + "…"
    return text or None


def _why(error: BaseException, path: Path, limit: int = 200) -> str:
    """A library's error on one line, naming the file without its folders (an upload's temporary
    folder is nobody's business)."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    text = str(error)
    for full in sorted({str(path.absolute()), str(path)}, key=len, reverse=True):
        text = text.replace(full, path.name)
    return _clean(text, limit) or type(error).__name__


@functools.lru_cache(maxsize=4)
def _generator_pattern(names: tuple[str, ...]) -> re.Pattern[str]:
    alternatives = "|".join(re.escape(name) for name in names)
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)


def _names_generator(text: str | None, settings: ProvenanceSettings) -> bool:
    return bool(text) and _generator_pattern(settings.generator_names).search(text) is not None


def _is_generic_encoder(text: str, settings: ProvenanceSettings) -> bool:
    return text.lower().startswith(settings.generic_encoders)


# --------------------------------------------------------------------------------------------
# Walking the file: bounded reads of the metadata blocks
# --------------------------------------------------------------------------------------------


def _too_many(settings: ProvenanceSettings, what: str) -> str:
    return f"more than {settings.max_container_entries:,} {what}: the rest of the file was not searched for metadata"


def _over_limit(what: str, length: int, settings: ProvenanceSettings, blocks: MetadataBlocks) -> bool:
    """Whether a metadata block of `length` bytes is too large to read (then noted as a problem)."""
    if length <= settings.max_metadata_bytes:
        return False
    blocks.problems.append(
        f"a {what} chunk of {_size(length)} is over the {_size(settings.max_metadata_bytes)} limit: not read"
    )
    return True


def _quantization_tables(body: bytes, blocks: MetadataBlocks) -> None:
    """The tables of one DQT segment (each: precision and number in one byte, then 64 steps of
    one or two bytes)."""
    offset = 0
    while offset < len(body):
        wide, number = body[offset] >> 4, body[offset] & 0x0F
        size = 128 if wide else 64
        steps = body[offset + 1 : offset + 1 + size]
        if len(steps) < size:
            return  # a damaged table is not guessed at
        blocks.quantization[number] = struct.unpack(">64H", steps) if wide else tuple(steps)
        offset += 1 + size


def _frame_header(body: bytes, marker: int, blocks: MetadataBlocks) -> None:
    """The colour components of the frame header: sampling and quantisation table of each."""
    if len(body) < 6:
        return
    blocks.progressive = marker in _JPEG_PROGRESSIVE_MARKERS
    for start in range(6, 6 + 3 * body[5], 3):  # after precision, height, width and the count
        component = body[start : start + 3]  # its number, its sampling, its table
        if len(component) < 3:
            return
        blocks.components.append((component[1] >> 4, component[1] & 0x0F, component[2]))


def _jpeg_blocks(stream: BinaryIO, settings: ProvenanceSettings, blocks: MetadataBlocks) -> None:
    """EXIF and XMP (APP1), C2PA (APP11 JUMBF) and comment (COM) segments before the picture
    data, and the quantisation tables and frame header (how the picture was compressed). A JPEG segment holds
    at most 64 KB, so every block read here is small."""
    blocks.manifest_bytes = 0
    stream.seek(2)
    for _ in range(settings.max_container_entries):
        prefix = stream.read(2)
        if len(prefix) < 2 or prefix[0] != 0xFF:
            return  # damaged structure: whether the picture decodes is the media stage's call
        marker = prefix[1]
        while marker == 0xFF:  # fill bytes before a marker
            byte = stream.read(1)
            if not byte:
                return
            marker = byte[0]
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:
            continue  # markers without a length
        if marker in (0xD9, 0xDA):
            return  # metadata comes before the first scan
        length = int.from_bytes(stream.read(2), "big") - 2
        if length < 0:
            return
        start = stream.tell()
        if marker == 0xE1:
            body = stream.read(length)
            if body.startswith(_EXIF_HEADER) and blocks.exif is None:
                blocks.exif = body[len(_EXIF_HEADER) :]
            elif body.startswith(_XMP_HEADER) and blocks.xmp is None:
                blocks.xmp = body[len(_XMP_HEADER) :]
        elif marker == 0xEB and stream.read(2) == b"JP":
            blocks.manifest_bytes += length
        elif marker == 0xFE and "Comment" not in blocks.texts:
            # A JPEG comment, read as a GIF's is: some tools name themselves there.
            blocks.texts["Comment"] = stream.read(length).decode("utf-8", "replace")
        elif marker == 0xDB:
            _quantization_tables(stream.read(length), blocks)
        elif marker in _JPEG_FRAME_MARKERS and not blocks.components:
            _frame_header(stream.read(length), marker, blocks)
        stream.seek(start + length)
    blocks.problems.append(_too_many(settings, "JPEG segments"))


def _inflate(data: bytes, limit: int) -> bytes | None:
    """zlib data inflated to at most `limit` bytes; None when it would be larger (a bomb)."""
    inflater = zlib.decompressobj()
    out = inflater.decompress(data, limit + 1)
    return None if len(out) > limit or inflater.unconsumed_tail else out


def _png_text(kind: bytes, data: bytes, settings: ProvenanceSettings, blocks: MetadataBlocks) -> None:
    """One tEXt, zTXt or iTXt chunk into `blocks`."""
    key_bytes, _, rest = data.partition(b"\x00")
    key = key_bytes.decode("latin-1")
    limit = settings.max_metadata_bytes
    if kind == b"tEXt":
        raw: bytes | None = rest
        encoding = "latin-1"
    elif kind == b"zTXt":
        raw, encoding = _inflate(rest[1:], limit), "latin-1"
    else:  # iTXt: compressed flag, method, language, translated keyword, then the text
        compressed, rest = rest[:1] == b"\x01", rest[2:]
        rest = rest.partition(b"\x00")[2].partition(b"\x00")[2]
        raw, encoding = (_inflate(rest, limit) if compressed else rest), "utf-8"
    if raw is None:
        blocks.problems.append(f"the compressed PNG text '{_clean(key, 80)}' inflates past {_size(limit)}: not read")
    elif key == _PNG_XMP_KEY:
        blocks.xmp = blocks.xmp or raw
    elif len(blocks.texts) < settings.max_items:
        blocks.texts.setdefault(key, raw.decode(encoding, "replace"))


def _png_blocks(stream: BinaryIO, settings: ProvenanceSettings, blocks: MetadataBlocks) -> None:
    """Text, EXIF and C2PA (caBX) chunks, wherever they are; chunk headers are read and the
    bodies of large chunks skipped."""
    blocks.manifest_bytes = 0
    stream.seek(len(_PNG_SIGNATURE))
    for _ in range(settings.max_container_entries):
        header = stream.read(8)
        if len(header) < 8:
            return
        length, kind = int.from_bytes(header[:4], "big"), header[4:]
        start = stream.tell()
        if kind == b"IEND":
            return
        if kind == b"caBX":
            blocks.manifest_bytes += length
        elif kind in (b"tEXt", b"zTXt", b"iTXt", b"eXIf") and not _over_limit(
            f"PNG {kind.decode()}", length, settings, blocks
        ):
            if kind == b"eXIf":
                blocks.exif = blocks.exif or stream.read(length)
            else:
                try:
                    _png_text(kind, stream.read(length), settings, blocks)
                except zlib.error:
                    blocks.problems.append(f"a compressed PNG {kind.decode()} chunk is damaged: not read")
        stream.seek(start + length + 4)  # the body and its CRC
    blocks.problems.append(_too_many(settings, "PNG chunks"))


def _riff_blocks(stream: BinaryIO, settings: ProvenanceSettings, blocks: MetadataBlocks) -> None:
    """EXIF, XMP and C2PA chunks of a RIFF file (WebP, AVI), top level only."""
    blocks.manifest_bytes = 0
    stream.seek(12)
    for _ in range(settings.max_container_entries):
        header = stream.read(8)
        if len(header) < 8:
            return
        kind, length = header[:4], int.from_bytes(header[4:], "little")
        start = stream.tell()
        blocks.lossy = blocks.lossy or kind == b"VP8 "  # a still picture's data (an animation's is in ANMF)
        if kind == b"C2PA":
            blocks.manifest_bytes += length
        elif kind in (b"EXIF", b"XMP ") and not _over_limit(kind.decode().strip(), length, settings, blocks):
            if kind == b"EXIF":
                blocks.exif = blocks.exif or stream.read(length)
            else:
                blocks.xmp = blocks.xmp or stream.read(length)
        stream.seek(start + length + (length & 1))  # chunks are padded to an even size
    blocks.problems.append(_too_many(settings, "RIFF chunks"))


def _bmff_blocks(stream: BinaryIO, settings: ProvenanceSettings, blocks: MetadataBlocks) -> None:
    """The size of the C2PA `uuid` boxes of an MP4/MOV file (top level only: where C2PA puts
    them); the container's tags are PyAV's to read."""
    blocks.manifest_bytes = 0
    end = stream.seek(0, 2)
    offset = 0
    for _ in range(settings.max_container_entries):
        found = box_header(stream, offset, end)
        if found is None:
            return
        kind, header_size, size = found
        if size < header_size:
            return
        stream.seek(offset + header_size)
        if kind == b"uuid" and stream.read(16) == _C2PA_BMFF_UUID:
            blocks.manifest_bytes += size
        offset += size
        if offset >= end:
            return
    blocks.problems.append(_too_many(settings, "MP4 boxes"))


def _avif_blocks(path: Path, settings: ProvenanceSettings, blocks: MetadataBlocks) -> None:
    """An AVIF picture's EXIF and XMP, which it keeps as items of its `meta` box: Pillow finds
    them (it parses the file's structure, no pixel is decoded)."""
    from PIL import Image

    try:
        with Image.open(path, formats=["AVIF"]) as image:
            exif, xmp = image.info.get("exif"), image.info.get("xmp")
    except (*PILLOW_DAMAGE_ERRORS, Image.DecompressionBombError) as error:
        blocks.problems.append(f"the metadata could not be read: {_why(error, path)}")
        return
    if isinstance(exif, bytes) and not _over_limit("EXIF", len(exif), settings, blocks):
        blocks.exif = exif
    if isinstance(xmp, bytes) and not _over_limit("XMP", len(xmp), settings, blocks):
        blocks.xmp = xmp


def _gif_sub_blocks(stream: BinaryIO) -> int | None:
    """Skip the data sub-blocks that follow a GIF block (each a length byte and that many
    bytes, up to an empty one): the bytes they held, or None when the file ends first."""
    total = 0
    while length := stream.read(1):
        if length == b"\x00":
            return total
        total += length[0]
        stream.seek(length[0], 1)
    return None


def _gif_colour_table(stream: BinaryIO, flags: int) -> None:
    """Skip the colour table that a GIF screen or image descriptor's flags announce."""
    if flags & 0x80:
        stream.seek(3 << ((flags & 0x07) + 1), 1)


def _gif_blocks(stream: BinaryIO, settings: ProvenanceSettings, blocks: MetadataBlocks) -> None:
    """A GIF's comments, XMP and C2PA application extensions, wherever they are; the pictures'
    data is skipped block by block, never decoded."""
    blocks.manifest_bytes = 0
    stream.seek(10)  # the signature, the version and the screen's width and height
    screen = stream.read(3)
    if len(screen) < 3:
        return
    _gif_colour_table(stream, screen[0])
    for _ in range(settings.max_container_entries):
        introducer = stream.read(1)
        if introducer == b"\x2c":  # a picture: its descriptor, colour table, code size and data
            descriptor = stream.read(9)
            if len(descriptor) < 9:
                return
            _gif_colour_table(stream, descriptor[8])
            stream.seek(1, 1)
            if _gif_sub_blocks(stream) is None:
                return
            continue
        if introducer != b"\x21":
            return  # the trailer (0x3B), or damage: nothing after it is a block
        label = stream.read(1)
        application = stream.read(12)[1:] if label == b"\xff" else b""
        start = stream.tell()
        length = _gif_sub_blocks(stream)
        if length is None:
            return
        end = stream.tell()
        if application == _GIF_C2PA_APPLICATION:
            blocks.manifest_bytes += length
        elif application == _GIF_XMP_APPLICATION and not _over_limit("GIF XMP", end - start, settings, blocks):
            # The packet is stored raw (its bytes read as lengths land on the trailer's end).
            stream.seek(start)
            raw = stream.read(end - start)
            blocks.xmp = blocks.xmp or raw.removesuffix(_GIF_XMP_TRAILER)
        elif label == b"\xfe" and not _over_limit("GIF comment", length, settings, blocks):
            stream.seek(start)
            text = b"".join(iter(lambda: stream.read(stream.read(1)[0]), b""))
            blocks.texts.setdefault("Comment", text.decode("utf-8", "replace"))
        stream.seek(end)
    blocks.problems.append(_too_many(settings, "GIF blocks"))


def _tiff_blocks(path: Path, settings: ProvenanceSettings, blocks: MetadataBlocks) -> None:
    """A TIFF file is itself an EXIF structure: Pillow reads its tags, header only."""
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # damage shows as missing tags
        try:
            with Image.open(path, formats=["TIFF"]) as image:
                blocks.exif = image.getexif().tobytes()
                xmp = image.info.get("xmp")
        except (*PILLOW_DAMAGE_ERRORS, Image.DecompressionBombError) as error:
            blocks.problems.append(f"the metadata could not be read: {_why(error, path)}")
            return
    if isinstance(xmp, bytes) and len(xmp) <= settings.max_metadata_bytes:
        blocks.xmp = xmp


_NEW_SUBFILE_TYPE = 254
_TIFF_LONG, _TIFF_SHORT = 4, 3


def _tiff_pages(stream: BinaryIO, settings: ProvenanceSettings) -> int:
    """How many pages a TIFF (or BigTIFF) holds: the directories chained from its header, less
    the reduced-resolution copies of a page (thumbnails, NewSubfileType bit 0), counted up to
    `settings.max_counted_pages`. Only each directory's first entries are read (tags come in
    order and this one is among the first); a loop or a cut ends the chain."""
    size = stream.seek(0, io.SEEK_END)
    stream.seek(0)
    head = stream.read(16)
    if len(head) < 16:
        return 1  # a header cut short: the picture's own reader says so
    order = "<" if head[:2] == b"II" else ">"
    if head[2:4] in (b"+\x00", b"\x00+"):  # BigTIFF: 8-byte counts and offsets, 20-byte entries
        count_format, entry_size, value_at, offset = order + "Q", 20, 12, struct.unpack_from(order + "Q", head, 8)[0]
    else:
        count_format, entry_size, value_at, offset = order + "H", 12, 8, struct.unpack_from(order + "I", head, 4)[0]
    next_format = order + ("Q" if entry_size == 20 else "I")
    seen: set[int] = set()
    pages = 0
    while 0 < offset < size and offset not in seen and pages < settings.max_counted_pages:
        seen.add(offset)
        stream.seek(offset)
        raw = stream.read(struct.calcsize(count_format))
        if len(raw) < struct.calcsize(count_format):
            break
        (count,) = struct.unpack(count_format, raw)
        if offset + len(raw) + entry_size * count >= size:
            break  # cut short (or a count no file this size holds)
        entries = stream.read(entry_size * min(count, 16))
        reduced = False
        for start in range(0, len(entries) - entry_size + 1, entry_size):
            tag, kind = struct.unpack_from(order + "HH", entries, start)
            if tag == _NEW_SUBFILE_TYPE and kind in (_TIFF_LONG, _TIFF_SHORT):
                value_format = order + ("I" if kind == _TIFF_LONG else "H")
                reduced = bool(struct.unpack_from(value_format, entries, start + value_at)[0] & 1)
        pages += not reduced
        stream.seek(offset + len(raw) + entry_size * count)
        raw = stream.read(struct.calcsize(next_format))
        offset = struct.unpack(next_format, raw)[0] if len(raw) == struct.calcsize(next_format) else 0
    return max(pages, 1)


def read_metadata_blocks(path: Path, settings: ProvenanceSettings = ProvenanceSettings()) -> MetadataBlocks:
    """The EXIF, XMP and text blocks of a file and the size of its C2PA blocks, reading only
    the blocks within the limits (larger ones become a problem line). Never raises for the
    file's content."""
    blocks = MetadataBlocks()
    try:
        with Path(path).open("rb") as stream:
            head = stream.read(32)
            if head.startswith(b"\xff\xd8"):
                blocks.format = "JPEG"
                _jpeg_blocks(stream, settings, blocks)
            elif head.startswith(_PNG_SIGNATURE):
                blocks.format = "PNG"
                _png_blocks(stream, settings, blocks)
            elif head[:4] == b"RIFF":
                blocks.format = "WebP" if head[8:12] == b"WEBP" else "RIFF"
                _riff_blocks(stream, settings, blocks)
            elif is_avif(head):
                blocks.format = "AVIF"
                _bmff_blocks(stream, settings, blocks)  # C2PA sits in a top-level `uuid` box as in MP4
                _avif_blocks(path, settings, blocks)
            elif is_heif(head):
                blocks.format = "HEIF"
                _bmff_blocks(stream, settings, blocks)  # C2PA sits in a top-level `uuid` box as in MP4
                blocks.exif, blocks.xmp, problems = read_heif_metadata(Path(path), settings.max_metadata_bytes)
                blocks.problems += problems
            elif head[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"):
                blocks.format = "MP4"
                _bmff_blocks(stream, settings, blocks)
            elif head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):  # TIFF and BigTIFF
                blocks.format = "TIFF"
                blocks.pages = _tiff_pages(stream, settings)
                _tiff_blocks(path, settings, blocks)
            elif is_gif(head):
                blocks.format = "GIF"
                _gif_blocks(stream, settings, blocks)
            elif head.startswith(b"BM"):
                blocks.format = "BMP"  # no metadata to read; named for how the file was saved
        if blocks.format in _PICTURE_FORMATS:
            # A picture that cannot be read says so elsewhere; Pillow's warnings about damage
            # it reads past (a TIFF's EXIF) are the metadata's problems, said above.
            with contextlib.suppress(MediaError), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                blocks.colour_space = _clean(converted_colour_space(Path(path)), 100)  # the file's own words
    except (OSError, ValueError, SyntaxError, EOFError) as error:  # what Pillow and reads raise for a bad file
        blocks.problems.append(f"the metadata could not be read: {_why(error, Path(path))}")
    return blocks


# --------------------------------------------------------------------------------------------
# The sources of evidence
# --------------------------------------------------------------------------------------------


def _user_comment_text(value: object) -> str | None:
    """The text of an EXIF `UserComment`: eight bytes naming its character code ("ASCII",
    "UNICODE": UCS-2, in either byte order as writers differ; else read as UTF-8), then the text."""
    if isinstance(value, str):
        return value.strip("\x00 ") or None
    if not isinstance(value, bytes) or len(value) <= 8:
        return None
    code, body = value[:8], value[8:]
    if code.startswith(b"UNICODE"):
        # UCS-2 of mostly ASCII text: the byte order is the one whose first character is ASCII.
        text = body.decode("utf-16-be" if body[:1] == b"\x00" else "utf-16-le", "replace")
    else:
        text = body.decode("ascii" if code.startswith(b"ASCII") else "utf-8", "replace")
    return text.strip("\x00 ") or None


def read_exif(data: bytes, settings: ProvenanceSettings = ProvenanceSettings()) -> dict[str, str | None]:
    """Camera (make and model), capture date and software from an EXIF block, and a generator's
    text where its `UserComment` is the Stable Diffusion web UI's. Raises `ValueError` for a block
    that is not EXIF."""
    from PIL import Image

    exif = Image.Exif()
    if not data.startswith(_EXIF_HEADER):
        data = _EXIF_HEADER + data  # how Pillow's parser expects it (PNG and TIFF carry none)
    # Pillow warns, rather than raises, about most damage and keeps what it could read: a
    # warning makes the block damaged here (and keeps the warning off the user's terminal).
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            exif.load(data)
            details = exif.get_ifd(_EXIF_IFD)
        except (OSError, SyntaxError, EOFError, KeyError, TypeError, IndexError, UnicodeError, struct.error) as error:
            raise ValueError(str(error) or type(error).__name__) from error
    if caught:
        raise ValueError(str(caught[0].message))
    limit = settings.max_text_chars
    make, model = _clean(exif.get(_MAKE), 100), _clean(exif.get(_MODEL), 100)
    # Model names often repeat the make ("Canon" + "Canon EOS R5").
    camera = model if make and model and model.lower().startswith(make.lower()) else _join(make, model)
    comment = _user_comment_text(details.get(_USER_COMMENT))
    generated = comment is not None and all(marker in comment for marker in settings.generator_comment_fields)
    return {
        "camera": camera,
        "captured": _clean(details.get(_DATETIME_ORIGINAL) or exif.get(_DATETIME), 40),
        "software": _clean(exif.get(_SOFTWARE), limit),
        "generator": "EXIF UserComment (the Stable Diffusion web UI's format)" if generated else None,
        "generator_text": _clean(comment, limit) if generated else None,
    }


def _join(*parts: str | None) -> str | None:
    return " ".join(p for p in parts if p) or None


def _xmp_value(xmp: bytes, name: bytes, limit: int) -> str | None:
    """The value of an XMP property, written as an attribute, an element, or a resource."""
    found = re.search(
        rb"[:\s<]"
        + name
        + rb"(?:\s*=\s*[\"']([^\"']{0,4096})[\"']|\s[^>]{0,4096}?rdf:resource\s*=\s*[\"']([^\"']{0,4096})[\"']|\s*>\s*([^<]{0,4096}?)\s*<)",
        xmp,
    )
    if not found:
        return None
    value = next(group for group in found.groups() if group is not None)
    return _clean(html.unescape(value.decode("utf-8", "replace")), limit)


def read_xmp(xmp: bytes, settings: ProvenanceSettings = ProvenanceSettings()) -> dict[str, str | None]:
    """The IPTC digital source type, the creator tool and a remote manifest's address from an XMP
    packet (searched with patterns: no XML parser sees hostile XMP)."""
    return {
        "digital_source_type": _xmp_value(xmp, rb"DigitalSourceType", 300),
        "software": _xmp_value(xmp, rb"CreatorTool", settings.max_text_chars),
        "remote_manifest": _xmp_value(xmp, rb"provenance", 300),
    }


def read_generator_texts(
    texts: dict[str, str], settings: ProvenanceSettings = ProvenanceSettings()
) -> dict[str, str | None]:
    """The generator named by PNG text chunks or a GIF's or JPEG's comment (its kind of text, or its name
    as `Software`, `Source` or `Comment`), the generator's own text cut short, and the software."""
    by_key = {key.lower(): (key, text) for key, text in texts.items()}
    generator = generator_text = None
    for key, tool in settings.generator_text_keys:
        if key in by_key:
            original, text = by_key[key]
            generator = f"PNG text '{_clean(original, 80)}' ({tool})"
            generator_text = _clean(text, settings.max_text_chars)
            break
    software = _clean(by_key.get("software", ("", ""))[1], settings.max_text_chars)
    source = _clean(by_key.get("source", ("", ""))[1], settings.max_text_chars)
    comment = _clean(by_key.get("comment", ("", ""))[1], settings.max_text_chars)
    for named in (software, source, comment):
        if generator is None and _names_generator(named, settings):
            generator = named
    return {"generator": generator, "generator_text": generator_text, "software": software}


_VIDEO_CAMERA_TAGS = (
    ("com.apple.quicktime.make", "com.apple.quicktime.model"),
    ("com.android.manufacturer", "com.android.model"),
    ("make", "model"),
)
_VIDEO_DATE_TAGS = ("com.apple.quicktime.creationdate", "creation_time", "date")
_VIDEO_SOFTWARE_TAGS = ("com.apple.quicktime.software", "software")


def read_container_tags(path: Path, settings: ProvenanceSettings = ProvenanceSettings()) -> dict[str, str | None]:
    """A video container's encoder, creation date, camera and software tags, and a generator
    named in any tag (PyAV; the container's header only, no frame is decoded). Raises PyAV's
    errors for a file it cannot open."""
    import av

    tags: dict[str, str] = {}
    with av.open(str(path), metadata_errors="replace") as container:
        sources: Iterable[Any] = [container.metadata, *(stream.metadata for stream in container.streams)]
        for metadata in sources:
            for key, value in list(metadata.items())[: settings.max_items]:
                tags.setdefault(str(key).lower(), _clean(value, settings.max_text_chars) or "")
    camera = next((_join(tags.get(m), tags.get(n)) for m, n in _VIDEO_CAMERA_TAGS if tags.get(m) or tags.get(n)), None)
    encoder = tags.get("encoder") or None
    software = next((tags[k] for k in _VIDEO_SOFTWARE_TAGS if tags.get(k)), None)
    if software is None and encoder and not _is_generic_encoder(encoder, settings):
        software = encoder
    generator = next((f"{key} tag '{value}'" for key, value in tags.items() if _names_generator(value, settings)), None)
    return {
        "camera": camera,
        "captured": next((tags[k] for k in _VIDEO_DATE_TAGS if tags.get(k)), None),
        "software": software,
        "generator": generator,
        "encoder": encoder,
    }


def _c2pa_config(settings: ProvenanceSettings, problems: list[str]) -> dict[str, Any]:
    """c2pa's settings: offline (no remote manifest, no certificate status, no host allowed),
    manifests bounded, and the trust anchors when configured."""
    config: dict[str, Any] = {
        "core": {
            "allowed_network_hosts": [],
            "max_decompressed_manifest_size_in_mb": math.ceil(settings.max_manifest_bytes / 1024**2),
        },
        "verify": {"remote_manifest_fetch": False, "ocsp_fetch": False, "verify_trust": True},
    }
    if settings.trust_anchors is not None:
        try:
            config["trust"] = {"trust_anchors": settings.trust_anchors.read_text(encoding="ascii")}
        except (OSError, UnicodeDecodeError) as error:
            problems.append(
                f"the trust anchors ({settings.trust_anchors.name}) cannot be read ({_clean(error, 120)}): no signer is trusted"
            )
    return config


def _software_agent(value: object) -> str | None:
    if isinstance(value, dict):
        return _join(_clean(value.get("name"), 100), _clean(value.get("version"), 40))
    return _clean(value, 100) if value else None


def _signer(signature: dict[str, Any]) -> str | None:
    """The signing certificate's holder: its common name and organisation."""
    name, organisation = _clean(signature.get("common_name"), 100), _clean(signature.get("issuer"), 100)
    if name and organisation and organisation != name:
        return f"{name} ({organisation})"
    return name or organisation


def _claim_generator(manifest: dict[str, Any]) -> str:
    infos = manifest.get("claim_generator_info")
    if isinstance(infos, list) and infos:
        named = [_join(_clean(i.get("name"), 100), _clean(i.get("version"), 40)) for i in infos if isinstance(i, dict)]
        if any(named):
            return ", ".join(n for n in named if n)
    return _clean(manifest.get("claim_generator"), 200) or "unnamed"


def _actions(manifest: dict[str, Any], limit: int) -> list[CredentialAction]:
    actions: list[CredentialAction] = []
    for assertion in manifest.get("assertions") or []:
        if not str(assertion.get("label", "")).startswith("c2pa.actions"):
            continue
        for action in (assertion.get("data") or {}).get("actions") or []:
            source = action.get("digitalSourceType") or (action.get("parameters") or {}).get("digitalSourceType")
            actions.append(
                CredentialAction(
                    _clean(action.get("action"), 100) or "unnamed",
                    _clean(source, 300),
                    _software_agent(action.get("softwareAgent")),
                )
            )
    return actions[:limit]


def _credentials(store: dict[str, Any], settings: ProvenanceSettings) -> ContentCredentials:
    """Content Credentials from c2pa's manifest store (its JSON)."""
    manifests = store.get("manifests") or {}
    manifest = manifests[store["active_manifest"]]
    signature = manifest.get("signature_info") or {}
    results = (store.get("validation_results") or {}).get("activeManifest") or {}
    checks = results.get("failure") if results else store.get("validation_status")
    failures = [
        _clean(f"{check.get('code')}: {check.get('explanation', '')}".rstrip(": "), 300) or ""
        for check in checks or []
        if check.get("code") != _UNTRUSTED
    ]
    state = store.get("validation_state") or ("Invalid" if failures else "Valid")
    limit = settings.max_items
    return ContentCredentials(
        claim_generator=_claim_generator(manifest),
        title=_clean(manifest.get("title"), 200),
        signer=_signer(signature),
        signed_at=_clean(signature.get("time"), 40),
        signature="valid" if state in ("Valid", "Trusted") else "invalid",
        signer_trusted=state == "Trusted",
        actions=_actions(manifest, limit),
        ingredients=[
            _join(_clean(i.get("title"), 200) or "untitled", f"({_clean(i.get('relationship'), 40) or 'ingredient'})")
            or ""
            for i in (manifest.get("ingredients") or [])[:limit]
        ],
        failures=failures[:limit],
        manifests=len(manifests),
    )


def read_credentials(
    path: Path,
    settings: ProvenanceSettings = ProvenanceSettings(),
    manifest_bytes: int | None = None,
    remote_manifest: str | None = None,
) -> tuple[ContentCredentials | None, list[str]]:
    """The file's Content Credentials (None without any) and the problems met reading them.

    Read and checked offline with the official C2PA bindings: the signature, the hashes binding
    the manifest to these bytes, and the signer against the trust anchors when configured.
    `manifest_bytes` (from `read_metadata_blocks`) refuses a manifest over the limit before c2pa
    reads it; `remote_manifest` names the address a manifest kept elsewhere would be at.
    """
    problems: list[str] = []
    if manifest_bytes is not None and manifest_bytes > settings.max_manifest_bytes:
        problems.append(
            f"Content Credentials of {_size(manifest_bytes)} are over the {_size(settings.max_manifest_bytes)} limit: not checked"
        )
        return None, problems
    import c2pa

    try:
        with c2pa.Context.from_dict(_c2pa_config(settings, problems)) as context, Path(path).open("rb") as stream:
            reader = c2pa.Reader.try_create(stream, context=context)
            if reader is None:
                if manifest_bytes:
                    problems.append(
                        "a Content Credentials block (JUMBF) is present but holds no readable manifest (damaged or not C2PA)"
                    )
                return None, problems
            with reader:
                store = json.loads(reader.json())
    except c2pa.C2paError.NotSupported:
        return None, problems  # a file type that cannot carry Content Credentials
    except c2pa.C2paError as error:
        message = _why(error, Path(path), 300)
        if message.startswith("Remote"):
            found = re.search(r"(?:url|URI) \"?([^\s\"]+)", message)
            address = remote_manifest or (found.group(1) if found else "an address")
            problems.append(
                f"the Content Credentials are kept elsewhere ({_clean(address, 200)}), which is never fetched "
                "(the analysis stays offline): not checked"
            )
        elif manifest_bytes == 0:
            # No C2PA block where this format keeps them: the file itself is what is damaged.
            problems.append(f"the file is damaged, so it could not be searched for Content Credentials: {message}")
        else:
            problems.append(f"the Content Credentials could not be read (damaged or not C2PA): {message}")
        return None, problems
    except (OSError, ValueError) as error:
        problems.append(f"the Content Credentials could not be read: {_why(error, Path(path))}")
        return None, problems
    try:
        return _credentials(store, settings), problems
    except (KeyError, TypeError, AttributeError) as error:
        problems.append(f"the Content Credentials could not be understood (missing {_clean(error, 100)})")
        return None, problems


# --------------------------------------------------------------------------------------------
# Putting the evidence together
# --------------------------------------------------------------------------------------------


def _libjpeg_table(steps: tuple[tuple[int, ...], ...], quality: int) -> tuple[int, ...]:
    """The quantisation table libjpeg writes for one of the standard tables at `quality`
    (1-100; its `jpeg_quality_scaling` and baseline limit of 255), in the file's order."""
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return tuple(min(255, max(1, (steps[row][column] * scale + 50) // 100)) for row, column in _ZIGZAG)


def estimate_jpeg_quality(luminance: tuple[int, ...], chrominance: tuple[int, ...] | None) -> tuple[int, bool]:
    """The libjpeg quality whose tables are nearest a file's (the smallest sum of absolute
    differences of their steps), and whether they are exactly that quality's."""

    def distance(quality: int) -> int:
        pairs = list(zip(luminance, _libjpeg_table(_LUMINANCE_STEPS, quality), strict=True))
        if chrominance is not None:
            pairs += zip(chrominance, _libjpeg_table(_CHROMINANCE_STEPS, quality), strict=True)
        return sum(abs(found - standard) for found, standard in pairs)

    quality = min(range(1, 101), key=distance)
    return quality, distance(quality) == 0


def _chroma_subsampling(components: list[tuple[int, int, int]]) -> str | None:
    if len(components) == 1:
        return "grey"
    if len(components) < 3:
        return None
    (luma_h, luma_v, _), (chroma_h, chroma_v, _) = components[0], components[1]
    if chroma_h == 0 or chroma_v == 0:
        return None
    names = {(1, 1): "4:4:4", (2, 1): "4:2:2", (2, 2): "4:2:0", (1, 2): "4:4:0", (4, 1): "4:1:1"}
    ratio = (luma_h // chroma_h, luma_v // chroma_v)
    return names.get(ratio, f"{luma_h}x{luma_v} luma to {chroma_h}x{chroma_v} colour samples")


_GIF_CAVEAT = (
    "the file is a GIF, whose 256 colours the models never trained on: on validation photos saved as GIF "
    "the CLIP member read the palette as a sign of fakes, so real ones came out uncertain with fake "
    "probabilities near 1 and none was told real, while the CNN members' scores moved little (model card: "
    "'A picture saved as GIF')"
)
"""Measured by rule 23 (benchmarks/README.md); said on every GIF by rule 24."""
_LOSSY_WEBP_CAVEAT = (
    "the file is a lossy WebP, a compression the models never trained on: validation photos saved so "
    "were ranked worse at quality 80 (ROC AUC 0.91 against 0.94 as they were) and about as well at 90, and "
    "fewer fakes were told fake (43% at 80, 47% at 90, against 52%); this file's quality is not read "
    "(model card: 'A picture saved as lossy WebP')"
)
"""Measured by rule 25 (benchmarks/README.md), whose bar fixed before its runs that it be said."""
_HEIC_CAVEAT = (
    "the file is a HEIC photo, coded with HEVC, which the models never trained on: validation photos saved "
    "so were ranked worse (ROC AUC 0.91 at x265's default rate factor 28, 0.93 at 20, against 0.94 as they "
    "were), 13% and 6% of the real ones were told fake (1.2% as they were) and none was told real; this "
    "file's quality is not read (model card: 'A photo saved as HEIC')"
)
"""Measured by rule 27 (benchmarks/README.md), whose bar fixed before its runs that it be said."""


def read_file_history(blocks: MetadataBlocks, settings: ProvenanceSettings = ProvenanceSettings()) -> FileHistory:
    """How an image file (or a GIF, animated too) was last saved, from the blocks
    `read_metadata_blocks` walked: its format, a JPEG's quality (estimated from its quantisation
    tables: libjpeg's scale), colour subsampling and scan order, and a caveat when it is more
    compressed than the models' training pictures (`ProvenanceSettings.trained_jpeg_quality`), is
    a lossy WebP, a GIF or a HEIC photo, or is a TIFF of several pages (the models see the first)."""
    history = FileHistory(format=blocks.format or "unknown", pages=blocks.pages, colour_space=blocks.colour_space)
    if blocks.pages is not None and blocks.pages > 1:
        at_least = "or more " if blocks.pages >= settings.max_counted_pages else ""
        history.caveat = (
            f"the file is a TIFF of {blocks.pages:,} {at_least}pages, and only the first was analysed: "
            "the verdict says nothing about the faces on the others"
        )
    if blocks.format == "GIF":
        history.caveat = _GIF_CAVEAT
    if blocks.format == "WebP" and blocks.lossy:
        history.caveat = _LOSSY_WEBP_CAVEAT
    if blocks.format == "HEIF":
        history.caveat = _HEIC_CAVEAT
    if blocks.format != "JPEG":
        return history
    history.chroma_subsampling = _chroma_subsampling(blocks.components)
    history.progressive = blocks.progressive
    tables = [component[2] for component in blocks.components[:2]] or sorted(blocks.quantization)[:2]
    if not tables or tables[0] not in blocks.quantization:
        return history
    chrominance = blocks.quantization.get(tables[1]) if len(tables) > 1 and tables[1] != tables[0] else None
    history.jpeg_quality, history.standard_tables = estimate_jpeg_quality(blocks.quantization[tables[0]], chrominance)
    if history.jpeg_quality < settings.trained_jpeg_quality:
        about = "" if history.standard_tables else "about "
        history.caveat = (
            f"the file was last saved as JPEG at {about}quality {history.jpeg_quality}, more compressed than "
            f"the photos the models were trained on (quality {settings.trained_jpeg_quality}): their scores are "
            "less reliable on such files, and real photos re-saved so were told fake more often (model card: "
            "'A photo saved more compressed than the training photos')"
        )
    return history


def _trust(credentials: ContentCredentials) -> str:
    return "trusted signer" if credentials.signer_trusted else "signer not on a trust list"


def _ai_claims(credentials: ContentCredentials | None, metadata: ProvenanceMetadata) -> list[str]:
    """Each source that says an AI model made the file: valid credentials or a generator's
    own metadata (credentials that fail validation are shown, but claim nothing)."""
    claims = []
    if credentials and credentials.signature == "valid" and (source := credentials.ai_source_type):
        signer = f" by {credentials.signer}" if credentials.signer else ""
        claims.append(
            f"Content Credentials (valid signature{signer}, {_trust(credentials)}): {describe_source_type(source)}"
        )
    if metadata.digital_source_type and source_type_name(metadata.digital_source_type) in AI_SOURCE_TYPES:
        claims.append(f"XMP metadata: {describe_source_type(metadata.digital_source_type)}")
    if metadata.generator:
        claims.append(f"metadata of an AI generator: {metadata.generator}")
    return claims


def _summary(
    credentials: ContentCredentials | None, metadata: ProvenanceMetadata, claims: list[str], problems: list[str]
) -> str:
    """The strongest evidence in one line."""
    if claims:
        return f"AI-generated according to {'; '.join(claims)}."
    if credentials and credentials.signature == "invalid":
        first = credentials.failures[0] if credentials.failures else "a check failed"
        code, _, explanation = first.partition(":")
        meaning = _FAILURE_MEANINGS.get(code) or explanation.strip() or code
        signer = f" by {credentials.signer}" if credentials.signer else ""
        return f"Content Credentials{signer} that fail validation: {meaning} ({code})."
    if credentials:
        signer = f" by {credentials.signer}" if credentials.signer else ""
        actions = ", ".join(
            a.action + (f" ({describe_source_type(a.digital_source_type)})" if a.digital_source_type else "")
            for a in credentials.actions[:3]
        )
        return (
            f"Content Credentials with a valid signature{signer} ({_trust(credentials)}), written by "
            f"{credentials.claim_generator}{f': {actions}' if actions else ''}."
        )
    named = [
        f"camera {metadata.camera}" if metadata.camera else None,
        f"software {metadata.software}" if metadata.software else None,
        f"digital source type {describe_source_type(metadata.digital_source_type)}"
        if metadata.digital_source_type
        else None,
    ]
    if any(named):
        return (
            f"Metadata names {', '.join(n for n in named if n)}; no Content Credentials "
            "(metadata is not signed: anyone can write or remove it)."
        )
    if problems:
        return "No readable provenance information (see the problems); its absence proves nothing."
    return NO_PROVENANCE


def read_provenance(path: Path, kind: str, settings: ProvenanceSettings = ProvenanceSettings()) -> Provenance:
    """Everything the file says about where it comes from, for an `image` or a `video`.

    Never raises for the file's content: what cannot be read is a line in `problems`, and the
    rest is read on."""
    path = Path(path)
    try:
        return _read_provenance(path, kind, settings)
    except Exception as error:  # a library's surprise on a hostile file must not cost the models' verdict
        log.debug("reading the provenance of %s failed", path.name, exc_info=True)
        problem = f"the provenance could not be read: unexpected error ({type(error).__name__})"
        return Provenance(
            _summary(None, ProvenanceMetadata(), [], [problem]), False, False, [], None, ProvenanceMetadata(), [problem]
        )


def _read_provenance(path: Path, kind: str, settings: ProvenanceSettings) -> Provenance:
    blocks = read_metadata_blocks(path, settings)
    problems = list(blocks.problems)
    found: dict[str, str | None] = {}

    def merge(values: dict[str, str | None]) -> None:
        for key, value in values.items():
            if value and not found.get(key):
                found[key] = value

    if blocks.exif:
        try:
            merge(read_exif(blocks.exif, settings))
        except ValueError as error:
            problems.append(f"the EXIF metadata is damaged: {_clean(error, 200)}")
    if blocks.xmp:
        merge(read_xmp(blocks.xmp, settings))
    if blocks.texts:
        merge(read_generator_texts(blocks.texts, settings))
    if kind == "video":
        try:
            merge(read_container_tags(path, settings))
        except Exception as error:  # PyAV raises many kinds for a container it cannot open
            problems.append(f"the video's tags could not be read: {_why(error, path)}")
    if not found.get("generator") and _names_generator(found.get("software"), settings):
        found["generator"] = f"software '{found['software']}'"
    credentials, credential_problems = read_credentials(
        path, settings, blocks.manifest_bytes, found.get("remote_manifest")
    )
    problems += credential_problems
    metadata = ProvenanceMetadata(
        camera=found.get("camera"),
        captured=found.get("captured"),
        software=found.get("software"),
        generator=found.get("generator"),
        generator_text=found.get("generator_text"),
        digital_source_type=found.get("digital_source_type"),
        encoder=found.get("encoder"),
    )
    claims = _ai_claims(credentials, metadata)
    software = metadata.software and not _is_generic_encoder(metadata.software, settings)
    return Provenance(
        summary=_summary(credentials, metadata, claims, problems),
        found=bool(credentials or metadata.camera or software or metadata.generator or metadata.digital_source_type),
        ai_generated=bool(claims),
        ai_claims=claims,
        credentials=credentials,
        metadata=metadata,
        problems=problems[: settings.max_items],
        # An animated GIF is a video, but its palette is what its verdict needs said (rule 24).
        file_history=read_file_history(blocks, settings) if kind == "image" or blocks.format == "GIF" else None,
    )


def verdict_reason(models_reason: str, provenance: Provenance | None) -> str:
    """The verdict's reason with what the file says beside it: the models' reason first and
    unchanged (their verdict stays theirs), then the caveat of a photo more compressed than the
    models' training photos, a lossy WebP, a GIF, a HEIC photo or a TIFF of several pages, then
    what provenance says about AI generation."""
    if provenance is None:
        return models_reason
    reason = models_reason
    if provenance.file_history is not None and provenance.file_history.caveat:
        reason += f"; {provenance.file_history.caveat}"
    if provenance.ai_generated:
        reason += f"; provenance says AI-generated: {'; '.join(provenance.ai_claims)}"
    return reason
