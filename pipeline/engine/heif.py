"""HEIF pictures (HEIC: how iPhones and many phones and cameras save photos), read without a HEIF
library: the file's own boxes say which coded pictures make its primary picture and how (one
picture, or a grid of tiles cropped to the picture's size, then turned and mirrored), and
FFmpeg's HEVC decoder (PyAV, already the video reader) decodes each coded picture.

Read: the `meta` box (`hdlr`, `pitm`, `iinf`, `iloc`, `iref`, `iprp`, `idat`); items `hvc1` (HEVC),
`grid` and `iden`; properties `hvcC`, `ispe`, `irot` and `imir`, in the order the file lists them,
and `colr` (an ICC profile, or an `nclx` description of the primaries and transfer: wide-gamut
colours are converted to sRGB, and an HDR picture, PQ or HLG as cameras save HDR HEIF, is decoded
at its full depth and mapped to sRGB as HDR video is, `pipeline.engine.colour`); the same `nclx`
of an AVIF picture (`read_hdr_signal`); the `Exif` item and an XMP (`mime`) item for
provenance. Not read (refused in one line): overlays (`iovl`) and pictures coded other than with
HEVC. Left out without a word: thumbnails, depth and alpha pictures, HDR gain maps and a clean
aperture (`clap`).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

from pipeline.config import MediaSettings
from pipeline.engine.colour import HDR_TRANSFERS, hdr_to_sdr, nclx_profile, to_srgb
from pipeline.errors import MediaError, MediaTooLargeError, UnsupportedMediaError

__all__ = ["HeifLayout", "box_header", "decode_heif", "read_hdr_signal", "read_heif_layout", "read_heif_metadata"]


@dataclass
class _Item:
    kind: bytes
    content_type: str = ""
    """A `mime` item's type (XMP: application/rdf+xml)."""
    extents: list[tuple[int, int]] = field(default_factory=list)
    """(offset, length) of each piece of its data, where `method` says."""
    method: int = 0
    """Where its data is (`iloc`'s construction method): 0 in the file, 1 in `idat`, 2 in other
    items (not read here)."""
    properties: list[tuple[bytes, bytes]] = field(default_factory=list)
    """(box type, payload) of each property associated with it, in the order the file lists them."""
    sources: list[int] = field(default_factory=list)
    """The items it is derived from (`dimg` references): a grid's tiles in raster order."""
    described_by: list[int] = field(default_factory=list)
    """Items that describe it (`cdsc` references: its Exif and XMP)."""


@dataclass
class HeifLayout:
    """What the primary picture of a HEIF file is made of, read from its boxes (no pixel decoded)."""

    width: int
    """Upright width in pixels (after the picture's turns)."""
    height: int
    rotation: int
    """Degrees the stored picture is turned clockwise to show it upright (0, 90, 180, 270)."""
    tiles: list[int]
    """The coded pictures, in raster order (one for a picture that is no grid)."""
    columns: int
    size: tuple[int, int]
    """(width, height) of the picture as stored, before it is turned: the grid cropped to it."""
    transforms: list[tuple[bytes, int]]
    """(`irot` or `imir`, its value) in the order they apply."""
    items: dict[int, _Item]
    idat: bytes
    icc: bytes | None = None
    """The colour profile of its pixels (ICC), from its `colr` property; None for sRGB."""
    hdr: tuple[int, int] | None = None
    """(transfer, primaries) as ITU-T H.273 codes of an HDR picture (PQ or HLG, from its `nclx`)."""


def _name(path: Path) -> str:
    return f"'{path.name}'"


class _Damaged(Exception):
    """A box that does not hold what the format says it must."""


def _boxes(data: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, payload start, payload end) of each box in data[start:end]."""
    while start + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, start)
        header = 8
        if size == 1:
            if start + 16 > end:
                raise _Damaged(f"a box ({kind.decode('latin-1')!r}) is cut short")
            size, header = struct.unpack_from(">Q", data, start + 8)[0], 16
        elif size == 0:
            size = end - start
        if size < header or start + size > end:
            raise _Damaged(f"a box ({kind.decode('latin-1')!r}) runs past the one it is in")
        yield kind, start + header, start + size
        start += size


def _unpack(fmt: str, data: bytes, offset: int) -> tuple[int, ...]:
    try:
        return struct.unpack_from(fmt, data, offset)
    except struct.error:
        raise _Damaged("a box is shorter than its fields") from None


def _sized(data: bytes, offset: int, size: int) -> int:
    """An unsigned integer of `size` bytes (0, 4 or 8, as `iloc` writes them) at `offset`."""
    if size == 0:
        return 0
    if size not in (4, 8):
        raise _Damaged(f"an item location uses {size}-byte numbers")
    return _unpack(">I" if size == 4 else ">Q", data, offset)[0]


_TOP_LEVEL_BOXES = 100
"""Top-level boxes walked to find `meta` (HEIF puts it right after `ftyp`; a file of millions of
tiny boxes must not be walked to its end)."""


def box_header(stream: BinaryIO, offset: int, file_size: int) -> tuple[bytes, int, int] | None:
    """(type, header size, size) of the ISO base media box (HEIF, AVIF, MP4) whose header starts
    at `offset`, read from its header alone; None when the file ends first. A size of 0 runs to
    the end of the file; a size the caller must judge impossible (under the header's) is kept."""
    if offset + 8 > file_size:  # also keeps a box claiming exabytes from seeking where no file can
        return None
    stream.seek(offset)
    header = stream.read(16)
    if len(header) < 8:
        return None
    size, kind = struct.unpack_from(">I4s", header)
    if size == 1 and len(header) == 16:  # a 64-bit size after the type
        return kind, 16, struct.unpack_from(">Q", header, 8)[0]
    return kind, 8, file_size - offset if size == 0 else size


def _read_meta(stream: BinaryIO, file_size: int, settings: MediaSettings) -> bytes:
    """The payload of the file's top-level `meta` box (the boxes after `ftyp` are walked by their
    headers; `mdat` is never read here)."""
    offset = 0
    for _ in range(_TOP_LEVEL_BOXES):
        found = box_header(stream, offset, file_size)
        if found is None:
            break
        kind, start, size = found
        if size < start:
            raise _Damaged(f"a top-level box ({kind.decode('latin-1')!r}) has an impossible size")
        if kind == b"meta":
            if size > settings.max_heif_meta_bytes:
                raise _Damaged(f"its description (the meta box) is {size:,} bytes")
            stream.seek(offset + start)
            payload = stream.read(size - start)
            if len(payload) < size - start:
                raise _Damaged("the file ends inside its description (the meta box)")
            return payload
        offset += size
    raise _Damaged("it has no description of its pictures (no meta box)")


def _parse_items(meta: bytes) -> tuple[int, dict[int, _Item], bytes]:
    """(primary item, items by id, `idat` payload) from a `meta` payload."""
    items: dict[int, _Item] = {}
    primary, idat, handler = None, b"", None
    locations: list[tuple[int, int, list[tuple[int, int]]]] = []
    references: list[tuple[bytes, int, list[int]]] = []
    properties: list[tuple[bytes, bytes]] = []
    associations: list[tuple[int, list[int]]] = []
    for kind, start, end in _boxes(meta, 4, len(meta)):  # a full box: version and flags first
        version = meta[start] if start < end else 0
        if kind == b"hdlr":
            handler = meta[start + 8 : start + 12]
        elif kind == b"pitm":
            primary = _unpack(">H" if version == 0 else ">I", meta, start + 4)[0]
        elif kind == b"iinf":
            count_size = 2 if version == 0 else 4
            for entry, entry_start, entry_end in _boxes(meta, start + 4 + count_size, end):
                if entry == b"infe":
                    item_id, item = _parse_infe(meta, entry_start, entry_end)
                    items[item_id] = item
        elif kind == b"iloc":
            locations = _parse_iloc(meta, start, end)
        elif kind == b"iref":
            id_format = ">H" if version == 0 else ">I"
            id_size = struct.calcsize(id_format)
            for reference, ref_start, _ in _boxes(meta, start + 4, end):
                from_id = _unpack(id_format, meta, ref_start)[0]
                (count,) = _unpack(">H", meta, ref_start + id_size)
                targets = [_unpack(id_format, meta, ref_start + id_size + 2 + i * id_size)[0] for i in range(count)]
                references.append((reference, from_id, targets))
        elif kind == b"iprp":
            for child, child_start, child_end in _boxes(meta, start, end):
                if child == b"ipco":
                    properties = [(p, meta[s:e]) for p, s, e in _boxes(meta, child_start, child_end)]
                elif child == b"ipma":
                    associations += _parse_ipma(meta, child_start, child_end)
        elif kind == b"idat":
            idat = meta[start:end]
    if handler != b"pict":
        raise _Damaged("its description is not of pictures")
    if primary is None or primary not in items:
        raise _Damaged("it names no primary picture")
    for item_id, method, extents in locations:
        if item_id in items:
            items[item_id].method, items[item_id].extents = method, extents
    for reference, from_id, targets in references:
        if reference == b"dimg" and from_id in items:
            items[from_id].sources = targets
        elif reference == b"cdsc" and from_id in items:
            for target in targets:
                if target in items:
                    items[target].described_by.append(from_id)
    for item_id, indices in associations:
        if item_id in items:
            items[item_id].properties = [properties[i - 1] for i in indices if 0 < i <= len(properties)]
    return primary, items, idat


def _parse_infe(meta: bytes, start: int, end: int) -> tuple[int, _Item]:
    version = meta[start]
    if version < 2:
        raise _Damaged("an item is described in a form older than HEIF's")
    if version == 2:
        item_id, _, kind = _unpack(">HH4s", meta, start + 4)
        text_start = start + 12
    else:
        item_id, _, kind = _unpack(">IH4s", meta, start + 4)
        text_start = start + 14
    texts = meta[text_start:end].split(b"\x00")  # its name, then a `mime` item's content type
    item = _Item(kind)
    if kind == b"mime" and len(texts) > 1:
        item.content_type = texts[1].decode("utf-8", "replace")
    return item_id, item


def _parse_iloc(meta: bytes, start: int, end: int) -> list[tuple[int, int, list[tuple[int, int]]]]:
    version = meta[start]
    sizes, more = _unpack(">BB", meta, start + 4)
    offset_size, length_size, base_size = sizes >> 4, sizes & 15, more >> 4
    index_size = more & 15 if version in (1, 2) else 0
    at = start + 6
    count = _unpack(">H" if version < 2 else ">I", meta, at)[0]
    at += 2 if version < 2 else 4
    found = []
    for _ in range(count):
        item_id = _unpack(">H" if version < 2 else ">I", meta, at)[0]
        at += 2 if version < 2 else 4
        method = 0
        if version in (1, 2):
            method = _unpack(">H", meta, at)[0] & 15
            at += 2
        at += 2  # the data reference index: always this file
        base = _sized(meta, at, base_size)
        at += base_size
        (extent_count,) = _unpack(">H", meta, at)
        at += 2
        extents = []
        for _ in range(extent_count):
            at += index_size
            offset, length = _sized(meta, at, offset_size), _sized(meta, at + offset_size, length_size)
            at += offset_size + length_size
            extents.append((base + offset, length))
        found.append((item_id, method, extents))
        if at > end:
            raise _Damaged("the item locations run past their box")
    return found


def _parse_ipma(meta: bytes, start: int, end: int) -> list[tuple[int, list[int]]]:
    version, flags = meta[start], int.from_bytes(meta[start + 1 : start + 4], "big")
    (count,) = _unpack(">I", meta, start + 4)
    at = start + 8
    found = []
    for _ in range(count):
        item_id = _unpack(">H" if version < 1 else ">I", meta, at)[0]
        at += 2 if version < 1 else 4
        (association_count,) = _unpack(">B", meta, at)
        at += 1
        indices = []
        for _ in range(association_count):
            if flags & 1:
                indices.append(_unpack(">H", meta, at)[0] & 0x7FFF)
                at += 2
            else:
                indices.append(_unpack(">B", meta, at)[0] & 0x7F)
                at += 1
        found.append((item_id, indices))
        if at > end:
            raise _Damaged("the property associations run past their box")
    return found


def _item_data(stream: BinaryIO, file_size: int, items: dict[int, _Item], idat: bytes, item_id: int) -> bytes:
    """An item's data: its pieces, read from the file or from `idat`, joined."""
    item = items[item_id]
    if item.method not in (0, 1):
        raise UnsupportedMediaError("whose data is kept inside other items, which this app does not read")
    if not item.extents:
        raise _Damaged(f"picture item {item_id} has no data")
    in_idat = item.method == 1
    source_size = len(idat) if in_idat else file_size
    where = "its box" if in_idat else "the end of the file"
    pieces, total = [], 0
    for offset, length in item.extents:
        stop = source_size if length == 0 else offset + length  # 0: to the end
        if offset > stop or stop > source_size:
            raise _Damaged(f"item {item_id}'s data lies past {where}")
        total += stop - offset
        if total > source_size:  # pieces may overlap; together they cannot hold more than there is
            raise _Damaged(f"item {item_id}'s data is larger than {where.removeprefix('the end of ')}")
        if in_idat:
            pieces.append(idat[offset:stop])
        else:
            stream.seek(offset)
            pieces.append(stream.read(stop - offset))
    return b"".join(pieces)


def _property(item: _Item, kind: bytes) -> bytes | None:
    return next((payload for name, payload in item.properties if name == kind), None)


def _stored_size(item: _Item, item_id: int) -> tuple[int, int]:
    spatial = _property(item, b"ispe")
    if spatial is None or len(spatial) < 12:
        raise _Damaged(f"picture item {item_id} has no size (ispe)")
    width, height = struct.unpack_from(">II", spatial, 4)
    if width == 0 or height == 0:
        raise _Damaged(f"picture item {item_id} is {width} x {height} pixels")
    return width, height


def _colour_description(chain: list[_Item]) -> tuple[bytes | None, tuple[int, int] | None]:
    """(ICC profile, HDR signal) of a picture from the first `colr` property of the items that
    make it (the picture, what it is derived from, then its first tile): an ICC profile as stored,
    or one made from an `nclx` description, or, for an `nclx` of an HDR transfer, its
    (transfer, primaries). A picture may carry both kinds; the profile is the fuller one."""
    described = [
        payload for item in chain for kind, payload in item.properties if kind == b"colr" and len(payload) >= 4
    ]
    for payload in described:
        if payload[:4] in (b"prof", b"rICC") and len(payload) > 4:
            return payload[4:], None
    for payload in described:
        if payload[:4] == b"nclx" and len(payload) >= 10:
            primaries, transfer = struct.unpack_from(">HH", payload, 4)
            if transfer in HDR_TRANSFERS:
                return None, (transfer, primaries)
            return nclx_profile(primaries, transfer), None
    return None, None


def read_hdr_signal(path: Path, settings: MediaSettings = MediaSettings()) -> tuple[int, int] | None:
    """(transfer, primaries) as ITU-T H.273 codes when the `nclx` of a HEIF or AVIF file's primary
    picture states an HDR transfer (PQ, HLG); None otherwise, and for boxes that cannot be read
    (the picture's decoder then says what is wrong)."""
    try:
        with path.open("rb") as stream:
            primary, items, _ = _parse_items(_read_meta(stream, stream.seek(0, 2), settings))
    except (_Damaged, OSError):
        return None
    item = items.get(primary)
    if item is None:
        return None
    return _colour_description([item, *(items[source] for source in item.sources[:1] if source in items)])[1]


def read_heif_layout(path: Path, settings: MediaSettings = MediaSettings()) -> HeifLayout:
    """The primary picture's layout: its size (upright), turns and coded pictures, read from the
    file's boxes without decoding. Raises `MediaError` for a damaged file,
    `UnsupportedMediaError` for a layout this app does not read, `MediaTooLargeError` for a
    picture (or a grid of tiles) over `settings.max_image_pixels`."""
    with _said_of(path), path.open("rb") as stream:
        file_size = stream.seek(0, 2)
        primary, items, idat = _parse_items(_read_meta(stream, file_size, settings))
        return _layout(path, stream, file_size, primary, items, idat, settings)


@contextmanager
def _said_of(path: Path) -> Iterator[None]:
    """Damage and unread layouts met inside, as one line naming the file."""
    try:
        yield
    except _Damaged as damage:
        raise MediaError(f"{_name(path)} is a damaged HEIF picture: {damage}.") from None
    except UnsupportedMediaError as error:
        raise UnsupportedMediaError(f"{_name(path)} is a HEIF picture {error}.") from None


def _layout(
    path: Path,
    stream: BinaryIO,
    file_size: int,
    primary: int,
    items: dict[int, _Item],
    idat: bytes,
    settings: MediaSettings,
) -> HeifLayout:
    transforms: list[tuple[bytes, int]] = []
    item_id, item = primary, items[primary]
    chain = [item]
    for _ in range(8):  # identity-derived pictures (`iden`) add turns to the one they derive from
        transforms = [
            (kind, payload[0]) for kind, payload in item.properties if kind in (b"irot", b"imir") and payload
        ] + transforms
        if item.kind != b"iden":
            break
        if len(item.sources) != 1 or item.sources[0] not in items:
            raise _Damaged("a derived picture names no single source")
        item_id, item = item.sources[0], items[item.sources[0]]
        chain.append(item)
    if item.kind == b"grid":
        grid = _item_data(stream, file_size, items, idat, item_id)
        if len(grid) < 8:
            raise _Damaged("its grid is described in too few bytes")
        flags, rows, columns = grid[1], grid[2] + 1, grid[3] + 1
        width, height = _unpack(">II" if flags & 1 else ">HH", grid, 4)
        if width == 0 or height == 0:
            raise _Damaged(f"its grid makes a picture of {width} x {height} pixels")
        tiles = item.sources
        if len(tiles) != rows * columns or any(tile not in items for tile in tiles):
            raise _Damaged(f"its grid of {rows} x {columns} names {len(tiles)} tiles")
        if len(tiles) > settings.max_heif_tiles:
            raise MediaTooLargeError(
                f"{_name(path)} is a grid of {len(tiles):,} pictures; up to {settings.max_heif_tiles:,} are read."
            )
        tile_width, tile_height = _stored_size(items[tiles[0]], tiles[0])
        canvas = (tile_width * columns, tile_height * rows)
        if width > canvas[0] or height > canvas[1]:
            raise _Damaged(f"its grid of {rows} x {columns} tiles is smaller than the {width} x {height} picture")
    elif item.kind == b"hvc1":
        tiles, columns = [item_id], 1
        width, height = canvas = _stored_size(item, item_id)
    elif item.kind == b"iovl":
        raise UnsupportedMediaError("made of overlaid pictures (iovl), which this app does not read")
    else:
        kind = item.kind.decode("latin-1")
        raise UnsupportedMediaError(f"coded as '{kind}', not HEVC; this app reads HEIC (HEVC) pictures")
    for pixels, what in ((width * height, "is"), (canvas[0] * canvas[1], "is stored as")):
        if pixels > settings.max_image_pixels:
            raise MediaTooLargeError(
                f"{_name(path)} {what} {pixels / 1e6:.1f} megapixels; images up to "
                f"{settings.max_image_pixels / 1e6:.1f} megapixels are accepted."
            )
    for tile in tiles:
        if items[tile].kind != b"hvc1" or _property(items[tile], b"hvcC") is None:
            raise UnsupportedMediaError("whose tiles are not HEVC pictures, which this app does not read")
    turns = sum(value & 3 for kind, value in transforms if kind == b"irot") % 4  # each a quarter turn anticlockwise
    upright = (width, height) if turns % 2 == 0 else (height, width)
    icc, hdr = _colour_description([*chain, items[tiles[0]]])
    return HeifLayout(
        *upright, (4 - turns) % 4 * 90, tiles, columns, (width, height), transforms, items, idat, icc, hdr
    )


def _decode_tile(record: bytes, data: bytes, full_depth: bool) -> np.ndarray | None:
    """One HEVC picture (its decoder configuration record and its NAL units) as RGB: 8 bits, or
    (`full_depth`) 16 bits a channel, its coded values scaled to 0..65535."""
    import av

    decoder = av.CodecContext.create("hevc", "r")
    decoder.extradata = record
    try:
        frames = [*decoder.decode(av.Packet(data)), *decoder.decode(None)]
        return frames[0].to_ndarray(format="rgb48le" if full_depth else "rgb24") if frames else None
    except (av.FFmpegError, ValueError):
        return None


def decode_heif(path: Path, settings: MediaSettings = MediaSettings()) -> tuple[np.ndarray, HeifLayout]:
    """(upright sRGB pixels, layout) of a HEIF file's primary picture: each tile decoded and put in
    its place, the grid cropped to the picture's size, the file's turns and mirrorings applied in
    its order, and its colours converted from its profile (an HDR one mapped from 16 bits a
    channel, `colour.hdr_to_sdr`). Raises as `read_heif_layout`, and
    `MediaError` when a tile cannot be decoded."""
    layout = read_heif_layout(path, settings)
    tile_width, tile_height = _stored_size(layout.items[layout.tiles[0]], layout.tiles[0])
    rows = len(layout.tiles) // layout.columns
    canvas = np.zeros((rows * tile_height, layout.columns * tile_width, 3), np.uint16 if layout.hdr else np.uint8)
    with _said_of(path), path.open("rb") as stream:
        file_size = stream.seek(0, 2)
        for index, tile in enumerate(layout.tiles):
            data = _item_data(stream, file_size, layout.items, layout.idat, tile)
            record = _property(layout.items[tile], b"hvcC")
            assert record is not None  # checked by read_heif_layout
            rgb = _decode_tile(record, data, layout.hdr is not None)
            if rgb is None:
                raise _Damaged(f"tile {index + 1} of {len(layout.tiles)} could not be decoded")
            if rgb.shape[0] < tile_height or rgb.shape[1] < tile_width:
                raise _Damaged(
                    f"tile {index + 1} of {len(layout.tiles)} is {rgb.shape[1]} x {rgb.shape[0]} pixels, "
                    f"not the {tile_width} x {tile_height} the file states"
                )
            top, left = index // layout.columns * tile_height, index % layout.columns * tile_width
            # A decoded tile may be a few pixels larger than its stated size (coding blocks).
            canvas[top : top + tile_height, left : left + tile_width] = rgb[:tile_height, :tile_width]
    picture = canvas[: layout.size[1], : layout.size[0]]
    for kind, value in layout.transforms:
        if kind == b"irot":
            picture = np.rot90(picture, k=value & 3)  # anticlockwise quarter turns
        else:  # imir, ISO/IEC 23008-12:2022: 0 exchanges top and bottom, 1 left and right
            picture = picture[::-1] if value & 1 == 0 else picture[:, ::-1]
    if layout.hdr is not None:
        return hdr_to_sdr(np.ascontiguousarray(picture), *layout.hdr), layout
    return to_srgb(np.ascontiguousarray(picture), layout.icc), layout


def read_heif_metadata(path: Path, max_bytes: int) -> tuple[bytes | None, bytes | None, list[str]]:
    """(EXIF block as a TIFF structure, XMP packet, problems) that describe a HEIF file's primary
    picture (its `cdsc` items), each at most `max_bytes`. Never raises for the file's content."""
    problems: list[str] = []
    exif = xmp = None
    try:
        with path.open("rb") as stream:
            file_size = stream.seek(0, 2)
            primary, items, idat = _parse_items(_read_meta(stream, file_size, MediaSettings()))
            for item_id in items[primary].described_by:
                item = items[item_id]
                if item.kind not in (b"Exif", b"mime") or (item.kind == b"mime" and "xml" not in item.content_type):
                    continue
                if item.method not in (0, 1):
                    problems.append(f"its {item.kind.decode()} item is kept inside other items, which are not read")
                    continue
                whole = len(idat) if item.method == 1 else file_size  # a length of 0: to the end
                size = sum(whole - offset if length == 0 else length for offset, length in item.extents)
                if size > max_bytes:
                    problems.append(f"its {item.kind.decode()} item is {size:,} bytes, over the {max_bytes:,} read")
                    continue
                data = _item_data(stream, file_size, items, idat, item_id)
                if item.kind == b"Exif":
                    # The block starts after a 4-byte offset to its TIFF header.
                    skip = 4 + int.from_bytes(data[:4], "big") if len(data) >= 4 else len(data)
                    exif = data[skip:] or None
                else:
                    xmp = data
    except (_Damaged, UnsupportedMediaError, OSError) as error:
        problems.append(f"the metadata could not be read: {error}")
    return exif, xmp, problems
