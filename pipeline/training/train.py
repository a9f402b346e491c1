"""Training one ensemble member: an ImageNet backbone with a small head, fine-tuned in stages.

A full fine-tune runs at about 10 images/s on a 2-core CPU, so the lower blocks stay frozen and
their output is computed once per augmented view and cached; only the upper blocks and the head
are trained, for several epochs, on those cached features. On a GPU (Keras on JAX or TF) the
same recipe runs unchanged, just faster; raise `views` there for more augmentation variety.

Stages: (1) the head alone, with a higher learning rate; (2) the upper `trainable_blocks`
backbone blocks and the head, AdamW with cosine decay, early stopping and best checkpoint on
validation ROC AUC, label smoothing, class weights. With `rounds` > 1, the augmented views are
then redrawn and the fine-tune runs again from the best weights so far, at `round_lr`: cached
features would otherwise show the model the same augmentation of each image every epoch.

Each round ends with a checkpoint (`model.keras` + `history.json`) and draws its views from
(seed, round) alone, so an interrupted run, or one given more rounds, resumes from its last
finished round (`resume=True`) on the same views an uninterrupted run would draw.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.training.augment import augment, random_part, self_blend
from pipeline.training.data import Sample, balanced_subset, class_weights, read_face
from pipeline.training.sources import blend_landmarks, source_samples


@dataclass(frozen=True)
class TrainConfig:
    """One member's recipe. Every field is recorded beside the trained model."""

    backbone: str = "mobilenetv2"
    name: str = ""
    """The member's name in the ensemble (default: the backbone's)."""
    data: tuple[str, ...] = ()
    """Sources to train on: names of prepared shared sources (`pipeline.training.sources`) or
    folder paths."""
    out_dir: Path = Path("runs/mobilenetv2")
    input_size: int = 160
    weights: str | None = "imagenet"
    init_from: Path | None = None
    """A trained model of the same backbone whose weights start this one instead of `weights`
    (e.g. the member trained at another input size: convolutions do not depend on it)."""
    train_per_class: int = 3000
    """Training images per class and per data set (the shared sets hold more; CPU time is the limit)."""
    val_per_class: int = 400
    views: int = 2
    """Augmented views of each training image, computed once through the frozen blocks."""
    self_blend: float = 0.5
    """Share of real training images that also yield a self-blended pseudo-fake (0 turns it off)."""
    part_blend: float = 0.0
    """Share of real training images that also yield a pseudo-fake of one part of the face (eyes,
    nose or mouth blended), as a photo edit replaces it (rule 67; 0 turns it off)."""
    source_fakes: bool = True
    """Train on the sources' fakes too; false keeps only their real images (and the pseudo-fakes
    made from them), so the member learns no source's own fakes (validation keeps them)."""
    trainable_blocks: int = 4
    head_epochs: int = 1
    finetune_epochs: int = 6
    batch_size: int = 64
    head_lr: float = 1e-3
    finetune_lr: float = 3e-4
    weight_decay: float = 1e-4
    label_smoothing: float = 0.05
    dropout: float = 0.3
    patience: int = 2
    seed: int = 1234
    rounds: int = 1
    """Times the augmented views are drawn: round 1 is head + fine-tune, each later round
    fine-tunes `round_epochs` more epochs on freshly drawn views."""
    round_epochs: int = 3
    round_lr: float = 1e-4

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrainConfig:
        """The config `to_json` wrote (fields unknown to this version are ignored)."""
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        paths = {"data": tuple(str(p) for p in data["data"]), "out_dir": Path(data["out_dir"])}
        if data.get("init_from"):
            paths["init_from"] = Path(data["init_from"])
        return cls(**{**known, **paths})

    def same_run(self, other: TrainConfig, rounds_done: int) -> bool:
        """True when a checkpoint of `rounds_done` rounds written under `other` can be resumed under
        this config: they differ only in how many rounds run (and, while only the first round is
        done, in the later rounds' settings)."""
        ignored = {"rounds", "out_dir"} | ({"round_epochs", "round_lr"} if rounds_done <= 1 else set())
        mine, theirs = self.to_json(), other.to_json()
        return all(mine.get(k) == theirs.get(k, FIRST_VERSION_DEFAULTS.get(k)) for k in mine if k not in ignored)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["data"] = [str(p) for p in self.data]
        data["out_dir"] = str(self.out_dir)
        data["init_from"] = str(self.init_from) if self.init_from else None
        return data

    @property
    def member_name(self) -> str:
        return self.name or self.backbone


# Fields added after the first trained release; older run folders lack them.
FIRST_VERSION_DEFAULTS = {
    "round_epochs": 3,
    "round_lr": 1e-4,
    "name": "",
    "init_from": None,
    "source_fakes": True,
    "part_blend": 0.0,
}


@dataclass
class TrainResult:
    model_path: Path
    model: Any
    """The trained Keras model, as saved."""
    history: dict[str, list[float]] = field(default_factory=dict)
    best_val_auc: float = 0.0


def set_seeds(seed: int) -> None:
    import keras

    os.environ["PYTHONHASHSEED"] = str(seed)
    keras.utils.set_random_seed(seed)


def build_classifier(backbone: str, input_size: int, weights: str | None, dropout: float) -> Any:
    """Backbone -> global average pooling -> dropout -> one fake logit."""
    import keras

    from pipeline.training.backbones import build_backbone

    base = build_backbone(backbone, input_size=input_size, weights=weights)
    features = keras.layers.GlobalAveragePooling2D(name="pool")(base.output)
    features = keras.layers.Dropout(dropout, name="classifier_dropout")(features)
    logit = keras.layers.Dense(1, name="fake_logit")(features)
    return keras.Model(base.input, logit, name=f"{backbone}_deepfake")


def cut_layer(model: Any, backbone: str, trainable_blocks: int) -> str:
    """Name of the layer whose output feeds the first trainable block."""
    from pipeline.training.backbones import BACKBONES

    blocks = BACKBONES[backbone].blocks
    # All blocks trainable (training from scratch): the cut falls just before the first block.
    first_trainable = blocks[len(blocks) - min(trainable_blocks, len(blocks))]
    names = [layer.name for layer in model.layers]
    start = next(i for i, n in enumerate(names) if n.startswith(first_trainable))
    return names[start - 1]


def split_at(model: Any, layer_name: str) -> tuple[Any, Any]:
    """(frozen trunk, trainable top) sharing the model's layers: training the top trains the model."""
    import keras

    boundary = model.get_layer(layer_name).output
    return keras.Model(model.input, boundary), keras.Model(boundary, model.output)


def _views(samples: list[Sample], config: TrainConfig, rng: np.random.Generator) -> tuple[list[np.ndarray], list[int]]:
    images, labels = [], []
    for sample in samples:
        face = read_face(sample.path, config.input_size)
        for _ in range(config.views):
            images.append(augment(face, rng))
            labels.append(sample.label)
        if sample.label == 0 and rng.random() < config.self_blend:
            landmarks = blend_landmarks(sample, config.input_size, rng)
            images.append(augment(self_blend(face, landmarks, rng), rng))
            labels.append(1)
        # Drawn only when asked for, so that runs without part blends draw what they always drew.
        if sample.label == 0 and config.part_blend > 0 and rng.random() < config.part_blend:
            landmarks = blend_landmarks(sample, config.input_size, rng)
            images.append(augment(self_blend(face, landmarks, rng, part=random_part(rng)), rng))
            labels.append(1)
    return images, labels


def _features(trunk: Any, images: list[np.ndarray], batch_size: int, desc: str) -> np.ndarray:
    from tqdm import tqdm

    out = []
    for start in tqdm(range(0, len(images), batch_size), desc=desc, file=sys.stderr, leave=False):
        batch = np.stack(images[start : start + batch_size]).astype(np.float32)
        out.append(np.asarray(trunk(batch, training=False)).astype(np.float16))
    return np.concatenate(out)


def _round_seed(config: TrainConfig, round_index: int) -> tuple[np.random.Generator, int]:
    """(augmentation generator, Keras seed) for one round. Round 0 keeps the original seeding, so
    models trained before rounds existed are round 0 of the same recipe."""
    if round_index == 0:
        return np.random.default_rng(config.seed), config.seed
    return np.random.default_rng([config.seed, round_index]), config.seed + round_index


def _load_checkpoint(config: TrainConfig, model: Any) -> tuple[dict[str, list], int]:
    """(history, rounds done) of a finished round in `out_dir`, with its weights loaded into
    `model`; ({}, 0) when there is nothing to resume."""
    import keras

    config_path, history_path, model_path = (config.out_dir / n for n in ("config.json", "history.json", "model.keras"))
    if not (config_path.exists() and history_path.exists() and model_path.exists()):
        return {}, 0
    history = json.loads(history_path.read_text())
    done = int(history.get("rounds_done", 1))
    if not config.same_run(TrainConfig.from_json(json.loads(config_path.read_text())), done):
        raise ValueError(f"{config.out_dir} holds a run with other settings; use another --out to train anew")
    model.set_weights(keras.models.load_model(model_path, safe_mode=True).get_weights())
    return history, done


def training_samples(config: TrainConfig) -> tuple[list[Sample], list[Sample]]:
    """(training, validation) samples: a class-balanced subset of each source's split; without
    `source_fakes`, the training samples are the real ones of that subset only."""
    train: list[Sample] = []
    val: list[Sample] = []
    for source in config.data:
        train += balanced_subset(source_samples(source, "train"), config.train_per_class, config.seed)
        val += balanced_subset(source_samples(source, "val"), config.val_per_class, config.seed)
    if not config.source_fakes:
        train = [sample for sample in train if sample.label == 0]
    return train, val


def train_member(config: TrainConfig, resume: bool = False) -> TrainResult:
    """Train one member and save `model.keras`, `history.json`, `config.json` and `curves.png`.

    With `resume`, a run folder holding finished rounds of the same recipe is continued from its
    checkpoint instead of trained again from the start."""
    import keras
    from sklearn.metrics import roc_auc_score

    from pipeline.training.backbones import BACKBONES, set_trainable_blocks

    set_seeds(config.seed)
    config.out_dir.mkdir(parents=True, exist_ok=True)
    train, val = training_samples(config)

    model = build_classifier(config.backbone, config.input_size, config.weights, config.dropout)
    if config.init_from:
        model.set_weights(keras.models.load_model(config.init_from, safe_mode=True, compile=False).get_weights())
    cut = cut_layer(model, config.backbone, config.trainable_blocks)
    trunk, top = split_at(model, cut)
    trunk.trainable = False

    history: dict[str, list] = {"loss": [], "val_loss": [], "val_auc": [], "stage": []}
    rounds_done = 0
    if resume:
        saved_history, rounds_done = _load_checkpoint(config, model)
        if rounds_done:
            history = {k: saved_history[k] for k in history}
    best = {"auc": max(history["val_auc"], default=-1.0), "weights": model.get_weights() if rounds_done else None}

    if rounds_done < config.rounds:  # a finished run resumed has nothing left to validate
        x_val = _features(
            trunk, [read_face(s.path, config.input_size) for s in val], config.batch_size, "features (val)"
        )
        y_val = np.asarray([s.label for s in val], np.float32)

    def run_stage(stage: str, epochs: int, learning_rate: float, x_train: np.ndarray, y_train: np.ndarray) -> None:
        if epochs <= 0:
            return
        weights = class_weights([Sample(Path(), int(y), "", "", "") for y in y_train])
        steps = max(1, int(np.ceil(len(x_train) / config.batch_size))) * epochs
        schedule = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=steps, alpha=0.05)
        top.compile(
            optimizer=keras.optimizers.AdamW(learning_rate=schedule, weight_decay=config.weight_decay),
            loss=keras.losses.BinaryCrossentropy(from_logits=True, label_smoothing=config.label_smoothing),
        )
        stale = 0
        for _ in range(epochs):
            fit = top.fit(
                x_train, y_train, batch_size=config.batch_size, epochs=1, shuffle=True, class_weight=weights, verbose=2
            )
            val_logits = np.asarray(top.predict(x_val, batch_size=256, verbose=0)).reshape(-1)
            auc = float(roc_auc_score(y_val, val_logits))
            val_loss = float(keras.losses.BinaryCrossentropy(from_logits=True)(y_val[:, None], val_logits[:, None]))
            history["loss"].append(float(fit.history["loss"][-1]))
            history["val_loss"].append(val_loss)
            history["val_auc"].append(auc)
            history["stage"].append(stage)
            print(
                f"[{config.member_name}] {stage} epoch {len(history['loss'])}: loss {history['loss'][-1]:.4f} val_loss {val_loss:.4f} val_auc {auc:.4f}",
                file=sys.stderr,
            )
            if auc > best["auc"]:
                best["auc"], best["weights"], stale = auc, model.get_weights(), 0
            else:
                stale += 1
                if stale >= config.patience:
                    break

    fine_tuned_blocks = min(config.trainable_blocks, len(BACKBONES[config.backbone].blocks))
    for round_index in range(rounds_done, config.rounds):
        rng, keras_seed = _round_seed(config, round_index)
        if round_index > 0:
            set_seeds(keras_seed)
        train_images, train_labels = _views(train, config, rng)
        x_train = _features(trunk, train_images, config.batch_size, f"features (train views, round {round_index + 1})")
        y_train = np.asarray(train_labels, np.float32)
        del train_images
        if round_index == 0:
            set_trainable_blocks(model, config.backbone, 0)
            run_stage("head", config.head_epochs, config.head_lr, x_train, y_train)
            set_trainable_blocks(model, config.backbone, fine_tuned_blocks)
            run_stage("fine-tune", config.finetune_epochs, config.finetune_lr, x_train, y_train)
        else:
            set_trainable_blocks(model, config.backbone, fine_tuned_blocks)
            run_stage(f"round {round_index + 1}", config.round_epochs, config.round_lr, x_train, y_train)
        del x_train
        # Every round starts from (and the checkpoint holds) the best weights so far.
        model.set_weights(best["weights"])
        _save_checkpoint(model, history, round_index + 1, config)

    # The model now holds the best weights: set after every round, or loaded from the checkpoint.
    plot_curves(history, config.out_dir / "curves.png", config.member_name)
    return TrainResult(config.out_dir / "model.keras", model, history, best["auc"])


def _save_checkpoint(model: Any, history: dict[str, list], rounds_done: int, config: TrainConfig) -> None:
    for layer in model.layers:
        layer.trainable = True
    model.save(config.out_dir / "model.keras")
    (config.out_dir / "history.json").write_text(json.dumps({**history, "rounds_done": rounds_done}, indent=2) + "\n")
    (config.out_dir / "config.json").write_text(json.dumps(config.to_json(), indent=2) + "\n")


def plot_curves(history: dict[str, list[float]], path: Path, title: str) -> None:
    """Training loss, validation loss and validation AUC per epoch."""
    from matplotlib.figure import Figure

    epochs = np.arange(1, len(history["loss"]) + 1)
    fig = Figure(figsize=(9, 3.5))
    ax_loss, ax_auc = fig.subplots(1, 2)
    ax_loss.plot(epochs, history["loss"], "o-", label="train loss")
    ax_loss.plot(epochs, history["val_loss"], "o-", label="val loss")
    ax_loss.set_xlabel("epoch")
    ax_loss.legend()
    ax_auc.plot(epochs, history["val_auc"], "o-", color="tab:green")
    ax_auc.set_xlabel("epoch")
    ax_auc.set_ylabel("val ROC AUC")
    stage_starts = [i + 0.5 for i in range(1, len(history["stage"])) if history["stage"][i] != history["stage"][i - 1]]
    for axis in (ax_loss, ax_auc):
        for start in stage_starts:
            axis.axvline(start, color="grey", linestyle=":")
    fig.suptitle(f"{title}: head, fine-tune, then rounds on fresh views (dotted lines)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
