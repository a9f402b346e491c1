"""The dashboard: `streamlit run app.py` (or `make app`).

Pages live in `pages/`; the engine and the history they share are loaded once per process
(`pages/_views.py`, which also steers a fresh server's first deep link through this script).
Every error a user can cause is shown by the pages as a message; anything
else is logged with its traceback on the server and shown as one line, never as a traceback.
"""

from __future__ import annotations

import logging

import streamlit as st

st.set_page_config(page_title="Deepfake analysis", page_icon="🕵️", layout="wide")

PAGES = [
    st.Page("pages/analyze.py", title="Analyze", icon=":material/search:", default=True),
    st.Page("pages/compare.py", title="Compare models", icon=":material/compare_arrows:"),
    st.Page("pages/history.py", title="History", icon=":material/history:"),
    st.Page("pages/model_card.py", title="Model card", icon=":material/description:"),
]

page = st.navigation(PAGES)
try:
    page.run()
except Exception:  # st.stop and st.rerun are BaseExceptions and pass through
    logging.getLogger("dashboard").exception("page %s failed", page.title)
    st.error("Something went wrong on this page; the details are in the server's log. Reload to try again.")
