"""Analyze: upload images or videos, pick the options, get a verdict and its explanation."""

from __future__ import annotations

import logging

import streamlit as st

from pages._views import (
    get_service,
    get_store,
    load_models,
    render_result,
    require_app_navigation,
    show_error,
    summary_label,
)
from pipeline.app.service import AnalysisRequest, uploaded_file
from pipeline.config import MediaSettings, Settings
from pipeline.engine.verdict import AGGREGATIONS
from pipeline.errors import PipelineError

# Session state of the last press of Analyze.
RESULTS_KEY = "analyze_results"  # [(record id, found in history)]
ERRORS_KEY = "analyze_errors"  # [(file name, message)] of uploads that could not be analysed

require_app_navigation()
st.title("Analyze")
service = get_service()
store = get_store()
try:
    spec = service.spec
except PipelineError as error:
    show_error(error)
    st.stop()
# The form is usable at once; the models load meanwhile, and pressing Analyze waits for them.
service.load_in_background()
loading_note = st.empty()
if service.loading:
    loading_note.caption(
        "The models are loading in the background (once per server start); choose your files meanwhile."
    )
models = [member.name for member in spec.members]
media = MediaSettings()
limit_mb = st.get_option("server.maxUploadSize")

uploads = st.file_uploader(
    f"Images or videos, up to {limit_mb} MB each",
    type=[suffix.lstrip(".") for suffix in (*media.image_suffixes, *media.video_suffixes)],
    accept_multiple_files=True,
    key="analyze_uploads",
    help=f"The upload limit is set by server.maxUploadSize in .streamlit/config.toml ({limit_mb} MB).",
)
frames_column, rule_column, models_column = st.columns(3)
frames = frames_column.slider(
    "Frames to sample (videos)",
    min_value=1,
    max_value=media.max_frames,
    value=Settings().media.frames,
    key="analyze_frames",
    help="Evenly spaced over the video. More frames: steadier verdict, longer analysis.",
)
aggregation = rule_column.selectbox(
    "Aggregation rule",
    list(AGGREGATIONS),
    index=list(AGGREGATIONS).index(spec.aggregation),
    key="analyze_rule",
    help="How face scores become one probability per person; the ensemble's default is preselected.",
)
chosen = models_column.multiselect("Models", models, default=models, key="analyze_models")
if not chosen:
    st.warning("Choose at least one model.")

if st.button("Analyze", type="primary", disabled=not uploads or not chosen, key="analyze_run"):
    if load_models(service) is None:
        st.stop()
    loading_note.empty()
    request = AnalysisRequest(frames=frames, aggregation=aggregation, models=tuple(chosen))
    results: list[tuple[int, bool]] = []
    errors: list[tuple[str, str]] = []
    for upload in uploads:
        bar = st.progress(0.0, text=f"{upload.name}: starting")

        def progress(stage: str, done: int, total: int, bar=bar, name=upload.name) -> None:
            bar.progress(min(1.0, done / total) if total else 1.0, text=f"{name}: {stage} ({done}/{total})")

        try:
            with uploaded_file(upload.name, upload.getbuffer()) as path:
                outcome = service.analyze(path, request, store, progress)
            results.append((outcome.record.id, outcome.from_history))
        except PipelineError as error:
            errors.append((upload.name, str(error)))
        except Exception as error:  # a bug, or a file that breaks a library: this upload only
            logging.getLogger("dashboard").exception("analysing the upload %r failed", upload.name)
            errors.append(
                (
                    upload.name,
                    f"could not be analysed: unexpected error ({type(error).__name__}); details are in the server's log",
                )
            )
        finally:
            bar.empty()
    st.session_state[RESULTS_KEY] = results
    st.session_state[ERRORS_KEY] = errors

for name, message in st.session_state.get(ERRORS_KEY, []):
    st.error(f"{name}: {message}")

results = st.session_state.get(RESULTS_KEY, [])
records = {record_id: store.get(record_id) for record_id, _ in results}
from_history = dict(results)
shown = [record_id for record_id in records if records[record_id] is not None]
if len(shown) < len(records):
    st.info("A result of this session was deleted from the history since.")
if shown:
    if len(shown) > 1:
        labels = {i: summary_label(records[i].summary) for i in shown}
        record_id = st.selectbox("Result to show", shown, format_func=labels.__getitem__, key="analyze_shown")
    else:
        record_id = shown[0]
    record = records[record_id]
    if from_history[record_id]:
        st.info(
            f"Opened from the history: this file was already analysed with these settings "
            f"on {record.result.created.replace('T', ' ')} (no re-analysis)."
        )
    render_result(record, store, service, where="analyze")
