"""Tables and figures of results (timeline, model comparison, timings), on real analyses."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import TYPE_CHECKING

import pandas as pd
import pytest

from pipeline.app.charts import (
    ENSEMBLE,
    disagreements,
    face_table,
    faces_table,
    inference_times,
    model_scatter,
    timeline_figure,
    timeline_png,
)
from pipeline.engine.analyze import AnalysisResult

if TYPE_CHECKING:
    from dashboard_fixtures import Analysed

pytest_plugins = ["dashboard_fixtures"]  # session fixtures: one engine, analyses made once


def two_people(result: AnalysisResult) -> AnalysisResult:
    """The same result as if a second person (a copy of the first, scores halved) was tracked."""
    frames = []
    for frame in result.frames:
        copies = [
            replace(
                f,
                track=f.track + 1,
                fake_probability=f.fake_probability / 2,
                model_scores={m: s / 2 for m, s in f.model_scores.items()},
            )
            for f in frame.faces
        ]
        frames.append(replace(frame, faces=[*frame.faces, *copies]))
    return replace(result, frames=frames)


def test_face_table_has_one_row_per_face(analysed_video: Analysed) -> None:
    result = analysed_video.result
    table = face_table(result, record_id=7)
    assert len(table) == sum(len(f.faces) for f in result.frames)
    assert list(table.columns[-len(result.models) :]) == list(result.models)
    first = next(f for f in result.frames if f.faces)
    row = table.iloc[0]
    assert (row["frame"], row["time_s"], row["person"], row["record"]) == (
        first.frame_number,
        first.time_s,
        first.faces[0].track + 1,
        7,
    )
    assert row[ENSEMBLE] == first.faces[0].fake_probability


def test_timeline_has_a_line_per_person_and_source_and_the_threshold(analysed_video: Analysed) -> None:
    result = two_people(analysed_video.result)
    figure = timeline_figure(result)
    assert [t.name for t in figure.data] == ["person 1 · ensemble", "person 2 · ensemble"]
    times = [f.time_s for f in result.frames if f.faces]
    assert list(figure.data[0].x) == times
    assert "at %{customdata[1]:.2f} s" in figure.data[0].hovertemplate
    shapes = {s.name: s for s in figure.layout.shapes}
    assert shapes["threshold"].y0 == result.threshold
    assert (shapes["uncertain band"].y0, shapes["uncertain band"].y1) == tuple(result.uncertain_band)
    everything = timeline_figure(result, [ENSEMBLE, *result.models])
    assert len(everything.data) == 2 * (1 + len(result.models))
    for trace in everything.data:  # a member that scored a few faces per person still draws a line
        assert trace.connectgaps and sum(1 for y in trace.y if y is not None and math.isfinite(y)) >= 1


def test_timeline_png(analysed_video: Analysed) -> None:
    assert timeline_png(analysed_video.result).startswith(b"\x89PNG\r\n\x1a\n")


def test_model_comparison(analysed_video: Analysed, analysed_image: Analysed) -> None:
    results = [(1, analysed_video.result), (2, analysed_image.result)]
    table = faces_table(results)
    models = list(analysed_video.result.models)
    if len(models) < 2:
        pytest.skip("the ensemble has one model: nothing to compare")
    a, b = models[:2]
    worst = disagreements(table, a, b, top=3)
    gaps = (table[a] - table[b]).abs().sort_values(ascending=False)
    assert list(worst["difference"]) == pytest.approx(list(gaps.head(3)))
    assert set(worst["file"]) <= {analysed_video.result.file, analysed_image.result.file}
    scatter = model_scatter(table, a, b, 0.5, colour_by="file")
    both = table[a].notna() & table[b].notna()  # a costly member (CLIP) scores only some faces
    assert both.any() and sum(len(t.x) for t in scatter.data) == both.sum()
    assert faces_table([]).empty


def test_inference_times_are_weighted_by_faces(analysed_video: Analysed) -> None:
    result = analysed_video.result
    slower = replace(result, model_seconds_per_face={m: 3 * s for m, s in result.model_seconds_per_face.items()})
    times = inference_times([result, slower]).set_index("model")
    for model, seconds in result.model_seconds_per_face.items():
        faces = sum(model in face.model_scores for frame in result.frames for face in frame.faces)
        assert times.loc[model, "ms_per_face"] == pytest.approx(1000 * 2 * seconds)
        assert times.loc[model, "faces"] == 2 * faces and times.loc[model, "analyses"] == 2
    assert inference_times([]).empty and isinstance(inference_times([]), pd.DataFrame)
