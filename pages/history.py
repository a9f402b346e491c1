"""History: every stored analysis; filter (by scan job too, with its progress), open, export, delete."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from pages._views import (
    get_service,
    get_store,
    job_label,
    render_job_progress,
    render_result,
    require_app_navigation,
    summary_label,
)
from pipeline.app.export import history_csv
from pipeline.app.store import HistoryFilter

VERDICTS = ("fake", "real", "uncertain", "no_face")
KINDS = ("image", "video")

require_app_navigation()
st.title("History")
store = get_store()
if store.backend == "sqlite":
    st.caption(f"Every analysis is kept in {store.root} (set DEEPFAKE_DATA_HOME to move it).")
else:
    st.caption(f"Every analysis is kept in {store.where}, its pictures in {store.root}.")

jobs = {job.id: job for job in store.jobs()}
job_id = st.selectbox(
    "Scan job",
    [None, *jobs],
    format_func=lambda j: "Every analysis" if j is None else job_label(jobs[j]),
    key="history_job",
    help="The results of one `python -m pipeline scan`, the most suspicious first.",
)
if job_id is not None:
    render_job_progress(store, job_id)

verdict_column, kind_column, date_column, name_column = st.columns(4)
verdicts = verdict_column.multiselect("Verdict", VERDICTS, key="history_verdicts")
kinds = kind_column.multiselect("Kind", KINDS, key="history_kinds")
days = date_column.date_input("Analysed between (UTC)", value=(), key="history_days")
name = name_column.text_input("File name contains", key="history_name")
since = days[0] if len(days) >= 1 else None
until = days[1] if len(days) == 2 else since
where = HistoryFilter(tuple(verdicts), tuple(kinds), since, until, name, job_id)
summaries = store.summaries(where, order="newest" if job_id is None else "most_suspicious")

st.dataframe(
    pd.DataFrame(
        [
            {
                "id": s.id,
                "analysed (UTC)": s.created.replace("T", " ")[:19],
                "file": s.file_name,
                "kind": s.kind,
                "verdict": s.verdict,
                "fake probability": s.fake_probability,
            }
            for s in summaries
        ],
        columns=["id", "analysed (UTC)", "file", "kind", "verdict", "fake probability"],
    ),
    hide_index=True,
    width="stretch",
)
st.download_button(
    "Download this list (CSV)",
    # Built from the stored results (their provenance lives there) only when asked for.
    lambda: history_csv(store.records(where)),
    "history.csv",
    "text/csv",
    key="history_csv",
)
if not summaries:
    st.info(
        "No stored analysis matches."
        if (verdicts or kinds or days or name or job_id is not None)
        else "No analysis yet: analyse a file on the Analyze page."
    )
    st.stop()

labels = {s.id: summary_label(s) for s in summaries}
record_id = st.selectbox("Open a result", list(labels), format_func=labels.__getitem__, key="history_open")
record = store.get(record_id)
if record is None:
    st.info("This result was just deleted.")
    st.stop()

with st.expander("Delete this result"):
    confirmed = st.checkbox(
        f"Delete result #{record.id} ({record.result.file}) and its pictures", key=f"history_confirm_{record.id}"
    )
    if st.button("Delete", disabled=not confirmed, key=f"history_delete_{record.id}"):
        store.delete(record.id)
        st.session_state.pop("history_open", None)
        st.toast(f"Deleted result #{record.id}.")
        st.rerun()

service = get_service()
# Opening a result is when its explanation maps may be asked for: the models load meanwhile,
# as on Analyze, so that the button does not wait for them too (the first page of a server
# started from a link to History is this one).
service.load_in_background()
render_result(record, store, service, where="history")
