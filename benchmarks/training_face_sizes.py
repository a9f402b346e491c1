"""How large and how sharp the faces the models trained on were (rules 44 and 47): the floors under
which a verdict says its face is smaller or softer than the training faces.

From the training split of each shared source, up to `--per-class` pictures per class (chosen by
the SHA-256 of their file name, so every run picks the same ones), each framed by the engine as
`prepare` frames it (`media_faces`: the largest face). A face's size is the shorter side of the
engine's face box in the source's own pixels: a DFDC crop was resized to 224 px from its face's
region of the video frame (`source_face_width` x `source_face_height` in its metadata), so its box
is scaled back by that region's size over the crop's. A face's focus is `face_focus` of the crop
the members are given. Each floor is the 5th percentile with every source weighted equally, rounded
down (`VerdictSettings.trained_face_px` and `trained_face_focus`):

    .venv/bin/python -m benchmarks.training_face_sizes OUT.json
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
from pathlib import Path

import numpy as np

from pipeline.config import Settings, shared_data_dir
from pipeline.engine.faces import FaceFinder, face_focus
from pipeline.engine.quiet import quiet_libraries
from pipeline.errors import PipelineError
from pipeline.training.prepare import media_faces, source_items

SOURCES = ("dfdc-faces", "gan-faces", "swap-faces", "sd-faces")
FLOOR_PERCENTILE = 5.0
QUANTILES = (5, 25, 50, 75, 95)


def _chosen(items: list, per_class: int) -> list:
    """Up to `per_class` training items per label, by the SHA-256 of their relative path."""
    chosen = []
    for label in ("real", "fake"):
        of_label = [i for i in items if i.label == label and i.split == "train"]
        of_label.sort(key=lambda i: hashlib.sha256(i.relative.encode()).hexdigest())
        chosen += of_label[:per_class]
    return chosen


def _source_regions(root: Path) -> dict[str, tuple[float, float]]:
    """DFDC: each crop's face region in its frame (width, height), from the metadata."""
    with (root / "metadata.csv").open(newline="") as handle:
        return {
            row["file"]: (float(row["source_face_width"]), float(row["source_face_height"]))
            for row in csv.DictReader(handle)
            if row.get("source_face_width")
        }


def face_sizes(
    source: str, per_class: int, finder: FaceFinder, settings: Settings
) -> tuple[list[float], list[float], int]:
    """(each chosen picture's face size in the source's own pixels, its crop's focus, pictures that
    gave no face)."""
    root = shared_data_dir() / source
    regions = _source_regions(root) if source == "dfdc-faces" else {}
    sizes, focus, missed = [], [], 0
    for item in _chosen(source_items(root, settings.media), per_class):
        try:
            found = list(media_faces(item.path, finder, settings, 1))
        except PipelineError:
            found = []
        if not found:
            missed += 1
            continue
        _, face, rgb = found[0]
        width, height = float(face.box[2]), float(face.box[3])
        if item.relative in regions:
            region_width, region_height = regions[item.relative]
            width *= region_width / rgb.shape[1]
            height *= region_height / rgb.shape[0]
        sizes.append(min(width, height))
        focus.append(face_focus(face.crop))
    return sizes, focus, missed


def weighted_percentile(values_by_source: dict[str, list[float]], percentile: float) -> float:
    """The percentile of all values with every source's values weighing the same in all."""
    values = np.concatenate([np.asarray(v, dtype=float) for v in values_by_source.values()])
    weights = np.concatenate([np.full(len(v), 1.0 / len(v)) for v in values_by_source.values()])
    order = np.argsort(values)
    cumulative = np.cumsum(weights[order]) / weights.sum()
    return float(values[order][np.searchsorted(cumulative, percentile / 100.0)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="where to write the sizes' summary (JSON)")
    parser.add_argument("--per-class", type=int, default=500)
    args = parser.parse_args()
    settings = Settings()
    quiet_libraries()
    finder = FaceFinder(settings.faces)
    sizes: dict[str, list[float]] = {}
    focus: dict[str, list[float]] = {}
    summary: dict[str, object] = {"per_class": args.per_class, "sources": {}}
    for source in SOURCES:
        sizes[source], focus[source], missed = face_sizes(source, args.per_class, finder, settings)
        size_quantiles = np.percentile(sizes[source], QUANTILES).round(1).tolist()
        focus_quantiles = np.percentile(focus[source], QUANTILES).round(1).tolist()
        summary["sources"][source] = {
            "faces": len(sizes[source]),
            "no_face": missed,
            "size_p5_p25_p50_p75_p95": size_quantiles,
            "focus_p5_p25_p50_p75_p95": focus_quantiles,
        }
        print(
            f"{source}: {len(sizes[source])} faces ({missed} without), 5/25/50/75/95%: size {size_quantiles}, "
            f"focus {focus_quantiles}",
            flush=True,
        )
    summary["floor_px"] = math.floor(weighted_percentile(sizes, FLOOR_PERCENTILE))
    summary["floor_focus"] = math.floor(weighted_percentile(focus, FLOOR_PERCENTILE))
    print(
        f"floors ({FLOOR_PERCENTILE:g}th percentile, sources weighted equally): {summary['floor_px']} px, "
        f"focus {summary['floor_focus']}"
    )
    args.out.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
