"""The labelled sources the recipe trains on and the cross-source table holds out, by name.

A source is a `real/` + `fake/` folder: by default the crops `prepare` made of the shared data
set of that name (`cache_dir()/prepared/NAME`, framed exactly as the engine frames faces), or any
folder given by its path. `sd-faces` has no real side (Stable Diffusion portraits only), so it is
paired with real photos of the same size and kind: half of the `swap-faces` real photos (FFHQ,
256 px), chosen by a hash of their group, while `swap-faces` keeps the other half. Each source
is then self-contained, and holding one out of training holds out its reals too.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from pipeline.config import cache_dir
from pipeline.training.data import Sample, load_samples

SOURCES = ("dfdc-faces", "gan-faces", "swap-faces", "sd-faces")
"""The shared sources, in the order the cross-source table lists them."""
PAIRED_REALS = {"sd-faces": "swap-faces"}
"""A fake-only source -> the source whose real photos it shares (half each)."""


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
