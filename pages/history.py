"""History: every stored analysis; filter, open, export, delete."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from pages._views import (
    get_service,
    get_store,
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
st.caption(f"Every analysis is kept in {store.root} (set DEEPFAKE_DATA_HOME to move it).")

verdict_column, kind_column, date_column, name_column = st.columns(4)
verdicts = verdict_column.multiselect("Verdict", VERDICTS, key="history_verdicts")
kinds = kind_column.multiselect("Kind", KINDS, key="history_kinds")
days = date_column.date_input("Analysed between (UTC)", value=(), key="history_days")
name = name_column.text_input("File name contains", key="history_name")
since = days[0] if len(days) >= 1 else None
until = days[1] if len(days) == 2 else since
where = HistoryFilter(tuple(verdicts), tuple(kinds), since, until, name)
summaries = store.summaries(where)

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
        if (verdicts or kinds or days or name)
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

render_result(record, store, get_service(), where="history")
