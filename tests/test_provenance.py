"""Provenance on real files: Content Credentials signed here with the official C2PA bindings and a
test certificate (valid, altered after signing, AI-generated), metadata as cameras, editors and
generators write it, the shared media (which carry none), and hostile input (huge blocks,
damaged manifests, a manifest kept at a remote address). Then the engine, the command line and
the history with it."""

from __future__ import annotations

import csv
import http.server
import io
import json
import struct
import threading
import zlib
from collections.abc import Iterator
from dataclasses import replace
from html import unescape
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import heif_factory as hf
import numpy as np
import pytest
from PIL import Image

from pipeline.app.export import history_csv, html_report
from pipeline.app.sections import provenance_section
from pipeline.app.service import AnalysisRequest, AnalysisService
from pipeline.app.store import Store
from pipeline.config import REPO_ROOT, ProvenanceSettings
from pipeline.engine import colour
from pipeline.engine.analyze import STAGES, Engine
from pipeline.engine.media import detect_kind, load_image
from pipeline.engine.provenance import (
    NO_PROVENANCE,
    read_file_history,
    read_metadata_blocks,
    read_provenance,
    verdict_reason,
)
from pipeline.results import AnalysisResult, FileHistory, Provenance
from tests import provenance_factory as pf
from tests.command_line import run_cli

if TYPE_CHECKING:
    from dashboard_fixtures import Analysed, Media

pytest_plugins = ["dashboard_fixtures"]  # session fixtures: one engine, the shared media

SIGNER = f"{pf.SIGNER_NAME} ({pf.SIGNER_ORGANISATION})"


@pytest.fixture(scope="module")
def certificates() -> pf.TestCertificates:
    return pf.make_certificates()


@pytest.fixture(scope="module")
def signed(
    tmp_path_factory: pytest.TempPathFactory, certificates: pf.TestCertificates, media: Media
) -> dict[str, Path]:
    """The shared photo signed three ways (and saved as AVIF, signed as AI-generated), and the
    shared video signed as AI-generated."""
    folder = tmp_path_factory.mktemp("signed")
    avif = folder / "photo.avif"
    Image.open(media.image).save(avif, quality=90)
    files = {
        "captured": pf.sign(
            media.image, folder / "captured.jpg", certificates, pf.manifest("captured.jpg", pf.CAPTURED)
        ),
        "ai": pf.sign(
            media.image,
            folder / "generated.jpg",
            certificates,
            pf.manifest("generated.jpg", pf.AI_GENERATED, agent="Test Diffusion"),
        ),
        "avif": pf.sign(avif, folder / "generated.avif", certificates, pf.manifest("generated.avif", pf.AI_GENERATED)),
        "video": pf.sign(
            media.video, folder / "generated.mp4", certificates, pf.manifest("generated.mp4", pf.AI_GENERATED)
        ),
    }
    files["altered"] = pf.alter_pixels(files["captured"], folder / "altered.jpg")
    files["altered_ai"] = pf.alter_pixels(files["ai"], folder / "altered_ai.jpg")
    return files


def only_problem(provenance: Provenance) -> str:
    """The one problem line a hostile file must give."""
    assert len(provenance.problems) == 1, provenance.problems
    (problem,) = provenance.problems
    assert "\n" not in problem and "Traceback" not in problem
    return problem


# ------------------------------------------------------------------------- Content Credentials


def test_a_valid_credential_by_a_test_signer_is_valid_and_untrusted(signed: dict[str, Path]) -> None:
    provenance = read_provenance(signed["captured"], "image")
    credentials = provenance.credentials
    assert credentials is not None
    assert (credentials.signature, credentials.signer_trusted) == ("valid", False)
    assert credentials.signer == SIGNER and credentials.claim_generator == "provenance-tests 1.0"
    assert credentials.title == "captured.jpg" and credentials.failures == [] and credentials.manifests == 1
    assert [(a.action, a.digital_source_type) for a in credentials.actions] == [("c2pa.created", pf.CAPTURED)]
    assert provenance.found and not provenance.ai_generated and provenance.problems == []
    assert "valid signature by " + SIGNER in provenance.summary and "signer not on a trust list" in provenance.summary


def test_trusting_the_test_ca_makes_its_signer_trusted(
    signed: dict[str, Path], certificates: pf.TestCertificates, tmp_path: Path
) -> None:
    anchors = tmp_path / "anchors.pem"
    anchors.write_bytes(certificates.ca)
    provenance = read_provenance(signed["captured"], "image", ProvenanceSettings(trust_anchors=anchors))
    assert provenance.credentials.signature == "valid" and provenance.credentials.signer_trusted
    assert "(trusted signer)" in provenance.summary


def test_a_credential_saying_ai_generated_is_a_claim(signed: dict[str, Path]) -> None:
    provenance = read_provenance(signed["ai"], "image")
    credentials = provenance.credentials
    assert credentials.signature == "valid" and credentials.ai_source_type == pf.AI_GENERATED
    assert credentials.actions[0].software_agent == "Test Diffusion"
    assert provenance.ai_generated
    (claim,) = provenance.ai_claims
    assert claim == (
        f"Content Credentials (valid signature by {SIGNER}, signer not on a trust list): "
        "trainedAlgorithmicMedia (made by a trained AI model)"
    )
    assert provenance.summary == f"AI-generated according to {claim}."


@pytest.mark.parametrize("which", ["altered", "altered_ai"])
def test_a_file_altered_after_signing_fails_validation_and_claims_nothing(signed: dict[str, Path], which: str) -> None:
    provenance = read_provenance(signed[which], "image")
    credentials = provenance.credentials
    assert credentials.signature == "invalid" and not credentials.signer_trusted
    assert any(f.startswith("assertion.dataHash.mismatch") for f in credentials.failures)
    assert provenance.found and not provenance.ai_generated and provenance.ai_claims == []
    assert provenance.summary == (
        f"Content Credentials by {SIGNER} that fail validation: the file's content changed after it was "
        "signed (assertion.dataHash.mismatch)."
    )


def test_a_signed_avif_picture_carries_its_credentials(signed: dict[str, Path]) -> None:
    provenance = read_provenance(signed["avif"], "image")
    assert provenance.credentials.signature == "valid" and provenance.ai_generated
    assert provenance.credentials.title == "generated.avif" and provenance.problems == []
    assert provenance.file_history == FileHistory("AVIF")


def test_signed_gifs_carry_their_credentials(tmp_path: Path, certificates: pf.TestCertificates) -> None:
    """A GIF of one picture (an image) and an animated one (read as a video), each signed as
    AI-generated: the credentials are found in either, and checked."""
    still, animated = tmp_path / "still.gif", tmp_path / "animated.gif"
    pf.picture().save(still)
    pf.picture().save(animated, save_all=True, append_images=[pf.picture().rotate(180)], duration=100)
    for path, kind in ((still, "image"), (animated, "video")):
        signed = pf.sign(path, tmp_path / f"signed_{path.name}", certificates, pf.manifest(path.name, pf.AI_GENERATED))
        assert detect_kind(signed) == kind
        provenance = read_provenance(signed, kind)
        assert provenance.credentials.signature == "valid" and provenance.ai_generated
        assert provenance.credentials.title == path.name and provenance.problems == []
        assert read_metadata_blocks(signed).manifest_bytes > 0
    assert read_provenance(tmp_path / "signed_still.gif", "image").file_history.format == "GIF"


def test_a_heic_photo_carries_its_camera_xmp_and_credentials(tmp_path: Path, certificates: pf.TestCertificates) -> None:
    """A HEIC photo keeps its EXIF and XMP as items of their own, and Content Credentials in a
    top-level box as MP4 does: each is read, and the signed photo is still analysed as the
    picture it was (the signing moved its pictures' data)."""
    picture = np.asarray(pf.picture((128, 96)))
    photo = hf.write_heic(
        tmp_path / "photo.heic", picture, tile=64, exif=pf.camera_exif().tobytes(), xmp=pf.xmp(pf.AI_GENERATED)
    )
    provenance = read_provenance(photo, "image")
    assert provenance.metadata.camera == "Canon EOS R5" and provenance.file_history.format == "HEIF"
    # What HEVC coding did to validation photos (rule 27) is said beside every HEIC's verdict.
    caveat = provenance.file_history.caveat
    assert caveat.startswith("the file is a HEIC photo, coded with HEVC, which the models never trained on")
    assert (
        "'A photo saved as HEIC'" in caveat
        and "\n## A photo saved as HEIC\n" in (REPO_ROOT / "models" / "MODEL_CARD.md").read_text()
    )
    assert verdict_reason("the models say uncertain", provenance).startswith(f"the models say uncertain; {caveat}; ")
    assert provenance.ai_claims == ["XMP metadata: trainedAlgorithmicMedia (made by a trained AI model)"]
    assert provenance.problems == []
    signed = pf.sign(photo, tmp_path / "signed.heic", certificates, pf.manifest("signed.heic", pf.AI_GENERATED))
    credentials = read_provenance(signed, "image").credentials
    assert credentials is not None and credentials.signature == "valid"
    assert credentials.ai_source_type == pf.AI_GENERATED
    assert np.array_equal(load_image(signed), load_image(photo))
    # An EXIF item said to run to the end of the file (a length of 0) is measured as that long.
    data = photo.read_bytes()
    exif_id = data[data.index(b"\x00\x00Exif") - 2 : data.index(b"\x00\x00Exif")]  # its item info
    location = data.index(exif_id + struct.pack(">HHH", 0, 0, 1))  # its iloc entry: method, reference, extents
    whole = tmp_path / "whole.heic"
    whole.write_bytes(data[: location + 8] + bytes(8) + data[location + 16 :])
    problems = read_provenance(whole, "image", ProvenanceSettings(max_metadata_bytes=1000)).problems
    assert problems == [f"its Exif item is {len(data):,} bytes, over the 1,000 read"]
    # One kept inside other items (construction method 2) is not read; the picture still is.
    inside = tmp_path / "inside.heic"
    inside.write_bytes(data[: location + 2] + struct.pack(">H", 2) + data[location + 4 :])
    assert read_provenance(inside, "image").problems == ["its Exif item is kept inside other items, which are not read"]
    assert np.array_equal(load_image(inside), load_image(photo))
    # A description naming an item the file does not hold is passed over.
    at = data.index(b"cdsc") + 4
    orphan = tmp_path / "orphan.heic"
    orphan.write_bytes(data[:at] + struct.pack(">H", 999) + data[at + 2 :])
    assert read_provenance(orphan, "image").problems == []


def test_a_signed_video_carries_its_credentials(signed: dict[str, Path]) -> None:
    provenance = read_provenance(signed["video"], "video")
    assert provenance.credentials.signature == "valid" and provenance.ai_generated
    assert provenance.metadata.encoder.startswith("Lavf")


# ------------------------------------------------------------------------------------ metadata


def test_a_png_with_a_generators_parameters_text(tmp_path: Path) -> None:
    path = pf.save_png_with_text(tmp_path / "sd.png", {"parameters": pf.SD_PARAMETERS})
    provenance = read_provenance(path, "image")
    metadata = provenance.metadata
    assert metadata.generator == "PNG text 'parameters' (the Stable Diffusion web UI's format)"
    assert metadata.generator_text.startswith("portrait photo of a woman") and "\n" not in metadata.generator_text
    assert provenance.ai_generated and provenance.credentials is None and provenance.problems == []
    assert provenance.ai_claims == [f"metadata of an AI generator: {metadata.generator}"]


@pytest.mark.parametrize(
    ("suffix", "comment"),
    [
        (".jpg", b"UNICODE\x00" + pf.SD_PARAMETERS.encode("utf-16-be")),  # what the web UI writes (piexif)
        (".webp", b"UNICODE\x00" + pf.SD_PARAMETERS.encode("utf-16-le")),  # the other byte order
        (".jpg", b"ASCII\x00\x00\x00" + pf.SD_PARAMETERS.encode()),
    ],
    ids=["jpeg-ucs2", "webp-ucs2-little-endian", "jpeg-ascii"],
)
def test_a_picture_with_the_web_uis_generation_text_in_its_exif_comment(
    tmp_path: Path, suffix: str, comment: bytes
) -> None:
    """JPEG and WebP have no text chunks: the Stable Diffusion web UI writes its generation text
    into EXIF's UserComment instead."""
    path = tmp_path / f"00012-1234{suffix}"
    pf.picture().save(path, exif=pf.comment_exif(comment))
    provenance = read_provenance(path, "image")
    metadata = provenance.metadata
    assert metadata.generator == "EXIF UserComment (the Stable Diffusion web UI's format)"
    assert metadata.generator_text.startswith("portrait photo of a woman") and "Seed: 1234" in metadata.generator_text
    assert provenance.ai_generated and provenance.problems == []


def test_a_cameras_own_exif_comment_claims_nothing(tmp_path: Path) -> None:
    path = tmp_path / "holiday.jpg"
    exif = pf.camera_exif()
    exif.get_ifd(0x8769)[0x9286] = b"ASCII\x00\x00\x00Holiday, 20 steps from the sea"
    pf.picture().save(path, exif=exif)
    provenance = read_provenance(path, "image")
    assert provenance.metadata.camera == "Canon EOS R5" and provenance.metadata.generator is None
    assert not provenance.ai_generated


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".webp", ".tif", ".avif"])
def test_an_image_with_camera_exif(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"camera{suffix}"
    pf.picture().save(path, exif=pf.camera_exif())
    provenance = read_provenance(path, "image")
    metadata = provenance.metadata
    assert (metadata.camera, metadata.captured, metadata.software) == (
        "Canon EOS R5",
        "2024:05:01 10:00:00",
        "Firmware Version 1.8.1",
    )
    assert provenance.found and not provenance.ai_generated and provenance.problems == []
    assert provenance.summary.startswith("Metadata names camera Canon EOS R5, software Firmware Version 1.8.1;")
    assert "not signed" in provenance.summary


@pytest.mark.parametrize(
    "packet",
    [
        pf.xmp(pf.AI_GENERATED),
        pf.xmp(elements=f"<Iptc4xmpExt:DigitalSourceType>{pf.AI_GENERATED}</Iptc4xmpExt:DigitalSourceType>"),
        pf.xmp(elements=f'<Iptc4xmpExt:DigitalSourceType rdf:resource="{pf.AI_GENERATED}"/>'),
    ],
    ids=["attribute", "element", "resource"],
)
def test_a_jpeg_with_xmp_saying_trained_algorithmic_media(tmp_path: Path, packet: bytes) -> None:
    path = tmp_path / "xmp.jpg"
    pf.picture().save(path, xmp=packet)
    provenance = read_provenance(path, "image")
    assert provenance.metadata.digital_source_type == pf.AI_GENERATED
    assert provenance.ai_claims == ["XMP metadata: trainedAlgorithmicMedia (made by a trained AI model)"]


def save_gif(image: Image.Image, path: Path) -> Path:
    image.save(path)
    return path


@pytest.mark.parametrize(
    ("suffix", "save"),
    [
        (".jpg", lambda image, path: image.save(path, exif=pf.camera_exif("", "", "Midjourney v6"))),
        (
            ".png",
            lambda image, path: pf.save_png_with_text(path, {"Software": "NovelAI", "Source": "Stable Diffusion XL"}),
        ),
        (".webp", lambda image, path: image.save(path, xmp=pf.xmp(creator_tool="Adobe Firefly Image 3"))),
        (".avif", lambda image, path: image.save(path, xmp=pf.xmp(creator_tool="Adobe Firefly Image 3"))),
        (
            ".gif",
            lambda image, path: pf.insert_gif_blocks(
                save_gif(image, path), path, pf.gif_xmp(pf.xmp(creator_tool="Adobe Firefly Image 3"))
            ),
        ),
        (".gif", lambda image, path: image.save(path, comment=b"Created with Midjourney v6")),
        (".jpg", lambda image, path: image.save(path, comment=b"Created with Midjourney v6")),
    ],
    ids=[
        "exif-software",
        "png-software",
        "webp-xmp-creator-tool",
        "avif-xmp-creator-tool",
        "gif-xmp-creator-tool",
        "gif-comment",
        "jpeg-comment",
    ],
)
def test_software_named_after_an_ai_generator_is_a_claim(tmp_path: Path, suffix: str, save) -> None:
    path = tmp_path / f"tool{suffix}"
    save(pf.picture(), path)
    provenance = read_provenance(path, "image")
    assert provenance.ai_generated, provenance
    assert provenance.metadata.generator and provenance.problems == []


def test_an_editors_jpeg_comment_claims_nothing(tmp_path: Path) -> None:
    """A JPEG comment is read only for a generator's name: an editor's or a library's is no evidence."""
    path = tmp_path / "edited.jpg"
    pf.picture().save(path, comment=b"Created with GIMP")
    provenance = read_provenance(path, "image")
    assert provenance.summary == NO_PROVENANCE and not provenance.found and provenance.problems == []


def test_the_shared_media_carry_no_provenance(media: Media, shared_data: Path) -> None:
    sd_face = next(iter(sorted((shared_data / "sd-faces" / "fake").iterdir())))
    for path, kind in (
        (media.image, "image"),
        (media.other_image, "image"),
        (sd_face, "image"),
        (media.video, "video"),
    ):
        provenance = read_provenance(path, kind)
        assert provenance.summary == NO_PROVENANCE, path
        assert not provenance.found and not provenance.ai_generated and provenance.problems == []
        assert provenance.credentials is None
    # The video's container names FFmpeg's muxer, which says nothing about where it comes from.
    assert read_provenance(media.video, "video").metadata.encoder.startswith("Lavf")


# --------------------------------------------------------------------------------------- hostile


def test_a_huge_exif_chunk_is_one_problem_and_the_rest_is_read(tmp_path: Path) -> None:
    plain = pf.save_png_with_text(tmp_path / "plain.png", {"parameters": pf.SD_PARAMETERS})
    huge = b"MM\x00*" + bytes(5 * 1024**2)
    path = pf.insert_png_chunks(plain, tmp_path / "huge_exif.png", pf.png_chunk(b"eXIf", huge))
    provenance = read_provenance(path, "image")
    assert only_problem(provenance) == "a PNG eXIf chunk of 5.0 MB is over the 1.0 MB limit: not read"
    assert provenance.ai_generated  # the generator's text beside it is still read


def test_a_huge_xmp_packet_is_one_problem(tmp_path: Path) -> None:
    plain = pf.save_png_with_text(tmp_path / "plain.png", {})
    packet = pf.xmp(pf.AI_GENERATED, elements="<x>" + "A" * 3 * 1024**2 + "</x>")
    itxt = b"XML:com.adobe.xmp\x00\x00\x00\x00\x00" + packet
    path = pf.insert_png_chunks(plain, tmp_path / "huge_xmp.png", pf.png_chunk(b"iTXt", itxt))
    provenance = read_provenance(path, "image")
    assert only_problem(provenance) == "a PNG iTXt chunk of 3.0 MB is over the 1.0 MB limit: not read"
    assert provenance.metadata.digital_source_type is None


@pytest.mark.parametrize("name", ["animated.gif", "animated.webp", "animated.avif", "animated.png"])
def test_an_animation_as_it_was_written_carries_no_provenance(tmp_path: Path, name: str) -> None:
    """Read as videos, animations are asked for a video's tags too: the AV1 encoder's name that
    an animated AVIF carries ('AOM Coding') is no editor or camera."""
    path = tmp_path / name
    pf.picture().save(path, save_all=True, append_images=[pf.picture().rotate(180)], duration=100)
    assert detect_kind(path) == "video"
    provenance = read_provenance(path, "video")
    assert provenance.summary == NO_PROVENANCE and not provenance.found and provenance.problems == []
    # An animated GIF's palette is said, as a picture's is (rule 24); other animations keep none.
    assert (provenance.file_history is not None) == (path.suffix == ".gif")


def test_a_lossy_webp_picture_says_what_its_compression_did_on_validation_photos(tmp_path: Path) -> None:
    """Rule 25: saved as lossy WebP at quality 80, validation photos were ranked worse; a lossy
    WebP's verdict says so (a simple one, and an extended one with transparency and EXIF), a
    lossless one's does not."""
    simple, extended, lossless = tmp_path / "simple.webp", tmp_path / "extended.webp", tmp_path / "lossless.webp"
    pf.picture().save(simple, quality=80)
    pf.picture().convert("RGBA").save(extended, quality=90, exif=pf.camera_exif())
    pf.picture().save(lossless, lossless=True)
    assert simple.read_bytes()[12:16] == b"VP8 " and extended.read_bytes()[12:16] == b"VP8X"
    for path in (simple, extended):
        provenance = read_provenance(path, "image")
        history = provenance.file_history
        assert (history.format, history.jpeg_quality) == ("WebP", None)
        assert history.caveat.startswith("the file is a lossy WebP, a compression the models never trained on")
        assert "'A picture saved as lossy WebP'" in history.caveat
        assert verdict_reason("the models say real", provenance) == f"the models say real; {history.caveat}"
    assert read_provenance(extended, "image").metadata.camera == "Canon EOS R5"  # the rest still read
    assert read_provenance(lossless, "image").file_history == FileHistory("WebP")


def test_every_gif_says_its_palette_runs_its_probability_high(tmp_path: Path) -> None:
    """Rule 24: real photos saved as GIF came out uncertain near 1 (the CLIP member reads the
    palette as fake); a GIF's verdict says so, a still one and an animated one alike, and the
    verdict's reason carries it as it carries a JPEG's compression."""
    still, animated = tmp_path / "still.gif", tmp_path / "animated.gif"
    pf.picture().save(still)
    pf.picture().save(animated, save_all=True, append_images=[pf.picture().rotate(180)], duration=100)
    for path, kind in ((still, "image"), (animated, "video")):
        history = read_provenance(path, kind).file_history
        assert (history.format, history.jpeg_quality) == ("GIF", None)
        assert history.caveat.startswith("the file is a GIF, whose 256 colours the models never trained on")
        assert "'A picture saved as GIF'" in history.caveat
        reason = verdict_reason("the models say uncertain", read_provenance(path, kind))
        assert reason == f"the models say uncertain; {history.caveat}"
    png = tmp_path / "still.png"
    pf.picture().save(png)
    assert read_provenance(png, "image").file_history.caveat is None


@pytest.mark.parametrize(
    ("layout", "mode", "options"),
    [("little-endian", "RGB", {}), ("big-endian", "I;16B", {}), ("BigTIFF", "RGB", {"big_tiff": True})],
)
def test_a_tiff_of_several_pages_says_only_the_first_was_analysed(
    tmp_path: Path, layout: str, mode: str, options: dict
) -> None:
    """The engine reads a TIFF's first page: a file of several says how many it holds, beside the
    verdict and in the Provenance tab, as other caveats are."""
    pages = [pf.picture().convert(mode), pf.picture().rotate(180).convert(mode), pf.picture((48, 32)).convert(mode)]
    several, one = tmp_path / "several.tif", tmp_path / "one.tif"
    pages[0].save(several, save_all=True, append_images=pages[1:], **options)
    pages[0].save(one, **options)
    assert (
        several.read_bytes()[:4]
        == {"little-endian": b"II*\x00", "big-endian": b"MM\x00*", "BigTIFF": b"II+\x00"}[layout]
    )
    provenance = read_provenance(several, "image")
    history = provenance.file_history
    assert (history.format, history.pages) == ("TIFF", 3)
    assert history.caveat == (
        "the file is a TIFF of 3 pages, and only the first was analysed: the verdict says nothing about "
        "the faces on the others"
    )
    assert verdict_reason("the models say real", provenance) == f"the models say real; {history.caveat}"
    assert ("pages", "3 (the first analysed)") in provenance_section(provenance).history
    alone = read_provenance(one, "image").file_history
    assert (alone.pages, alone.caveat) == (1, None)
    assert "pages" not in dict(provenance_section(read_provenance(one, "image")).history)


def test_a_wide_gamut_pictures_colour_space_is_named_beside_its_history(tmp_path: Path) -> None:
    """The Provenance tab says which colour profile the picture was converted from for the models
    (a phone's Display P3), in the profile's own words, made one printable line; an sRGB picture
    and a video say nothing."""
    display_p3 = colour.rgb_profile("Display P3", colour.DISPLAY_P3)
    photo = tmp_path / "IMG_0003.jpg"
    pf.picture().save(photo, quality=95, icc_profile=display_p3)
    provenance = read_provenance(photo, "image")
    assert provenance.file_history.colour_space == "Display P3"
    assert provenance.file_history.caveat is None
    assert ("colours", "Display P3, converted to sRGB") in provenance_section(provenance).history
    phone = hf.write_heic(tmp_path / "IMG_0004.HEIC", np.asarray(pf.picture()), colours=b"prof" + display_p3)
    assert read_provenance(phone, "image").file_history.colour_space == "Display P3"
    odd = tmp_path / "odd.png"
    pf.picture().save(odd, icc_profile=colour.rgb_profile("Wide\x07" + "gamut " * 40, colour.ADOBE_RGB, 563 / 256))
    named = read_provenance(odd, "image").file_history.colour_space
    assert named.startswith("Wide?gamut gamut") and len(named) == 100 and named.endswith("…")
    plain = tmp_path / "plain.png"
    pf.picture().save(plain)
    assert read_provenance(plain, "image").file_history.colour_space is None
    assert "colours" not in dict(provenance_section(read_provenance(plain, "image")).history)


def test_a_tiffs_pages_are_counted_without_thumbnails_loops_or_no_end(tmp_path: Path) -> None:
    """Pages are counted from the chain of directories, not decoded: a thumbnail of a page
    (NewSubfileType 1) is no page, a chain that loops is counted once round, and a chain of
    thousands (each directory costs Pillow a check against all before it) is counted no further
    than the limit."""
    one = tmp_path / "one.tif"
    pf.picture().save(one)
    chained = {
        "thumbnail": pf.chain_tiff_directories(one, tmp_path / "thumbnail.tif", 1, reduced=(0,)),
        "page and thumbnail": pf.chain_tiff_directories(one, tmp_path / "both.tif", 2, reduced=(1,)),
        "loop": pf.chain_tiff_directories(one, tmp_path / "loop.tif", 3, loop_to=1),
        "loop to the first": pf.chain_tiff_directories(one, tmp_path / "loop0.tif", 2, loop_to=-1),
        "20,000 pages": pf.chain_tiff_directories(one, tmp_path / "many.tif", 19_999),
    }
    counted = {name: read_provenance(path, "image").file_history for name, path in chained.items()}
    assert {name: history.pages for name, history in counted.items()} == {
        "thumbnail": 1,
        "page and thumbnail": 2,
        "loop": 4,
        "loop to the first": 3,
        "20,000 pages": ProvenanceSettings().max_counted_pages,
    }
    assert counted["thumbnail"].caveat is None
    assert counted["20,000 pages"].caveat.startswith("the file is a TIFF of 1,000 or more pages, and only the first")
    cut = tmp_path / "cut.tif"
    cut.write_bytes(chained["loop"].read_bytes()[:-5])  # the last directory is cut short: not a page
    assert read_provenance(cut, "image").file_history.pages == 3
    # BigTIFF headers pointing past any file, or at a directory of more entries than any file holds.
    bigtiff_header = b"II+\x00" + struct.pack("<HHQ", 8, 0, 16)
    for name, data in {
        "far.tif": b"II+\x00" + struct.pack("<HHQ", 8, 0, 2**64 - 1),
        "huge.tif": bigtiff_header + struct.pack("<Q", 2**62) + bytes(40),
        "next far.tif": bigtiff_header + struct.pack("<Q", 0) + struct.pack("<Q", 2**63 + 5),
        "short header.tif": b"II+\x00" + struct.pack("<HH", 8, 0),
    }.items():
        (tmp_path / name).write_bytes(data)
        provenance = read_provenance(tmp_path / name, "image")
        assert (provenance.file_history.pages, provenance.file_history.caveat) == (1, None), name


def test_a_gifs_metadata_is_found_wherever_it_is_and_huge_blocks_are_one_problem(tmp_path: Path) -> None:
    """XMP and comments before, between and after a GIF's pictures; a comment or an XMP packet
    over the limit is one line, and the blocks after it are still read."""
    animated = tmp_path / "animated.gif"
    pf.picture().save(animated, save_all=True, append_images=[pf.picture().rotate(180)], duration=100)
    data = animated.read_bytes()
    end = data.rindex(b"\x3b")  # the trailer: a block added before it comes after both pictures
    late = tmp_path / "late.gif"
    late.write_bytes(data[:end] + pf.gif_xmp(pf.xmp(pf.AI_GENERATED)) + data[end:])
    assert read_provenance(late, "video").metadata.digital_source_type == pf.AI_GENERATED
    assert read_metadata_blocks(late).xmp == pf.xmp(pf.AI_GENERATED)

    huge = pf.insert_gif_blocks(
        late, tmp_path / "huge.gif", pf.gif_comment(b"A" * 2 * 1024**2), pf.gif_xmp(pf.xmp(elements="A" * 1024**2))
    )
    provenance = read_provenance(huge, "video")
    assert provenance.problems == [
        "a GIF comment chunk of 2.0 MB is over the 1.0 MB limit: not read",
        "a GIF XMP chunk of 1.0 MB is over the 1.0 MB limit: not read",
    ]
    assert provenance.metadata.digital_source_type == pf.AI_GENERATED  # the packet after the pictures

    cut = tmp_path / "cut.gif"
    for end in (13, 800):  # in the colour table, in a picture
        cut.write_bytes(late.read_bytes()[:end])
        problem = only_problem(read_provenance(cut, "image"))
        assert problem.startswith("the file is damaged, so it could not be searched for Content Credentials: ")
    cut.write_bytes(late.read_bytes()[:-1])  # no trailer: every block is there
    provenance = read_provenance(cut, "video")
    assert provenance.problems == [] and provenance.metadata.digital_source_type == pf.AI_GENERATED


def test_a_compressed_text_bomb_is_one_problem(tmp_path: Path) -> None:
    plain = pf.save_png_with_text(tmp_path / "plain.png", {})
    bomb = zlib.compress(b"\x00" * 200 * 1024**2, 9)  # 200 MB of zeros in about 200 KB
    path = pf.insert_png_chunks(plain, tmp_path / "bomb.png", pf.png_chunk(b"zTXt", b"parameters\x00\x00" + bomb))
    provenance = read_provenance(path, "image")
    assert only_problem(provenance) == "the compressed PNG text 'parameters' inflates past 1.0 MB: not read"


def test_the_largest_exif_a_jpeg_can_hold_is_read(tmp_path: Path) -> None:
    block = pf.exif_with_tags(1150)
    assert 50_000 < len(block) < 65_000  # a JPEG segment holds at most 64 KB
    path = pf.insert_jpeg_segment(pf.picture_jpeg(tmp_path / "plain.jpg"), tmp_path / "big_exif.jpg", 0xE1, block)
    provenance = read_provenance(path, "image")
    assert provenance.metadata.camera == "Canon EOS R5" and provenance.problems == []


def test_damaged_exif_is_one_problem(tmp_path: Path) -> None:
    body = b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\xff\xff" + bytes(range(64))
    path = pf.insert_jpeg_segment(pf.picture_jpeg(tmp_path / "plain.jpg"), tmp_path / "bad_exif.jpg", 0xE1, body)
    provenance = read_provenance(path, "image")
    assert only_problem(provenance).startswith("the EXIF metadata is damaged")


@pytest.mark.parametrize(("keep", "expected"), [(None, "holds no readable manifest"), (200, "could not be read")])
def test_a_damaged_manifest_is_one_problem(
    signed: dict[str, Path], tmp_path: Path, keep: int | None, expected: str
) -> None:
    path = pf.damage_manifest(signed["ai"], tmp_path / "damaged.jpg", keep)
    provenance = read_provenance(path, "image")
    assert expected in only_problem(provenance)
    assert provenance.credentials is None and not provenance.ai_generated


def test_a_jumbf_segment_of_junk_is_one_problem(tmp_path: Path) -> None:
    junk = b"JP" + bytes((i * 131 + 7) & 0xFF for i in range(3000))
    path = pf.insert_jpeg_segment(pf.picture_jpeg(tmp_path / "plain.jpg"), tmp_path / "junk.jpg", 0xEB, junk)
    provenance = read_provenance(path, "image")
    assert only_problem(provenance) == (
        "a Content Credentials block (JUMBF) is present but holds no readable manifest (damaged or not C2PA)"
    )


@pytest.fixture
def listener() -> Iterator[tuple[str, list[str]]]:
    """A local HTTP server that records every request: (its address, the paths asked for)."""
    asked: list[str] = []

    class Recorder(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(self.path)
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", asked
    finally:
        server.shutdown()
        server.server_close()


def test_a_manifest_kept_at_a_remote_address_is_never_fetched(
    media: Media, certificates: pf.TestCertificates, tmp_path: Path, listener: tuple[str, list[str]]
) -> None:
    address, asked = listener
    url = f"{address}/manifests/generated.c2pa"
    path = pf.sign(media.image, tmp_path / "remote.jpg", certificates, pf.manifest("remote.jpg", pf.AI_GENERATED), url)
    provenance = read_provenance(path, "image")
    assert only_problem(provenance) == (
        f"the Content Credentials are kept elsewhere ({url}), which is never fetched (the analysis stays offline): not checked"
    )
    assert asked == [] and provenance.credentials is None


def test_a_manifest_over_the_limit_is_not_checked(signed: dict[str, Path]) -> None:
    provenance = read_provenance(signed["ai"], "image", ProvenanceSettings(max_manifest_bytes=1024))
    assert "over the 1 KB limit: not checked" in only_problem(provenance)


def test_a_file_of_many_segments_is_walked_no_further_than_the_limit(tmp_path: Path) -> None:
    path = pf.picture_jpeg(tmp_path / "plain.jpg")
    for _ in range(60):
        path = pf.insert_jpeg_segment(path, tmp_path / "many.jpg", 0xFE, b"a comment")
    provenance = read_provenance(path, "image", ProvenanceSettings(max_container_entries=50))
    assert only_problem(provenance) == (
        "more than 50 JPEG segments: the rest of the file was not searched for metadata"
    )


def test_control_characters_and_long_texts_are_one_short_line(tmp_path: Path) -> None:
    path = pf.save_png_with_text(
        tmp_path / "odd.png", {"parameters": "line one\nline two\x1b[31m red " + "x" * 5000, "Software": "a\rb\x00c"}
    )
    metadata = read_provenance(path, "image", ProvenanceSettings(max_text_chars=100)).metadata
    assert metadata.generator_text.startswith("line one line two?[31m red x") and len(metadata.generator_text) == 100
    assert metadata.software == "a b c"


# ------------------------------------------------------------------------------ file history


def test_a_jpegs_quality_is_read_from_its_own_tables(media: Media, shared_data: Path, tmp_path: Path) -> None:
    # The shared photos were encoded at quality 90 (the data's README), the DFDC crops at 75.
    swap_face = next(iter(sorted((shared_data / "swap-faces" / "real").iterdir())))
    for path, quality in ((media.image, 90), (swap_face, 90), (media.other_image, 75)):
        history = read_provenance(path, "image").file_history
        assert (history.format, history.jpeg_quality, history.standard_tables) == ("JPEG", quality, True), path
        assert (history.chroma_subsampling, history.progressive) == ("4:2:0", False)
        assert (history.caveat is None) == (quality == 90)
    face = Image.open(media.image)
    saved = {}
    for quality in (5, 45, 75, 100):  # Pillow
        face.save(saved.setdefault(quality, tmp_path / f"pillow{quality}.jpg"), quality=quality)
    for quality in (37, 83):  # OpenCV writes its own copy of libjpeg's tables
        path = saved.setdefault(quality, tmp_path / f"opencv{quality}.jpg")
        cv2.imwrite(str(path), cv2.imread(str(media.image)), [cv2.IMWRITE_JPEG_QUALITY, quality])
    for quality, path in saved.items():
        history = read_file_history(read_metadata_blocks(path))
        assert (history.jpeg_quality, history.standard_tables) == (quality, True), path
    face.save(tmp_path / "full_colour.jpg", quality=80, subsampling=0, progressive=True)
    face.convert("L").save(tmp_path / "grey.jpg", quality=80)
    full, grey = (read_file_history(read_metadata_blocks(tmp_path / n)) for n in ("full_colour.jpg", "grey.jpg"))
    assert (full.jpeg_quality, full.chroma_subsampling, full.progressive) == (80, "4:4:4", True)
    assert (grey.jpeg_quality, grey.standard_tables, grey.chroma_subsampling) == (80, True, "grey")


def test_an_encoders_own_tables_give_the_nearest_quality(media: Media, tmp_path: Path) -> None:
    # A camera's or an editor's tables are not libjpeg's: here each step of quality 70's, one finer.
    face = Image.open(media.image)
    face.save(tmp_path / "q70.jpg", quality=70)
    tables = Image.open(tmp_path / "q70.jpg").quantization  # Pillow's order: row by row
    face.save(tmp_path / "own.jpg", qtables=[[max(1, step - 1) for step in tables[n]] for n in (0, 1)])
    history = read_file_history(read_metadata_blocks(tmp_path / "own.jpg"))
    assert 70 < history.jpeg_quality <= 75 and not history.standard_tables
    assert history.caveat.startswith(f"the file was last saved as JPEG at about quality {history.jpeg_quality}, more")


def test_files_that_are_no_jpeg_have_no_quality(tmp_path: Path, media: Media) -> None:
    png = pf.save_png_with_text(tmp_path / "plain.png", {})
    assert read_provenance(png, "image").file_history == FileHistory("PNG")
    pf.picture().save(tmp_path / "plain.webp", lossless=True)
    assert read_provenance(tmp_path / "plain.webp", "image").file_history == FileHistory("WebP")
    pf.picture().save(tmp_path / "plain.avif", quality=50)
    assert read_provenance(tmp_path / "plain.avif", "image").file_history == FileHistory("AVIF")
    pf.picture().save(tmp_path / "plain.bmp")
    assert read_provenance(tmp_path / "plain.bmp", "image").file_history == FileHistory("BMP")
    assert read_provenance(media.video, "video").file_history is None


@pytest.mark.parametrize("damage", ["table cut short", "sixteen-bit table", "no frame header", "frame header cut"])
def test_damaged_compression_headers_are_read_no_further_than_they_hold(
    media: Media, tmp_path: Path, damage: str
) -> None:
    data = media.image.read_bytes()
    segments = pf.jpeg_segments(data)
    luminance_at, colour_at = (offset for marker, offset, _ in segments if marker == 0xDB)
    frame_at, frame_length = next((offset, length) for marker, offset, length in segments if marker == 0xC0)
    if damage == "table cut short":  # the colour table's segment ends 30 steps in
        data = data[: colour_at + 2] + (2 + 1 + 30).to_bytes(2, "big") + data[colour_at + 4 :]
    elif damage == "sixteen-bit table":  # the same luminance steps, two bytes each
        steps = data[luminance_at + 5 : luminance_at + 5 + 64]
        wide = b"\x10" + b"".join(step.to_bytes(2, "big") for step in steps)
        data = data[:luminance_at] + b"\xff\xdb" + (2 + len(wide)).to_bytes(2, "big") + wide + data[colour_at:]
    elif damage == "no frame header":
        data = data[:frame_at] + data[frame_at + 2 + frame_length :]
    else:  # the frame header counts nine components and holds three
        data = data[: frame_at + 9] + b"\x09" + data[frame_at + 10 :]
    path = tmp_path / "damaged.jpg"
    path.write_bytes(data)
    provenance = read_provenance(path, "image")
    history = provenance.file_history
    assert (history.format, history.jpeg_quality, history.standard_tables) == ("JPEG", 90, True), damage
    # With the walk stopped at the cut table, no frame header was read: nothing is guessed.
    expected = None if damage in ("table cut short", "no frame header") else "4:2:0"
    assert history.chroma_subsampling == expected and provenance.problems == []


# ------------------------------------------------------------------ the engine, CLI and history


def test_the_engine_shows_provenance_beside_the_models_verdict(
    engine: Engine, signed: dict[str, Path], media: Media
) -> None:
    plain = engine.analyze(media.image).result
    result = engine.analyze(signed["ai"]).result
    # Signing added a segment and left the picture as it was: the models see the same face, and
    # their verdict stays theirs; the provenance stands beside it in the reason.
    assert (result.verdict, result.fake_probability, result.model_scores) == (
        plain.verdict,
        plain.fake_probability,
        plain.model_scores,
    )
    assert result.reason == f"{plain.reason}; provenance says AI-generated: {result.provenance.ai_claims[0]}"
    assert plain.provenance.summary == NO_PROVENANCE and plain.reason.count("provenance") == 0
    assert tuple(k for k in result.timing if k != "total") == STAGES and "provenance" in STAGES
    assert result.timing["total"] == pytest.approx(sum(v for k, v in result.timing.items() if k != "total"), abs=1e-9)


def test_cli_json_has_the_provenance_object(signed: dict[str, Path], media: Media, tmp_path: Path) -> None:
    junk = pf.damage_manifest(signed["ai"], tmp_path / "junk manifest.jpg")
    out = tmp_path / "out.json"
    run = run_cli(
        "analyze",
        str(signed["ai"]),
        str(junk),
        str(media.image),
        str(media.other_image),
        "--json",
        str(out),
    )
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr
    ai, damaged, plain, dfdc_crop = json.loads(out.read_text())
    # The DFDC crop was saved at quality 75: its caveat is in its reason and on the console.
    caveat = dfdc_crop["provenance"]["file_history"]["caveat"]
    assert dfdc_crop["reason"].endswith(f"; {caveat}") and f"  note: {caveat}" in run.stderr.splitlines()
    # Any other note is the engine's own caveat of a 128 px picture's small, soft or turned face.
    notes = [line for line in run.stderr.splitlines() if line.startswith("  note: ")]
    face_caveats = (" px across as the models", "is softer than 95%", "is turned away from the camera")
    faces = [note for note in notes if any(words in note for words in face_caveats)]
    assert plain["provenance"]["file_history"]["caveat"] is None and len(notes) == 1 + len(faces)
    assert ai["provenance"]["ai_generated"] and ai["provenance"]["credentials"]["signature"] == "valid"
    assert ai["provenance"]["credentials"]["signer_trusted"] is False
    assert "; provenance says AI-generated: Content Credentials (valid signature" in ai["reason"]
    assert damaged["verdict"] == plain["verdict"] and len(damaged["provenance"]["problems"]) == 1
    assert plain["provenance"]["summary"] == NO_PROVENANCE and plain["provenance"]["found"] is False
    assert set(ai["timing"]) == {*STAGES, "total"}


def test_a_photo_more_compressed_than_the_training_photos_says_so(
    service: AnalysisService, media: Media, tmp_path: Path
) -> None:
    path = tmp_path / "passed around.jpg"
    Image.open(media.image).save(path, quality=60)
    store = Store(tmp_path / "history")
    outcome = service.analyze(path, AnalysisRequest(1, service.ensemble.spec.aggregation), store)
    caveat = outcome.record.result.provenance.file_history.caveat
    assert caveat.startswith("the file was last saved as JPEG at quality 60, more compressed than the photos")
    # It points at the model card's measurement, which must be there to read.
    section_title = caveat.split("model card: '")[1].rstrip("')")
    assert f"\n## {section_title}\n" in (REPO_ROOT / "models" / "MODEL_CARD.md").read_text()
    # The models' verdict stays theirs; the caveat stands beside its reason.
    assert outcome.record.result.reason.endswith(f"; {caveat}") and outcome.record.result.fake_probability is not None
    reloaded = Store(tmp_path / "history").get(outcome.record.id)
    assert reloaded.result == outcome.record.result
    section = provenance_section(reloaded.result.provenance)
    assert dict(section.history) == {
        "format": "JPEG",
        "JPEG quality": "60 of 100 (libjpeg's own tables)",
        "colour stored": "4:2:0",
        "scans": "baseline",
    }
    assert section.caveat == f"{caveat[0].upper()}{caveat[1:]}."
    assert section.caveat in unescape(html_report(reloaded, store))
    row = next(csv.DictReader(io.StringIO(history_csv([reloaded]))))
    assert row["last_saved"] == "JPEG at quality 60"


def test_provenance_is_stored_and_reloaded(service: AnalysisService, signed: dict[str, Path], tmp_path: Path) -> None:
    store = Store(tmp_path)
    outcome = service.analyze(signed["ai"], AnalysisRequest(1, service.ensemble.spec.aggregation), store)
    reloaded = Store(tmp_path).get(outcome.record.id).result
    assert reloaded.provenance == outcome.record.result.provenance
    assert reloaded.provenance.ai_generated and reloaded.provenance.credentials.signer == SIGNER


def test_results_stored_before_provenance_still_open(analysed_image: Analysed) -> None:
    data = analysed_image.result.to_json()
    assert data["provenance"]["summary"] == NO_PROVENANCE
    del data["provenance"]["file_history"]  # stored before the file's history was read
    assert AnalysisResult.from_json(data).provenance.file_history is None
    del data["provenance"]
    old = AnalysisResult.from_json(data)
    assert old.provenance is None and old == replace(analysed_image.result, provenance=None)


def test_an_image_a_camera_wrote_is_analysed_with_its_metadata(engine: Engine, tmp_path: Path, media: Media) -> None:
    path = tmp_path / "camera.jpg"
    Image.open(media.image).save(path, exif=pf.camera_exif(), quality=95)
    result = engine.analyze(path).result
    assert result.provenance.metadata.camera == "Canon EOS R5" and not result.provenance.ai_generated
    assert "provenance" not in result.reason


def test_a_signed_avif_photo_is_analysed_like_the_photo_it_was_saved_from(
    engine: Engine, signed: dict[str, Path], media: Media
) -> None:
    """The engine finds the same face in the AVIF copy and scores it; the verdict's reason quotes
    its credentials."""
    photo, avif = engine.analyze(media.image).result, engine.analyze(signed["avif"]).result
    assert (avif.kind, avif.width, avif.height) == (photo.kind, photo.width, photo.height)
    (face,), (photo_face,) = avif.frames[0].faces, photo.frames[0].faces
    assert max(abs(a - b) for a, b in zip(face.box, photo_face.box)) <= 4
    assert face.fake_probability is not None and avif.verdict != "no_face"
    assert avif.provenance.ai_generated and "provenance says AI-generated: Content Credentials" in avif.reason


def test_a_failing_credential_is_shown_as_such(signed: dict[str, Path]) -> None:
    section = provenance_section(read_provenance(signed["altered_ai"], "image"))
    rows = dict(section.credentials)
    assert rows["signature"] == "INVALID: fails validation (see failed checks)"
    assert rows["failed checks"].startswith("assertion.dataHash.mismatch")
    assert rows["actions"].startswith("c2pa.created: trainedAlgorithmicMedia")  # what it claimed, shown
    assert section.failing and not section.ai_generated and section.ai_claims == ()
