"""Tables and figures of results: the per-frame timeline (interactive plotly for the dashboard,
a static matplotlib PNG for the HTML report), model-versus-model comparisons and timings.

Every figure is built from `face_table`, one row per face, so the dashboard, the comparison and
the report all plot the same numbers.
"""

from __future__ import annotations

import io
import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from pipeline.results import AnalysisResult

ENSEMBLE = "ensemble"
"""Name of the ensemble's column beside the models' columns."""
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
SOURCE_DASHES = ("solid", "dot", "dash", "dashdot", "longdash", "longdashdot")
FACE_COLUMNS = ("record", "file", "position", "frame", "time_s", "face", "person", ENSEMBLE)
"""Columns of `face_table` before the models' columns."""
BAND_COLOUR = "#f4a261"
THRESHOLD_COLOUR = "#e63946"


def face_table(result: AnalysisResult, record_id: int | None = None) -> pd.DataFrame:
    """One row per face: where it is (frame position and number, time, person) and its fake
    probability from the ensemble and each model."""
    rows: list[dict[str, Any]] = []
    for position, frame in enumerate(result.frames):
        for index, face in enumerate(frame.faces):
            rows.append(
                {
                    "record": record_id,
                    "file": result.file,
                    "position": position,
                    "frame": frame.frame_number,
                    "time_s": frame.time_s,
                    "face": index,
                    "person": face.track + 1,
                    ENSEMBLE: face.fake_probability,
                    **face.model_scores,
                }
            )
    return pd.DataFrame(rows, columns=[*FACE_COLUMNS, *result.models])


def faces_table(results: Sequence[tuple[int, AnalysisResult]]) -> pd.DataFrame:
    """`face_table` of several results (record id, result) stacked; a model one result did not
    use has no score (NaN) there."""
    tables = [face_table(result, record_id) for record_id, result in results]
    tables = [t for t in tables if not t.empty]
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=FACE_COLUMNS)


def _x_values(table: pd.DataFrame) -> tuple[pd.Series, str]:
    """Time in seconds where every sampled frame has one, else the frame number."""
    if table["time_s"].map(lambda t: t is not None and math.isfinite(t)).all():
        return table["time_s"], "time (s)"
    return table["frame"], "frame"


def timeline_figure(result: AnalysisResult, sources: Sequence[str] = (ENSEMBLE,)) -> go.Figure:
    """Fake probability per sampled frame: one line per person and source (the ensemble or a
    model), with the decision threshold and the uncertain band drawn across."""
    table = face_table(result)
    people = sorted(table["person"].unique())
    # One person: a colour per source reads best. Several: a colour per person, a dash per source.
    by_source = len(people) == 1 and len(sources) > 1
    figure = go.Figure()
    x_title = "time (s)"
    for person_index, person in enumerate(people):
        rows = table[table["person"] == person].sort_values("position")
        x, x_title = _x_values(rows)
        for source_index, source in enumerate(sources):
            colour_index = source_index if by_source else person_index
            figure.add_trace(
                go.Scatter(
                    x=x,
                    y=rows[source],
                    mode="lines+markers",
                    # A costly member (CLIP) scores a few faces per person: join its points.
                    connectgaps=True,
                    name=f"person {person} · {source}",
                    line={
                        "color": COLOURS[colour_index % len(COLOURS)],
                        "dash": "solid" if by_source else SOURCE_DASHES[source_index % len(SOURCE_DASHES)],
                    },
                    customdata=rows[["frame", "time_s", "position"]].to_numpy(),
                    hovertemplate=(
                        f"person {person} · {source}<br>frame %{{customdata[0]}} at %{{customdata[1]:.2f}} s"
                        "<br>fake probability %{y:.3f}<extra></extra>"
                    ),
                )
            )
    low, high = result.uncertain_band
    figure.add_hrect(
        y0=low, y1=high, fillcolor=BAND_COLOUR, opacity=0.18, line_width=0, layer="below", name="uncertain band"
    )
    figure.add_hline(
        y=result.threshold,
        line={"color": THRESHOLD_COLOUR, "dash": "dash", "width": 2},
        name="threshold",
        annotation_text=f"threshold {result.threshold:.2f}",
        annotation_position="top left",
    )
    figure.update_layout(
        xaxis_title=x_title,
        yaxis={"title": "fake probability", "range": [0, 1]},
        legend={"orientation": "h", "y": -0.25},
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        hovermode="closest",
        height=380,
    )
    return figure


def timeline_png(result: AnalysisResult, width_in: float = 8.0, height_in: float = 3.2) -> bytes:
    """The ensemble's timeline as a static PNG (for the HTML report)."""
    from matplotlib.figure import Figure  # a bare Figure needs no display backend

    table = face_table(result)
    figure = Figure(figsize=(width_in, height_in), dpi=110)
    axes = figure.subplots()
    low, high = result.uncertain_band
    axes.axhspan(low, high, color=BAND_COLOUR, alpha=0.25, label="uncertain band")
    axes.axhline(result.threshold, color=THRESHOLD_COLOUR, linestyle="--", label=f"threshold {result.threshold:.2f}")
    x_title = "time (s)"
    for colour_index, person in enumerate(sorted(table["person"].unique())):
        rows = table[table["person"] == person].sort_values("position")
        x, x_title = _x_values(rows)
        axes.plot(
            x,
            rows[ENSEMBLE],
            marker="o",
            markersize=3,
            color=COLOURS[colour_index % len(COLOURS)],
            label=f"person {person}",
        )
    axes.set_ylim(0, 1)
    axes.set_xlabel(x_title)
    axes.set_ylabel("fake probability")
    axes.grid(alpha=0.3)
    axes.legend(loc="upper right", fontsize=7)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def model_scatter(
    table: pd.DataFrame, model_a: str, model_b: str, threshold: float, colour_by: str = "person"
) -> go.Figure:
    """Each face as a point: model A's fake probability against model B's. Points off the
    diagonal are faces the two models disagree on."""
    rows = table.dropna(subset=[model_a, model_b])
    figure = go.Figure()
    for group, part in rows.groupby(colour_by, sort=True):
        figure.add_trace(
            go.Scatter(
                x=part[model_a],
                y=part[model_b],
                mode="markers",
                name=f"{colour_by} {group}",
                customdata=part[["file", "frame", "time_s", "person"]].to_numpy(),
                hovertemplate=(
                    "%{customdata[0]}<br>frame %{customdata[1]} at %{customdata[2]:.2f} s, person %{customdata[3]}"
                    f"<br>{model_a} %{{x:.3f}}<br>{model_b} %{{y:.3f}}<extra></extra>"
                ),
            )
        )
    figure.add_shape(type="line", x0=0, y0=0, x1=1, y1=1, line={"color": "grey", "dash": "dot"}, name="agreement")
    figure.add_hline(y=threshold, line={"color": THRESHOLD_COLOUR, "dash": "dash", "width": 1}, name="threshold")
    figure.add_vline(x=threshold, line={"color": THRESHOLD_COLOUR, "dash": "dash", "width": 1}, name="threshold")
    figure.update_layout(
        xaxis={"title": f"{model_a} fake probability", "range": [0, 1]},
        yaxis={"title": f"{model_b} fake probability", "range": [0, 1], "scaleanchor": "x"},
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
    )
    return figure


def disagreements(table: pd.DataFrame, model_a: str, model_b: str, top: int = 10) -> pd.DataFrame:
    """The faces on which two models' fake probabilities differ most, largest gap first."""
    rows = table.dropna(subset=[model_a, model_b]).copy()
    rows["difference"] = (rows[model_a] - rows[model_b]).abs()
    rows = rows.sort_values("difference", ascending=False, kind="stable").head(top)
    columns = ["record", "file", "frame", "time_s", "person", model_a, model_b, "difference"]
    return rows[columns].reset_index(drop=True)


def scores_table(results: Sequence[tuple[int, AnalysisResult]]) -> pd.DataFrame:
    """One row per result: its verdict and the ensemble's and each model's fake probability."""
    rows = [
        {"record": record_id, "file": r.file, "verdict": r.verdict, ENSEMBLE: r.fake_probability, **r.model_scores}
        for record_id, r in results
    ]
    return pd.DataFrame(rows)


def inference_times(results: Sequence[AnalysisResult]) -> pd.DataFrame:
    """Each model's inference time per face in milliseconds, averaged over the results that
    used it (weighted by the number of faces it scored there: a costly member scores only some)."""
    totals: dict[str, list[float]] = {}
    for result in results:
        faces_by_model = Counter(
            model for frame in result.frames for face in frame.faces for model in face.model_scores
        )
        for model, seconds in result.model_seconds_per_face.items():
            faces = faces_by_model[model]
            total = totals.setdefault(model, [0.0, 0.0, 0.0])
            total[0] += seconds * faces
            total[1] += faces
            total[2] += 1
    rows = [
        {"model": model, "ms_per_face": 1000.0 * seconds / faces, "faces": int(faces), "analyses": int(count)}
        for model, (seconds, faces, count) in sorted(totals.items())
        if faces
    ]
    return pd.DataFrame(rows, columns=["model", "ms_per_face", "faces", "analyses"])


def scores_figure(result: AnalysisResult) -> go.Figure:
    """The verdict-level fake probability of the ensemble beside each model's, with the threshold."""
    names = [ENSEMBLE, *result.models]
    values = [result.fake_probability, *(result.model_scores.get(name) for name in result.models)]
    figure = go.Figure(go.Bar(x=names, y=values, marker_color=["#1d3557", *["#457b9d"] * len(result.models)]))
    figure.add_hline(y=result.threshold, line={"color": THRESHOLD_COLOUR, "dash": "dash"}, name="threshold")
    figure.update_layout(
        yaxis={"title": "fake probability", "range": [0, 1]}, margin={"l": 10, "r": 10, "t": 30, "b": 10}, height=300
    )
    return figure


def inference_figure(times: pd.DataFrame) -> go.Figure:
    """`inference_times` as bars."""
    figure = go.Figure(go.Bar(x=times["model"], y=times["ms_per_face"], marker_color="#457b9d"))
    figure.update_layout(yaxis_title="ms per face", margin={"l": 10, "r": 10, "t": 30, "b": 10}, height=300)
    return figure
