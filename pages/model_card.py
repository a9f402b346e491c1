"""Model card: the shipped models, their metrics, plots, training data and known limits."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from pages._views import require_app_navigation
from pipeline.app.model_card import decision_summary, load_model_card, member_rows, metric_rows, plot_caption
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
    st.dataframe(pd.DataFrame(member_rows(spec)), hide_index=True, width="stretch")
    if spec.pictures is None:
        st.markdown(decision_summary(spec))
    else:
        st.markdown("Videos: " + decision_summary(spec))
        st.markdown("Pictures (their own weights and calibration): " + decision_summary(spec.pictures))
    st.markdown(f"Trained on: {', '.join(spec.trained_on) if spec.trained_on else 'not recorded in ensemble.json'}.")
    if spec.metrics:
        st.subheader("Metrics")
        rows = metric_rows(spec.metrics) + (metric_rows(spec.pictures.metrics, "pictures / ") if spec.pictures else [])
        st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")

if card.plots:
    st.subheader("Evaluation plots")
    columns = st.columns(2)
    for index, plot in enumerate(card.plots):
        columns[index % 2].image(str(plot), caption=plot_caption(plot), width="stretch")

if card.markdown is not None:
    st.subheader("Model card")
    st.markdown(card.markdown)
