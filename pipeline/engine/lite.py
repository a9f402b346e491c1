"""TensorFlow Lite copies of Keras networks, for scoring on a CPU: with XNNPACK's kernels the CNN
members score 2.6-3.8 times faster than with Keras on 2 cores, and MTCNN finds faces 1.4-1.9 times
faster (`benchmarks/tflite_speed.py`). Keras keeps the originals for what needs gradients
(explanation maps)."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.engine.derived import derived_path, keep
from pipeline.engine.quiet import quiet_stderr
from pipeline.errors import PipelineError

RUNTIMES = ("tflite", "keras")
"""What may run a Keras network when it scores: its TensorFlow Lite copy, or Keras itself."""

log = logging.getLogger(__name__)


def check_runtime(runtime: str, networks: str) -> None:
    """A `PipelineError` unless `runtime` is one of `RUNTIMES` (`networks` names what it runs)."""
    if runtime not in RUNTIMES:
        raise PipelineError(f"unknown {networks} runtime {runtime!r}: one of {', '.join(RUNTIMES)}")


class LiteModel:
    """A TensorFlow Lite network (a Keras model's converted copy answers as the Keras model
    does). An interpreter is not thread-safe (two dashboard tabs may score at once), so its calls
    are serialised; it is resized when the batch's shape changes (a network with free height and
    width, like MTCNN's first, is only allocated once it sees a batch)."""

    def __init__(self, flatbuffer: bytes) -> None:
        import tensorflow as tf

        # TensorFlow warns, on making an interpreter, that tf.lite moves to another package: not
        # for the person reading stderr.
        with warnings.catch_warnings(), quiet_stderr():
            warnings.simplefilter("ignore")
            self.interpreter = tf.lite.Interpreter(model_content=flatbuffer, num_threads=os.cpu_count() or 1)
        self.source = self.interpreter.get_input_details()[0]["index"]
        # The converter lists a Keras model's outputs in its own order and names each "...:K", K
        # being the Keras model's output position; outputs named otherwise keep the file's order.
        details = sorted(self.interpreter.get_output_details(), key=lambda d: _output_position(d["name"]))
        self.targets = [d["index"] for d in details]
        self.empty_shapes = [tuple(max(int(n), 0) for n in d["shape_signature"][1:]) for d in details]
        self.lock = threading.Lock()
        self.shape: tuple[int, ...] | None = None

    def outputs(self, batch: np.ndarray) -> list[np.ndarray]:
        """Every output of the network for `batch`, in the Keras model's order."""
        if len(batch) == 0:  # TensorFlow Lite cannot allocate a batch of none
            return [np.zeros((0, *shape), np.float32) for shape in self.empty_shapes]
        with self.lock:
            if self.shape != batch.shape:
                self.interpreter.resize_tensor_input(self.source, list(batch.shape))
                # The first allocation creates the XNNPACK delegate, which says so on stderr.
                with quiet_stderr() if self.shape is None else contextlib.nullcontext():
                    self.interpreter.allocate_tensors()
                self.shape = batch.shape
            self.interpreter.set_tensor(self.source, batch.astype(np.float32, copy=False))
            self.interpreter.invoke()
            return [self.interpreter.get_tensor(target).copy() for target in self.targets]

    def predict_on_batch(self, batch: np.ndarray) -> np.ndarray:
        """The first output, as Keras's `predict_on_batch` gives a one-output model's."""
        return self.outputs(batch)[0]


def _output_position(name: str) -> int:
    tail = name.rsplit(":", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def _lite_path(path: Path, form: str) -> Path:
    import tensorflow as tf

    return derived_path("tflite", path, f"{form}-tf{tf.__version__}" if form else f"tf{tf.__version__}", "tflite")


def cached_lite_model(path: Path, form: str = "") -> LiteModel | None:
    """The TensorFlow Lite copy of the Keras network in the file at `path` that `convert_to_lite` kept,
    or None when there is none yet (or it is damaged): read without loading the Keras model."""
    cached = _lite_path(path, form)
    if cached.is_file():
        try:
            return LiteModel(cached.read_bytes())
        except ValueError:  # a damaged cache file (a full disk, a stray edit): to be converted again
            log.warning("the cached TensorFlow Lite copy of %s is damaged; converting it again", path.name)
    return None


def lite_model(path: Path, model: Any, form: str = "") -> Any:
    """`model` (whose weights are the file at `path`) as a TensorFlow Lite copy: the one kept
    (`cached_lite_model`), else converted now (`convert_to_lite`)."""
    return cached_lite_model(path, form) or convert_to_lite(path, model, form)


def convert_to_lite(path: Path, model: Any, form: str = "") -> Any:
    """`model` (whose weights are the file at `path`) converted to TensorFlow Lite, or the model
    itself when the conversion fails (then logged). Converting takes seconds (14-16 s a CNN member
    on 2 cores), so the result is kept under `cache_dir()/tflite`, named by the file's content,
    `form` (what else shapes the copy, such as the input it was wrapped with) and TensorFlow's
    version, for `cached_lite_model` to read."""
    import tensorflow as tf

    try:
        # The converter prints the model's signature on stdout, where the CLI prints results.
        with contextlib.redirect_stdout(io.StringIO()):
            flatbuffer = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    except Exception:  # a layer TensorFlow Lite lacks: score with Keras, as before
        log.warning("could not convert %s to TensorFlow Lite; scoring it with Keras", path.name, exc_info=True)
        return model
    keep(_lite_path(path, form), flatbuffer, f"the TensorFlow Lite copy of {path.name}")
    return LiteModel(flatbuffer)
