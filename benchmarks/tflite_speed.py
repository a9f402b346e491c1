"""Each shipped CNN member, and MTCNN, run by Keras and by TensorFlow Lite (fp32, XNNPACK), side by side.

The engine scores the CNN members (`ScoringSettings.cnn_runtime`) and finds faces
(`FaceSettings.mtcnn_runtime`) with TensorFlow Lite; this measures what that buys on the machine
it runs on, and what it changes. For each Keras member in `models/`, on 64 shared face crops (DFDC
and GAN-source, real and fake) scored in batches of 32 as the engine scores them: milliseconds per
crop each way (after a warm-up), the largest difference between their logits, and the seconds the
conversion takes (which the engine caches). For MTCNN, on the 32 frames the engine samples from
each `bench` video, found as the engine finds them (batches of 8 with the second look): seconds
each way (after a warm-up), faces found, and how many boxes differ (with the lowest overlap):

    .venv/bin/python -m benchmarks.tflite_speed
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from pipeline.config import REPO_ROOT, FaceSettings, shared_data_dir
from pipeline.engine.bench import default_videos
from pipeline.engine.ensemble import predict_crops, resize_crops
from pipeline.engine.faces import Face, FaceFinder, FaceSearch, iou
from pipeline.engine.media import sample_frames
from pipeline.training.data import read_face

BATCH = 32
CROPS_PER_FOLDER = 16


def shared_crops(per_folder: int = CROPS_PER_FOLDER) -> np.ndarray:
    """The first `per_folder` crops of each class of the DFDC and GAN sources."""
    folders = [shared_data_dir() / s / label for s in ("dfdc-faces", "gan-faces") for label in ("real", "fake")]
    paths = [path for folder in folders for path in sorted(folder.iterdir())[:per_folder]]
    return np.stack([read_face(path, 224) for path in paths])


def tflite_logits(interpreter: tf.lite.Interpreter, crops: np.ndarray, size: int) -> np.ndarray:
    source, target = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    out = []
    for start in range(0, len(crops), BATCH):
        interpreter.set_tensor(source["index"], resize_crops(crops[start : start + BATCH], size))
        interpreter.invoke()
        out.append(interpreter.get_tensor(target["index"]).copy())
    return np.concatenate(out)


def timed(run: Callable[..., np.ndarray], *args: object) -> tuple[np.ndarray, float]:
    run(*args)  # warm-up: graphs traced, arenas allocated
    start = time.perf_counter()
    result = run(*args)
    return result, time.perf_counter() - start


def search_faces(finder: FaceFinder, frames: list[np.ndarray]) -> list[list[Face]]:
    return FaceSearch(finder, finder.settings).add_all(frames)


def detection() -> None:
    finders = {runtime: FaceFinder(FaceSettings(mtcnn_runtime=runtime)) for runtime in ("keras", "tflite")}
    for video in default_videos():
        frames = [frame.rgb for frame in sample_frames(video, frames=32)]
        (by_keras, keras_seconds), (by_lite, lite_seconds) = (
            timed(search_faces, finders[runtime], frames) for runtime in ("keras", "tflite")
        )
        pairs = [
            max((iou(face.box, other.box) for other in lite_faces), default=0.0)
            for keras_faces, lite_faces in zip(by_keras, by_lite, strict=True)
            for face in keras_faces
        ]
        print(
            f"MTCNN on {video.name}: Keras {keras_seconds:.2f} s, TFLite {lite_seconds:.2f} s; faces "
            f"{sum(map(len, by_keras))} / {sum(map(len, by_lite))}; boxes differing "
            f"{sum(overlap < 1.0 for overlap in pairs)} (lowest overlap {min(pairs, default=1.0):.3f})"
        )


def main() -> None:
    crops = shared_crops()
    for path in sorted((REPO_ROOT / "models").glob("*.keras")):
        model = keras.models.load_model(path, safe_mode=True, compile=False)
        size = int(model.input_shape[1])
        started = time.perf_counter()
        flatbuffer = tf.lite.TFLiteConverter.from_keras_model(model).convert()
        converting = time.perf_counter() - started
        interpreter = tf.lite.Interpreter(model_content=flatbuffer, num_threads=2)
        interpreter.resize_tensor_input(interpreter.get_input_details()[0]["index"], [BATCH, size, size, 3])
        interpreter.allocate_tensors()
        by_keras, keras_seconds = timed(predict_crops, model, crops, size, BATCH)
        by_lite, lite_seconds = timed(tflite_logits, interpreter, crops, size)
        print(
            f"{Path(path).stem} ({size} px): Keras {1000 * keras_seconds / len(crops):.1f} ms a crop, "
            f"TFLite {1000 * lite_seconds / len(crops):.1f} ms; largest logit difference "
            f"{np.abs(by_keras - by_lite).max():.2e}; conversion {converting:.1f} s, {len(flatbuffer) / 1e6:.1f} MB"
        )
    detection()


if __name__ == "__main__":
    main()
