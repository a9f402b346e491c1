"""Third-party libraries kept off stderr, where each line should be the pipeline's own.

Nothing heavy is imported here: OpenCV reads its log level from the environment when it loads, so
these settings must be in place before anything imports cv2 or TensorFlow.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator


def quiet_settings() -> None:
    """The environment settings OpenCV and TensorFlow read when they load: OpenCV's `[ WARN ]`
    lines and TensorFlow's C++ log lines below errors stay off stderr (already set ones win)."""
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def quiet_libraries() -> None:
    """Load TensorFlow now, quietly, with `quiet_settings` in place.

    TensorFlow prints C++ log lines (the oneDNN notice, an absl warning) while it is imported,
    before any log level applies, so stderr is pointed at /dev/null for its import alone, and its
    Python logger (tf.function retracing warnings) is set to errors only. A command calls this
    once its cheap checks have passed: the import takes about ten seconds, which a mistyped path
    should not cost. Under another Keras backend (KERAS_BACKEND=jax, for training on a GPU machine
    without TensorFlow) there is no TensorFlow to import."""
    quiet_settings()
    if os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow":
        return
    with quiet_stderr():
        import tensorflow as tf
    tf.get_logger().setLevel(logging.ERROR)


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """The process's stderr (file descriptor 2, where C++ libraries print) pointed at /dev/null."""
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
