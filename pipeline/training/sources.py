"""The labelled sources the recipe trains on and the cross-source table holds out, by name.

A source is a `real/` + `fake/` folder: by default the crops `prepare` made of the shared data
set of that name (`cache_dir()/prepared/NAME`, framed exactly as the engine frames faces), or any
folder given by its path. `sd-faces` has no real side (Stable Diffusion portraits only), so it is
paired with real photos of the same size and kind: half of the `swap-faces` real photos (FFHQ,
256 px), chosen by a hash of their group, while `swap-faces` keeps the other half. Each source
is then self-contained, and holding one out of training holds out its reals too.

`reshared_samples` gives re-shared copies of crops (downscaled and JPEG-compressed, seeded by each
crop's name), so the cross-source table also says how a recipe does on pictures that were passed
around before they were uploaded; `augmented_samples` gives copies degraded as the CNNs' training
degrades its crops, and `self_blended_samples` pseudo-fakes made from the real crops, both of which
the CLIP probe can train on.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from pipeline.config import FaceSettings, cache_dir
from pipeline.training.augment import (
    AugmentSettings,
    ReshareSettings,
    augment,
    random_part,
    reshare,
    self_blend,
    template_landmarks,
)
from pipeline.training.data import Sample, load_samples, read_rgb, write_rgb

SOURCES = ("dfdc-faces", "gan-faces", "swap-faces", "sd-faces")
"""The shared sources, in the order the cross-source table lists them."""
PAIRED_REALS = {"sd-faces": "swap-faces"}
"""A fake-only source -> the source whose real photos it shares (half each)."""


CROP_SIDE = FaceSettings.crop_size
"""Side of the prepared crops, in whose pixels their landmarks are stored."""


def prepared_root() -> Path:
    """Where `prepare` puts the crops of the shared sources."""
    return cache_dir() / "prepared"


def _half(group: str) -> int:
    return int(hashlib.sha256(group.encode()).hexdigest()[:8], 16) % 2


def source_samples(source: str | Path, split: str | None = None, root: Path | None = None) -> list[Sample]:
    """The samples of a source (a name under `root`, default `prepared_root()`, or a folder
    path), optionally of one split, with the reals of fake-only sources paired in."""
    path = Path(source)
    if path.is_dir():
        return load_samples(path, split)
    root = root or prepared_root()
    name = str(source)
    samples = load_samples(root / name, split)
    lender = PAIRED_REALS.get(name)
    if lender is not None:
        reals = [s for s in load_samples(root / lender, split) if s.label == 0 and _half(s.group) == 1]
        samples += [replace(s, source=name) for s in reals]
    if name in PAIRED_REALS.values():
        samples = [s for s in samples if s.label == 1 or _half(s.group) == 0]
    return samples


def face_landmarks(sample: Sample, size: int) -> np.ndarray:
    """Points of a crop's face in pixels of a `size` crop: its own 468-point face mesh when
    `prepare` found one, else the five-point template of its source, jittered."""
    if sample.landmarks is not None and sample.landmarks.exists():
        return np.load(sample.landmarks).astype(np.float64) * (size / CROP_SIDE)
    template = template_landmarks(sample.source, size)
    # Seeded by the name's digest, not hash(): Python salts str hashes per process.
    seed = int(hashlib.sha256(sample.path.name.encode()).hexdigest()[:16], 16)
    return template + np.random.default_rng(seed).normal(0, 0.02 * size, template.shape)


def blend_landmarks(sample: Sample, size: int, rng: np.random.Generator) -> np.ndarray:
    """The points a self-blend mask is drawn from: the crop's `face_landmarks`, each moved by
    a draw of 2% of the crop, so no two pseudo-fakes share a boundary exactly."""
    landmarks = face_landmarks(sample, size)
    return landmarks + rng.normal(0, 0.02 * size, landmarks.shape)


def ensure_prepared(sources: Sequence[str]) -> None:
    """Prepare (resumably) the shared sources among `sources` that are not prepared yet, from
    the shared data folder; folder paths are used as they are."""
    from pipeline.config import shared_data_dir
    from pipeline.training.prepare import prepare

    needed = [*sources, *(PAIRED_REALS[s] for s in sources if s in PAIRED_REALS)]
    for source in dict.fromkeys(needed):
        if Path(source).is_dir() or (prepared_root() / source / "metadata.csv").exists():
            continue
        prepare(shared_data_dir() / source, prepared_root() / source)


def _settings_digest(settings: ReshareSettings | AugmentSettings) -> str:
    """A short name for a settings value: copies made with other settings go to another folder.
    Fields the settings class lists as `ADDED_LATER` count only when set, so the copies made
    before they existed keep their folder."""
    values = asdict(settings)
    defaults = asdict(type(settings)())
    for name in getattr(type(settings), "ADDED_LATER", ()):
        if values[name] == defaults[name]:
            del values[name]
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:8]


def reshared_root(settings: ReshareSettings = ReshareSettings()) -> Path:
    """Where re-shared copies made with `settings` are kept (one folder per settings)."""
    return cache_dir() / "reshared" / _settings_digest(settings)


def reshared_samples(samples: Sequence[Sample], settings: ReshareSettings = ReshareSettings()) -> list[Sample]:
    """The samples with their crops re-shared (see `ReshareSettings`): copies under
    `reshared_root()`, made once (each drawn from a seed of the crop's folder name and file name,
    so a copy is the same on every run and machine), same order, labels and groups."""
    return _degraded_copies(
        samples, reshared_root(settings), "", lambda sample, image, rng: reshare(image, rng, settings)
    )


def augmented_samples(
    samples: Sequence[Sample], view: int, settings: AugmentSettings = AugmentSettings()
) -> list[Sample]:
    """The samples with their crops degraded as the CNN members' training degrades them
    (`augment` with `settings`): view number `view` of each crop, kept under
    `cache_dir()/augmented/`, made once and seeded by the crop's name and the view, so a feature
    cache of them stays valid. The CLIP probe trains on these beside the clean crops."""
    root = cache_dir() / "augmented" / f"{_settings_digest(settings)}-view{view}"
    return _degraded_copies(samples, root, f"/view{view}", lambda sample, image, rng: augment(image, rng, settings))


def self_blended_samples(
    samples: Sequence[Sample],
    view: int,
    blur_source: bool = True,
    resample_source: bool = True,
    misplacement: float = 1.0,
    parts: bool = False,
) -> list[Sample]:
    """Pseudo-fakes of the real samples: view number `view` of each real crop self-blended with
    its own face mesh (`self_blend`, as the CNN members' training makes them, without the
    degradations), kept under `cache_dir()/self-blended/`, made once and seeded by the crop's
    name and the view. Labelled fake, with the source `SOURCE/self-blend`, so a fit that balances
    sources weighs them as a group of their own. `blur_source` and `resample_source` false
    leave the pasted face unblurred and not resampled, and `misplacement` scales how far it is
    moved (see `self_blend`); with `parts`, each copy blends one part of the face drawn at
    random (eyes, nose or mouth: `FACE_PARTS`) instead of the whole face (rule 66). Such copies
    are kept in folders of their own."""

    def blend(sample: Sample, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        landmarks = blend_landmarks(sample, image.shape[0], rng)
        part = random_part(rng) if parts else None
        return self_blend(image, landmarks, rng, blur_source, resample_source, misplacement, part)

    reals = [s for s in samples if s.label == 0]
    folder = (
        f"view{view}"
        + ("" if blur_source else "-unblurred")
        + ("" if resample_source else "-unresampled")
        + ("" if misplacement == 1 else "-unmoved" if misplacement == 0 else f"-moved{misplacement:g}x")
        + ("-parts" if parts else "")
    )
    copies = _degraded_copies(reals, cache_dir() / "self-blended" / folder, f"/blend{view}", blend)
    return [replace(c, label=1, source=f"{c.source}/self-blend") for c in copies]


def _degraded_copies(
    samples: Sequence[Sample],
    root: Path,
    salt: str,
    degrade: Callable[[Sample, np.ndarray, np.random.Generator], np.ndarray],
) -> list[Sample]:
    """Copies of the samples' crops under `root`, each made once by `degrade` with a generator
    seeded by the crop's folder name, file name and `salt`; same order, labels and groups."""
    out = []
    for sample in samples:
        folder = sample.path.parent.parent
        relative = sample.path.relative_to(folder)
        # Kept apart per folder path: two folders of the same name hold different crops.
        where = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:8]
        target = root / f"{folder.name}-{where}" / relative
        if not target.exists():
            seed = int(hashlib.sha256(f"{folder.name}/{relative.as_posix()}{salt}".encode()).hexdigest()[:16], 16)
            write_rgb(target, degrade(sample, read_rgb(sample.path), np.random.default_rng(seed)))
        out.append(replace(sample, path=target, landmarks=None))
    return out
