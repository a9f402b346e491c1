"""`prepare`: a labelled folder of images and/or videos -> a face-crop data set, each crop framed
exactly as the engine frames the faces it scores (the engine's own reading, face finding, crop
rule and size), so that the models train on what they will see.

Input: a folder with `real/` and/or `fake/` (`sd-faces` has no real side), and optionally the
shared data's `metadata.csv` (`file,label,group,split`), whose groups and splits are kept.
Output, in its own folder:

    real/NAME.png, fake/NAME.png   crops, lossless (a crop is bit for bit the engine's crop)
    landmarks/real/NAME.npy, ...    468 face-mesh points (x, y) per crop, in crop pixels
    metadata.csv                    file,label,group,split,source,frame_number,person,landmarks
    skipped.csv                     media that gave no crop, and why
    prepare.json                    the settings the crops were made with
    crops.csv, done.csv             the work log: each crop as it was written, each media file
                                    when all its crops were (metadata.csv is made from them)

An image gives the crop of its largest face; a video gives every face of `frames` sampled
frames. Work is logged file by file, so a stopped run resumes where it stopped (`resume`); a
folder prepared with other settings is refused rather than mixed.
"""

from __future__ import annotations

import csv
import hashlib
import json
import sys
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from pipeline.config import MediaSettings, Settings
from pipeline.engine.faces import Face, FaceFinder, FaceSearch
from pipeline.engine.media import read_frames
from pipeline.engine.quiet import quiet_libraries
from pipeline.errors import DataError, PipelineError
from pipeline.files import whole_file
from pipeline.training.data import LABELS, Sample, split_for_group

FORMAT = 1
COLUMNS = ("file", "label", "group", "split", "source", "frame_number", "person", "landmarks")
SKIPPED_COLUMNS = ("source", "label", "reason")
CROP_LOG = "crops.csv"
"""Each crop's metadata row, appended as the crop is written; `metadata.csv` is made from it."""
EARLIER_CROP_LOG = "metadata.partial.csv"
"""The crop log's name in folders prepared before 2026-12-05 (not one of `whole_file`'s partial
files, which its name suggested)."""


@dataclass(frozen=True)
class SourceItem:
    """One labelled media file to prepare."""

    path: Path
    relative: str
    label: str
    group: str
    split: str


def source_items(root: Path, media: MediaSettings = MediaSettings()) -> list[SourceItem]:
    """The labelled media of a folder, with groups and splits from its metadata.csv if any
    (else each file is its own group and the split is drawn from its name's hash)."""
    if not any((root / label).is_dir() for label in LABELS):
        raise DataError(f"{root} must hold a real/ or a fake/ folder")
    suffixes = media.image_suffixes + media.video_suffixes
    metadata = root / "metadata.csv"
    items = []
    if metadata.exists():
        with metadata.open(newline="") as handle:
            for row in csv.DictReader(handle):
                if row["label"] not in LABELS:
                    raise DataError(f"{metadata}: unknown label {row['label']!r}")
                group = row.get("group") or Path(row["file"]).stem
                split = row.get("split") or split_for_group(group, 0.1, 0.1)
                items.append(SourceItem(root / row["file"], row["file"], row["label"], group, split))
    else:
        for label in LABELS:
            folder = root / label
            for path in sorted(folder.iterdir()) if folder.is_dir() else []:
                if path.suffix.lower() in suffixes:
                    items.append(
                        SourceItem(path, f"{label}/{path.name}", label, path.stem, split_for_group(path.stem, 0.1, 0.1))
                    )
    if not items:
        raise DataError(f"no images or videos in {root}")
    return items


def _settings_record(settings: Settings, frames: int) -> dict[str, object]:
    """The settings the crops depend on, as they read back from JSON."""
    record = {"format": FORMAT, "frames": frames, "faces": asdict(settings.faces), "media": asdict(settings.media)}
    return json.loads(json.dumps(record))


def _read_log(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


class _Appender:
    """A CSV file that rows are appended to and flushed one by one (a crash loses at most the
    row being written; the resume redoes that file)."""

    def __init__(self, path: Path, columns: tuple[str, ...]) -> None:
        new = not path.exists() or path.stat().st_size == 0
        self._handle = path.open("a", newline="")
        self._writer = csv.DictWriter(self._handle, fieldnames=columns)
        if new:
            self._writer.writeheader()

    def add(self, row: dict[str, object]) -> None:
        self._writer.writerow(row)
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()


def media_faces(
    path: Path, finder: FaceFinder, settings: Settings, frames: int
) -> Iterator[tuple[int, Face, np.ndarray]]:
    """(frame number, face, frame RGB) of every face the engine finds in a file: for an image its
    largest face, for a video every face of the sampled frames, with tracks linked as the engine
    links them."""
    info, frame_iter = read_frames(path, settings.media, frames)
    sampled = list(frame_iter)
    search = FaceSearch(finder, settings.faces)
    search.add_all([f.rgb for f in sampled])
    search.link()
    for frame, frame_faces in zip(sampled, search.faces, strict=True):
        kept = frame_faces[:1] if info.kind == "image" else frame_faces
        for face in kept:
            yield frame.frame_number, face, frame.rgb


def prepare(
    source: Path,
    out_dir: Path,
    frames: int = 8,
    settings: Settings | None = None,
    resume: bool = True,
    landmarks: bool = True,
    limit: int | None = None,
    only: set[str] | None = None,
) -> int:
    """Prepare the crops of every media file under `source` (or of the first `limit`, or of those
    whose relative paths are in `only`) into `out_dir` (see the module's docstring). Returns the
    number of crops of the files asked for; metadata.csv lists every crop prepared so far."""
    from tqdm import tqdm

    settings = settings or Settings()
    everything = source_items(source, settings.media)
    items = [i for i in everything if only is None or i.relative in only][:limit]
    out_dir.mkdir(parents=True, exist_ok=True)
    record = _settings_record(settings, frames)
    record_path = out_dir / "prepare.json"
    if record_path.exists():
        if json.loads(record_path.read_text()) != record:
            raise DataError(f"{out_dir} was prepared with other settings; prepare into another folder")
        if not resume:
            raise DataError(f"{out_dir} is already prepared; pass resume to continue it")
    record_path.write_text(json.dumps(record, indent=2) + "\n")
    crop_log, skipped_path = out_dir / CROP_LOG, out_dir / "skipped.csv"
    if (out_dir / EARLIER_CROP_LOG).exists() and not crop_log.exists():
        (out_dir / EARLIER_CROP_LOG).rename(crop_log)  # a folder prepared before the log's rename
    done = {row["source"] for row in _read_log(out_dir / "done.csv")}
    quiet_libraries()  # only now: a wrong folder or settings record is one line at once
    finder = FaceFinder(settings.faces)
    mesh = None
    if landmarks:
        from pipeline.training.landmarks import FaceLandmarks

        mesh = FaceLandmarks()
    rows, skipped, log = (
        _Appender(crop_log, COLUMNS),
        _Appender(skipped_path, SKIPPED_COLUMNS),
        _Appender(out_dir / "done.csv", ("source",)),
    )
    try:
        for item in tqdm([i for i in items if i.relative not in done], desc=f"prepare {source.name}", file=sys.stderr):
            try:
                found = list(media_faces(item.path, finder, settings, frames))
            except PipelineError as error:
                skipped.add({"source": item.relative, "label": item.label, "reason": str(error)})
                log.add({"source": item.relative})
                continue
            if not found:
                skipped.add({"source": item.relative, "label": item.label, "reason": "no face found"})
            stem = Path(item.relative).stem
            for frame_number, face, rgb in found:
                name = stem if len(found) == 1 else f"{stem}_f{frame_number:05d}_p{face.track + 1}"
                crop_file = f"{item.label}/{name}.png"
                (out_dir / item.label).mkdir(exist_ok=True)
                cv2.imwrite(str(out_dir / crop_file), cv2.cvtColor(face.crop, cv2.COLOR_RGB2BGR))
                points = mesh.find(rgb, face.box, face.crop_box, settings.faces.crop_size) if mesh else None
                landmark_file = ""
                if points is not None:
                    landmark_file = f"landmarks/{item.label}/{name}.npy"
                    (out_dir / "landmarks" / item.label).mkdir(parents=True, exist_ok=True)
                    np.save(out_dir / landmark_file, points.astype(np.float16))
                rows.add(
                    {
                        "file": crop_file,
                        "label": item.label,
                        "group": item.group,
                        "split": item.split,
                        "source": item.relative,
                        "frame_number": frame_number,
                        "person": face.track + 1,
                        "landmarks": landmark_file,
                    }
                )
            log.add({"source": item.relative})
    finally:
        rows.close()
        skipped.close()
        log.close()
    rows_by_file = _finish(out_dir, {i.relative for i in everything})
    asked = {i.relative for i in items}
    return sum(1 for row in rows_by_file.values() if row["source"] in asked)


def _finish(out_dir: Path, sources: set[str]) -> dict[str, dict[str, str]]:
    """metadata.csv from the log: one row per crop prepared so far (of media still in the
    source), written atomically. Returns the rows by crop file."""
    by_file = {row["file"]: row for row in _read_log(out_dir / CROP_LOG) if row["source"] in sources}
    with whole_file(out_dir / "metadata.csv") as partial, partial.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(by_file[name] for name in sorted(by_file))
    return by_file


def prepared_folder(source: Path) -> Path:
    """Where `prepare` keeps the crops of a source folder: the shared sources by name (as the
    recipe finds them), any other folder by name and a hash of its path."""
    from pipeline.config import cache_dir, shared_data_dir

    source = source.resolve()
    root = cache_dir() / "prepared"
    if source.parent == shared_data_dir().resolve():
        return root / source.name
    digest = hashlib.sha256(str(source).encode()).hexdigest()[:8]
    return root / f"{source.name}-{digest}"


def prepared_samples(samples: Sequence[Sample], settings: Settings | None = None) -> tuple[list[Sample], list[Sample]]:
    """(the engine-framed crops of image samples, the samples with no face), preparing what is
    not prepared yet: crop-mode evaluation scores what the engine would score."""
    by_root: dict[Path, list[Sample]] = {}
    for sample in samples:
        by_root.setdefault(sample.path.parent.parent, []).append(sample)
    crops: list[Sample] = []
    faceless: list[Sample] = []
    for root, own in by_root.items():
        if (root / "prepare.json").exists():  # already crops made by prepare
            crops += own
            continue
        folder = prepared_folder(root)
        relative = {s.path.relative_to(root).as_posix(): s for s in own}
        prepare(root, folder, settings=settings, only=set(relative), landmarks=False)
        with (folder / "metadata.csv").open(newline="") as handle:
            crop_of = {row["source"]: folder / row["file"] for row in csv.DictReader(handle)}
        for name, sample in relative.items():
            if name in crop_of:  # an image gives one crop: its largest face
                crops.append(replace(sample, path=crop_of[name], landmarks=None))
            else:
                faceless.append(sample)
    return crops, faceless
