"""Model card: the shipped models, their metrics, plots, training data and known limits."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from pages._views import require_app_navigation
from pipeline.app.model_card import load_model_card, metric_rows, plot_caption
from pipeline.config import Settings

require_app_navigation()
st.title("Model card")
card = load_model_card(Settings().models_dir)
st.caption(f"Read from {card.models_dir} (set DEEPFAKE_MODELS_DIR to use another folder).")
for problem in card.problems:
    st.warning(problem)

if card.spec is not None:
    spec = card.spec
    st.subheader("Ensemble")
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "model": m.name,
                    "kind": "CLIP ViT-B/16 probe" if m.kind == "clip_probe" else "CNN",
                    "backbone": m.backbone,
                    "input size": m.input_size,
                    "weight": m.weight,
                    "temperature": m.temperature,
                    "file": m.file,
                    "SHA-256": m.sha256[:12],
                }
                for m in spec.members
            ]
        ),
        hide_index=True,
        width="stretch",
    )
    st.markdown(
        f"Decision threshold **{spec.threshold:.3f}**, "
        f"uncertain band **{spec.uncertain_low:.3f}-{spec.uncertain_high:.3f}**, "
        f"aggregation rule **{spec.aggregation}**, ensemble temperature {spec.temperature:.3f}"
        + (f", offset {spec.offset:+.3f}" if spec.offset else "")
        + (
            f", members disagreeing by more than **{spec.disagreement_margin:.2f}** make a person uncertain."
            if spec.disagreement_margin is not None
            else "."
        )
    )
    st.markdown(f"Trained on: {', '.join(spec.trained_on) if spec.trained_on else 'not recorded in ensemble.json'}.")
    if spec.metrics:
        st.subheader("Metrics")
        st.dataframe(pd.DataFrame(metric_rows(spec.metrics)), hide_index=True, width="stretch")

if card.plots:
    st.subheader("Evaluation plots")
    columns = st.columns(2)
    for index, plot in enumerate(card.plots):
        columns[index % 2].image(str(plot), caption=plot_caption(plot), width="stretch")

if card.markdown is not None:
    st.subheader("Model card")
    st.markdown(card.markdown)
