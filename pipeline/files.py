"""Writing a file whole or not at all, the one way every part of the project does it."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

PARTIAL = ".partial"
"""What marks a file being written: `whole_file`'s partial files end with it and the path's suffix."""


def partial_path(path: Path, writer: int) -> Path:
    """Where process `writer` writes `path` before it is whole: hidden beside it, named by it and
    the writer (two processes writing the same file at once never share one), ending with the
    path's own suffix (writers that choose the format by it, OpenCV and NumPy, still do)."""
    return path.with_name(f".{path.stem}.{writer}{PARTIAL}{path.suffix}")


def partial_writer(partial: Path, path: Path) -> int | None:
    """The process that was writing `partial`, if it is one of `path`'s partial files."""
    head, tail = f".{path.stem}.", f"{PARTIAL}{path.suffix}"
    name = partial.name
    if not (name.startswith(head) and name.endswith(tail)):
        return None
    writer = name[len(head) : len(name) - len(tail)]
    return int(writer) if writer.isdigit() else None


@contextlib.contextmanager
def whole_file(path: Path) -> Iterator[Path]:
    """A partial path to write `path`'s content to: leaving the block without an error renames it
    onto `path` in one step, so a reader never sees half a file and a stopped run never leaves a
    file that looks made; an error in the block removes it, and is raised again."""
    partial = partial_path(path, os.getpid())
    try:
        yield partial
        os.replace(partial, path)
    except BaseException:
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
        raise
