"""Colour profiles: every picture is handed to the models in sRGB, whatever its file says.

A file's pixel values mean what its colour profile says they mean. Phones save photos in Display
P3 (iPhones since 2016, as JPEG and as HEIC), cameras often in Adobe RGB, editors in ProPhoto RGB;
read as if they were sRGB, their colours come out duller or shifted, and the models, trained on
sRGB photos, see a picture no camera took. So an RGB picture whose file carries an ICC profile
(JPEG, PNG, WebP, TIFF, AVIF, HEIC; animated PNG, WebP and AVIF too) is converted to sRGB with
LittleCMS (through Pillow); a HEIC's `nclx` colour description (primaries given as a code, not as
a profile) is turned into an ICC profile first (`rgb_profile`). So is a picture made for print
(CMYK, as editors save it with their press's profile: Pillow's plain conversion takes bare ink
for pure colour, full cyan for (0, 255, 255), where a press's cyan is a duller blue) and a gray
picture with a gray profile (editors' "Gray Gamma 1.8", "Dot Gain 20%": its levels mean other
light than sRGB's gray).

What is left as read, and why: a profile LittleCMS cannot read (read as sRGB, as browsers do),
one that changes no colour by more than one level (sRGB itself, or its gray, under many names), a
profile of another space than the picture's, CMYK without a profile (Pillow's plain conversion;
no press is assumed), gray with transparency, an animated AVIF's HDR signal, and GIF (Pillow
does not read a GIF's profile).

HDR video (phones record HLG by default; HDR10 is PQ), read as if it were standard video, comes
out dark and dull (HLG's reference white at about 190 of 255), and so does an HDR still (cameras'
HDR HEIF, HDR AVIF). `hdr_to_sdr` maps both as ITU-R BT.2408 does for scene light: HLG's
reference white (75% signal) becomes white and its 18% grey card (38%) stays 18% grey (118), what
an SDR camera would have recorded; PQ is brought to HLG's scene light first through a 1,000-nit
display (BT.2100's transcoding, its system gamma applied to each channel rather than to
luminance). Levels over 80% of white are rolled off towards white, each channel alone, so that
what was brighter than white keeps some detail (reference white lands at 247). Standard video
(BT.709, BT.601 and BT.2020's own transfers) is read with sRGB's curve, and converted to sRGB's
primaries when its stream states BT.2020 or Display P3 ones (as a HEIC's `nclx`).
"""

from __future__ import annotations

import functools
import io
import math
import struct

import cv2
import numpy as np
from PIL import Image, ImageCms

__all__ = [
    "ADOBE_RGB",
    "DISPLAY_P3",
    "HDR_TRANSFERS",
    "LINEAR_LIGHT",
    "SRGB",
    "hdr_name",
    "hdr_to_sdr",
    "icc_profile",
    "nclx_profile",
    "picture_to_srgb",
    "profile_name",
    "rgb_profile",
    "srgb_encoded",
    "srgb_linear",
    "to_srgb",
]

_D65 = (0.3127, 0.3290)
_D50_XYZ = (0.9642, 1.0, 0.8249)
"""The ICC profile connection space's white."""
_BRADFORD = np.array([[0.8951, 0.2664, -0.1614], [-0.7502, 1.7135, 0.0367], [0.0389, -0.0685, 1.0296]])

SRGB = ((0.64, 0.33), (0.30, 0.60), (0.15, 0.06))
"""Red, green and blue primaries (CIE xy) of sRGB and BT.709, with a D65 white."""
DISPLAY_P3 = ((0.680, 0.320), (0.265, 0.690), (0.150, 0.060))
"""Display P3 (SMPTE EG 432-1, P3 primaries with a D65 white): phones' photos."""
ADOBE_RGB = ((0.64, 0.33), (0.21, 0.71), (0.15, 0.06))
"""Adobe RGB (1998): cameras' wide-gamut setting; its transfer is a gamma of 563/256."""
_BT2020 = ((0.708, 0.292), (0.170, 0.797), (0.131, 0.046))

_H273_PRIMARIES = {1: ("BT.709", SRGB), 9: ("BT.2020", _BT2020), 12: ("Display P3", DISPLAY_P3)}
"""ITU-T H.273 colour primaries codes this app converts from (1, BT.709, is sRGB's own; 2 is
unspecified; others are rare: a still picture or standard video in them is read as sRGB, HDR
video as BT.2020)."""
HDR_TRANSFERS = (16, 18)
"""PQ and HLG (ITU-T H.273 transfer characteristics): HDR. Video and still pictures (HEIF, AVIF)
in them are mapped to sRGB (`hdr_to_sdr`)."""
_PQ = HDR_TRANSFERS[0]

_SRGB_PROFILE = ImageCms.createProfile("sRGB")


def srgb_linear(encoded: np.ndarray) -> np.ndarray:
    """sRGB's transfer (IEC 61966-2-1) undone: encoded values 0..1 to linear light 0..1."""
    return np.where(encoded <= 0.04045, encoded / 12.92, ((np.maximum(encoded, 0.04045) + 0.055) / 1.055) ** 2.4)


def srgb_encoded(linear: np.ndarray) -> np.ndarray:
    """sRGB's transfer: linear light 0..1 to encoded values 0..1."""
    return np.where(linear <= 0.0031308, linear * 12.92, 1.055 * np.maximum(linear, 0.0031308) ** (1 / 2.4) - 0.055)


LINEAR_LIGHT = srgb_linear(np.arange(256) / 255)
"""Linear light of each 8-bit sRGB level."""


def _xyz(xy: tuple[float, float]) -> np.ndarray:
    x, y = xy
    return np.array([x / y, 1.0, (1.0 - x - y) / y])


def _rgb_to_xyz_d50(primaries: tuple[tuple[float, float], ...], white: tuple[float, float]) -> np.ndarray:
    """The matrix from linear RGB to XYZ under the connection space's D50 white (Bradford)."""
    columns = np.stack([_xyz(xy) for xy in primaries], axis=1)
    white_xyz = _xyz(white)
    to_white = columns * np.linalg.solve(columns, white_xyz)  # scale each primary so R+G+B is white
    cone_gain = (_BRADFORD @ np.array(_D50_XYZ)) / (_BRADFORD @ white_xyz)
    adapt = np.linalg.inv(_BRADFORD) @ np.diag(cone_gain) @ _BRADFORD
    return adapt @ to_white


def _s15_16(values: np.ndarray | tuple[float, ...]) -> bytes:
    return b"".join(struct.pack(">i", round(float(value) * 65536)) for value in values)


def _srgb_curve() -> bytes:
    """sRGB's transfer (IEC 61966-2-1) as a 1,024-point table, ICC's `curv` type."""
    table = np.round(srgb_linear(np.linspace(0.0, 1.0, 1024)) * 65535).astype(">u2").tobytes()
    return b"curv" + bytes(4) + struct.pack(">I", 1024) + table


def _gamma_curve(gamma: float) -> bytes:
    return b"curv" + bytes(4) + struct.pack(">IH", 1, round(gamma * 256))


def _text_description(text: str) -> bytes:
    ascii_text = text.encode("ascii") + b"\0"
    return b"desc" + bytes(4) + struct.pack(">I", len(ascii_text)) + ascii_text + bytes(4 + 4 + 2 + 1 + 67)


def rgb_profile(name: str, primaries: tuple[tuple[float, float], ...], gamma: float | None = None) -> bytes:
    """An ICC (version 2.1) display profile of an RGB space: its primaries with a D65 white, and
    sRGB's transfer (`gamma` None) or a pure gamma. Written here because Pillow can make no
    profile but sRGB's, and a HEIC may state its colours by code (`nclx_profile`)."""
    matrix = _rgb_to_xyz_d50(primaries, _D65)
    curve = _srgb_curve() if gamma is None else _gamma_curve(gamma)
    tags = [
        *(
            (tag, b"XYZ " + bytes(4) + _s15_16(matrix[:, column]))
            for column, tag in enumerate((b"rXYZ", b"gXYZ", b"bXYZ"))
        ),
        (b"rTRC", curve),
        (b"gTRC", curve),
        (b"bTRC", curve),
    ]
    return icc_profile(b"mntr", b"RGB ", name, tags)


def icc_profile(device_class: bytes, space: bytes, name: str, tags: list[tuple[bytes, bytes]]) -> bytes:
    """An ICC (version 2.1) profile called `name`, of `device_class` (e.g. b"mntr", b"prtr") for
    pictures in `space` (b"RGB ", b"CMYK", b"GRAY"), its connection space XYZ under D50: its
    description, white point and `tags` ((signature, body) each; identical bodies stored once)."""
    tags = [
        (b"desc", _text_description(name)),
        (b"cprt", b"text" + bytes(4) + b"No copyright, use freely\0"),
        (b"wtpt", b"XYZ " + bytes(4) + _s15_16(_D50_XYZ)),
        *tags,
    ]
    offset = 128 + 4 + 12 * len(tags)
    table, data, stored = [], b"", {}
    for signature, body in tags:
        body += bytes(-len(body) % 4)  # each tag starts on a four-byte boundary
        if body not in stored:
            stored[body] = offset + len(data)
            data += body
        table.append(struct.pack(">4sII", signature, stored[body], len(body)))
    size = offset + len(data)
    header = struct.pack(">I4sI4s4s4s", size, b"lcms", 0x02100000, device_class, space, b"XYZ ")
    header += bytes(12) + b"acsp" + bytes(4 + 4 + 4 + 4 + 8 + 4) + _s15_16(_D50_XYZ)
    header += bytes(128 - len(header))
    return header + struct.pack(">I", len(tags)) + b"".join(table) + data


@functools.lru_cache(maxsize=8)
def nclx_profile(primaries: int, transfer: int) -> bytes | None:
    """An ICC profile for a colour description by ITU-T H.273 codes (a HEIF's `nclx`, a video
    stream's), or None when its pictures are read as sRGB: BT.709 or unspecified primaries,
    codes not converted, and HDR transfers. Standard-range transfers all get sRGB's curve on both
    sides of the conversion, so only the primaries change."""
    if primaries not in _H273_PRIMARIES or primaries == 1 or transfer in HDR_TRANSFERS:
        return None
    return rgb_profile(*_H273_PRIMARIES[primaries])


_PROFILE_SPACES = {"RGB": "RGB ", "CMYK": "CMYK", "L": "GRAY"}
"""The ICC colour space of a profile that describes pictures of each Pillow mode converted here."""


@functools.lru_cache(maxsize=8)
def _to_srgb_transform(icc: bytes, mode: str) -> ImageCms.ImageCmsTransform | None:
    """LittleCMS's conversion to sRGB of pictures of Pillow `mode` ("RGB", "CMYK" or "L") in the
    profile `icc`, or None where nothing is converted: a profile of another space, one that
    cannot be read, one that changes no colour by more than a level."""
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if profile.profile.xcolor_space != _PROFILE_SPACES[mode]:
            return None
        # No cache: LittleCMS's one-colour cache is written while converting, and pages convert
        # from more than one thread. The profile's own rendering (perceptual where it has one).
        transform = ImageCms.buildTransform(profile, _SRGB_PROFILE, mode, "RGB", flags=ImageCms.Flags.NOCACHE)
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return None  # a profile LittleCMS cannot read: read as sRGB, as browsers do
    if mode == "CMYK":
        return transform  # inks are never sRGB's values: Pillow's plain conversion ignores paper and ink
    levels = np.linspace(0, 255, 9 if mode == "RGB" else 256).round().astype(np.uint8)
    if mode == "RGB":
        probe = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), axis=-1).reshape(27, 27, 3)
        expected = probe
    else:
        probe = levels.reshape(16, 16)
        expected = np.repeat(probe[:, :, None], 3, axis=2)
    converted = np.asarray(ImageCms.applyTransform(Image.fromarray(probe), transform))
    if np.abs(converted.astype(np.int16) - expected).max() <= 1:
        return None  # sRGB (or its gray) under another name: converting would only add rounding
    return transform


def to_srgb(rgb: np.ndarray, icc: bytes | None) -> np.ndarray:
    """H x W x 3 uint8 RGB pixels in the space of the ICC profile `icc`, converted to sRGB (the
    same array where there is nothing to convert; see the module's docstring)."""
    transform = _to_srgb_transform(icc, "RGB") if icc else None
    if transform is None:
        return rgb
    return np.asarray(ImageCms.applyTransform(Image.fromarray(rgb), transform))


def picture_to_srgb(picture: Image.Image, icc: bytes | None) -> np.ndarray | None:
    """H x W x 3 uint8 sRGB of a Pillow picture in mode "RGB", "CMYK" or "L" whose colours the
    ICC profile `icc` describes; None where nothing is converted (no profile, another mode, or
    as `to_srgb`), and the picture is read as Pillow converts it."""
    transform = _to_srgb_transform(icc, picture.mode) if icc and picture.mode in _PROFILE_SPACES else None
    if transform is None:
        return None
    return np.asarray(ImageCms.applyTransform(picture, transform))


def profile_name(icc: bytes | None, mode: str = "RGB") -> str | None:
    """The profile's own description (e.g. "Display P3") when pictures of Pillow `mode` ("RGB",
    "CMYK" or "L") in it are converted to sRGB, else None."""
    if not icc or _to_srgb_transform(icc, mode) is None:
        return None
    try:
        return ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(icc))).strip() or "unnamed"
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return "unnamed"


# HDR video -----------------------------------------------------------------------------------

_HLG_A = 0.17883277
_HLG_B = 1 - 4 * _HLG_A
_HLG_C = 0.5 - _HLG_A * math.log(4 * _HLG_A)
_HLG_REFERENCE_WHITE = (math.exp((0.75 - _HLG_C) / _HLG_A) + _HLG_B) / 12
"""Scene light of HLG's reference white (75% signal, ITU-R BT.2408), about 0.265."""
_HLG_SYSTEM_GAMMA = 1.2
"""BT.2100's system gamma for a 1,000-nit display."""
_HLG_DISPLAY_NITS = 1000.0
_SDR_KNEE = 0.8
"""Linear SDR level from which highlights are rolled off towards white."""
_SDR_RANGE = 8.0
"""Linear SDR levels kept before the roll-off (HLG's peak is about 3.8 times its white)."""


def _hlg_scene_light(signal: np.ndarray) -> np.ndarray:
    """BT.2100's inverse HLG OETF: signal 0..1 to scene light 0..1."""
    return np.where(signal <= 0.5, signal**2 / 3, (np.exp((np.maximum(signal, 0.5) - _HLG_C) / _HLG_A) + _HLG_B) / 12)


def _pq_scene_light(signal: np.ndarray) -> np.ndarray:
    """PQ signal 0..1 to HLG's scene light: BT.2100's PQ EOTF (nits), then the inverse HLG OOTF of a
    1,000-nit display (each channel alone), brighter light clipped."""
    m1, m2 = 2610 / 16384, 2523 / 4096 * 128
    c1, c2, c3 = 3424 / 4096, 2413 / 4096 * 32, 2392 / 4096 * 32
    power = signal ** (1 / m2)
    nits = 10000 * (np.maximum(power - c1, 0) / (c2 - c3 * power)) ** (1 / m1)
    return np.minimum(nits / _HLG_DISPLAY_NITS, 1.0) ** (1 / _HLG_SYSTEM_GAMMA)


@functools.lru_cache(maxsize=4)
def _to_linear_sdr(transfer: int) -> np.ndarray:
    """16-bit code -> linear SDR level (1.0 is white), for a transfer in `HDR_TRANSFERS`."""
    signal = np.arange(65536) / 65535
    scene = _pq_scene_light(signal) if transfer == _PQ else _hlg_scene_light(signal)
    return (scene / _HLG_REFERENCE_WHITE).astype(np.float32)


@functools.lru_cache(maxsize=1)
def _to_srgb_code() -> np.ndarray:
    """Linear SDR level (0.._SDR_RANGE in 65,536 steps) -> sRGB 8-bit, highlights over
    `_SDR_KNEE` rolled off so that no level is cut flat at white."""
    linear = np.linspace(0.0, _SDR_RANGE, 65536)
    over = np.maximum(linear - _SDR_KNEE, 0.0) / (1 - _SDR_KNEE)
    shown = np.where(linear <= _SDR_KNEE, linear, _SDR_KNEE + (1 - _SDR_KNEE) * (1 - np.exp(-over)))
    return np.round(srgb_encoded(shown) * 255).astype(np.uint8)


@functools.lru_cache(maxsize=4)
def _primaries_to_srgb(primaries: int) -> np.ndarray:
    _, source = _H273_PRIMARIES.get(primaries, _H273_PRIMARIES[9])
    return np.linalg.solve(_rgb_to_xyz_d50(SRGB, _D65), _rgb_to_xyz_d50(source, _D65)).astype(np.float32)


def hdr_name(transfer: int, primaries: int) -> str:
    """What an HDR signal is called, e.g. "BT.2020 HLG" (primaries other than BT.2020's and
    Display P3's are mapped as BT.2020's, and named so)."""
    space, _ = _H273_PRIMARIES.get(primaries, _H273_PRIMARIES[9])
    return f"{space} {'PQ' if transfer == _PQ else 'HLG'}"


def hdr_to_sdr(rgb48: np.ndarray, transfer: int, primaries: int) -> np.ndarray:
    """H x W x 3 uint8 sRGB of an HDR video frame or picture given as 16-bit R'G'B' (as FFmpeg
    converts it: its coded values scaled to 0..65535), in `transfer` (PQ or HLG) and `primaries`
    (H.273 codes). See the module's docstring for the mapping."""
    to_linear, matrix, to_code = _to_linear_sdr(transfer), _primaries_to_srgb(primaries), _to_srgb_code()
    srgb = np.empty(rgb48.shape, np.uint8)
    # A band of rows at a time: a 4K frame in float32 would be 100 MB a copy.
    for start in range(0, rgb48.shape[0], 128):
        linear = cv2.transform(to_linear[rgb48[start : start + 128]], matrix)
        steps = np.clip(linear, 0.0, _SDR_RANGE, out=linear) * (65535 / _SDR_RANGE)
        srgb[start : start + 128] = to_code[steps.astype(np.uint16)]
    return srgb
