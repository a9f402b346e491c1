"""ImageNet backbones as plain Keras models, behind one interface.

Every backbone takes float32 RGB in [0, 255], shape (N, size, size, 3), normalises it with a layer
of its own (so a saved model is self-contained) and returns its final feature map (N, h, w, 1280).

- ``mobilenetv2``: torchvision's MobileNetV2, with its ImageNet weights read from the PyTorch file
  (`pipeline.training.torch_weights`). Symmetric padding, BatchNorm epsilon 1e-5, ImageNet mean/std.
- ``efficientnet_lite0``: EfficientNet-Lite0 as ported to PyTorch by ml-illustrated (a fork of
  lukemelas' EfficientNet-PyTorch) from the official TensorFlow checkpoint. TensorFlow "same"
  padding, BatchNorm epsilon 1e-3, ReLU6, no squeeze-excite, input (x - 127) / 128.
- ``efficientnetv2b0``: `keras.applications.EfficientNetV2B0`; its ImageNet weights need internet.

The two PyTorch ports compute exactly what the originals compute (tests/test_backbones.py compares
ImageNet probabilities with real PyTorch). They use only built-in layers, so a saved ``.keras``
file reloads with ``keras.models.load_model(path, safe_mode=True)`` and no custom objects.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import keras
import numpy as np
from keras import layers

from pipeline.errors import WeightsUnavailableError
from pipeline.training.torch_weights import imagenet_weights_path, load_state_dict

IMAGENET_CLASSES = 1000


@dataclass(frozen=True)
class BackboneSpec:
    """What the rest of the engine needs to know about a backbone."""

    name: str
    feature_dim: int
    """Channels of the final feature map."""
    last_conv_layer: str
    """Layer whose output is the final feature map, after its activation (for Grad-CAM)."""
    default_input_size: int
    blocks: tuple[str, ...]
    """Layer-name prefixes of the backbone's blocks, from input to output: a layer belongs to block
    ``b`` when its name is ``b`` or starts with ``b + "_"``. See `set_trainable_blocks`."""


@dataclass(frozen=True)
class _Stage:
    """A run of inverted-residual blocks; only the first one strides."""

    expand: int
    channels: int
    repeats: int
    stride: int
    kernel: int


@dataclass(frozen=True)
class _TorchRecipe:
    """How one PyTorch original computes, and where its parameters sit in its state dict."""

    stages: tuple[_Stage, ...]
    symmetric_padding: bool
    """True: PyTorch's ``padding=k // 2`` on both sides. False: TensorFlow "same" (the odd pixel
    after), which is what the TF-trained Lite0 weights expect and what Keras "same" does."""
    bn_epsilon: float
    bn_momentum: float
    """Keras momentum (1 - PyTorch's), used only when fine-tuning updates the statistics."""
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    """Input normalisation in [0, 255] units: (x - mean) / std."""
    torch_names: Callable[[tuple[int, ...]], dict[str, str]]
    """Expansion factor of each block -> {Keras layer name: state-dict prefix}."""
    classifier_prefix: str

    @property
    def expands(self) -> tuple[int, ...]:
        return tuple(s.expand for s in self.stages for _ in range(s.repeats))


def _mobilenetv2_torch_names(expands: tuple[int, ...]) -> dict[str, str]:
    last = len(expands) + 1
    names = {
        "stem": "features.0.0",
        "stem_bn": "features.0.1",
        "head": f"features.{last}.0",
        "head_bn": f"features.{last}.1",
        "logits": "classifier.1",
    }
    for k, expand in enumerate(expands):
        seq = f"features.{k + 1}.conv"
        # torchvision numbers the units of a block's Sequential; without expansion it starts at the
        # depthwise unit.
        units = ["depthwise", "project"] if expand == 1 else ["expand", "depthwise", "project"]
        for i, unit in enumerate(units[:-1]):
            names[f"block_{k}_{unit}"] = f"{seq}.{i}.0"
            names[f"block_{k}_{unit}_bn"] = f"{seq}.{i}.1"
        names[f"block_{k}_project"] = f"{seq}.{len(units) - 1}"
        names[f"block_{k}_project_bn"] = f"{seq}.{len(units)}"
    return names


def _efficientnet_lite_torch_names(expands: tuple[int, ...]) -> dict[str, str]:
    names = {
        "stem": "_conv_stem",
        "stem_bn": "_bn0",
        "head": "_conv_head",
        "head_bn": "_bn1",
        "logits": "_fc",
    }
    units = {
        "expand": "_expand_conv",
        "expand_bn": "_bn0",
        "depthwise": "_depthwise_conv",
        "depthwise_bn": "_bn1",
        "project": "_project_conv",
        "project_bn": "_bn2",
    }
    for k in range(len(expands)):
        names.update({f"block_{k}_{unit}": f"_blocks.{k}.{torch}" for unit, torch in units.items()})
    return names


_IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
_IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)

_RECIPES: dict[str, _TorchRecipe] = {
    "mobilenetv2": _TorchRecipe(
        stages=(
            _Stage(1, 16, 1, 1, 3),
            _Stage(6, 24, 2, 2, 3),
            _Stage(6, 32, 3, 2, 3),
            _Stage(6, 64, 4, 2, 3),
            _Stage(6, 96, 3, 1, 3),
            _Stage(6, 160, 3, 2, 3),
            _Stage(6, 320, 1, 1, 3),
        ),
        symmetric_padding=True,
        bn_epsilon=1e-5,
        bn_momentum=0.9,
        mean=_IMAGENET_MEAN,
        std=_IMAGENET_STD,
        torch_names=_mobilenetv2_torch_names,
        classifier_prefix="classifier.",
    ),
    "efficientnet_lite0": _TorchRecipe(
        stages=(
            _Stage(1, 16, 1, 1, 3),
            _Stage(6, 24, 2, 2, 3),
            _Stage(6, 40, 2, 2, 5),
            _Stage(6, 80, 3, 2, 3),
            _Stage(6, 112, 3, 1, 5),
            _Stage(6, 192, 4, 2, 5),
            _Stage(6, 320, 1, 1, 3),
        ),
        symmetric_padding=False,
        bn_epsilon=1e-3,
        bn_momentum=0.99,
        # TensorFlow's EfficientNet-Lite preprocessing ("inception-style", for quantisation).
        mean=(127.0, 127.0, 127.0),
        std=(128.0, 128.0, 128.0),
        torch_names=_efficientnet_lite_torch_names,
        classifier_prefix="_fc.",
    ),
}

# keras.applications' EfficientNetV2-B0 blocks: stage i has block{i}a, block{i}b, ... (depth 1.0).
_EFFICIENTNETV2B0_REPEATS = (1, 2, 2, 3, 5, 8)


def _torch_blocks(recipe: _TorchRecipe) -> tuple[str, ...]:
    return ("stem", *(f"block_{k}" for k in range(len(recipe.expands))), "head")


BACKBONES: dict[str, BackboneSpec] = {
    "mobilenetv2": BackboneSpec("mobilenetv2", 1280, "head_relu", 224, _torch_blocks(_RECIPES["mobilenetv2"])),
    "efficientnet_lite0": BackboneSpec(
        "efficientnet_lite0", 1280, "head_relu", 224, _torch_blocks(_RECIPES["efficientnet_lite0"])
    ),
    "efficientnetv2b0": BackboneSpec(
        "efficientnetv2b0",
        1280,
        "top_activation",
        224,
        (
            "stem",
            *(f"block{i + 1}{chr(ord('a') + j)}" for i, n in enumerate(_EFFICIENTNETV2B0_REPEATS) for j in range(n)),
            "top",
        ),
    ),
}


def _spec(name: str) -> BackboneSpec:
    try:
        return BACKBONES[name]
    except KeyError:
        raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}") from None


def _conv_unit(
    x: keras.KerasTensor,
    name: str,
    recipe: _TorchRecipe,
    kernel: int,
    stride: int = 1,
    filters: int | None = None,
    activation: bool = True,
) -> keras.KerasTensor:
    """Conv (depthwise when `filters` is None), BatchNorm, ReLU6: `name`, `name`_bn, `name`_relu."""
    padding = "same"
    if stride > 1 and recipe.symmetric_padding:
        # Keras "same" puts the odd pixel after; PyTorch pads kernel // 2 on both sides.
        x = layers.ZeroPadding2D(kernel // 2, name=f"{name}_pad")(x)
        padding = "valid"
    if filters is None:
        x = layers.DepthwiseConv2D(kernel, stride, padding, use_bias=False, name=name)(x)
    else:
        x = layers.Conv2D(filters, kernel, stride, padding, use_bias=False, name=name)(x)
    x = layers.BatchNormalization(epsilon=recipe.bn_epsilon, momentum=recipe.bn_momentum, name=f"{name}_bn")(x)
    if activation:
        x = layers.Activation("relu6", name=f"{name}_relu")(x)
    return x


def _torch_trunk(name: str, input_size: int) -> tuple[keras.KerasTensor, keras.KerasTensor]:
    """The layers of a PyTorch-ported backbone, from the [0, 255] input to the head's ReLU6."""
    recipe = _RECIPES[name]
    inputs = keras.Input((input_size, input_size, 3), name="image")
    mean, std = np.asarray(recipe.mean), np.asarray(recipe.std)
    # One multiply-add: (x - mean) / std == x * (1 / std) + (-mean / std).
    x = layers.Rescaling(scale=(1 / std).tolist(), offset=(-mean / std).tolist(), name="normalise")(inputs)
    x = _conv_unit(x, "stem", recipe, kernel=3, stride=2, filters=32)
    channels, k = 32, 0
    for stage in recipe.stages:
        for repeat in range(stage.repeats):
            stride = stage.stride if repeat == 0 else 1
            block_input, prefix = x, f"block_{k}"
            if stage.expand != 1:
                x = _conv_unit(x, f"{prefix}_expand", recipe, kernel=1, filters=channels * stage.expand)
            x = _conv_unit(x, f"{prefix}_depthwise", recipe, kernel=stage.kernel, stride=stride)
            x = _conv_unit(x, f"{prefix}_project", recipe, kernel=1, filters=stage.channels, activation=False)
            if stride == 1 and channels == stage.channels:
                x = layers.Add(name=f"{prefix}_add")([block_input, x])
            channels, k = stage.channels, k + 1
    x = _conv_unit(x, "head", recipe, kernel=1, filters=_spec(name).feature_dim)
    return inputs, x


def _keras_weights(layer: layers.Layer, prefix: str, state: dict[str, np.ndarray]) -> list[np.ndarray]:
    """The PyTorch parameters at `prefix`, laid out as `layer.set_weights` wants them."""
    if isinstance(layer, layers.DepthwiseConv2D):
        return [state[f"{prefix}.weight"].transpose(2, 3, 0, 1)]  # (C, 1, kh, kw) -> (kh, kw, C, 1)
    if isinstance(layer, layers.Conv2D):
        return [state[f"{prefix}.weight"].transpose(2, 3, 1, 0)]  # (out, in, kh, kw) -> (kh, kw, in, out)
    if isinstance(layer, layers.BatchNormalization):
        return [state[f"{prefix}.{p}"] for p in ("weight", "bias", "running_mean", "running_var")]
    if isinstance(layer, layers.Dense):
        return [state[f"{prefix}.weight"].T, state[f"{prefix}.bias"]]  # (out, in) -> (in, out)
    raise TypeError(f"no PyTorch counterpart for layer {layer.name} ({type(layer).__name__})")


def _load_torch_weights(model: keras.Model, name: str, with_classifier: bool) -> None:
    """Copy the ImageNet PyTorch weights into `model`; every parameter must find its layer."""
    recipe = _RECIPES[name]
    state = load_state_dict(imagenet_weights_path(name))
    names = recipe.torch_names(recipe.expands)
    used: set[str] = set()
    for layer in model.layers:
        if not layer.weights:
            continue
        prefix = names[layer.name]
        layer.set_weights(_keras_weights(layer, prefix, state))
        used.update(k for k in state if k.startswith(prefix + "."))
    left = {
        k
        for k in state
        if k not in used
        and not k.endswith("num_batches_tracked")  # a training counter, not a weight
        and (with_classifier or not k.startswith(recipe.classifier_prefix))
    }
    if left:
        raise WeightsUnavailableError(
            f"the ImageNet weights for {name} do not fit its architecture: unused {sorted(left)[:5]}"
        )


def _efficientnetv2b0(input_size: int, weights: str | None, include_top: bool) -> keras.Model:
    try:
        # include_preprocessing: the model rescales [0, 255] itself, like the other backbones.
        return keras.applications.EfficientNetV2B0(
            include_top=include_top,
            weights=weights,
            input_shape=(input_size, input_size, 3),
            include_preprocessing=True,
            classifier_activation=None,
        )
    except Exception as error:  # keras' downloader raises a bare Exception when offline
        if "URL fetch failure" not in str(error):
            raise
        raise WeightsUnavailableError(
            "ImageNet weights for efficientnetv2b0 are downloaded by Keras and need internet "
            "access (none here); use weights=None to train it from scratch offline, or another "
            "backbone"
        ) from error


def _check_weights(weights: str | None) -> None:
    if weights not in ("imagenet", None):
        raise ValueError(f"weights must be 'imagenet' or None, not {weights!r}")


def build_backbone(name: str, input_size: int = 224, weights: str | None = "imagenet") -> keras.Model:
    """Feature extractor: (N, size, size, 3) RGB in [0, 255] -> final feature map (N, h, w, 1280).

    ``weights="imagenet"`` loads ImageNet weights (raising `WeightsUnavailableError` when they are
    not available offline); ``None`` leaves Keras' random initialisation.
    """
    spec = _spec(name)
    _check_weights(weights)
    if name == "efficientnetv2b0":
        return _efficientnetv2b0(input_size, weights, include_top=False)
    inputs, features = _torch_trunk(name, input_size)
    model = keras.Model(inputs, features, name=spec.name)
    if weights == "imagenet":
        _load_torch_weights(model, name, with_classifier=False)
    return model


def build_imagenet_classifier(name: str, input_size: int = 224) -> keras.Model:
    """The backbone with its ImageNet head: RGB in [0, 255] -> 1000 ImageNet logits (no softmax).

    Global average pooling then the original linear layer (its dropout is a no-op at inference and
    left out). Used to check the ports against PyTorch and for ImageNet-class Grad-CAM.
    """
    spec = _spec(name)
    if name == "efficientnetv2b0":
        return _efficientnetv2b0(input_size, "imagenet", include_top=True)
    inputs, features = _torch_trunk(name, input_size)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(features)
    logits = layers.Dense(IMAGENET_CLASSES, name="logits")(x)
    model = keras.Model(inputs, logits, name=f"{spec.name}_imagenet")
    _load_torch_weights(model, name, with_classifier=True)
    return model


def _all_layers(model: keras.Model) -> Iterator[layers.Layer]:
    """Every layer, also inside nested models (a backbone used as one layer of a bigger one)."""
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


def _block_of(layer_name: str, blocks: tuple[str, ...]) -> int | None:
    for index, block in enumerate(blocks):
        if layer_name == block or layer_name.startswith(block + "_"):
            return index
    return None


def set_trainable_blocks(model: keras.Model, name: str, n_upper_blocks: int) -> None:
    """Freeze the backbone `name` inside `model` except its top `n_upper_blocks` blocks.

    ``0`` freezes the whole backbone (feature extraction); ``len(BACKBONES[name].blocks)`` trains
    it all. Layers outside the backbone's blocks (a classifier head added on top, the input
    normalisation) stay trainable, so do not name layers added on top like a block (``head_...``,
    ``stem_...``). Frozen BatchNorm layers run in inference mode (Keras does this for
    ``trainable=False``), so their ImageNet statistics are kept. Recompile after calling.
    """
    blocks = _spec(name).blocks
    if not 0 <= n_upper_blocks <= len(blocks):
        raise ValueError(f"n_upper_blocks must be in 0..{len(blocks)} for {name}, not {n_upper_blocks}")
    first_trainable = len(blocks) - n_upper_blocks
    model.trainable = True  # Keras sets this on every inner layer; the loop then freezes below
    for layer in _all_layers(model):
        index = _block_of(layer.name, blocks)
        if index is not None:
            layer.trainable = index >= first_trainable
