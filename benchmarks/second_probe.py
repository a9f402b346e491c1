"""What a second CLIP probe costs the engine now that probes share one encoder pass (rule 76).

Rule 75 left a patch probe on block 3 as the next member to try beside the shipped ensemble; this
measures its cost before anyone trains it. The second probe here is a stand-in with the right
shape: the shipped class-token probe's numbers read as a `patch_max` probe on block 3 (its scores
and the ensemble's verdicts mean nothing; its work per face is a trained one's). Three ways:

1. On 32 shared face crops (DFDC and GAN-source, real and fake), seconds a face for the shipped
   probe alone, both probes from one pass (`Ensemble.score`, as the engine scores), and both with
   a pass each (`Ensemble.logits` per probe, as the engine did before); median of `--repeat` runs
   after a warm-up.
2. `python -m pipeline bench`'s video and photo figures for the shipped models, then for the
   shipped models plus the stand-in (a models folder under the cache folder, the shipped files
   linked into it).

    .venv/bin/python -m benchmarks.second_probe [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

from benchmarks.tflite_speed import shared_crops
from pipeline.config import MODELS_DIR_ENV, REPO_ROOT, cache_dir
from pipeline.engine.bench import machine, run_benchmark
from pipeline.engine.clip import PATCH_MAX, ClipProbe
from pipeline.engine.ensemble import CLIP_PROBE, ENSEMBLE_FILE, Ensemble, EnsembleSpec
from pipeline.engine.media import sha256_file

STAND_IN = "clip_patches_b3"
STAND_IN_BLOCK = 3
CROPS_PER_FOLDER = 8


def models_with_stand_in(shipped: Path, target: Path) -> Path:
    """`target`: the shipped models (linked) plus the stand-in patch probe as a fourth member."""
    target.mkdir(parents=True, exist_ok=True)
    spec = EnsembleSpec.load(shipped / ENSEMBLE_FILE)
    for member in spec.members:
        link = target / member.file
        link.unlink(missing_ok=True)
        link.symlink_to((shipped / member.file).resolve())
    clip = next(m for m in spec.members if m.kind == CLIP_PROBE)
    probe = ClipProbe.from_json(json.loads((shipped / clip.file).read_text()))
    stand_in = replace(probe, feature=PATCH_MAX, block=STAND_IN_BLOCK)
    file = target / f"{STAND_IN}.json"
    file.write_text(json.dumps(stand_in.to_json()))
    member = replace(clip, name=STAND_IN, file=file.name, weight=0.25 * clip.weight, sha256=sha256_file(file))
    replace(spec, members=(*spec.members, member)).save(target / ENSEMBLE_FILE)
    return target


def seconds_a_face(run: Callable[[np.ndarray], object], crops: np.ndarray, repeat: int) -> float:
    """Median seconds a face of `run` on `crops`, after a warm-up."""
    run(crops[:2])
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run(crops)
        times.append(time.perf_counter() - start)
    return statistics.median(times) / len(crops)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error(f"--repeat {args.repeat}: at least one run is needed for a median")
    shipped = Path(os.environ.get(MODELS_DIR_ENV, REPO_ROOT / "models"))
    two = models_with_stand_in(shipped, cache_dir() / "bench" / "second-probe-models")
    ensemble = Ensemble(two)
    probes = list(ensemble.probes)
    crops = shared_crops(CROPS_PER_FOLDER)
    alone = seconds_a_face(lambda c: ensemble.logits(probes[0], c), crops, args.repeat)
    shared = seconds_a_face(lambda c: ensemble.score(c, probes), crops, args.repeat)
    apart = seconds_a_face(lambda c: [ensemble.logits(name, c) for name in probes], crops, args.repeat)
    print(f"Machine: {machine()}. {len(crops)} shared face crops, median of {args.repeat} runs after a warm-up.\n")
    print("| CLIP probes | ms a face |\n|---|---|")
    print(f"| {probes[0]} alone | {1000 * alone:.1f} |")
    print(f"| {' + '.join(probes)}, one shared pass | {1000 * shared:.1f} |")
    print(f"| {' + '.join(probes)}, a pass each | {1000 * apart:.1f} |\n")
    for title, folder in (("The shipped models", shipped), (f"The shipped models and {STAND_IN}", two)):
        os.environ[MODELS_DIR_ENV] = str(folder)  # read by the engine's settings
        print(f"### {title}\n")
        print(run_benchmark([], repeat=args.repeat) + "\n")


if __name__ == "__main__":
    main()
