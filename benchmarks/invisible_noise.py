"""How far a change no one can see moves the verdicts on real photos (rule 29).

Rule 28 found that Display P3 and Adobe RGB copies of the validation photos, converted back to
sRGB exactly (within one level, on about one pixel in ten), are scored as if re-shared. This takes
the real photos among the same validation pictures (`resaved_photos`' `qasis`), and analyses each
with the shipped engine, as it is (its decoded pixels saved as PNG: the same pixels), with one
level added or taken at random from 10% of its values (the size of the P3 round trip's rounding),
and with one level added to every value (a change of brightness, no texture):

    .venv/bin/python -m benchmarks.invisible_noise OUT/qasis

No test split is read; the noise is seeded by the file's name.
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

CHANGES = ("as it is", "one level at random on 10%", "one level brighter")


def _changed(rgb: np.ndarray, change: str, seed: int) -> np.ndarray:
    if change == CHANGES[0]:
        return rgb
    if change == CHANGES[1]:
        steps = np.random.default_rng(seed).choice([-1, 0, 1], size=rgb.shape, p=[0.05, 0.9, 0.05])
        return np.clip(rgb.astype(np.int16) + steps, 0, 255).astype(np.uint8)
    return np.clip(rgb.astype(np.int16) + 1, 0, 255).astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pictures", type=Path, help="resaved_photos' qasis folder")
    args = parser.parse_args()
    from pipeline.engine.analyze import Engine

    engine = Engine()
    photos = sorted(args.pictures.glob("*/real/*"))
    scores: dict[str, list[tuple[float, float]]] = {change: [] for change in CHANGES}
    verdicts: dict[str, Counter] = {change: Counter() for change in CHANGES}
    with tempfile.TemporaryDirectory() as scratch:
        for photo in photos:
            with Image.open(photo) as picture:
                rgb = np.asarray(picture.convert("RGB"))
            seed = int.from_bytes(hashlib.sha256(photo.name.encode()).digest()[:8], "big")
            for change in CHANGES:
                path = Path(scratch) / f"{photo.stem}.png"
                Image.fromarray(_changed(rgb, change, seed)).save(path)
                result = engine.analyze(path).result
                verdicts[change][result.verdict] += 1
                if result.fake_probability is not None:
                    scores[change].append((result.fake_probability, result.model_scores["clip"]))
    print(f"{len(photos)} real validation photos")
    for change in CHANGES:
        ensemble, clip = np.median(np.array(scores[change]), axis=0)
        shares = " / ".join(f"{100 * verdicts[change][v] / len(photos):.1f}" for v in ("fake", "uncertain", "real"))
        print(
            f"{change}: told fake / uncertain / real {shares}%; median fake probability {ensemble:.2f}, CLIP {clip:.2f}"
        )


if __name__ == "__main__":
    main()
