"""What the shipped models say about themselves, read from the models folder: the model card
(`MODEL_CARD.md`), the ensemble description and its metrics (`ensemble.json`) and the plots
(`card/*.png`). Whatever is missing is reported as a problem, in words, never as an exception."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.engine.ensemble import CLIP_PROBE, ENSEMBLE_FILE, EnsembleSpec
from pipeline.engine.verdict import DISAGREEMENTS
from pipeline.errors import PipelineError

CARD_FILE = "MODEL_CARD.md"
PLOTS_DIR = "card"
MAX_LIST_ITEMS = 8
"""Longer lists in the metrics (trial logs) are summarised, not spread over the table."""

_IMAGE_LINK = re.compile(r"!\[[^\]]*\]\((?!https?:)[^)]*\)")


@dataclass(frozen=True)
class ModelCard:
    """The models folder's self-description; `problems` lists what is missing or unreadable."""

    models_dir: Path
    markdown: str | None
    spec: EnsembleSpec | None
    plots: tuple[Path, ...]
    problems: tuple[str, ...] = field(default=())


def load_model_card(models_dir: Path) -> ModelCard:
    """Read the card, the ensemble description and the plots of a models folder."""
    problems: list[str] = []
    card_path = models_dir / CARD_FILE
    markdown = None
    if card_path.is_file():
        # Pictures linked from the card are shown from `card/` by the page; a relative link
        # would render as a broken image.
        markdown = _IMAGE_LINK.sub("", card_path.read_text(encoding="utf-8"))
    else:
        problems.append(f"No model card: {card_path} is missing.")
    spec = None
    if (models_dir / ENSEMBLE_FILE).is_file():
        try:
            spec = EnsembleSpec.load(models_dir / ENSEMBLE_FILE)
        except (PipelineError, TypeError) as error:
            problems.append(f"The ensemble description cannot be read: {error}")
    else:
        problems.append(f"No trained models: {models_dir / ENSEMBLE_FILE} is missing.")
    plots = tuple(sorted((models_dir / PLOTS_DIR).glob("*.png")))
    if not plots:
        problems.append(f"No evaluation plots (ROC, reliability): {models_dir / PLOTS_DIR}/*.png is missing.")
    elif not any(p.stem.startswith("roc") for p in plots) or not any(p.stem.startswith("reliability") for p in plots):
        problems.append(f"The ROC or the reliability plot is missing from {models_dir / PLOTS_DIR}.")
    if spec is not None and not spec.metrics:
        problems.append(f"{models_dir / ENSEMBLE_FILE} records no metrics.")
    return ModelCard(models_dir, markdown, spec, plots, tuple(problems))


def member_rows(spec: EnsembleSpec) -> list[dict[str, Any]]:
    """One row per member for a table: what it is, its weight (for videos and, where the ensemble
    weighs a picture's faces otherwise, for pictures) and its file."""
    pictures = spec.pictures.weights if spec.pictures is not None else None
    rows = []
    for m in spec.members:
        row: dict[str, Any] = {
            "model": m.name,
            "kind": "CLIP ViT-B/16 probe" if m.kind == CLIP_PROBE else "CNN",
            "backbone": m.backbone,
            "input size": m.input_size,
        }
        if pictures is None:
            row["weight"] = m.weight
        else:
            row["weight (videos)"], row["weight (pictures)"] = m.weight, pictures[m.name]
        rows.append({**row, "temperature": m.temperature, "file": m.file, "SHA-256": m.sha256[:12]})
    return rows


def decision_summary(spec: EnsembleSpec) -> str:
    """How the spec turns a probability into a label, in one Markdown sentence."""
    return (
        f"Decision threshold **{spec.threshold:.3f}**, "
        f"uncertain band **{spec.uncertain_low:.3f}-{spec.uncertain_high:.3f}**, "
        f"aggregation rule **{spec.aggregation}**, ensemble temperature {spec.temperature:.3f}"
        + (f", offset {spec.offset:+.3f}" if spec.offset else "")
        + (
            f", members disagreeing by more than **{spec.disagreement_margin:.2f}** ({DISAGREEMENTS[spec.disagreement]})"
            " make a person uncertain."
            if spec.disagreement_margin is not None
            else "."
        )
    )


def metric_rows(metrics: dict[str, Any], prefix: str = "") -> list[dict[str, str]]:
    """Nested metrics flattened to (metric path, value) rows for a table."""
    rows: list[dict[str, str]] = []
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            rows += metric_rows(value, f"{name} / ")
        elif isinstance(value, list) and len(value) > MAX_LIST_ITEMS:
            rows.append({"metric": name, "value": f"{len(value)} entries (see ensemble.json)"})
        elif isinstance(value, float):
            rows.append({"metric": name, "value": f"{value:.4f}"})
        else:
            rows.append({"metric": name, "value": str(value)})
    return rows


def plot_caption(path: Path) -> str:
    """A readable caption from a plot's file name (`roc_video.png` -> 'roc video')."""
    return path.stem.replace("_", " ").replace("-", " ")
