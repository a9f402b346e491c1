"""Small copies of the shared data sets, so a test that trains or caches features works on a few
files of its own instead of writing beside the shared data; and copies of the models folder that
describe the ensemble otherwise."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from pipeline.engine.ensemble import ENSEMBLE_FILE, EnsembleSpec
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


def models_described_as(models_dir: Path, folder: Path, spec: EnsembleSpec) -> Path:
    """`folder`, holding links to the member files of `models_dir` and `spec` as its ensemble
    description: the same models, weighed or decided as `spec` says."""
    folder.mkdir()
    for member in spec.members:
        (folder / member.file).symlink_to(models_dir / member.file)
    spec.save(folder / ENSEMBLE_FILE)
    return folder
