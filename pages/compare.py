"""Compare models: each model beside the ensemble, for one result or across the history."""

from __future__ import annotations

import streamlit as st

from pages._views import (
    get_store,
    render_verdict,
    require_app_navigation,
    summary_label,
)
from pipeline.app.charts import (
    ENSEMBLE,
    disagreements,
    faces_table,
    inference_figure,
    inference_times,
    model_scatter,
    scores_figure,
    scores_table,
    timeline_figure,
)
from pipeline.app.sections import provenance_section, verdict_section

ONE = "One result"
ALL = "Every result in the history"

require_app_navigation()
st.title("Compare models")
store = get_store()
summaries = store.summaries()
if not summaries:
    st.info("No analysis yet: analyse a file on the Analyze page, then compare its models here.")
    st.stop()

scope = st.radio("Compare on", [ONE, ALL], horizontal=True, key="compare_scope")
if scope == ONE:
    labels = {s.id: summary_label(s) for s in summaries}
    record_id = st.selectbox("Result", list(labels), format_func=labels.__getitem__, key="compare_record")
    records = [record] if (record := store.get(record_id)) else []
else:
    records = store.records()
if not records:
    st.info("This result was just deleted.")
    st.stop()

results = [(r.id, r.result) for r in records]
models = list(dict.fromkeys(name for _, result in results for name in result.models))
faces = faces_table(results)
threshold = records[0].result.threshold

st.subheader("Scores beside the ensemble")
if scope == ONE:
    result = records[0].result
    render_verdict(verdict_section(result), provenance_section(result.provenance))
    if result.kind == "video" and not faces.empty:
        st.plotly_chart(timeline_figure(result, [ENSEMBLE, *result.models]), key="compare_timeline", width="stretch")
    st.plotly_chart(scores_figure(result), key="compare_scores", width="stretch")
else:
    st.dataframe(scores_table(results), hide_index=True, width="stretch")

st.subheader("Model against model, per face")
if len(models) < 2:
    st.info("Only one model scored these results: there is nothing to compare it with.")
elif faces.empty:
    st.info("No face was found in these results.")
else:
    a_column, b_column, top_column = st.columns(3)
    model_a = a_column.selectbox("Model A", models, index=0, key="compare_a")
    model_b = b_column.selectbox("Model B", models, index=1, key="compare_b")
    top = top_column.number_input(
        "Largest disagreements to list", min_value=1, max_value=100, value=10, key="compare_top"
    )
    colour_by = "person" if scope == ONE else "file"
    st.plotly_chart(
        model_scatter(faces, model_a, model_b, threshold, colour_by), key="compare_scatter", width="stretch"
    )
    st.markdown(f"**Where {model_a} and {model_b} disagree most**")
    st.dataframe(disagreements(faces, model_a, model_b, int(top)), hide_index=True, width="stretch")

st.subheader("Inference time")
times = inference_times([r.result for r in records])
if times.empty:
    st.info("No face was scored, so no inference time was measured.")
else:
    st.plotly_chart(inference_figure(times), key="compare_times", width="stretch")
    st.dataframe(times, hide_index=True, width="stretch")
