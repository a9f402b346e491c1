"""What the pages share: the engine and the history (loaded once per process), the view of one
result (Analyze and History both show results through `render_result`), and error display.

Only display code lives here; analysis, storage and exports are in `pipeline`.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from pipeline.app.charts import ENSEMBLE, timeline_figure
from pipeline.app.export import html_report, result_json
from pipeline.app.pictures import draw_faces, read_picture
from pipeline.app.sections import (
    ProvenanceSection,
    ResultSections,
    VerdictSection,
    existing,
    frame_label,
    result_sections,
)
from pipeline.app.service import AnalysisService
from pipeline.app.store import Record, ScanJob, Store, Summary
from pipeline.config import Settings, data_home, database_url
from pipeline.engine.analyze import Engine
from pipeline.engine.ensemble import ENSEMBLE_FILE
from pipeline.errors import PipelineError

# A verdict is coloured text, not an alert: a FAKE verdict is a finding, not an error of the page.
VERDICT_COLOURS = {"fake": "red", "real": "green", "uncertain": "orange", "no_face": "gray"}
JOB_REFRESH_S = 5.0
"""How often the History page looks at a running scan's progress."""
THUMBNAILS_PER_PERSON = 12
FRAME_MIN_WIDTH = 480
FRAME_MAX_WIDTH = 960


_THROUGH_APP: contextvars.ContextVar[bool] = contextvars.ContextVar("through_app", default=False)
"""True while app.py runs a page through its own navigation."""


def app_pages() -> list[st.Page]:
    """The dashboard's pages, in the order of its navigation."""
    return [
        st.Page("pages/analyze.py", title="Analyze", icon=":material/search:", default=True),
        st.Page("pages/compare.py", title="Compare models", icon=":material/compare_arrows:"),
        st.Page("pages/history.py", title="History", icon=":material/history:"),
        st.Page("pages/model_card.py", title="Model card", icon=":material/description:"),
    ]


@contextlib.contextmanager
def through_app() -> Iterator[None]:
    """Marks a page run as app.py's (see `require_app_navigation`)."""
    token = _THROUGH_APP.set(True)
    try:
        yield
    finally:
        _THROUGH_APP.reset(token)


def run_app() -> None:
    """What app.py does: the app's navigation, and the chosen page run inside the app-wide
    guard (anything unexpected is logged with its traceback and shown as one line)."""
    page = st.navigation(app_pages())
    try:
        with through_app():
            page.run()
    except Exception:  # st.stop and st.rerun are BaseExceptions and pass through
        logging.getLogger("dashboard").exception("page %s failed", page.title)
        st.error("Something went wrong on this page; the details are in the server's log. Reload to try again.")


def require_app_navigation() -> None:
    """Run every page through the app's navigation, even a fresh server's first request.

    A `pages/` folder beside the main script makes Streamlit start in its old multipage mode,
    in which a first request to a deep link (/history) runs that page alone: no app-wide guard,
    a sidebar listing file names. A page that finds itself run that way runs the app instead,
    exactly as app.py does: `st.navigation` (public, and it turns the old mode off for the
    process) picks the page the link asked for, which runs inside the guard; then this run
    stops, so the page is drawn once. Every page calls this first.
    """
    if not _THROUGH_APP.get():
        run_app()
        st.stop()


def _models_stamp(models_dir: Path) -> int:
    try:
        return (models_dir / ENSEMBLE_FILE).stat().st_mtime_ns
    except FileNotFoundError:
        return 0


@st.cache_resource(max_entries=1, show_spinner=False)
def _service(models_dir: str, models_stamp: int) -> AnalysisService:
    # Keyed by the models folder and its ensemble.json's time: models trained or copied in while
    # the server runs are picked up on the next page load; max_entries=1 frees the old ones.
    return AnalysisService(Engine(Settings(models_dir=Path(models_dir))))


def get_service() -> AnalysisService:
    """The process's one engine (its models load on first use, then stay loaded)."""
    models_dir = Settings().models_dir
    return _service(str(models_dir), _models_stamp(models_dir))


@st.cache_resource(show_spinner=False)
def _store(root: str, url: str) -> Store:
    return Store(Path(root), url=url or None)


def get_store() -> Store:
    """The history in `data_home()` (its rows on `$DEEPFAKE_DATABASE_URL` when set); opening it
    once per process cleans up after a crash."""
    return _store(str(data_home()), database_url() or "")


def load_models(service: AnalysisService) -> list[str] | None:
    """The ensemble's model names once its models are loaded (a spinner while they load, or while
    the background load finishes); None (and an error on the page) when they cannot be loaded."""
    try:
        with st.spinner("Loading the models (once per server start)…"):
            return service.member_names
    except PipelineError as error:
        show_error(error)
        return None


def show_error(error: PipelineError) -> None:
    """A user-fixable problem as a message on the page (never a traceback)."""
    st.error(str(error))


def summary_label(summary: Summary) -> str:
    """One line naming a stored result in a picker."""
    probability = "" if summary.fake_probability is None else f" {summary.fake_probability:.2f}"
    created = summary.created.replace("T", " ")[:16]
    return f"#{summary.id} · {summary.file_name} · {summary.verdict}{probability} · {created}"


def job_label(job: ScanJob) -> str:
    """One line naming a scan job in a picker."""
    return f"#{job.id} · {job.name} · {job.status} · {job.processed}/{job.total} · {job.started.replace('T', ' ')[:16]}"


def _job_progress(store: Store, job_id: int) -> None:
    job = store.job(job_id)
    if job is None:
        st.info("This scan job is gone from the history.")
        return
    seen_key = f"history_job_{job_id}_seen"
    if st.session_state.get(seen_key, job.processed) != job.processed:
        st.session_state[seen_key] = job.processed
        st.rerun()  # new results: list them too
    st.session_state[seen_key] = job.processed
    st.markdown(f"**Scan #{job.id}: {job.name}** · {job.status}")
    st.progress(
        min(1.0, job.processed / job.total) if job.total else 1.0,
        text=f"{job.processed} of {job.total} files: {job.done} analysed, {job.skipped} skipped "
        f"(already in the history), {job.failed} failed",
    )
    done, skipped, failed, total = st.columns(4)
    done.metric("Analysed", job.done)
    skipped.metric("Skipped", job.skipped)
    failed.metric("Failed", job.failed)
    total.metric("Total", job.total)
    settings = job.settings
    timing = f"started {job.started.replace('T', ' ')}"
    timing += f", last file {job.updated.replace('T', ' ')}"
    if job.finished:
        timing += f", ended {job.finished.replace('T', ' ')}"
    st.caption(
        f"{timing} (UTC). {settings.get('frames')} frames, {settings.get('aggregation')} rule, models "
        f"{', '.join(settings.get('models', {}))}, {settings.get('workers')} workers."
        + (f" {job.message}" if job.message else "")
    )
    if job.failed:
        with st.expander(f"Files that could not be analysed ({job.failed})"):
            st.dataframe(
                pd.DataFrame(
                    [
                        {"file": f.path, "why": f.error, "tries": f.attempts}
                        for f in store.job_files(job.id, status="failed")
                    ],
                    columns=["file", "why", "tries"],
                ),
                hide_index=True,
                width="stretch",
            )


def render_job_progress(store: Store, job_id: int) -> None:
    """A scan job's progress (counts done/skipped/failed/total), read from the history; while
    the scan runs it is read again every few seconds, and the page is redrawn when files came in."""
    job = store.job(job_id)
    running = job is not None and job.status == "running"
    st.fragment(_job_progress, run_every=JOB_REFRESH_S if running else None)(store, job_id)


def _shown(path: Path | None) -> str | None:
    return str(path) if path else None


_MARKDOWN_ACTIVE = re.compile(r"([\\`*\[\]<>!$|~])")


def plain(text: str) -> str:
    """Text from a file (metadata, a signer's name) made inert in Streamlit's Markdown: no link, no
    picture that a browser would load, no HTML, no formatting. Ordinary sentences are unchanged."""
    text = _MARKDOWN_ACTIVE.sub(r"\\\1", text)
    # Bare addresses would become links (GitHub-flavoured autolinks).
    return text.replace("://", "\\://").replace("www.", "www\\.")


def render_verdict(verdict: VerdictSection, provenance: ProvenanceSection | None = None) -> None:
    """The verdict, the calibrated probability and the one-line reason; beside them, what the
    file's provenance says (the models' verdict stays theirs)."""
    probability = "" if verdict.fake_probability is None else f" · fake probability **{verdict.fake_probability:.2f}**"
    st.markdown(f"### Verdict: :{VERDICT_COLOURS[verdict.verdict]}-background[{verdict.label}]{probability}")
    if provenance is not None:
        colour = "violet" if provenance.ai_generated else "orange" if provenance.failing else "gray"
        st.markdown(f":{colour}-badge[Provenance] {plain(provenance.summary)}")
    st.caption(plain(verdict.caption))


Overlay = np.ndarray | str | None
"""An explanation map: computed (RGB array), stored (file path), or missing (None)."""


def _render_overlays(overlays: dict[str, tuple[Overlay, Overlay]]) -> None:
    """Each model's explanation map over the face and over the frame, side by side."""
    for model, pictures in overlays.items():
        for column, picture, where in zip(st.columns([1, 2]), pictures, ("face", "frame"), strict=True):
            caption = f"{model}: map on the {where}"
            if picture is None:
                column.caption(f"{caption} is missing from the history folder.")
            else:
                column.image(picture, caption=caption, width="stretch")


def _render_timeline_and_frames(record: Record, store: Store, service: AnalysisService, key: str) -> None:
    result = record.result
    if result.kind == "video" and any(frame.faces for frame in result.frames):
        sources = st.multiselect(
            "Lines to draw",
            [ENSEMBLE, *result.models],
            default=[ENSEMBLE],
            key=f"{key}_sources",
            help=(
                "The ensemble and each model, for every tracked person. A model drawn with fewer "
                "points scored only some faces of each person (CLIP is slow, so it looks at a few, "
                "spread over the video); its line joins them."
            ),
        )
        st.plotly_chart(timeline_figure(result, sources or [ENSEMBLE]), key=f"{key}_timeline", width="stretch")
    elif result.kind == "video":
        st.caption("No face in any sampled frame: nothing to plot.")
    if result.kind == "video" and len(result.frames) > 1:
        scores = [max((f.fake_probability for f in frame.faces), default=-1.0) for frame in result.frames]
        position = st.select_slider(
            "Frame to show",
            options=list(range(len(result.frames))),
            value=scores.index(max(scores)),
            format_func=lambda p: f"{p + 1}: {frame_label(result, p)}",
            key=f"{key}_frame",
            help="Starts at the most suspicious frame.",
        )
    else:
        position = 0
    frame_picture = next((p for p in record.pictures_of("frame") if p.position == position), None)
    frame_path = _shown(existing(store, frame_picture))
    frame_rgb = read_picture(Path(frame_path)) if frame_path else None
    faces = result.frames[position].faces
    if frame_rgb is not None:
        st.image(
            draw_faces(frame_rgb, faces, record.preview_scale, result.threshold),
            caption=frame_label(result, position),
            # Small frames (face-crop clips, thumbnails) are enlarged to a readable size.
            width=min(max(FRAME_MIN_WIDTH, frame_rgb.shape[1]), FRAME_MAX_WIDTH),
        )
    else:
        st.caption(f"The picture of {frame_label(result, position)} is missing from the history folder.")
    if not faces:
        st.caption("No face in this frame.")
        return
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "person": f.track + 1,
                    ENSEMBLE: f.fake_probability,
                    **f.model_scores,
                    # MTCNN's confidence that this is a face, not anything about fakes.
                    "face detection confidence": f.confidence,
                }
                for f in faces
            ],
            # Every model gets a column; an empty cell is a face a costly member did not score.
            columns=["person", ENSEMBLE, *result.models, "face detection confidence"],
        ),
        hide_index=True,
        width="stretch",
    )
    explained_key = f"{key}_explained_{position}"
    if st.button("Explanation maps for this frame", key=f"{key}_explain_{position}"):
        try:
            with st.spinner("Computing explanation maps…"):
                st.session_state[explained_key] = [
                    service.explain(record, store, position, i) for i in range(len(faces))
                ]
        except PipelineError as error:
            show_error(error)
    for face, overlays in zip(faces, st.session_state.get(explained_key, []), strict=False):
        st.markdown(f"**Person {face.track + 1}**, fake probability {face.fake_probability:.3f}")
        _render_overlays(overlays)


def _render_explanations(sections: ResultSections) -> None:
    if not sections.explained:
        st.caption("No face found: nothing to explain.")
        return
    st.caption(sections.explanation_note)
    for face in sections.explained:
        st.markdown(f"**Person {face.person}**, {face.where}: fake probability {face.fake_probability:.3f}")
        _render_overlays({m.model: (_shown(m.on_face), _shown(m.on_frame)) for m in face.maps})


def _render_faces(record: Record, store: Store) -> None:
    result = record.result
    if not result.tracks:
        st.caption("No face found.")
        return
    crops = record.pictures_of("face")
    for track in result.tracks:
        own = [p for p in crops if p.track == track.track]
        # At most THUMBNAILS_PER_PERSON, evenly spaced over the person's appearances.
        step = max(1, -(-len(own) // THUMBNAILS_PER_PERSON))
        shown = [(p, _shown(existing(store, p))) for p in own[::step]]
        shown = [(p, path) for p, path in shown if path]
        decides = "" if track.decides else " (seen too briefly to decide the verdict)"
        st.markdown(
            f"**Person {track.track + 1}**: {track.faces} faces, fake probability {track.fake_probability:.3f}, "
            f"{track.verdict}{decides}"
        )
        if shown:
            captions = [
                f"{frame_label(result, p.position)}: {result.frames[p.position].faces[p.face].fake_probability:.2f}"
                for p, _ in shown
            ]
            st.image([path for _, path in shown], caption=captions, width=112)


def _render_scores(sections: ResultSections) -> None:
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "model": r.model,
                    "fake probability": r.fake_probability,
                    "version": r.version,
                    "ms per face": r.ms_per_face,
                }
                for r in sections.scores
            ]
        ),
        hide_index=True,
        width="stretch",
    )
    if sections.people:
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "person": p.person,
                        "faces": p.faces,
                        ENSEMBLE: p.fake_probability,
                        **p.model_scores,
                        "verdict": p.verdict,
                        "decides": p.decides,
                    }
                    for p in sections.people
                ]
            ),
            hide_index=True,
            width="stretch",
        )
    st.markdown("**Timings**")
    st.dataframe(pd.DataFrame(sections.timings, columns=["stage", "seconds"]), hide_index=True, width="stretch")
    st.caption(sections.sampling)


def _render_provenance(section: ProvenanceSection) -> None:
    if not section.read:
        st.info(section.summary)
        return
    st.markdown(f"**{plain(section.summary)}**")
    if len(section.ai_claims) > 1:  # one claim is the summary already
        for claim in section.ai_claims:
            st.markdown(f"- {plain(claim)}")
    for title, rows in section.tables:
        st.markdown(f"**{title}**")
        st.dataframe(pd.DataFrame(rows, columns=["what", "value"]), hide_index=True, width="stretch")
    if section.caveat:
        st.warning(plain(section.caveat))
    if section.problems:
        st.markdown("**Could not be read** (the rest of the analysis went on)")
        for problem in section.problems:
            st.markdown(f"- {plain(problem)}")
    st.caption(section.note)


def render_result(record: Record, store: Store, service: AnalysisService, where: str) -> None:
    """Everything about one stored result. `where` keeps widget keys apart between pages."""
    result = record.result
    key = f"{where}_{record.id}"
    sections = result_sections(record, store)
    render_verdict(sections.verdict, sections.provenance)
    timeline, explanations, faces, scores, provenance, export = st.tabs(
        ["Timeline & frames", "Explanation maps", "Faces", "Scores & timings", "Provenance", "Export"]
    )
    with timeline:
        _render_timeline_and_frames(record, store, service, key)
    with explanations:
        _render_explanations(sections)
    with faces:
        _render_faces(record, store)
    with scores:
        _render_scores(sections)
    with provenance:
        _render_provenance(sections.provenance)
    with export:
        stem = Path(result.file).stem or "result"
        st.download_button(
            "Download the result (JSON)", result_json(record), f"{stem}.json", "application/json", key=f"{key}_json"
        )
        st.download_button(
            "Download the report (HTML)",
            lambda: html_report(record, store),
            f"{stem}_report.html",
            "text/html",
            key=f"{key}_html",
        )
