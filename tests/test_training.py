"""Training and evaluation on real shared data: splits, augmentation, calibration, a tiny real
training run, the ensemble file it makes, `prepare` and `evaluate`."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import cv2
import keras
import numpy as np
import pytest

from pipeline.config import REPO_ROOT, Settings, VerdictSettings
from pipeline.engine.ensemble import (
    CURVES,
    ENSEMBLE_FILE,
    Ensemble,
    EnsembleSpec,
    jpeg_round_trip,
    resize_crops,
    sigmoid,
)
from pipeline.engine.faces import face_focus, is_toned
from pipeline.engine.verdict import VALIDATION_MIX
from pipeline.errors import DataError
from pipeline.training.augment import augment, self_blend, template_landmarks
from pipeline.training.calibration import (
    TEMPERATURE,
    TEMPERATURE_AND_OFFSET,
    choose_threshold,
    choose_uncertain_band,
    expected_calibration_error,
    fit_calibration,
    fit_temperature,
)
from pipeline.training.data import Sample, class_weights, is_video, load_samples, read_face
from tests import media_factory
from tests.command_line import CLI_TIMEOUT_S, read_until, run_cli, run_python, start_cli, terminate_after
from tests.subsets import copy_subset


def test_shared_splits_keep_each_source_video_on_one_side(shared_data: Path) -> None:
    samples = load_samples(shared_data / "dfdc-faces")
    split_of: dict[str, set[str]] = {}
    for s in samples:
        split_of.setdefault(s.group, set()).add(s.split)
    assert all(len(v) == 1 for v in split_of.values())
    test = load_samples(shared_data / "dfdc-faces", "test")
    assert {s.split for s in test} == {"test"} and {s.label for s in test} == {0, 1}


def test_a_plain_folder_gets_stable_group_splits(shared_data: Path, tmp_path: Path) -> None:
    for label in ("real", "fake"):
        (tmp_path / label).mkdir()
        for source in sorted((shared_data / "gan-faces" / label).iterdir())[:30]:
            shutil.copy(source, tmp_path / label / source.name)
    first = load_samples(tmp_path)
    assert [s.split for s in first] == [s.split for s in load_samples(tmp_path)]
    assert {s.split for s in first} <= {"train", "val", "test"} and len(first) == 60
    assert class_weights(first) == {0: 1.0, 1: 1.0}


def test_evaluation_tells_videos_from_pictures_as_the_engine_does(tmp_path: Path) -> None:
    """By the name, but a picture that may be animated by its content: an animated one is scored
    as a video."""
    still, animated, sticker = tmp_path / "still.gif", tmp_path / "animated.gif", tmp_path / "sticker.webp"
    media_factory.write_animation(still, [100])
    media_factory.write_animation(animated, [100, 100])
    media_factory.write_animation(sticker, [100, 100], lossless=True)
    paths = (still, animated, sticker, Path("clip.MOV"), Path("photo.jpg"))
    assert [is_video(p) for p in paths] == [False, True, True, True, False]


def test_a_folder_without_real_or_fake_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="real/ or a fake/"):
        load_samples(tmp_path)


def test_augmentations_keep_the_crop_and_change_it(shared_data: Path) -> None:
    face = read_face(next((shared_data / "dfdc-faces" / "real").iterdir()), 160)
    rng = np.random.default_rng(0)
    views = [augment(face, rng) for _ in range(8)]
    assert all(v.shape == face.shape and v.dtype == np.uint8 for v in views)
    assert sum(not np.array_equal(v, face) for v in views) >= 7
    assert (
        np.abs(jpeg_round_trip(face, 40).astype(int) - face).mean()
        > np.abs(jpeg_round_trip(face, 95).astype(int) - face).mean()
    )


def test_self_blend_changes_the_face_and_leaves_the_border(shared_data: Path) -> None:
    face = read_face(next((shared_data / "gan-faces" / "real").iterdir()), 160)
    blended = self_blend(face, template_landmarks("gan-faces", 160), np.random.default_rng(3))
    difference = np.abs(blended.astype(int) - face.astype(int)).sum(axis=2)
    assert difference[60:120, 50:110].mean() > 3 * max(difference[:12, :].mean(), 0.5)
    assert difference[:8, :8].max() <= 2 and difference[-8:, -8:].max() <= 2


def test_self_blend_can_leave_its_pasted_face_unblurred(shared_data: Path) -> None:
    """`blur_source=False` (rule 48): the same pseudo-fakes, but those whose pasted face was
    blurred keep it as sharp as the real face; no other pseudo-fake changes."""
    face = read_face(next((shared_data / "gan-faces" / "real").iterdir()), 160)
    landmarks = template_landmarks("gan-faces", 160)
    changed = 0
    for seed in range(20):
        blurred = self_blend(face, landmarks, np.random.default_rng(seed))
        sharp = self_blend(face, landmarks, np.random.default_rng(seed), blur_source=False)
        if np.array_equal(blurred, sharp):
            continue
        changed += 1
        assert face_focus(sharp[50:120, 40:120]) > face_focus(blurred[50:120, 40:120])
        assert np.array_equal(sharp[:8, :8], blurred[:8, :8])  # the border is never blended
    assert 1 <= changed <= 12  # about 30% of pasted faces are blurred


def test_self_blend_can_paste_its_face_without_resampling_it() -> None:
    """`resample_source=False` (rule 50): the pasted face is moved by whole pixels, never
    interpolated, so a fine texture keeps its detail inside the mask, where bilinear
    resampling softens it."""
    texture = np.random.default_rng(0).integers(0, 256, (160, 160, 3), dtype=np.uint8)
    landmarks = template_landmarks("gan-faces", 160)
    for seed in range(10):
        kept = self_blend(texture, landmarks, np.random.default_rng(seed), False, resample_source=False)
        resampled = self_blend(texture, landmarks, np.random.default_rng(seed), False)
        assert face_focus(kept[60:110, 55:105]) > face_focus(resampled[60:110, 55:105])


def test_self_blend_can_leave_its_pasted_face_where_it_was() -> None:
    """`misplacement=0` (rule 53): the pasted face is neither shifted nor resized, so it lies
    in register with the face it is blended into (only its colours change), where a moved one
    mixes the face with a shifted copy of itself."""
    texture = np.random.default_rng(0).integers(0, 256, (160, 160, 3), dtype=np.uint8)
    landmarks = template_landmarks("gan-faces", 160)

    def register(blended: np.ndarray) -> float:
        """How well the grey levels inside the mask still follow the texture's (Pearson)."""
        inside, original = (image[60:110, 55:105].astype(float).mean(axis=-1).ravel() for image in (blended, texture))
        return float(np.corrcoef(inside, original)[0, 1])

    unmoved, moved = [], []
    for seed in range(10):
        unmoved.append(register(self_blend(texture, landmarks, np.random.default_rng(seed), False, False, 0.0)))
        moved.append(register(self_blend(texture, landmarks, np.random.default_rng(seed), False, False)))
    assert min(unmoved) > 0.95
    assert sum(r < 0.9 for r in moved) >= 7  # a few draws shift it by a pixel or less


def test_temperature_scaling_recovers_a_known_temperature() -> None:
    rng = np.random.default_rng(0)
    true_logits = rng.normal(0, 2, 20000)
    labels = (rng.random(20000) < sigmoid(true_logits)).astype(float)
    overconfident = true_logits * 3.0
    temperature = fit_temperature(overconfident, labels)
    assert temperature == pytest.approx(3.0, rel=0.1)
    assert (
        expected_calibration_error(sigmoid(overconfident / temperature), labels)
        < 0.02
        < expected_calibration_error(sigmoid(overconfident), labels)
    )


def test_threshold_and_uncertain_band_come_from_validation() -> None:
    rng = np.random.default_rng(1)
    labels = np.repeat([0, 1], 500)
    probabilities = np.clip(np.where(labels == 1, 0.7, 0.3) + rng.normal(0, 0.15, 1000), 0, 1)
    threshold = choose_threshold(probabilities, labels)
    low, high = choose_uncertain_band(probabilities, labels, threshold, target_accuracy=0.95)
    assert 0.4 < threshold < 0.6 and low < threshold < high
    outside = np.abs(probabilities - threshold) >= (high - threshold)
    assert ((probabilities[outside] >= threshold) == labels[outside]).mean() >= 0.95


def test_even_odds_puts_the_threshold_at_half_whatever_the_validation_scores() -> None:
    """Rule 100: `even_odds` reads nothing from the scores (the calibration has); `youden`
    follows where balanced accuracy peaks, here far from 0.5."""
    rng = np.random.default_rng(2)
    labels = np.repeat([0, 1], 500)
    probabilities = np.clip(np.where(labels == 1, 0.35, 0.15) + rng.normal(0, 0.05, 1000), 0, 1)
    assert choose_threshold(probabilities, labels, "even_odds") == 0.5
    youden = choose_threshold(probabilities, labels, "youden")
    assert 0.15 < youden < 0.35 and youden == choose_threshold(probabilities, labels)
    with pytest.raises(ValueError, match="even_odds"):
        choose_threshold(probabilities, labels, "median")


def test_a_near_perfect_model_still_has_an_uncertain_band() -> None:
    labels = np.repeat([0, 1], 500)
    probabilities = np.where(labels == 1, 0.99, 0.01)
    assert choose_uncertain_band(probabilities, labels, 0.5) == (0.45, 0.55)


@pytest.fixture(scope="module")
def tiny_run(shared_data: Path, tmp_path_factory: pytest.TempPathFactory):  # -> TrainResult
    from pipeline.training.train import TrainConfig, train_member

    config = TrainConfig(
        backbone="mobilenetv2",
        data=(shared_data / "gan-faces",),
        out_dir=tmp_path_factory.mktemp("run"),
        input_size=96,
        train_per_class=48,
        val_per_class=16,
        views=1,
        self_blend=0.5,
        trainable_blocks=3,
        head_epochs=2,
        finetune_epochs=2,
        batch_size=16,
        head_lr=3e-3,
        patience=5,
    )
    return train_member(config)


def test_a_member_without_source_fakes_trains_on_the_same_real_images_only(shared_data: Path) -> None:
    """`source_fakes: false` drops the sources' fakes from training, keeps the same real images,
    and leaves validation (where the fakes measure the member) as it was."""
    from pipeline.training.train import TrainConfig, training_samples

    config = TrainConfig(
        backbone="mobilenetv2", data=(shared_data / "gan-faces",), train_per_class=48, val_per_class=16
    )
    train, val = training_samples(config)
    reals_only, same_val = training_samples(replace(config, source_fakes=False))
    assert sorted(s.label for s in train) == [0] * 48 + [1] * 48
    assert reals_only == [s for s in train if s.label == 0]
    assert same_val == val and {s.label for s in val} == {0, 1}


def test_a_cnn_can_also_train_on_pseudo_fakes_of_one_part_of_the_face(shared_data: Path) -> None:
    """`part_blend` (rule 67): at 1, every real image also yields a fake whose one part of the
    face is blended; at 0 (the default) the views are those drawn before it existed."""
    from pipeline.training.train import TrainConfig, _views, training_samples

    config = TrainConfig(
        backbone="mobilenetv2", data=(shared_data / "gan-faces",), train_per_class=12, val_per_class=4, views=1
    )
    config = replace(config, input_size=96)
    train, _ = training_samples(config)
    plain, plain_labels = _views(train, config, np.random.default_rng(0))
    unchanged, unchanged_labels = _views(train, replace(config, part_blend=0.0), np.random.default_rng(0))
    assert unchanged_labels == plain_labels and all(np.array_equal(a, b) for a, b in zip(plain, unchanged, strict=True))
    _, part_labels = _views(train, replace(config, self_blend=0.0, part_blend=1.0), np.random.default_rng(0))
    assert part_labels.count(0) == plain_labels.count(0) == 12
    assert part_labels.count(1) == 12 + 12  # the source's fakes and one part blend per real image


@pytest.mark.training
def test_tiny_training_lowers_the_loss_and_saves_what_it_trained(tiny_run, shared_data: Path) -> None:
    losses = tiny_run.history["loss"]
    assert len(losses) == 4 and losses[-1] < losses[0]
    for name in ("model.keras", "history.json", "config.json", "curves.png"):
        assert (tiny_run.model_path.parent / name).exists()
    reloaded = keras.models.load_model(tiny_run.model_path, safe_mode=True, compile=False)
    crops = np.stack([read_face(p, 224) for p in sorted((shared_data / "gan-faces" / "fake").iterdir())[:8]])
    batch = resize_crops(crops, 96)
    np.testing.assert_allclose(
        np.asarray(reloaded(batch)), np.asarray(tiny_run.model(batch, training=False)), atol=1e-5
    )


@pytest.mark.training
def test_a_finished_run_resumes_with_a_round_on_fresh_views(tiny_run, tmp_path: Path) -> None:
    from pipeline.training.train import TrainConfig, train_member

    shutil.copytree(tiny_run.model_path.parent, tmp_path, dirs_exist_ok=True)
    config = TrainConfig.from_json(json.loads((tmp_path / "config.json").read_text()))
    resumed = train_member(replace(config, out_dir=tmp_path, rounds=2, round_epochs=1), resume=True)
    # The first round's four epochs are kept, not re-run; one more epoch on fresh views follows.
    assert resumed.history["stage"] == ["head", "head", "fine-tune", "fine-tune", "round 2"]
    assert resumed.history["loss"][:4] == tiny_run.history["loss"]
    assert json.loads((tmp_path / "history.json").read_text())["rounds_done"] == 2
    assert resumed.best_val_auc >= tiny_run.best_val_auc
    with pytest.raises(ValueError, match="other settings"):
        train_member(replace(config, out_dir=tmp_path, rounds=3, input_size=128), resume=True)


@pytest.mark.training
def test_a_member_can_start_from_a_trained_model_at_another_input_size(tiny_run, tmp_path: Path) -> None:
    from pipeline.training.train import TrainConfig, build_classifier, cut_layer, train_member

    config = TrainConfig.from_json(json.loads((tiny_run.model_path.parent / "config.json").read_text()))
    grown = train_member(
        replace(
            config,
            name="bigger",
            out_dir=tmp_path,
            input_size=128,
            init_from=tiny_run.model_path,
            trainable_blocks=1,
            head_epochs=0,
            finetune_epochs=1,
            self_blend=0.0,
        )
    )
    # Blocks the tiny run fine-tuned stay frozen here: they hold its weights, not ImageNet's.
    imagenet = build_classifier("mobilenetv2", 128, "imagenet", 0.3)
    names = [layer.name for layer in imagenet.layers]
    trunk_layers = names[: names.index(cut_layer(imagenet, "mobilenetv2", 1)) + 1]
    same_as_tiny = [
        np.array_equal(a, b)
        for n in trunk_layers
        for a, b in zip(grown.model.get_layer(n).get_weights(), tiny_run.model.get_layer(n).get_weights())
    ]
    same_as_imagenet = [
        np.array_equal(a, b)
        for n in trunk_layers
        for a, b in zip(grown.model.get_layer(n).get_weights(), imagenet.get_layer(n).get_weights())
    ]
    assert all(same_as_tiny) and not all(same_as_imagenet)
    assert grown.model.input_shape[1:3] == (128, 128) and grown.history["stage"] == ["fine-tune"]


JAX_LOGITS = """
import sys
from pathlib import Path

import keras
import numpy as np

from pipeline.training.data import read_face
from pipeline.engine.ensemble import predict_crops

assert keras.backend.backend() == "jax"
run, faces = Path(sys.argv[1]), Path(sys.argv[2])
model = keras.models.load_model(run / "model.keras", safe_mode=True, compile=False)
crops = np.stack([read_face(path, 224) for path in sorted(faces.iterdir())[:8]])
np.save(run / "jax_logits.npy", predict_crops(model, crops, 96, 8))
"""


@pytest.mark.training
def test_training_on_the_jax_backend_writes_a_model_tensorflow_loads(shared_data: Path, tmp_path: Path) -> None:
    # A GPU machine has Keras on JAX and no TensorFlow; what it trains must serve in the engine (TensorFlow).
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    train = [
        sys.executable,
        "-m",
        "pipeline",
        "train",
        "--backbone",
        "mobilenetv2",
        "--data",
        str(shared_data / "gan-faces"),
        "--input-size",
        "96",
        "--train-per-class",
        "32",
        "--val-per-class",
        "16",
        "--views",
        "1",
        "--self-blend",
        "0",
        "--trainable-blocks",
        "2",
        "--head-epochs",
        "1",
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--out",
        str(tmp_path),
    ]
    done = subprocess.run(train, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    faces = shared_data / "gan-faces" / "fake"
    done = subprocess.run(
        [sys.executable, "-c", JAX_LOGITS, str(tmp_path), str(faces)],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert keras.backend.backend() == "tensorflow"
    model = keras.models.load_model(tmp_path / "model.keras", safe_mode=True, compile=False)
    crops = np.stack([read_face(path, 224) for path in sorted(faces.iterdir())[:8]])
    np.testing.assert_allclose(
        np.asarray(model(resize_crops(crops, 96))), np.load(tmp_path / "jax_logits.npy"), atol=1e-4
    )


@pytest.mark.training
def test_the_tiny_model_becomes_an_ensemble_the_engine_loads(tiny_run, shared_data: Path, tmp_path: Path) -> None:
    from pipeline.engine.analyze import Engine
    from pipeline.training.ensemble_fit import fit_ensemble
    from pipeline.training.recipe import TrainedMember

    member = TrainedMember("tiny", "keras", tiny_run.model_path, "mobilenetv2", 96)
    validation = fit_ensemble([member], [str(shared_data / "gan-faces")], tmp_path, val_per_class=16)
    spec = EnsembleSpec.load(tmp_path / ENSEMBLE_FILE)
    assert [m.name for m in spec.members] == ["tiny"] and spec.members[0].temperature > 0
    assert spec.uncertain_low <= spec.threshold <= spec.uncertain_high
    assert validation["n"] == 32
    # No cross-source table gave curves, so all four come from the validation mix, and a verdict
    # says so (rule 109's beside the false-alarm and miss curves).
    assert all(getattr(spec, curve) for curve in CURVES)
    assert (validation["hit_curve_from"], validation["correct_rejection_curve_from"]) == (
        "validation fakes",
        "validation reals",
    )
    assert spec.decision_rule.hit_faces == spec.decision_rule.false_alarm_faces == VALIDATION_MIX
    result = (
        Engine(Settings(models_dir=tmp_path))
        .analyze(shared_data / "videos" / "fake" / "0_aaqaifqrwn.mp4", frames=4)
        .result
    )
    assert list(result.model_scores) == ["tiny"] and len(result.frames) == 4
    assert validation["calibration"] == TEMPERATURE and spec.offset == 0.0
    # The same member calibrated with an offset too: the engine adds it to the ensemble's logit.
    shifted = fit_ensemble(
        [member],
        [str(shared_data / "gan-faces")],
        tmp_path / "offset",
        val_per_class=16,
        calibration=TEMPERATURE_AND_OFFSET,
    )
    with_offset = EnsembleSpec.load(tmp_path / "offset" / ENSEMBLE_FILE)
    assert shifted["calibration"] == TEMPERATURE_AND_OFFSET and with_offset.offset != 0.0
    ensemble = Ensemble(tmp_path / "offset")
    crops = np.stack([read_face(path, 224) for path in sorted((shared_data / "gan-faces" / "fake").iterdir())[:6]])
    scores, logits = ensemble.score(crops), ensemble.logits("tiny", crops)
    (tiny,) = with_offset.members
    np.testing.assert_allclose(
        scores.ensemble, sigmoid(logits / tiny.temperature / with_offset.temperature + with_offset.offset), rtol=1e-6
    )
    np.testing.assert_allclose(scores.members["tiny"], Ensemble(tmp_path).score(crops).members["tiny"], rtol=1e-6)


def test_a_temperature_and_offset_fit_recovers_how_the_labels_were_drawn() -> None:
    rng = np.random.default_rng(5)
    logits = rng.normal(0.0, 3.0, 40_000)
    labels = (rng.random(40_000) < sigmoid(logits / 0.5 - 0.8)).astype(float)
    temperature, offset = fit_calibration(logits, labels, TEMPERATURE_AND_OFFSET)
    assert temperature == pytest.approx(0.5, rel=0.05) and offset == pytest.approx(-0.8, abs=0.08)
    # A temperature alone cannot move where the logit crosses 0.5, so it fits these labels worse.
    alone, none = fit_calibration(logits, labels, TEMPERATURE)
    assert none == 0.0
    assert expected_calibration_error(sigmoid(logits / temperature + offset), labels) < expected_calibration_error(
        sigmoid(logits / alone), labels
    )
    with pytest.raises(ValueError, match="unknown calibration 'isotonic'"):
        fit_calibration(logits, labels, "isotonic")


@pytest.mark.training
def test_train_ensemble_keeps_the_named_members_and_trains_the_rest(
    tiny_run, shared_data: Path, tmp_path: Path
) -> None:
    """`train-ensemble --keep tiny`: the CNN's file in the models folder stays as it is and is
    calibrated with the probe, which is trained; a wrong `--keep` is one line, before any work."""
    folder = copy_subset(shared_data / "gan-faces", tmp_path / "gan-faces", 8, ("train", "val"))
    recipe = tmp_path / "recipe.json"
    recipe.write_text(
        json.dumps(
            {
                "sources": [str(folder)],
                "val_per_class": 8,
                "members": [
                    {"kind": "clip_probe", "name": "clip", "block": 5, "regularization": 0.5},
                    {"kind": "keras", "name": "tiny", "backbone": "mobilenetv2", "input_size": 96},
                ],
                "weights": {"clip": 1.0, "tiny": 1.0},
                # Rule 79: pictures weigh the same members otherwise, decided on the same validation.
                "pictures": {"weights": {"clip": 3.0, "tiny": 1.0}, "disagreement_margin": 0.2},
            }
        )
    )
    models, runs = tmp_path / "models", tmp_path / "runs"
    models.mkdir()
    shutil.copy(tiny_run.model_path, models / "tiny.keras")
    before = (models / "tiny.keras").read_bytes()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "tiny.keras").write_bytes(before[: len(before) // 2])
    (broken / "clip.json").write_text('{"feature": "cls"}')
    for keep, folder, message in (
        (["nothing"], models, "names no member of the recipe: nothing"),
        (["clip"], models, "clip.json does not exist"),
        (["tiny"], broken, "tiny.keras does not load"),
        (["clip"], broken, "clip.json does not load"),
    ):
        run = run_cli(
            "train-ensemble", "--recipe", str(recipe), "--keep", *keep, "--models-dir", str(folder), "--runs", str(runs)
        )
        assert run.returncode != 0 and "Traceback" not in run.stderr, run.stderr
        assert run.stderr.strip().startswith("error:") and message in run.stderr, run.stderr
        assert len(run.stderr.strip().splitlines()) == 1 and not runs.exists()
    run = run_cli(
        "train-ensemble",
        "--recipe",
        str(recipe),
        "--keep",
        "tiny",
        "--models-dir",
        str(models),
        "--runs",
        str(runs),
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    spec = EnsembleSpec.load(models / ENSEMBLE_FILE)
    assert [m.name for m in spec.members] == ["clip", "tiny"]
    pictures = spec.for_media("image")
    assert (spec.weights, pictures.weights) == ({"clip": 1.0, "tiny": 1.0}, {"clip": 3.0, "tiny": 1.0})
    assert [m.temperature for m in pictures.members] == [m.temperature for m in spec.members]
    assert (spec.disagreement_margin, pictures.disagreement_margin) == (None, 0.2)
    assert pictures.uncertain_low <= pictures.threshold <= pictures.uncertain_high
    assert pictures.metrics["validation"]["weights"] == {"clip": 3.0, "tiny": 1.0}

    def refit(settings: dict, name: str) -> EnsembleSpec:
        """Both members kept, the decision refitted by `settings` (a recipe) in a copy of `models`."""
        recipe.write_text(json.dumps(settings))
        shutil.copytree(models, tmp_path / name)
        folder = str(tmp_path / name)
        done = run_cli("train-ensemble", "--recipe", str(recipe), "--keep", "clip", "tiny", "--models-dir", folder)
        assert done.returncode == 0, done.stderr[-3000:]
        return EnsembleSpec.load(tmp_path / name / ENSEMBLE_FILE)

    # The pictures' spec is what the same members weighed so would be fitted to alone: its
    # calibration is of its own weighted mean, not on top of the videos'.
    alone = json.loads(recipe.read_text())
    alone["weights"] = alone.pop("pictures")["weights"]
    weighed_alone = refit(alone, "refit")
    assert weighed_alone.weights == pictures.weights
    for name in ("temperature", "offset", "threshold", "uncertain_low", "uncertain_high"):
        assert getattr(pictures, name) == getattr(weighed_alone, name), name
    assert "pictures" in json.loads(run.stdout)
    # Rule 100: with even odds the threshold is 0.5 on the same calibration, the band around it.
    even_spec = refit({**alone, "threshold_rule": "even_odds"}, "even")
    assert (even_spec.temperature, even_spec.offset) == (weighed_alone.temperature, weighed_alone.offset)
    assert even_spec.threshold == 0.5 and even_spec.uncertain_low < 0.5 < even_spec.uncertain_high
    assert even_spec.metrics["validation"]["threshold_rule"] == "even_odds"
    assert weighed_alone.metrics["validation"]["threshold_rule"] == "youden"
    youden_fit, even_fit = weighed_alone.metrics["validation"], even_spec.metrics["validation"]
    assert youden_fit["balanced_accuracy"] == youden_fit["best_balanced_accuracy"] == even_fit["best_balanced_accuracy"]
    assert even_fit["balanced_accuracy"] <= even_fit["best_balanced_accuracy"]
    assert (models / "tiny.keras").read_bytes() == before and (models / "clip.json").is_file()
    assert (runs / "clip").is_dir() and not (runs / "tiny").exists()  # only the probe was trained


def test_kill_stops_prepare_and_running_it_again_finishes(shared_data: Path, tmp_path: Path) -> None:
    """`kill` (SIGTERM, as a batch system sends) while `prepare` works stops it as Ctrl-C does:
    one line, exit 130, no traceback; run again, it goes on from the videos done, makes none
    twice and ends with the crops of a run never stopped."""
    names = sorted(os.listdir(shared_data / "videos" / "fake"))[:4]
    videos = tmp_path / "videos"
    (videos / "fake").mkdir(parents=True)
    for name in names:
        shutil.copy(shared_data / "videos" / "fake" / name, videos / "fake" / name)
    out = tmp_path / "crops"
    run = start_cli("prepare", str(videos), str(out), "--frames", "2", "--no-landmarks")
    one_done = f"1/{len(names)}"  # the progress bar's count
    before, _, after = terminate_after(run, lambda process: read_until(process.stderr, one_done, CLI_TIMEOUT_S))
    stderr = before + after
    assert run.returncode == 130, stderr
    assert "Traceback" not in stderr and stderr.strip().splitlines()[-1] == "interrupted", stderr
    done = list(csv.DictReader((out / "done.csv").open()))
    assert 1 <= len(done) < len(names)

    again = run_cli("prepare", str(videos), str(out), "--frames", "2", "--no-landmarks")
    assert again.returncode == 0, again.stderr
    whole = run_cli("prepare", str(videos), str(tmp_path / "whole"), "--frames", "2", "--no-landmarks")
    assert whole.returncode == 0, whole.stderr
    rows = list(csv.DictReader((out / "metadata.csv").open()))
    assert len(rows) == len({row["file"] for row in rows})  # none made twice
    assert sorted(rows, key=lambda row: row["file"]) == sorted(
        csv.DictReader((tmp_path / "whole" / "metadata.csv").open()), key=lambda row: row["file"]
    )  # the same crops as a run never stopped


def test_prepare_turns_videos_into_face_crops(shared_data: Path, tmp_path: Path) -> None:
    from pipeline.training.prepare import CROP_LOG, EARLIER_CROP_LOG, prepare

    videos = tmp_path / "videos"
    for label, name in (("real", "0_aayrffkzxn.mp4"), ("fake", "0_aaqaifqrwn.mp4")):
        (videos / label).mkdir(parents=True)
        shutil.copy(shared_data / "videos" / label / name, videos / label / name)
    count = prepare(videos, tmp_path / "crops", frames=3, landmarks=False)
    assert count == 6
    rows = list(csv.DictReader((tmp_path / "crops" / "metadata.csv").open()))
    assert {r["group"] for r in rows} == {"0_aayrffkzxn", "0_aaqaifqrwn"}
    crop = cv2.imread(str(tmp_path / "crops" / rows[0]["file"]))
    assert crop.shape == (224, 224, 3)
    assert len(load_samples(tmp_path / "crops")) == 6
    # A folder prepared before the crop log was renamed goes on with its crops, none made again.
    (tmp_path / "crops" / CROP_LOG).rename(tmp_path / "crops" / EARLIER_CROP_LOG)
    (tmp_path / "crops" / "metadata.csv").unlink()
    written = {path: path.stat().st_mtime_ns for path in (tmp_path / "crops").rglob("*.png")}
    assert prepare(videos, tmp_path / "crops", frames=3, landmarks=False) == 6
    assert list(csv.DictReader((tmp_path / "crops" / "metadata.csv").open())) == rows
    assert {path: path.stat().st_mtime_ns for path in (tmp_path / "crops").rglob("*.png")} == written
    assert not (tmp_path / "crops" / EARLIER_CROP_LOG).exists()


def test_a_training_crop_is_the_engines_crop_of_the_same_image(shared_data: Path, tmp_path: Path, engine) -> None:
    """`prepare` frames images exactly as the engine frames what it scores: the same pixels."""
    from pipeline.training.prepare import prepare

    source = tmp_path / "mixed"
    picks = [
        ("real", shared_data / "gan-faces" / "real" / "cv_69000.jpg"),
        ("fake", shared_data / "gan-faces" / "fake" / "f0.jpg"),
        ("fake", next((shared_data / "sd-faces" / "fake").iterdir())),
        ("real", next((shared_data / "swap-faces" / "real").iterdir())),
        ("fake", shared_data / "dfdc-faces" / "fake" / "hoykxrljpv.jpg"),
    ]
    for label, path in picks:
        (source / label).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, source / label / path.name)
    out = tmp_path / "prepared"
    assert prepare(source, out) == len(picks)
    rows = list(csv.DictReader((out / "metadata.csv").open()))
    for row in rows:
        training_crop = cv2.cvtColor(cv2.imread(str(out / row["file"])), cv2.COLOR_BGR2RGB)
        analysis = engine.analyze(source / row["source"])
        engine_crop = analysis.faces[0][0].crop
        assert np.array_equal(training_crop, engine_crop), row["file"]
        points = np.load(out / row["landmarks"]).astype(np.float32)
        assert points.shape == (468, 2)
        # The face mesh lies on the face: most points inside the crop, around its middle.
        inside = ((points >= 0) & (points < 224)).all(axis=1).mean()
        assert inside > 0.8 and np.abs(points.mean(axis=0) - 112).max() < 40
    # Resuming a finished folder does nothing new and keeps the same rows.
    assert prepare(source, out) == len(picks)
    assert list(csv.DictReader((out / "metadata.csv").open())) == rows


def test_evaluate_crops_reports_every_metric_per_model_and_source(
    shared_data: Path, models_dir: Path, tmp_path: Path
) -> None:
    from pipeline.training.evaluate import evaluate

    report = evaluate(
        [shared_data / "dfdc-faces", shared_data / "gan-faces"], "test", models_dir, per_class=12, report_dir=tmp_path
    )
    ensemble = Ensemble(models_dir)
    frame = report["frame_level"]
    assert set(frame) == {*ensemble.member_names, "ensemble"}
    metrics = frame["ensemble"]["all"]
    assert metrics["n"] == 48
    assert {"roc_auc", "average_precision", "eer", "accuracy", "precision", "recall", "f1", "confusion", "ece"} <= set(
        metrics
    )
    assert sum(metrics["confusion"].values()) == 48
    assert set(frame["ensemble"]) >= {"all", "dfdc-faces", "gan-faces"}
    for name in (
        "roc_frame.png",
        "reliability_frame.png",
        "confusion_frame.png",
        "tsne.png",
        "summary.md",
        "metrics.json",
    ):
        assert (tmp_path / name).stat().st_size > 0


def test_evaluate_videos_from_the_command_line(shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    run = run_cli(
        "evaluate",
        str(shared_data / "videos"),
        "--json",
        str(out),
        "--per-class",
        "2",
        "--frames",
        "8",  # more faces per person than CLIP scores (6)
        "--report",
        str(tmp_path / "report"),
    )
    assert run.returncode == 0, run.stderr
    report = json.loads(out.read_text())
    assert set(report["video_level"]) == {"mean", "max_face_mean", "confident"}
    # The plots too, though a costly member (CLIP) left some faces without a score.
    for level in ("frame", "video"):
        assert (tmp_path / "report" / f"roc_{level}.png").stat().st_size > 0
        assert (tmp_path / "report" / f"reliability_{level}.png").stat().st_size > 0
    assert report["video_level"]["confident"]["ensemble"]["all"]["n"] == 4
    assert "video-level" in run.stdout and "frame-level" in run.stdout


def test_evaluate_reshared_scores_the_same_faces_passed_around(shared_data: Path, tmp_path: Path) -> None:
    """`evaluate --reshare` scores the same crops downscaled and JPEG-compressed (the cross-source
    table's second column), says so in its JSON, and prints the share of reals called fake; a
    video among the folders is one line, not a traceback."""
    folders = [str(shared_data / "dfdc-faces"), str(shared_data / "gan-faces")]
    reports = {}
    for name, extra in (("as_they_are", []), ("reshared", ["--reshare"])):
        out = tmp_path / f"{name}.json"
        run = run_cli("evaluate", *folders, "--split", "val", "--per-class", "12", "--json", str(out), *extra)
        assert run.returncode == 0, run.stderr
        assert "real→fake" in run.stdout and "caught" in run.stdout and "as a one-face photo" in run.stdout
        reports[name] = json.loads(out.read_text())
    assert "reshared" not in reports["as_they_are"]
    assert reports["reshared"]["reshared"] == {"scale": [0.5, 1.0], "jpeg_quality": [50, 90]}
    plain, reshared = (reports[k]["frame_level"]["ensemble"]["all"] for k in ("as_they_are", "reshared"))
    assert plain["n"] == reshared["n"] >= 40  # the same faces (a picture where MTCNN finds none is left out of both)
    assert plain["ece"] != reshared["ece"]  # other pictures, other probabilities
    for report in reports.values():
        # Each crop's verdict as a one-face photo, every crop counted once per class.
        verdicts = report["photo_verdicts"]["all"]
        counted = {label: sum(verdicts[label].values()) for label in verdicts}
        confusion = report["frame_level"]["ensemble"]["all"]["confusion"]
        assert counted == {"real": confusion["tn"] + confusion["fp"], "fake": confusion["tp"] + confusion["fn"]}
        assert set(verdicts["real"]) | set(verdicts["fake"]) <= {"fake", "uncertain", "real"}
        # ... and each face's own record, so that two ensembles can be compared face by face.
        photos = report["photos"]
        assert len(photos) == plain["n"] and len({p["file"] for p in photos}) == len(photos)
        for photo in photos:
            assert Path(photo["file"]).is_file() and photo["source"] in {"dfdc-faces", "gan-faces"}
            assert set(photo["model_scores"]) == set(report["weights"])
            # The focus of the crop as the members were given it (re-shared: the copy), and a
            # crop softer than the training faces is `uncertain` as the engine would say (rule 102).
            assert photo["focus"] == pytest.approx(face_focus(read_face(Path(photo["file"]), 224)), abs=1e-3)
            if photo["focus"] < VerdictSettings.trained_face_focus:
                assert photo["verdict"] == "uncertain"
            # So is a toned black-and-white crop (rule 120), as the engine would say.
            assert photo["toned"] == is_toned(read_face(Path(photo["file"]), 224), VerdictSettings())
            if photo["toned"]:
                assert photo["verdict"] == "uncertain"
        assert any(p["focus"] < VerdictSettings.trained_face_focus for p in photos)
        tally = {
            label: {
                v: sum(p["label"] == label and p["verdict"] == v for p in photos) for v in ("fake", "uncertain", "real")
            }
            for label in ("real", "fake")
        }
        assert tally == {label: {v: verdicts[label].get(v, 0) for v in tally[label]} for label in tally}
    run = run_cli("evaluate", str(shared_data / "videos"), "--per-class", "1", "--reshare")
    assert run.returncode != 0 and "Traceback" not in run.stderr
    assert "re-sharing applies to pictures, not videos" in run.stderr


def test_evaluate_a_folder_of_both_crops_and_videos_counts_every_face(
    shared_data: Path, models_dir: Path, tmp_path: Path
) -> None:
    from pipeline.training.evaluate import evaluate

    for label, crop, video in (
        ("real", "real/aabqcugcpc.jpg", "real/0_aayrffkzxn.mp4"),
        ("fake", "fake/hoykxrljpv.jpg", "fake/0_aaqaifqrwn.mp4"),
    ):
        (tmp_path / label).mkdir()
        shutil.copy(shared_data / "dfdc-faces" / crop, tmp_path / label)
        shutil.copy(shared_data / "videos" / video, tmp_path / label)
    report = evaluate([tmp_path], None, models_dir, frames=3)
    # 2 crops + 3 faces from each of the 2 face-crop clips, all at frame level.
    assert report["frame_level"]["ensemble"]["all"]["n"] == 2 + 2 * 3
    assert report["video_level"]["mean"]["ensemble"]["all"]["n"] == 2


def test_every_recipe_the_project_ships_loads() -> None:
    """The shipped recipe and the benchmarks' recipes are read as `Recipe.load` reads any, so a
    setting renamed in the code cannot leave one of them unreadable."""
    from pipeline.config import REPO_ROOT
    from pipeline.training.recipe import Recipe

    recipes = [REPO_ROOT / "models" / "recipe.json", *sorted((REPO_ROOT / "benchmarks").glob("*.json"))]
    assert len(recipes) >= 9
    for path in recipes:
        assert Recipe.load(path).members, path


def test_a_picture_is_weighed_by_the_recipe_s_pictures_block_else_by_its_own_weighing(tmp_path: Path) -> None:
    from pipeline.config import REPO_ROOT
    from pipeline.training.recipe import Recipe

    shipped = Recipe.load(REPO_ROOT / "models" / "recipe.json")
    assert shipped.pictures is not None and shipped.picture_combination == shipped.pictures
    assert shipped.picture_combination.weights != shipped.combination.weights
    alone = json.loads((REPO_ROOT / "models" / "recipe.json").read_text())
    del alone["pictures"]
    (tmp_path / "recipe.json").write_text(json.dumps(alone))
    without = Recipe.load(tmp_path / "recipe.json")
    assert without.picture_combination == without.combination == shipped.combination


@pytest.mark.parametrize(
    "recipe_text",
    [
        '{"members": [{"kind": "clip_probe", "name": "clip"}], "false_alarm_curve": [[0.5]]}',
        '{"members": [{"kind": "clip_probe", "name": "clip"}], "miss_curve": [["x", 1]]}',
        '{"members": [{"kind": "a_kind_that_does_not_exist", "name": "x"}]}',
        '{"members": [{"kind": "clip_probe", "name": "clip", "block": 0}]}',  # no block 0 (-1 read the last)
        '{"members": [{"kind": "clip_probe", "name": "clip", "augmented_views": "two"}]}',
        '{"members": [{"kind": "clip_probe", "name": "clip", "augmented_views": -1}]}',
        '{"members": [{"kind": "clip_probe", "name": "clip", "self_blended_views": -1}]}',
        '{"members": [{"kind": "clip_probe", "name": "clip", "part_blended_views": -1}]}',
        '{"members": [{"kind": "clip_probe", "name": "clip", "source_fakes": "no"}]}',
        '{"members": [{"kind": "clip_probe", "name": "clip", "source_fakes": false}]}',  # then no fakes at all
        '{"members": [{"kind": "keras", "name": "small", "backbone": "mobilenetv2", "source_fakes": "no"}]}',
        '{"members": [{"kind": "keras", "name": "small", "backbone": "mobilenetv2", "source_fakes": false,'
        ' "self_blend": 0}]}',  # no fakes at all
        # A patch probe learns which patches were changed: a degraded view changes them all.
        '{"members": [{"kind": "clip_probe", "name": "p", "feature": "patch_max", "self_blended_views": 1,'
        ' "source_fakes": false, "augmented_views": 1}]}',
        '{"members": [{"kind": "clip_probe", "name": "clip", "augmented_settings": {"sharpness_p": 1}}]}',
        '{"members": [{"kind": "clip_probe", "name": "clip", "augmented_settings": {"sharpen_p": 2}}]}',
        '{"members": [{"kind": "clip_probe", "name": "clip", "augment_self_blends": "yes",'
        ' "augmented_views": 1, "self_blended_views": 1}]}',
        # Degrading the self-blends alike needs both the degraded views and the self-blends.
        '{"members": [{"kind": "clip_probe", "name": "clip", "augment_self_blends": true, "augmented_views": 1}]}',
        '{"members": [{"kind": "clip_probe", "name": "clip", "augment_self_blends": true, "self_blended_views": 1}]}',
        # Degrading the reals only needs degraded views, and cannot degrade the self-blends too.
        '{"members": [{"kind": "clip_probe", "name": "clip", "augment_reals_only": true}]}',
        '{"members": [{"kind": "clip_probe", "name": "clip", "augment_reals_only": true, "augmented_views": 1,'
        ' "augment_self_blends": true, "self_blended_views": 1}]}',
        # The mean of per-source probes (rule 86) is a switch, and of one feature per crop.
        '{"members": [{"kind": "clip_probe", "name": "clip", "per_source": "yes"}]}',
        '{"members": [{"kind": "clip_probe", "name": "p", "feature": "patch_max", "self_blended_views": 1,'
        ' "source_fakes": false, "per_source": true}]}',
        # Several blocks side by side (rule 92): a list, increasing, of class tokens or patch means.
        '{"members": [{"kind": "clip_probe", "name": "b", "blocks": [3, 1]}]}',
        '{"members": [{"kind": "clip_probe", "name": "b", "blocks": [1, 13]}]}',
        '{"members": [{"kind": "clip_probe", "name": "b", "blocks": []}]}',
        '{"members": [{"kind": "clip_probe", "name": "b", "blocks": 5}]}',
        '{"members": [{"kind": "clip_probe", "name": "b", "blocks": [1, 2], "block": 2}]}',
        '{"members": [{"kind": "clip_probe", "name": "b", "blocks": [1, 2], "feature": "embed"}]}',
        '{"members": [{"kind": "clip_probe", "name": "clip", "self_blend_misplacement": -1}]}',
        '{"members": [{"kind": "clip_probe", "name": "clip", "self_blend_misplacement": true}]}',
        '{"members": [{"kind": "clip_probe", "name": "clip", "self_blend_misplacement": "far"}]}',
        '{"members": [{"kind": "clip_probe", "name": "clip", "augmented_settings": {"jpeg_quality": [95, 40]}}]}',
        '{"members": [{"kind": "clip_probe", "name": "clip", "augmented_settings": {"jpeg_quality": 50}}]}',
        '{"members": [{"kind": "clip_probe", "name": "clip", "augmented_settings": {"blur_p": "none"}}]}',
        '{"members": [{"kind": "clip_probe", "name": "clip", "augmented_settings": {"jpeg_p": 60}}]}',
        # A misspelt setting, of a probe, a CNN or the folds' CNN overrides.
        '{"members": [{"kind": "clip_probe", "name": "clip", "augmented_view": 1}]}',
        '{"members": [{"kind": "keras", "name": "small", "backbone": "mobilenetv2", "finetune_epoch": 3}]}',
        '{"members": [{"kind": "keras", "name": "small", "backbone": "mobilenetv2"}],'
        ' "cross_source": {"keras": {"train_per_clas": 10}}}',
        '{"sources": ["dfdc-faces"]}',  # no members
        '{"members": [{"kind": "clip_probe", "name": "clip"}], "ensemble_calibration": "isotonic"}',
        '{"members": [{"kind": "clip_probe", "name": "clip"}], "disagreement": "loudest"}',
        '{"members": [{"kind": "clip_probe", "name": "clip"}], "threshold_rule": "median"}',
        # A CNN can start only from a CNN trained before it.
        '{"members": [{"kind": "keras", "name": "big", "backbone": "mobilenetv2", "init_from": "small"},'
        ' {"kind": "keras", "name": "small", "backbone": "mobilenetv2"}]}',
        '{"members": [{"kind": "clip_probe", "name": "clip"},'
        ' {"kind": "keras", "name": "big", "backbone": "mobilenetv2", "init_from": "clip"}]}',
        '{"members": [{"kind": "keras", "name": "small", "backbone": "mobilenetv2"},'
        ' {"kind": "keras", "name": "big", "backbone": "mobilenetv2", "init_from": "small"}],'
        ' "cross_source": {"members": ["big"]}}',
        "not json",
        # Pictures weigh exactly the members the recipe's own weights weigh, each above 0.
        '{"members": [{"kind": "keras", "name": "a", "backbone": "mobilenetv2"}], "pictures": {"weights": {"b": 1}}}',
        '{"members": [{"kind": "keras", "name": "a", "backbone": "mobilenetv2"}], "pictures": {"weights": {"a": 0}}}',
        '{"members": [{"kind": "keras", "name": "a", "backbone": "mobilenetv2"}], "pictures": {"margin": 1}}',
        '{"members": [{"kind": "keras", "name": "a", "backbone": "mobilenetv2"}], "pictures": {}}',
        # A weight is a number, the recipe's own as much as the pictures'.
        '{"members": [{"kind": "keras", "name": "a", "backbone": "mobilenetv2"}], "weights": {"a": "heavy"}}',
    ],
)
def test_a_malformed_recipe_is_a_data_error_naming_the_file(tmp_path: Path, recipe_text: str) -> None:
    from pipeline.training.recipe import Recipe

    recipe = tmp_path / "recipe.json"
    recipe.write_text(recipe_text)
    with pytest.raises(DataError, match="recipe.json"):
        Recipe.load(recipe)


def test_bootstrap_resamples_are_paired_between_models_scored_on_the_same_items() -> None:
    from sklearn.metrics import roc_auc_score

    from pipeline.training.cross_source import bootstrap_roc_auc, interval

    rng = np.random.default_rng(7)
    labels = np.repeat([0, 1], [300, 200])
    noise = rng.normal(size=500)
    weak, strong = noise + 0.5 * labels, noise + 1.5 * labels
    draws = {name: bootstrap_roc_auc(labels, scores, seed=11) for name, scores in (("weak", weak), ("strong", strong))}
    # Same labels and seed: the same items drawn, so the weak model's ranking helped by the same
    # signal is beaten on every resample, and its interval is about the AUC of one draw.
    assert (draws["strong"] > draws["weak"]).all()
    assert np.array_equal(bootstrap_roc_auc(labels, weak, seed=11), draws["weak"])
    low, high = interval(draws["weak"])
    assert low < roc_auc_score(labels, weak) < high and 0.02 < high - low < 0.15
    assert (bootstrap_roc_auc(labels, labels.astype(float), seed=3) == 1.0).all()
    assert interval(bootstrap_roc_auc(np.zeros(5, int), np.arange(5.0), seed=3)) is None


def test_the_mixed_figure_resamples_items_with_both_their_copies() -> None:
    """`mixed` ranks each held-out item as it is and re-shared in one set; its bootstrap draws an
    item with both copies, so copying every item unchanged gives exactly the single set's draws,
    and a shift that moves every re-shared face up (a model reading processing as fake) costs
    the mixed figure what neither set alone shows."""
    from sklearn.metrics import roc_auc_score

    from pipeline.training.cross_source import MIXED_COPIES, Scored, bootstrap_roc_auc, mixed

    rng = np.random.default_rng(5)
    labels = np.repeat([0, 1], [250, 150])
    scores = rng.normal(size=400) + labels
    twice = np.concatenate([scores, scores])
    single = bootstrap_roc_auc(labels, scores, seed=4)
    assert np.allclose(bootstrap_roc_auc(labels, twice, seed=4, copies=MIXED_COPIES), single)
    samples = [Sample(Path(f"{i}.png"), int(label), f"g{i}", "test", "toy") for i, label in enumerate(labels)]
    shifted = mixed(Scored(samples, {"m": scores}), Scored(samples, {"m": scores + 3.0}))
    assert np.array_equal(shifted.labels, np.concatenate([labels, labels]))
    assert roc_auc_score(labels, scores + 3.0) == roc_auc_score(labels, scores)
    assert roc_auc_score(shifted.labels, shifted.logits["m"]) < roc_auc_score(labels, scores) - 0.1
    draws = bootstrap_roc_auc(labels, shifted.logits["m"], seed=4, copies=MIXED_COPIES)
    assert (draws < single).all()


def test_the_weight_choice_takes_the_smallest_near_best_weight_and_is_checked_on_unseen_folds() -> None:
    from pipeline.training.cross_source import weight_choice, weight_choice_markdown

    # The mean of the two columns per fold and CLIP weight (the CNN at 1). On all folds 4 is best
    # (0.8143) but 2 (0.8100) is within the tie; "a" and "b" alone would pick 8, which fails "c".
    means = {
        "a": {1.0: 0.70, 2.0: 0.80, 4.0: 0.804, 8.0: 0.83},
        "b": {1.0: 0.70, 2.0: 0.78, 4.0: 0.784, 8.0: 0.81},
        "c": {1.0: 0.90, 2.0: 0.85, 4.0: 0.855, 8.0: 0.50},
    }

    def row(weights: dict[str, float], mean: dict[str, float]) -> dict[str, object]:
        return {
            "weights": weights,
            "by_source": {s: m + 0.01 for s, m in mean.items()},
            "by_source_reshared": {s: m - 0.01 for s, m in mean.items()},
            "mean_roc_auc_validation": 0.9 - weights["clip"] / 100,
        }

    # The members alone score best of all, but are not weights of the grid: ignored.
    trials = [
        row({"clip": 1.0, "cnn": 0.0}, dict.fromkeys(means, 0.99)),
        row({"clip": 0.0, "cnn": 1.0}, dict.fromkeys(means, 0.99)),
    ]
    trials += [row({"clip": w, "cnn": 1.0}, {s: by_weight[w] for s, by_weight in means.items()}) for w in means["a"]]
    choice = weight_choice(trials)
    assert choice["chosen"] == 2.0 and choice["score"] == pytest.approx(0.81)
    assert max(choice["scores"].values()) == pytest.approx(choice["scores"]["4.0"])
    assert {s: n["weight"] for s, n in choice["nested"].items()} == {"a": 2.0, "b": 2.0, "c": 8.0}
    assert choice["nested"]["c"]["score"] == pytest.approx(0.50)
    assert choice["nested_score"] == pytest.approx((0.80 + 0.78 + 0.50) / 3)
    text = weight_choice_markdown(choice, ["clip", "cnn"])
    assert "chosen (the smallest within 0.005 of the best): 2." in text and "c 8 → 0.500" in text
    # Beside each weight's score, what it costs on the folds' validation mixes (rule 88).
    assert choice["validation"]["8.0"] == pytest.approx(0.82) and "**2: 0.810** (0.880), 4: 0.814 (0.860)" in text
    # One fold alone: nothing to check a choice against.
    alone = weight_choice(
        [
            {**r, "by_source": {"a": r["by_source"]["a"]}, "by_source_reshared": {"a": r["by_source_reshared"]["a"]}}
            for r in trials
        ]
    )
    assert alone["chosen"] == 8.0 and alone["nested"] == {} and alone["nested_score"] is None


def test_an_unreadable_baseline_table_is_one_line_before_any_fold_runs(tmp_path: Path) -> None:
    (tmp_path / "broken.json").write_text("{not json")
    draws = {"resamples": 3, "held_out": {"gan-faces": "6 items 0123"}, "mean_roc_auc_reshared": [0.5] * 3}
    baselines = {
        "missing.json": ("cannot read the baseline table", None),
        "broken.json": ("cannot read the baseline table", None),
        "list.json": ("is not a cross-source table", []),
        "old.json": ("is not a cross-source table", {"mean": {}, "reshared_mean": {}}),
        "short.json": ("is not a cross-source table", {"bootstrap": {**draws, "mean_roc_auc": [0.5]}}),
    }
    for name, (message, content) in baselines.items():
        if content is not None:
            (tmp_path / name).write_text(json.dumps(content))
        run = run_cli("cross-source", "--baseline", str(tmp_path / name), "--runs", str(tmp_path / "runs"))
        assert run.returncode != 0 and "Traceback" not in run.stderr, run.stderr
        assert run.stderr.strip().startswith("error:") and message in run.stderr, run.stderr
        assert len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert not (tmp_path / "runs").exists()


def test_a_malformed_recipe_is_one_line_from_the_command_line(tmp_path: Path) -> None:
    recipe = tmp_path / "recipe.json"
    recipe.write_text('{"members": [{"kind": "clip_probe", "name": "clip"}], "false_alarm_curve": [[0.5]]}')
    for command in (["train-ensemble", "--models-dir", str(tmp_path / "models")], ["cross-source"]):
        run = run_cli(*command, "--recipe", str(recipe), "--runs", str(tmp_path / "runs"))
        assert run.returncode != 0
        assert "Traceback" not in run.stderr, run.stderr
        assert run.stderr.strip().startswith("error:") and "is malformed" in run.stderr, run.stderr
        assert len(run.stderr.strip().splitlines()) == 1, run.stderr


_MISTAKES_SCRIPT = """
import json, sys
from pipeline.cli import main
for argv in json.loads(sys.argv[1]):
    status = main(argv)
    print(json.dumps({"status": status, "tensorflow": "tensorflow" in sys.modules, "keras": "keras" in sys.modules}))
"""


def test_a_mistyped_input_to_a_training_command_is_answered_before_tensorflow_loads(
    shared_data: Path, tmp_path: Path
) -> None:
    """Loading TensorFlow takes seconds: the training commands check what they were given first,
    so a wrong path, table, recipe or member name costs a moment, not a model load."""
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps({"members": [{"kind": "clip_probe", "name": "clip", "block": 5}]}))
    runs = str(tmp_path / "runs")
    mistakes = [
        ("cannot read the baseline table", ["cross-source", "--baseline", str(tmp_path / "no.json"), "--runs", runs]),
        ("cannot read the recipe", ["cross-source", "--recipe", str(tmp_path / "no-recipe.json"), "--runs", runs]),
        ("names no member of the recipe", ["train-ensemble", "--recipe", str(recipe), "--keep", "cnn", "--runs", runs]),
        (
            "clip.json does not exist",
            [
                "train-ensemble",
                "--recipe",
                str(recipe),
                "--keep",
                "clip",
                "--models-dir",
                str(tmp_path),
                "--runs",
                runs,
            ],
        ),
        ("must hold a real/ or a fake/ folder", ["evaluate", str(tmp_path)]),
        ("re-sharing applies to pictures", ["evaluate", str(shared_data / "videos"), "--per-class", "1", "--reshare"]),
        ("must hold a real/ or a fake/ folder", ["prepare", str(tmp_path), str(tmp_path / "crops")]),
    ]
    run = run_python("-c", _MISTAKES_SCRIPT, json.dumps([argv for _, argv in mistakes]))
    answers = [json.loads(line) for line in run.stdout.splitlines()]
    errors = run.stderr.strip().splitlines()
    assert len(answers) == len(errors) == len(mistakes), run.stderr
    for (message, _), answer, error in zip(mistakes, answers, errors, strict=True):
        assert answer == {"status": 1, "tensorflow": False, "keras": False}, (message, answer)
        assert error.startswith("error:") and message in error, error
    assert not (tmp_path / "runs").exists()
