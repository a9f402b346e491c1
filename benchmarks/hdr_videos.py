"""The shared videos as a phone records HDR (HLG), scored through the whole product (rule 30).

Phones record HDR video (HLG, 10 bits, BT.2020) by default. This writes each of the 28 shared
DFDC clips twice with x265 at 10 bits and the same settings: as standard video (BT.709, `sdr10`:
the control, for what the coding alone does) and as HLG (`hlg`: each frame's colours as an HLG
camera records them, `tests/media_factory.hdr_signal`, ITU-R BT.2100 and BT.2408's levels), and
summarises the scans of the originals, of `sdr10`, and of `hlg` read with and without the HDR
mapping (the engine before 2eaeadf reads HLG as if it were standard video):

    .venv/bin/python -m benchmarks.hdr_videos make OUT
    .venv/bin/python -m pipeline scan ../shared/data/videos --json OUT/scan-original.json
    for v in sdr10 hlg; do .venv/bin/python -m pipeline scan OUT/$v --json OUT/scan-$v.json; done
    (an engine before 2eaeadf) python -m pipeline scan OUT/hlg --json OUT/scan-hlg-unmapped.json
    .venv/bin/python -m benchmarks.hdr_videos summarise OUT

Each scan needs a history of its own (DEEPFAKE_DATA_HOME), or the same files are skipped.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np

from pipeline.config import shared_data_dir
from tests.media_factory import hdr_signal

CODING = {"crf": "18", "preset": "ultrafast"}
"""x265's settings for both copies: a high quality, as phones record at high bit rates."""
VARIANTS = {"sdr10": (1, 1, 1), "hlg": (9, 18, 9)}
"""Folder -> H.273 (primaries, transfer, matrix) written."""
SCANS = ("original", "sdr10", "hlg-unmapped", "hlg")
VERDICTS = ("fake", "uncertain", "real", "no_face")


def make(out: Path) -> None:
    """OUT/VARIANT/LABEL/NAME.mp4 for every shared video."""
    import av
    from av.video.reformatter import Colorspace

    for source in sorted((shared_data_dir() / "videos").glob("*/*.mp4")):
        for variant, (primaries, transfer, matrix) in VARIANTS.items():
            target = out / variant / source.parent.name / source.name
            target.parent.mkdir(parents=True, exist_ok=True)
            with av.open(str(source)) as reading, av.open(str(target), "w") as writing:
                decoded = reading.streams.video[0]
                stream = writing.add_stream("libx265", rate=decoded.average_rate)
                stream.width, stream.height, stream.pix_fmt = decoded.width, decoded.height, "yuv420p10le"
                names = (
                    "colorprim=bt2020:transfer=arib-std-b67:colormatrix=bt2020nc"
                    if transfer == 18
                    else ("colorprim=bt709:transfer=bt709:colormatrix=bt709")
                )
                stream.options = {**CODING, "x265-params": f"log-level=error:{names}"}
                context = stream.codec_context
                context.color_primaries, context.color_trc, context.colorspace, context.color_range = (
                    primaries,
                    transfer,
                    matrix,
                    1,
                )
                space = Colorspace.BT2020 if matrix == 9 else Colorspace.ITU709
                for index, frame in enumerate(reading.decode(decoded)):
                    rgb = frame.to_ndarray(format="rgb24")
                    if transfer == 18:
                        signal = np.round(hdr_signal(rgb, 18) * 65535).astype(np.uint16)
                        picture = av.VideoFrame.from_ndarray(signal, format="rgb48le")
                    else:
                        picture = av.VideoFrame.from_ndarray(rgb, format="rgb24")
                    coded = picture.reformat(format="yuv420p10le", dst_colorspace=space)
                    coded.color_primaries, coded.color_trc, coded.colorspace, coded.color_range = (
                        primaries,
                        transfer,
                        matrix,
                        1,
                    )
                    coded.pts = index
                    writing.mux(stream.encode(coded))
                writing.mux(stream.encode())
        print(source.name, flush=True)


def summarise(out: Path) -> None:
    """Per scan: verdict shares of the real and the fake clips, their median fake probability, and
    how far each clip's probability moved from the original's."""
    scans = {}
    for name in SCANS:
        path = out / f"scan-{name}.json"
        if not path.exists():
            print(f"{name}: not scanned ({path} does not exist)")
            continue
        scans[name] = {
            Path(r["path"]).parent.name + "/" + Path(r["path"]).name: r for r in json.loads(path.read_text())
        }
    original = scans.get("original", {})
    for name, results in scans.items():
        line = [name]
        for label in ("real", "fake"):
            chosen = [r for key, r in results.items() if key.startswith(f"{label}/")]
            counts = Counter(r["verdict"] for r in chosen)
            shares = " / ".join(str(counts[v]) for v in VERDICTS)
            scored = [r["fake_probability"] for r in chosen if r["fake_probability"] is not None]
            median = f"{np.median(scored):.2f}" if scored else "-"
            line.append(f"{label} n={len(chosen)} told {shares} (fake/uncertain/real/no face), median {median}")
        moved = [
            abs(r["fake_probability"] - original[key]["fake_probability"])
            for key, r in results.items()
            if key in original and r["fake_probability"] is not None and original[key]["fake_probability"] is not None
        ]
        changed = sum(1 for key, r in results.items() if key in original and r["verdict"] != original[key]["verdict"])
        if moved and name != "original":
            line.append(
                f"moved from the original: median {np.median(moved):.3f}, most {max(moved):.3f}; verdict changed {changed}"
            )
        print(" | ".join(line))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=["make", "summarise"])
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    make(args.out) if args.step == "make" else summarise(args.out)


if __name__ == "__main__":
    main()
