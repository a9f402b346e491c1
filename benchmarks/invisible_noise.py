"""How far a change no one can see moves the verdicts on real photos (rules 29 and 33).

Rule 28 found that Display P3 and Adobe RGB copies of the validation photos, converted back to
sRGB exactly (within one level, on about one pixel in ten), are scored as if re-shared. This takes
the real photos among the same validation pictures (`resaved_photos`' `qasis`), and analyses each
with the shipped engine, as it is (its decoded pixels saved as PNG: the same pixels), with one
level added or taken at random from 10% of its values (the size of the P3 round trip's rounding),
with one level added to every value (a change of brightness, no texture), and re-saved once as
JPEG at quality 75 (a change one can hardly see, rule 33); and the fakes among the same pictures
as they are, whose pooled ROC AUC against the reals as they are says whether ranking holds:

    .venv/bin/python -m benchmarks.invisible_noise OUT/qasis
    .venv/bin/python -m benchmarks.invisible_noise OUT/qasis --round-trip

With `--round-trip` (rule 33) each changed picture is handed to the engine saved as JPEG at
quality 90 (Pillow's, 4:2:0), as the training photos were saved, instead of as PNG: does giving
every picture the training photos' last save undo what the change did?

No test split is read; the noise is seeded by the file's name.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.metrics import roc_auc_score

CHANGES = ("as it is", "one level at random on 10%", "one level brighter", "re-saved as JPEG 75")


def _changed(rgb: np.ndarray, change: str, seed: int) -> np.ndarray:
    if change == CHANGES[0]:
        return rgb
    if change == CHANGES[1]:
        steps = np.random.default_rng(seed).choice([-1, 0, 1], size=rgb.shape, p=[0.05, 0.9, 0.05])
        return np.clip(rgb.astype(np.int16) + steps, 0, 255).astype(np.uint8)
    if change == CHANGES[2]:
        return np.clip(rgb.astype(np.int16) + 1, 0, 255).astype(np.uint8)
    saved = io.BytesIO()
    Image.fromarray(rgb).save(saved, "JPEG", quality=75)
    with Image.open(saved) as picture:
        return np.asarray(picture.convert("RGB"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pictures", type=Path, help="resaved_photos' qasis folder")
    parser.add_argument("--round-trip", action="store_true", help="hand each picture over as JPEG 90, not PNG")
    args = parser.parse_args()
    from pipeline.engine.analyze import Engine

    engine = Engine()
    photos = sorted(args.pictures.glob("*/real/*"))
    scores: dict[str, list[tuple[float, float]]] = {change: [] for change in CHANGES}
    verdicts: dict[str, Counter] = {change: Counter() for change in CHANGES}
    fakes: list[tuple[float, float]] = []  # the fakes as they are, to see that ranking holds
    with tempfile.TemporaryDirectory() as scratch:
        for photo in [*photos, *sorted(args.pictures.glob("*/fake/*"))]:
            with Image.open(photo) as picture:
                rgb = np.asarray(picture.convert("RGB"))
            seed = int.from_bytes(hashlib.sha256(photo.name.encode()).digest()[:8], "big")
            for change in CHANGES if photo in photos else CHANGES[:1]:
                changed = Image.fromarray(_changed(rgb, change, seed))
                path = Path(scratch) / f"{photo.stem}.{'jpg' if args.round_trip else 'png'}"
                changed.save(path, **({"quality": 90} if args.round_trip else {}))
                result = engine.analyze(path).result
                if result.fake_probability is None:
                    continue
                pair = (result.fake_probability, result.model_scores["clip"])
                if photo not in photos:
                    fakes.append(pair)
                    continue
                verdicts[change][result.verdict] += 1
                scores[change].append(pair)
    print(f"{len(photos)} real validation photos{', each saved as JPEG 90' if args.round_trip else ''}")
    for change in CHANGES:
        ensemble, clip = np.median(np.array(scores[change]), axis=0)
        shares = " / ".join(f"{100 * verdicts[change][v] / len(photos):.1f}" for v in ("fake", "uncertain", "real"))
        print(
            f"{change}: told fake / uncertain / real {shares}%; median fake probability {ensemble:.2f}, CLIP {clip:.2f}"
        )
    pooled = np.array([*scores[CHANGES[0]], *fakes])
    labels = [0] * len(scores[CHANGES[0]]) + [1] * len(fakes)
    print(
        f"as they are, against {len(fakes)} fakes: ROC AUC {roc_auc_score(labels, pooled[:, 0]):.3f}, "
        f"CLIP {roc_auc_score(labels, pooled[:, 1]):.3f}"
    )


if __name__ == "__main__":
    main()
