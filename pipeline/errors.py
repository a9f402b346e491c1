"""Errors a user can cause. Each carries a message a person understands.

The CLI and the pages catch `PipelineError` and print its message as one line; anything else
is a bug and may show a traceback.
"""

from __future__ import annotations


class PipelineError(Exception):
    """Base class for every error the user can cause or fix."""


class MediaError(PipelineError):
    """The file could not be read as an image or a video (empty, corrupt, wrong type)."""


class UnsupportedMediaError(MediaError):
    """The file's type is not one the engine reads."""


class MediaTooLargeError(MediaError):
    """The file is larger than the limits in `Settings` (pixels, duration or bytes)."""


class ModelsMissingError(PipelineError):
    """No trained ensemble in the models folder."""


class UnsafeWeightsError(PipelineError):
    """A weights file asked to run code or build objects that a weights file never needs."""


class WeightsUnavailableError(PipelineError):
    """ImageNet weights are not installed here (and cannot be downloaded offline)."""


class DataError(PipelineError):
    """A training or evaluation data folder is missing or malformed."""


class StoreError(PipelineError):
    """The history cannot be opened or written (another version's schema, an unreachable
    database)."""


class ScanError(PipelineError):
    """A scan cannot start or go on: no Ray cluster at the address given, workers that cannot
    start, models that differ between machines."""
