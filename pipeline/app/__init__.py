"""The dashboard's services, without Streamlit: `store` (the history), `service` (analyse or
reopen an upload), `pictures` (what is kept of an analysis), `charts`, `export` and
`model_card`. The pages in `pages/` only display what these return."""
