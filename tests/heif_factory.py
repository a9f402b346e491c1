"""HEIC pictures for the tests, written byte by byte as phones write them (no HEIF library here):
each picture or tile coded as an intra HEVC picture by x265 (PyAV), then the HEIF boxes around
them: `ftyp`, a `meta` box (handler, primary item, item infos, references, properties and their
associations, locations, and `idat` for a grid's description) and `mdat`. An iPhone's photo is a
grid of 512 x 512 tiles (48 for 12 megapixels) cropped to the photo's size, with an `irot` for
how the phone was held and the camera's EXIF in an item of its own."""

from __future__ import annotations

import re
import struct
from fractions import Fraction
from pathlib import Path

import numpy as np

XMP_TYPE = "application/rdf+xml"


def box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def full_box(kind: bytes, version: int, flags: int, payload: bytes) -> bytes:
    return box(kind, bytes([version]) + flags.to_bytes(3, "big") + payload)


def encode_hevc(rgb: np.ndarray, bits: int = 8, crf: int = 28) -> tuple[bytes, bytes]:
    """(decoder configuration record, NAL units each after its 4-byte length) of one intra HEVC
    picture of `rgb` (even width and height; 8 bits, or 16 bits a channel scaled to 0..65535) at
    x265's constant rate factor `crf` (28, its default; lower keeps more), as a HEIF item holds it."""
    import av

    height, width = rgb.shape[:2]
    encoder = av.CodecContext.create("libx265", "w")
    encoder.width, encoder.height = width, height
    encoder.pix_fmt = "yuv420p" if bits == 8 else "yuv420p10le"
    encoder.time_base = Fraction(1, 25)
    encoder.options = {"preset": "ultrafast", "x265-params": f"log-level=error:keyint=1:info=0:crf={crf}"}
    pixels = np.ascontiguousarray(rgb)
    frame = av.VideoFrame.from_ndarray(pixels, format="rgb48le" if rgb.dtype == np.uint16 else "rgb24")
    frame = frame.reformat(format=encoder.pix_fmt)
    stream = b"".join(bytes(packet) for packet in [*encoder.encode(frame), *encoder.encode(None)])
    starts = [match.end() for match in re.finditer(b"\x00\x00\x01", stream)]
    units = [stream[start : end - 3].rstrip(b"\x00") for start, end in zip(starts, [*starts[1:], len(stream) + 3])]
    by_type: dict[int, list[bytes]] = {}
    for unit in units:
        by_type.setdefault(unit[0] >> 1 & 0x3F, []).append(unit)
    parameter_sets = [(kind, by_type.pop(kind)[0]) for kind in (32, 33, 34)]  # VPS, SPS, PPS
    sps = parameter_sets[1][1]
    profile = sps[3:15]  # the profile, tier and level after the NAL header and the ids
    record = bytes([1]) + profile + bytes([0xF0, 0x00, 0xFC, 0xFD, 0xF8 | (bits - 8), 0xF8 | (bits - 8), 0, 0, 0x0F])
    record += bytes([len(parameter_sets)])
    for kind, unit in parameter_sets:
        record += bytes([0x80 | kind]) + struct.pack(">HH", 1, len(unit)) + unit
    sample = b"".join(
        struct.pack(">I", len(unit)) + unit for unit in units if (unit[0] >> 1 & 0x3F) not in (32, 33, 34)
    )
    return record, sample


def write_heic(
    path: Path,
    rgb: np.ndarray,
    tile: int | None = None,
    quarter_turns: int = 0,
    mirror_axis: int | None = None,
    exif: bytes | None = None,
    xmp: bytes | None = None,
    bits: int = 8,
    crf: int = 28,
    derived_turns: int = 0,
    colours: bytes | None = None,
) -> Path:
    """Write `rgb` as a HEIC picture: one HEVC picture, or (`tile`) a grid of `tile`-pixel HEVC
    tiles cropped to its size; `quarter_turns` anticlockwise (`irot`) and a mirroring (`imir`)
    for a viewer to apply; the camera's EXIF (as Pillow writes it, or a bare TIFF structure) and
    an XMP packet as items describing it. `derived_turns` makes the primary picture an identity
    derivation (`iden`) of that picture, turned by that many more quarters, as editors save a turn
    without coding the picture again. `colours` is the payload of a `colr` property (`prof` and an
    ICC profile, or `nclx` and its codes), given to the picture, or to each tile of a grid (the
    reader then takes the first tile's)."""
    height, width = rgb.shape[:2]
    if tile is None:
        tiles = [encode_hevc(rgb, bits, crf)]
        tile_size, columns, rows = (width, height), 1, 1
    else:
        rows, columns = -(-height // tile), -(-width // tile)
        canvas = np.zeros((rows * tile, columns * tile, 3), rgb.dtype)
        canvas[:height, :width] = rgb
        tiles = [
            encode_hevc(canvas[r * tile : (r + 1) * tile, c * tile : (c + 1) * tile], bits, crf)
            for r in range(rows)
            for c in range(columns)
        ]
        tile_size = (tile, tile)
    record = tiles[0][0]  # one configuration for every tile, as phones write it
    ids = list(range(1, len(tiles) + 1))
    primary = ids[0] if tile is None else len(tiles) + 1
    next_id = primary + 1
    infos = [full_box(b"infe", 2, 1 if tile else 0, struct.pack(">HH4s", i, 0, b"hvc1") + b"\x00") for i in ids]
    if tile is not None:
        infos.append(full_box(b"infe", 2, 0, struct.pack(">HH4s", primary, 0, b"grid") + b"\x00"))
    described: list[tuple[int, bytes]] = []  # (item id, data) of the metadata items
    if exif is not None:
        infos.append(full_box(b"infe", 2, 0, struct.pack(">HH4s", next_id, 0, b"Exif") + b"\x00"))
        # The offset to the TIFF header: past the "Exif\0\0" that phones (and Pillow) put first.
        described.append((next_id, struct.pack(">I", 6 if exif.startswith(b"Exif\x00\x00") else 0) + exif))
        next_id += 1
    if xmp is not None:
        infos.append(
            full_box(b"infe", 2, 0, struct.pack(">HH4s", next_id, 0, b"mime") + b"\x00" + XMP_TYPE.encode() + b"\x00")
        )
        described.append((next_id, xmp))
        next_id += 1
    shown = primary  # the primary item, which a viewer shows
    if derived_turns:
        shown = next_id
        infos.append(full_box(b"infe", 2, 0, struct.pack(">HH4s", shown, 0, b"iden") + b"\x00"))
    references = b""
    if derived_turns:
        references += box(b"dimg", struct.pack(">HHH", shown, 1, primary))
    if tile is not None:
        references += box(b"dimg", struct.pack(">HH", primary, len(ids)) + b"".join(struct.pack(">H", i) for i in ids))
    for item_id, _ in described:
        references += box(b"cdsc", struct.pack(">HHH", item_id, 1, primary))
    properties = [
        box(b"hvcC", record),
        full_box(b"ispe", 0, 0, struct.pack(">II", *tile_size)),
        full_box(b"ispe", 0, 0, struct.pack(">II", width, height)),
    ]
    primary_properties = [3] if tile is not None else [0x80 | 1, 3]
    if quarter_turns % 4:
        properties.append(box(b"irot", bytes([quarter_turns % 4])))
        primary_properties.append(0x80 | len(properties))
    if mirror_axis is not None:
        properties.append(box(b"imir", bytes([mirror_axis])))
        primary_properties.append(0x80 | len(properties))
    tile_properties = [0x80 | 1, 2]
    if colours is not None:
        properties.append(box(b"colr", colours))
        (primary_properties if tile is None else tile_properties).append(len(properties))
    associations = [(primary, primary_properties)]
    if derived_turns:
        properties.append(box(b"irot", bytes([derived_turns % 4])))
        associations.append((shown, [3, 0x80 | len(properties)]))
    if tile is not None:
        associations += [(i, tile_properties) for i in ids]
    ipma = struct.pack(">I", len(associations)) + b"".join(
        struct.pack(">HB", item_id, len(indices)) + bytes(indices) for item_id, indices in associations
    )
    grid = bytes([0, 0, rows - 1, columns - 1]) + struct.pack(">HH", width, height) if tile is not None else b""
    # Every item's data: the tiles and the metadata in `mdat` (placed below), the grid in `idat`.
    in_mdat = [*zip(ids, [sample for _, sample in tiles], strict=True), *described]

    def meta(mdat_start: int) -> bytes:
        locations, offset = [], mdat_start + 8
        for item_id, data in in_mdat:
            locations.append(struct.pack(">HHHHII", item_id, 0, 0, 1, offset, len(data)))
            offset += len(data)
        if tile is not None:
            locations.append(struct.pack(">HHHHII", primary, 1, 0, 1, 0, len(grid)))  # construction method 1: idat
        children = [
            full_box(b"hdlr", 0, 0, bytes(4) + b"pict" + bytes(12) + b"\x00"),
            full_box(b"pitm", 0, 0, struct.pack(">H", shown)),
            full_box(b"iinf", 0, 0, struct.pack(">H", len(infos)) + b"".join(infos)),
            full_box(b"iref", 0, 0, references) if references else b"",
            box(b"iprp", box(b"ipco", b"".join(properties)) + full_box(b"ipma", 0, 0, ipma)),
            full_box(b"iloc", 1, 0, bytes([0x44, 0x00]) + struct.pack(">H", len(locations)) + b"".join(locations)),
            box(b"idat", grid) if grid else b"",
        ]
        return full_box(b"meta", 0, 0, b"".join(children))

    ftyp = box(b"ftyp", b"heic" + bytes(4) + b"mif1heic")
    start = len(ftyp) + len(meta(0))  # the meta box's size does not depend on the offsets in it
    mdat = box(b"mdat", b"".join(data for _, data in in_mdat))
    path.write_bytes(ftyp + meta(start) + mdat)
    return path
