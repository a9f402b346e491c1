"""Real files with real provenance for the tests, made on the fly: Content Credentials signed
offline with the official C2PA bindings and a test certificate (an ES256 CA and a leaf made with
`cryptography`, no timestamp authority), metadata as cameras, editors and generators write it, and
hostile variants (huge blocks, damaged manifests, a manifest kept at a remote address)."""

from __future__ import annotations

import datetime
import io
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import c2pa
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from PIL import Image, PngImagePlugin

IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"
AI_GENERATED = IPTC + "trainedAlgorithmicMedia"
CAPTURED = IPTC + "digitalCapture"
SIGNER_NAME, SIGNER_ORGANISATION = "Test Signer", "Provenance Test Lab"
SD_PARAMETERS = (
    "portrait photo of a woman, detailed skin\nNegative prompt: blurry\n"
    "Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1234, Size: 512x512, Model: v1-5-pruned-emaonly"
)
XMP_TEMPLATE = (
    '<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?>'
    '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    '<rdf:Description rdf:about="" xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/" '
    'xmlns:xmp="http://ns.adobe.com/xap/1.0/"{attributes}>{elements}</rdf:Description></rdf:RDF></x:xmpmeta>'
    '<?xpacket end="w"?>'
)


@dataclass(frozen=True)
class TestCertificates:
    """A test CA and a leaf it issued for signing Content Credentials (not on any trust list)."""

    chain: bytes
    """The leaf then the CA, PEM."""
    key: bytes
    """The leaf's private key, PEM (PKCS#8)."""
    ca: bytes
    """The CA alone, PEM: a trust anchor for the tests that trust it."""

    def signer(self) -> c2pa.Signer:
        """A c2pa signer with this leaf (ES256, no timestamp authority: nothing goes online)."""
        return c2pa.Signer.from_info(c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, self.chain, self.key, None))


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, SIGNER_ORGANISATION),
        ]
    )


def _key_usage(signing_certificates: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=signing_certificates,
        crl_sign=signing_certificates,
        encipher_only=False,
        decipher_only=False,
    )


def make_certificates() -> TestCertificates:
    """An ES256 CA and a leaf with the email-protection usage C2PA accepts for signers."""
    now = datetime.datetime.now(datetime.UTC)
    valid = (now - datetime.timedelta(days=1), now + datetime.timedelta(days=30))
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("Provenance Test Root CA")
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid[0])
        .not_valid_after(valid[1])
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_key_usage(True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(_name(SIGNER_NAME))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid[0])
        .not_valid_after(valid[1])
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    def pem(certificate: x509.Certificate) -> bytes:
        return certificate.public_bytes(serialization.Encoding.PEM)

    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return TestCertificates(pem(leaf) + pem(ca), private, pem(ca))


def manifest(
    title: str, source_type: str, generator: str = "provenance-tests", agent: str | None = None
) -> dict[str, Any]:
    """A manifest whose one action creates the file from `source_type` (an IPTC address)."""
    action: dict[str, Any] = {"action": "c2pa.created", "digitalSourceType": source_type}
    if agent:
        action["softwareAgent"] = {"name": agent}
    return {
        "claim_generator_info": [{"name": generator, "version": "1.0"}],
        "title": title,
        "assertions": [{"label": "c2pa.actions", "data": {"actions": [action]}}],
    }


def sign(
    source: Path,
    target: Path,
    certificates: TestCertificates,
    definition: dict[str, Any],
    remote_url: str | None = None,
) -> Path:
    """`source` signed with `definition` into `target` (embedded, or kept at `remote_url`)."""
    mime = {
        ".jpg": "image/jpeg",
        ".png": "image/png",
        ".avif": "image/avif",
        ".heic": "image/heic",
        ".gif": "image/gif",
        ".mp4": "video/mp4",
    }[source.suffix]
    builder = c2pa.Builder(definition)
    if remote_url:
        builder.set_no_embed()
        builder.set_remote_url(remote_url)
    signed = io.BytesIO()
    builder.sign(certificates.signer(), mime, io.BytesIO(source.read_bytes()), signed)
    target.write_bytes(signed.getvalue())
    return target


def jpeg_segments(data: bytes) -> list[tuple[int, int, int]]:
    """(marker, offset, length) of a JPEG's segments before its picture data."""
    segments, offset = [], 2
    while data[offset] == 0xFF and data[offset + 1] not in (0xDA, 0xD9):
        length = struct.unpack(">H", data[offset + 2 : offset + 4])[0]
        segments.append((data[offset + 1], offset, length))
        offset += 2 + length
    return segments


def alter_pixels(signed: Path, target: Path) -> Path:
    """A signed JPEG with a few bytes of its picture data changed after signing."""
    data = bytearray(signed.read_bytes())
    end = len(data) - 2  # before the end-of-image marker
    for offset in range(end - 40, end - 20):
        data[offset] ^= 0x5A
    target.write_bytes(bytes(data))
    return target


def damage_manifest(signed: Path, target: Path, keep: int | None = None) -> Path:
    """A signed JPEG whose manifest segment (APP11 JUMBF) is junk after its JUMBF header, or
    cut to its first `keep` bytes."""
    data = signed.read_bytes()
    marker, offset, length = next(s for s in jpeg_segments(data) if s[0] == 0xEB)
    body = data[offset + 4 : offset + 2 + length]
    if keep is None:
        body = body[:20] + bytes((i * 37 + 11) & 0xFF for i in range(len(body) - 20))
    else:
        body = body[:keep]
    segment = b"\xff\xeb" + struct.pack(">H", len(body) + 2) + body
    target.write_bytes(data[:offset] + segment + data[offset + 2 + length :])
    return target


def insert_jpeg_segment(source: Path, target: Path, marker: int, body: bytes) -> Path:
    """A copy of a JPEG with one more segment right after its start marker."""
    data = source.read_bytes()
    target.write_bytes(data[:2] + bytes([0xFF, marker]) + struct.pack(">H", len(body) + 2) + body + data[2:])
    return target


def picture(size: tuple[int, int] = (96, 64)) -> Image.Image:
    """A plain gradient picture (no face)."""
    image = Image.new("RGB", size)
    image.putdata([(x * 255 // size[0], y * 255 // size[1], 128) for y in range(size[1]) for x in range(size[0])])
    return image


def picture_jpeg(path: Path) -> Path:
    """`picture()` saved as a JPEG with no metadata."""
    picture().save(path, format="JPEG")
    return path


def camera_exif(
    make: str = "Canon", model: str = "Canon EOS R5", software: str = "Firmware Version 1.8.1"
) -> Image.Exif:
    """EXIF as a camera writes it: make, model, date and software."""
    exif = Image.Exif()
    exif[0x010F], exif[0x0110], exif[0x0131], exif[0x0132] = make, model, software, "2024:05:01 10:00:00"
    return exif


def comment_exif(comment: bytes) -> Image.Exif:
    """EXIF holding only a `UserComment` (its 8-byte character code, then the text), as the Stable
    Diffusion web UI writes its generation text into the JPEG and WebP pictures it saves."""
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = comment
    return exif


def xmp(source_type: str | None = None, creator_tool: str | None = None, elements: str = "") -> bytes:
    """An XMP packet with a digital source type and a creator tool (as attributes)."""
    attributes = ""
    if source_type:
        attributes += f' Iptc4xmpExt:DigitalSourceType="{source_type}"'
    if creator_tool:
        attributes += f' xmp:CreatorTool="{creator_tool}"'
    return XMP_TEMPLATE.format(attributes=attributes, elements=elements).encode()


def save_png_with_text(path: Path, texts: dict[str, str], image: Image.Image | None = None) -> Path:
    """A PNG with text chunks, as Pillow (and the Stable Diffusion web UI through it) writes them."""
    info = PngImagePlugin.PngInfo()
    for key, value in texts.items():
        info.add_text(key, value)
    (image or picture()).save(path, format="PNG", pnginfo=info)
    return path


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    """One PNG chunk with its length and CRC."""
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)


def insert_png_chunks(source: Path, target: Path, *chunks: bytes) -> Path:
    """A copy of a PNG with chunks added right after its header chunk."""
    data = source.read_bytes()
    header_end = 8 + 8 + struct.unpack(">I", data[8:12])[0] + 4
    target.write_bytes(data[:header_end] + b"".join(chunks) + data[header_end:])
    return target


def gif_xmp(packet: bytes) -> bytes:
    """An XMP packet as a GIF carries it (Adobe's way): an application extension holding the raw
    packet, then the trailer that makes a reader skipping sub-blocks land on its end."""
    return b"\x21\xff\x0bXMP DataXMP" + packet + bytes([1, *range(255, -1, -1), 0])


def gif_comment(text: bytes) -> bytes:
    """A GIF comment extension holding `text` in sub-blocks of up to 255 bytes."""
    pieces = [text[i : i + 255] for i in range(0, len(text), 255)]
    return b"\x21\xfe" + b"".join(bytes([len(piece)]) + piece for piece in pieces) + b"\x00"


def insert_gif_blocks(source: Path, target: Path, *blocks: bytes) -> Path:
    """A copy of a GIF with extension blocks added right after its screen descriptor and global
    colour table."""
    data = source.read_bytes()
    flags = data[10]
    header_end = 13 + (3 << ((flags & 0x07) + 1) if flags & 0x80 else 0)
    target.write_bytes(data[:header_end] + b"".join(blocks) + data[header_end:])
    return target


def exif_with_tags(count: int) -> bytes:
    """An EXIF block (a TIFF structure) with `count` ASCII tags, camera tags among them."""
    exif = camera_exif()
    for tag in range(count):
        exif[0xC000 + tag] = f"value {tag} " * 4
    return exif.tobytes()


def chain_tiff_directories(
    source: Path, target: Path, extra: int, reduced: tuple[int, ...] = (), loop_to: int | None = None
) -> Path:
    """A copy of a one-page little-endian TIFF with `extra` directories chained after its own:
    each holds at most a NewSubfileType entry (1, a reduced-resolution copy, for the indices in
    `reduced`), none a picture; `loop_to` points the last one back at an extra directory (-1: at
    the first page's), making a loop."""
    data = bytearray(source.read_bytes())
    assert data[:4] == b"II*\x00"
    first = struct.unpack_from("<I", data, 4)[0]
    next_at = first + 2 + 12 * struct.unpack_from("<H", data, first)[0]
    assert struct.unpack_from("<I", data, next_at)[0] == 0, "the source must have one page"
    offsets = []
    for index in range(extra):
        data += b"\x00" * (len(data) % 2)  # directories start on a word boundary
        offsets.append(len(data))
        struct.pack_into("<I", data, next_at, len(data))
        entries = [struct.pack("<HHII", 254, 4, 1, 1)] if index in reduced else []
        data += struct.pack("<H", len(entries)) + b"".join(entries) + struct.pack("<I", 0)
        next_at = len(data) - 4
    if loop_to is not None:
        struct.pack_into("<I", data, next_at, first if loop_to == -1 else offsets[loop_to])
    target.write_bytes(bytes(data))
    return target
