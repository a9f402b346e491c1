"""Model files the engine derives from shipped ones (TensorFlow Lite copies of Keras networks, the
CLIP tower cut after a block), kept in the cache folder: making them takes seconds and memory,
reading them back takes neither."""

from __future__ import annotations

import contextlib
import glob
import logging
import os
from pathlib import Path

from pipeline.config import cache_dir
from pipeline.engine.media import sha256_file
from pipeline.files import PARTIAL, partial_writer, whole_file

log = logging.getLogger(__name__)


def derived_path(kind: str, source: Path, form: str, suffix: str) -> Path:
    """Where the file derived from `source` is kept: `cache_dir()/KIND/STEM-SHA16-FORM.SUFFIX`,
    named by the source's content and `form` (what else shapes the derived file: the tool's
    version, the input it was wrapped with, the last block kept), so a changed source or
    derivation never reads a stale copy."""
    return cache_dir() / kind / f"{source.stem}-{sha256_file(source)[:16]}-{form}.{suffix}"


def keep(path: Path, content: bytes, what: str) -> None:
    """Write `content` to `path` whole or not at all (processes may derive the same file at once).
    A cache folder that cannot be written (read-only, full, a folder where the file should be) is
    a warning, not an error: the caller uses the content it has and derives it again next time.
    Partial files left by processes killed while writing are removed once the file is kept."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with whole_file(path) as partial:
            partial.write_bytes(content)
    except OSError as error:
        log.warning("could not keep %s in %s: %s", what, path.parent, error)
        return
    for stale in path.parent.glob(f".{glob.escape(path.stem)}.*{PARTIAL}{glob.escape(path.suffix)}"):
        writer = partial_writer(stale, path)
        if writer is not None and not _running(writer):
            with contextlib.suppress(OSError):
                stale.unlink()


def _running(pid: int) -> bool:
    """Whether a process with this id exists (one run by another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
