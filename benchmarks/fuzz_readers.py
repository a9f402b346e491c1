"""Files of every kind the app reads, mutated at random, read as the engine reads an upload.

Every error a user can cause must reach them as one line (a `PipelineError`): never a library's
own exception (a traceback), a crash or a hang. This makes small seed files of each image and video
format and container the app takes (and signed and metadata-carrying ones, for provenance),
mutates each many times (bytes overwritten, fields set to extreme values, regions cut, copied or
removed; mostly in the first kilobyte, where the headers are), and reads each mutant in a child
process as `analyze` does: `read_frames`, every sampled frame, then `read_provenance`. A mutant
that raises anything but a `PipelineError`, whose provenance says "unexpected error", that kills
the child or that takes over 30 s, is kept in OUT/found and printed:

    .venv/bin/python -m benchmarks.fuzz_readers OUT --mutants 600 --seed 1
    .venv/bin/python -m benchmarks.fuzz_readers OUT --mutants 100 --seed 1 --engine

With `--engine` each mutant is analysed by the whole engine instead (frames, faces, every model,
the verdict, provenance), after the models load. Exit status 1 when anything was found. The same
seed makes the same mutants.
"""

from __future__ import annotations

import argparse
import random
import select
import struct
import subprocess
import sys
import traceback
from collections import Counter
from fractions import Fraction
from pathlib import Path

import numpy as np

SECONDS_PER_FILE = 30
HEADER_BYTES = 1024
EXTREME_VALUES = (
    b"\xff\xff\xff\xff",
    b"\x00\x00\x00\x00",
    b"\x7f\xff\xff\xff",
    b"\x80\x00\x00\x00",
    b"\x00\x00\x01\x00",
)
VIDEOS = (
    ("mp4", "mp4", "libx264"),
    ("mov", "mov", "mpeg4"),
    ("mkv", "matroska", "libx264"),
    ("webm", "webm", "libvpx-vp9"),
    ("avi", "avi", "mpeg4"),
    ("ts", "mpegts", "mpeg2video"),
    ("mpg", "mpeg", "mpeg1video"),
    ("flv", "flv", "flv"),
    ("wmv", "asf", "wmv2"),
    ("3gp", "3gp", "mpeg4"),
)


def make_seeds(folder: Path) -> list[Path]:
    """Small files of every format the app reads, some carrying metadata and Content Credentials."""
    from PIL import Image

    from pipeline.config import shared_data_dir
    from pipeline.engine import colour
    from tests import heif_factory, media_factory, provenance_factory

    folder.mkdir(parents=True, exist_ok=True)
    photo = next(iter(sorted((shared_data_dir() / "swap-faces" / "real").glob("*.jpg"))))
    face = Image.open(photo).convert("RGB").resize((96, 96))
    exif = Image.Exif()
    exif[0x0112], exif[0x010F] = 6, "Camera"  # Orientation, Make
    face.save(folder / "photo.jpg", quality=90, exif=exif.tobytes())
    face.save(folder / "progressive.jpg", quality=80, progressive=True)
    face.save(folder / "photo.png")
    face.save(folder / "lossy.webp", quality=80, xmp=provenance_factory.xmp(provenance_factory.AI_GENERATED))
    face.save(folder / "lossless.webp", lossless=True)
    face.save(folder / "photo.avif", exif=exif.tobytes())
    face.save(folder / "photo.gif")
    face.save(folder / "photo.bmp")
    face.save(folder / "photo.tif")
    face.save(folder / "pages.tif", save_all=True, append_images=[face.rotate(90)], compression="tiff_lzw")
    pixels = np.asarray(face)
    # Wide-gamut colour profiles, which LittleCMS parses: a phone's JPEG and HEIC, a camera's WebP.
    display_p3 = colour.rgb_profile("Display P3", colour.DISPLAY_P3)
    face.save(folder / "display_p3.jpg", quality=90, icc_profile=display_p3)
    face.save(folder / "adobe_rgb.webp", quality=80, icc_profile=colour.rgb_profile("Adobe RGB", colour.ADOBE_RGB, 2.2))
    # A press's CMYK profile (a table LittleCMS interpolates) and a gray one, as editors save them.
    face.convert("CMYK").save(folder / "press.jpg", quality=90, icc_profile=media_factory.cmyk_profile())
    face.convert("L").save(folder / "gray.png", icc_profile=media_factory.gray_profile(1.8, "Gray Gamma 1.8"))
    heif_factory.write_heic(folder / "display_p3.heic", pixels, colours=b"prof" + display_p3)
    heif_factory.write_heic(folder / "photo.heic", pixels)
    # A camera's HDR HEIF (HLG, 10 bits) and an HDR AVIF: decoded deep and mapped to sRGB.
    hlg = media_factory.hdr_signal(pixels, 18)
    nclx_hlg = b"nclx" + struct.pack(">HHHB", 9, 18, 9, 0)
    heif_factory.write_heic(folder / "hdr.hif", np.round(hlg * 65535).astype(np.uint16), bits=10, colours=nclx_hlg)
    media_factory.write_hdr_avif(folder / "hdr.avif", hlg, 18)
    heif_factory.write_heic(
        folder / "grid.heic", pixels, tile=64, quarter_turns=1, exif=exif.tobytes(), xmp=provenance_factory.xmp()
    )
    frames = [face.rotate(10 * index) for index in range(5)]
    for suffix in ("gif", "webp", "png", "avif"):
        frames[0].save(
            folder / f"animated.{suffix}", save_all=True, append_images=frames[1:], duration=[40, 0, 100, 60, 80]
        )
    for suffix, container, codec in VIDEOS:
        media_factory.write_video_with_ffmpeg(folder / f"clip.{suffix}", 30, container, codec)
    # A phone's HDR video (HLG, 10 bits): its frames go through the HDR mapping.
    media_factory.write_10bit_hevc(folder / "hdr.mov", media_factory.hdr_signal(pixels, 18), 18, frames=5)
    # Standard video in BT.2020 primaries: its frames are converted to sRGB's.
    media_factory.write_10bit_hevc(folder / "wide.mp4", pixels / 255, 1, frames=5)
    # Interlaced broadcast video (MPEG-2 in MPEG-TS) and a camcorder's non-square pixels.
    media_factory.write_interlaced(folder / "broadcast.ts", [np.roll(pixels, 4 * index, axis=1) for index in range(5)])
    media_factory.write_with_pixel_aspect(folder / "hdv.mts", pixels, Fraction(4, 3), "mpegts", "libx264")
    # A real upload's structure: a DFDC face clip as its makers wrote it (H.264 with B-frames, AAC).
    (folder / "face_clip.mp4").write_bytes((shared_data_dir() / "videos" / "fake" / "0_aaqaifqrwn.mp4").read_bytes())
    provenance_factory.save_png_with_text(
        folder / "generated.png", {"parameters": provenance_factory.SD_PARAMETERS}, face
    )
    # The web UI's generation text in a JPEG's EXIF UserComment (UCS-2 after its 8-byte code).
    comment = b"UNICODE\x00" + provenance_factory.SD_PARAMETERS.encode("utf-16-be")
    face.save(folder / "generated.jpg", quality=90, exif=provenance_factory.comment_exif(comment))
    certificates = provenance_factory.make_certificates()
    for source in ("photo.jpg", "photo.png", "photo.gif", "photo.avif", "grid.heic", "clip.mp4"):
        signed = folder / f"signed_{source}"
        definition = provenance_factory.manifest(signed.name, provenance_factory.AI_GENERATED)
        provenance_factory.sign(folder / source, signed, certificates, definition)
    return sorted(folder.iterdir())


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One to four random edits of `data`, most of them in its first kilobyte."""
    mutant = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        size = len(mutant)
        if size < 8:
            break
        at = rng.randrange(min(size, HEADER_BYTES)) if rng.random() < 0.6 else rng.randrange(size)
        edit = rng.random()
        if edit < 0.35:  # a few bytes overwritten near `at`
            for _ in range(rng.randint(1, 8)):
                mutant[rng.randrange(min(size, at + 64))] = rng.randrange(256)
        elif edit < 0.55:  # a field set to an extreme value
            value = rng.choice(EXTREME_VALUES)
            mutant[at : at + len(value)] = value
        elif edit < 0.7:  # cut short
            del mutant[rng.randrange(size // 4, size) :]
        elif edit < 0.85:  # a region copied in
            start = rng.randrange(size)
            mutant[at:at] = mutant[start : start + rng.randint(1, 4096)]
        else:  # a region removed
            start = rng.randrange(size)
            del mutant[start : start + rng.randint(1, 256)]
    return bytes(mutant)


def read_like_analyze(whole_engine: bool) -> None:
    """The child: for each path on stdin, one line saying how reading it ended (after a line
    saying it is ready)."""
    from pipeline.engine.media import read_frames
    from pipeline.engine.provenance import read_provenance
    from pipeline.errors import PipelineError

    engine = None
    if whole_engine:
        from pipeline.engine.analyze import Engine

        engine = Engine()
        engine.load()
    print("ready", flush=True)
    for line in sys.stdin:
        path = Path(line.rstrip("\n"))
        try:
            if engine is not None:
                outcome = f"read {engine.analyze(path, frames=8).result.verdict}"
            else:
                info, frames = read_frames(path, frames=8)
                outcome = f"read {info.kind} {sum(1 for _ in frames)}"
                problems = read_provenance(path, info.kind).problems
                if any("unexpected error" in problem for problem in problems):
                    outcome = f"found: provenance {problems}"
        except PipelineError as error:
            outcome = f"refused {type(error).__name__}"
        except Exception as error:  # what this looks for
            where = [
                f"{Path(frame.filename).name}:{frame.lineno}" for frame in traceback.extract_tb(error.__traceback__)
            ]
            outcome = f"found: {type(error).__name__}: {str(error)[:150]} at {where[-3:]}"
        print(outcome, flush=True)


def _start_child(whole_engine: bool) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.fuzz_readers", "--child", *(["--engine"] if whole_engine else [])],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,  # Pillow's warnings about large pictures; outcomes come on stdout
        text=True,
    )
    assert child.stdout is not None
    ready = child.stdout.readline().strip()  # the models take seconds to load
    if ready != "ready":
        raise SystemExit(f"the reading process did not start (exit status {child.wait()})")
    return child


def sweep(out: Path, mutants: int, seed: int, whole_engine: bool) -> int:
    """Mutate every seed `mutants` times and read each mutant (with `whole_engine`, analyse it);
    the number of findings."""
    rng = random.Random(seed)
    seeds = make_seeds(out / "seeds")
    scratch, found = out / "mutants", out / "found"
    scratch.mkdir(parents=True, exist_ok=True)
    found.mkdir(exist_ok=True)
    outcomes: Counter[str] = Counter()
    child = _start_child(whole_engine)
    findings = 0
    for source in seeds:
        data = source.read_bytes()
        for index in range(mutants):
            mutant = scratch / f"{source.stem}_{index}{source.suffix}"
            mutant.write_bytes(mutate(data, rng))
            assert child.stdin is not None and child.stdout is not None
            child.stdin.write(f"{mutant}\n")
            child.stdin.flush()
            ready, _, _ = select.select([child.stdout], [], [], SECONDS_PER_FILE)
            outcome = child.stdout.readline().strip() if ready else "found: a hang"
            if not outcome:
                outcome = f"found: a crash (exit status {child.wait()})"
            if outcome == "found: a hang" or outcome.startswith("found: a crash"):
                child.kill()
                child.wait()
                child = _start_child(whole_engine)
            outcomes[outcome.split(" ")[0]] += 1
            if outcome.startswith("found"):
                findings += 1
                kept = found / f"{seed}_{mutant.name}"
                kept.write_bytes(mutant.read_bytes())
                print(f"{kept}: {outcome}", flush=True)
            mutant.unlink()
    child.kill()
    print(f"{len(seeds)} seeds, {mutants} mutants each: {dict(outcomes)}")
    return findings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, nargs="?", help="a scratch folder for seeds, mutants and findings")
    parser.add_argument("--mutants", type=int, default=600, help="mutants of each seed file")
    parser.add_argument("--seed", type=int, default=1, help="the random seed")
    parser.add_argument(
        "--engine", action="store_true", help="analyse each mutant with the whole engine (faces, models, verdict)"
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        read_like_analyze(args.engine)
        return 0
    if args.out is None:
        parser.error("the scratch folder OUT is required")
    return 1 if sweep(args.out, args.mutants, args.seed, args.engine) else 0


if __name__ == "__main__":
    sys.exit(main())
