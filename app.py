"""The dashboard: `streamlit run app.py` (or `make app`).

Pages live in `pages/` and display what `pipeline.app` computes; the engine and the history they
share are loaded once per process, and the navigation and app-wide error guard are defined once
(`pages/_views.py`). Every error a user can cause is shown by the pages as a message; anything
else is logged with its traceback on the server and shown as one line, never as a traceback.
"""

from __future__ import annotations

import streamlit as st

from pages._views import run_app

st.set_page_config(page_title="Deepfake analysis", page_icon="🕵️", layout="wide")
run_app()
