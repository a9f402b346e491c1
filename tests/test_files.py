"""Files are written whole or not at all (`pipeline.files.whole_file`), wherever the project writes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.files import partial_path, partial_writer, whole_file
from pipeline.training.data import read_rgb, write_rgb


def test_a_file_is_replaced_whole_and_a_failed_write_leaves_the_old_one(tmp_path: Path) -> None:
    path = tmp_path / "result.json"
    with whole_file(path) as partial:
        partial.write_text('{"n": 1}')
        assert not path.exists()  # nothing at the path until the writing is done
    assert json.loads(path.read_text()) == {"n": 1}
    with pytest.raises(RuntimeError, match="stopped"), whole_file(path) as partial:
        partial.write_text('{"n": 2, "half')
        raise RuntimeError("stopped")
    assert json.loads(path.read_text()) == {"n": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]  # no partial left


def test_partial_files_keep_the_suffix_and_name_their_writer(tmp_path: Path) -> None:
    """Writers that choose a format by the suffix (OpenCV, NumPy) write the partial file in the
    path's format, and a partial file says which process wrote it; other files say none."""
    path = tmp_path / "crop.v2.png"
    partial = partial_path(path, os.getpid())
    assert partial.suffix == ".png" and partial.name.startswith(".")  # hidden, and not matched by crop*
    assert partial_writer(partial, path) == os.getpid()
    assert partial_writer(partial_path(tmp_path / "crop.png", 7), path) is None
    assert partial_writer(path, path) is None
    image = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    write_rgb(path, image)
    assert np.array_equal(read_rgb(path), image)  # written as PNG through its partial file
    with pytest.raises(cv2.error):  # OpenCV has no writer for it: nothing is left behind
        write_rgb(tmp_path / "crop.unknown-format", image)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["crop.v2.png"]
