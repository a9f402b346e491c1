"""Small copies of the shared data sets, so a test that trains or caches features works on a few
files of its own instead of writing beside the shared data."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from pipeline.training.data import load_samples


def copy_subset(source: Path, folder: Path, per_label: int, splits: Sequence[str] = ("train",)) -> Path:
    """The first `per_label` files of each label of each split of `source`, copied into
    `folder` with their metadata (groups and splits kept)."""
    rows = ["file,label,group,split"]
    for split in splits:
        for label in ("real", "fake"):
            picks = [s for s in load_samples(source, split) if s.label == (label == "fake")][:per_label]
            for sample in picks:
                (folder / label).mkdir(parents=True, exist_ok=True)
                shutil.copy(sample.path, folder / label / sample.path.name)
                rows.append(f"{label}/{sample.path.name},{label},{sample.group},{sample.split}")
    (folder / "metadata.csv").write_text("\n".join(rows) + "\n")
    return folder
