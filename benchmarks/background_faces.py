"""Pictures whose verdict a face other than the largest decides (a bystander in the background).

`prepare` keeps the largest face of each training picture, so the models never trained on the
smaller faces behind a picture's subject, which the engine scores like any other. This analyses
the shared portraits (`swap-faces` real and fake, `sd-faces`; no test split) with the shipped
engine and counts the pictures with more than one person, those whose most suspicious person is
not the largest face, their verdicts, and how many of those faces are under the training faces'
floor (`VerdictSettings.trained_face_px`):

    .venv/bin/python -m benchmarks.background_faces OUT.json
"""

from __future__ import annotations

import argparse
import csv
import json
from collections import Counter
from pathlib import Path

from pipeline.config import Settings, shared_data_dir
from pipeline.engine.analyze import Engine
from pipeline.errors import PipelineError

FOLDERS = (("swap-faces", "real"), ("swap-faces", "fake"), ("sd-faces", "fake"))


def count(engine: Engine, source: str, label: str) -> dict[str, object]:
    """What one source's pictures of one label (train and validation splits) give."""
    root = shared_data_dir() / source
    with (root / "metadata.csv").open(newline="") as handle:
        files = [r["file"] for r in csv.DictReader(handle) if r["label"] == label and r["split"] != "test"]
    floor = engine.settings.verdict.trained_face_px
    counts: Counter[str] = Counter()
    decided_by_smaller = []
    for file in files:
        try:
            result = engine.analyze(root / file).result
        except PipelineError:
            counts["unreadable"] += 1
            continue
        counts["pictures"] += 1
        counts[f"verdict {result.verdict}"] += 1
        if len(result.tracks) < 2:
            continue
        counts["several people"] += 1
        sizes = {face.track: min(face.box[2:]) for frame in result.frames for face in frame.faces}
        worst = max((t for t in result.tracks if t.decides), key=lambda t: t.fake_probability)
        largest = max(sizes, key=lambda track: sizes[track])
        if worst.track == largest:
            continue
        counts["decided by a smaller face"] += 1
        counts[f"decided by a smaller face: verdict {result.verdict}"] += 1
        counts["decided by a face under the floor"] += sizes[worst.track] < floor
        largest_score = next(t.fake_probability for t in result.tracks if t.track == largest)
        decided_by_smaller.append(
            {
                "file": file,
                "verdict": result.verdict,
                "fake_probability": round(result.fake_probability, 3),
                "largest_face_px": sizes[largest],
                "largest_face_probability": round(largest_score, 3),
                "deciding_face_px": sizes[worst.track],
                "deciding_face_probability": round(worst.fake_probability, 3),
            }
        )
    return {"source": source, "label": label, "counts": dict(counts), "decided_by_smaller": decided_by_smaller}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="where to write the counts (JSON)")
    args = parser.parse_args()
    engine = Engine(Settings())
    found = []
    for source, label in FOLDERS:
        found.append(count(engine, source, label))
        print(json.dumps(found[-1]), flush=True)
    args.out.write_text(json.dumps(found, indent=2) + "\n")


if __name__ == "__main__":
    main()
