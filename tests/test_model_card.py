"""Reading the model card, metrics and plots of a models folder."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

from pipeline.app.model_card import decision_summary, load_model_card, member_rows, metric_rows, plot_caption
from pipeline.config import Settings
from pipeline.engine.ensemble import ENSEMBLE_FILE, EnsembleSpec


def test_an_empty_folder_says_what_is_missing(tmp_path: Path) -> None:
    card = load_model_card(tmp_path)
    assert card.markdown is None and card.spec is None and card.plots == ()
    text = " ".join(card.problems)
    assert "No model card" in text and "No trained models" in text and "No evaluation plots" in text


def test_a_complete_folder(tmp_path: Path) -> None:
    shutil.copyfile(Settings().models_dir / ENSEMBLE_FILE, tmp_path / ENSEMBLE_FILE)
    (tmp_path / "MODEL_CARD.md").write_text("# Card\n\nTrained on DFDC.\n\n![ROC](card/roc_frame.png)\n")
    (tmp_path / "card").mkdir()
    for name in ("roc_frame.png", "reliability_frame.png"):
        (tmp_path / "card" / name).write_bytes(b"\x89PNG\r\n\x1a\n")
    card = load_model_card(tmp_path)
    assert "Trained on DFDC." in card.markdown and "![ROC]" not in card.markdown
    assert [p.name for p in card.plots] == ["reliability_frame.png", "roc_frame.png"]
    assert card.spec is not None and card.spec.members
    assert not [
        p for p in card.problems if p.startswith(("No model card", "No evaluation plots", "The ROC", "No trained"))
    ]


def test_an_unreadable_ensemble_is_a_problem_not_an_exception(tmp_path: Path) -> None:
    (tmp_path / ENSEMBLE_FILE).write_text("{not json")
    card = load_model_card(tmp_path)
    assert card.spec is None and any("cannot be read" in p for p in card.problems)


def test_metric_rows_flatten_and_summarise() -> None:
    rows = metric_rows(
        {"validation": {"ensemble_auc": 0.91234567, "n": 120, "weight_trials": list(range(30)), "selected": ["a", "b"]}}
    )
    assert rows == [
        {"metric": "validation / ensemble_auc", "value": "0.9123"},
        {"metric": "validation / n", "value": "120"},
        {"metric": "validation / weight_trials", "value": "30 entries (see ensemble.json)"},
        {"metric": "validation / selected", "value": "['a', 'b']"},
    ]
    assert plot_caption(Path("roc_video-level.png")) == "roc video level"


def test_an_ensemble_that_weighs_pictures_otherwise_shows_both_weights_and_rules() -> None:
    spec = replace(EnsembleSpec.load(Settings().models_dir / ENSEMBLE_FILE), pictures=None)
    rows = member_rows(spec)
    assert [r["weight"] for r in rows] == [m.weight for m in spec.members] and "weight (pictures)" not in rows[0]
    pictures = replace(spec, members=tuple(replace(m, weight=m.weight + 1) for m in spec.members), threshold=0.25)
    rows = member_rows(replace(spec, pictures=pictures))
    assert [(r["weight (videos)"], r["weight (pictures)"]) for r in rows] == [
        (m.weight, m.weight + 1) for m in spec.members
    ]
    assert "weight" not in rows[0]
    assert decision_summary(pictures).startswith("Decision threshold **0.250**")
    assert f"**{spec.threshold:.3f}**" in decision_summary(spec)
