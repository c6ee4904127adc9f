"""Embedding scatter maps and the CKA heatmap: traces, their data, and refusals."""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go
import pytest
import torch

from kd_core.analysis.errors import AnalysisError
from kd_core.figures.embedding import embedding_figure
from kd_core.figures.similarity import cka_heatmap_figure
from kd_core.figures.style import CATEGORICAL, SEQUENTIAL, WEBGL_THRESHOLD

CLASS_NAMES = ("circle", "square", "star")


def _points(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 2))


def _labels(n: int) -> np.ndarray:
    return np.arange(n) % 3


def test_one_trace_per_model_and_class_with_shared_legend():
    n = 12
    points = {"teacher": _points(n), "student": _points(n, seed=1)}
    fig = embedding_figure(points, _labels(n), class_names=CLASS_NAMES, method="tsne")
    assert isinstance(fig, go.Figure)
    assert len(fig.data) == 6
    assert [trace.name for trace in fig.data] == list(CLASS_NAMES) * 2
    assert [trace.showlegend for trace in fig.data] == [True] * 3 + [False] * 3
    assert [trace.legendgroup for trace in fig.data] == list(CLASS_NAMES) * 2
    assert [trace.xaxis for trace in fig.data] == ["x"] * 3 + ["x2"] * 3
    assert [trace.marker.color for trace in fig.data[:3]] == CATEGORICAL[:3]
    # Each trace holds exactly its class's points of its model.
    for trace, (model, k) in zip(fig.data, [(m, k) for m in points for k in range(3)], strict=True):
        members = _labels(n) == k
        np.testing.assert_array_equal(trace.x, points[model][members, 0])
        np.testing.assert_array_equal(trace.y, points[model][members, 1])
        assert trace.hovertext[0].startswith(f"{model}<br>sample ")
        assert f"class: {CLASS_NAMES[k]}" in trace.hovertext[0]
    assert [a.text for a in fig.layout.annotations] == ["teacher", "student"]
    assert fig.layout.xaxis.title.text == "t-SNE 1 (arbitrary units)"
    assert fig.layout.yaxis.title.text == "t-SNE 2 (arbitrary units)"
    assert fig.layout.dragmode == "lasso"
    assert "12 samples" in fig.layout.title.text


def test_customdata_holds_the_sample_indices():
    n = 9
    indices = np.arange(n) * 7 + 3
    labels = _labels(n)
    fig = embedding_figure({"teacher": _points(n)}, torch.from_numpy(labels), indices=indices)
    for k, trace in enumerate(fig.data):
        np.testing.assert_array_equal(trace.customdata, indices[labels == k])
        assert trace.name == f"class {k}"
    default = embedding_figure({"teacher": _points(n)}, labels)
    np.testing.assert_array_equal(default.data[1].customdata, np.flatnonzero(labels == 1))


@pytest.mark.parametrize(
    ("models", "n", "expected"),
    [
        (1, WEBGL_THRESHOLD, go.Scatter),
        (1, WEBGL_THRESHOLD + 1, go.Scattergl),
        (2, WEBGL_THRESHOLD // 2, go.Scatter),
        (2, WEBGL_THRESHOLD // 2 + 1, go.Scattergl),
    ],
)
def test_webgl_above_the_threshold_of_points_drawn(models, n, expected):
    points = {f"model {i}": _points(n, seed=i) for i in range(models)}
    fig = embedding_figure(points, _labels(n))
    assert {type(trace) for trace in fig.data} == {expected}


def test_colour_by_correct():
    n = 10
    correct = {"teacher": np.arange(n) < 7, "student": np.arange(n) < 4}
    points = {"teacher": _points(n), "student": _points(n, seed=1)}
    fig = embedding_figure(points, _labels(n), colour_by="correct", correct=correct)
    assert [trace.name for trace in fig.data] == ["correct", "wrong"] * 2
    assert [trace.showlegend for trace in fig.data] == [True, True, False, False]
    np.testing.assert_array_equal(fig.data[0].customdata, np.arange(7))
    np.testing.assert_array_equal(fig.data[3].customdata, np.arange(4, n))
    assert "prediction: wrong" in fig.data[3].hovertext[0]
    assert fig.data[0].marker.color != fig.data[1].marker.color
    only_teacher = {"teacher": correct["teacher"]}
    with pytest.raises(AnalysisError, match="correct-prediction mask of every model"):
        embedding_figure(points, _labels(n), colour_by="correct", correct=only_teacher)
    too_short = {"teacher": [1, 0, 1], "student": correct["student"]}
    with pytest.raises(AnalysisError, match="3 entries for 10 samples"):
        embedding_figure(points, _labels(n), colour_by="correct", correct=too_short)


def test_empty_groups_get_no_trace_and_the_legend_entry_moves_on():
    labels = np.array([0, 0, 1, 1])
    correct = {"a": np.ones(4, bool), "b": np.array([True, False, True, True])}
    fig = embedding_figure(
        {"a": _points(4), "b": _points(4)}, labels, colour_by="correct", correct=correct
    )
    assert [(t.name, t.showlegend) for t in fig.data] == [
        ("correct", True),
        ("correct", False),
        ("wrong", True),
    ]


def test_overlay_puts_all_models_in_one_panel():
    n = 6
    points = {"teacher": _points(n), "student": _points(n, seed=1)}
    fig = embedding_figure(points, _labels(n), side_by_side=False, method="pca")
    assert len(fig.data) == 6
    assert {trace.xaxis for trace in fig.data} == {"x"}
    symbols = [trace.marker.symbol for trace in fig.data]
    assert symbols[:3] != symbols[3:] and len(set(symbols[:3])) == 1
    assert "circle = teacher, diamond = student" in fig.layout.title.text
    assert fig.layout.xaxis.title.text == "PC 1 (feature units)"


def test_more_than_eight_classes_vary_the_symbol():
    n = 20
    labels = np.arange(n) % 10
    fig = embedding_figure({"m": _points(n)}, labels)
    styles = {(t.marker.color, t.marker.symbol) for t in fig.data}
    assert len(fig.data) == 10 and len(styles) == 10


@pytest.mark.parametrize("shared", [True, False])
def test_panels_share_axes_on_request(shared):
    points = {"teacher": _points(6), "student": _points(6, seed=1)}
    fig = embedding_figure(points, _labels(6), shared_axes=shared)
    assert (fig.layout.xaxis2.matches, fig.layout.yaxis2.matches) == (
        ("x", "y") if shared else (None, None)
    )


def test_six_models_use_two_rows():
    points = {f"model {i}": _points(6, seed=i) for i in range(6)}
    fig = embedding_figure(points, _labels(6))
    assert {trace.xaxis for trace in fig.data} == {f"x{i}" if i > 1 else "x" for i in range(1, 7)}
    assert fig.layout.height == 760


def test_embedding_figure_errors():
    labels = _labels(5)
    with pytest.raises(AnalysisError, match="at least one model"):
        embedding_figure({}, labels)
    with pytest.raises(AnalysisError, match=r"shape \(4, 2\), expected \(5, 2\)"):
        embedding_figure({"m": _points(4)}, labels)
    bad = _points(5)
    bad[0, 0] = math.nan
    with pytest.raises(AnalysisError, match="NaN"):
        embedding_figure({"m": bad}, labels)
    with pytest.raises(AnalysisError, match="only 2 class names"):
        embedding_figure({"m": _points(5)}, labels, class_names=("a", "b"))
    with pytest.raises(AnalysisError, match="colour_by must be one of"):
        embedding_figure({"m": _points(5)}, labels, colour_by="model")
    with pytest.raises(AnalysisError, match="method must be one of"):
        embedding_figure({"m": _points(5)}, labels, method="lda")
    with pytest.raises(AnalysisError, match="no samples"):
        embedding_figure({"m": np.zeros((0, 2))}, np.zeros(0))
    with pytest.raises(AnalysisError, match="3 sample indices for 5 samples"):
        embedding_figure({"m": _points(5)}, labels, indices=[1, 2, 3])


def test_cka_heatmap_values_and_annotations():
    values = np.array([[0.91234, 0.1], [0.5, 0.0049], [1.0, 0.33]])
    fig = cka_heatmap_figure(values, ["layer1", "layer2", "layer3"], ["block2", "block3"])
    assert len(fig.data) == 1
    heatmap = fig.data[0]
    assert isinstance(heatmap, go.Heatmap)
    np.testing.assert_array_equal(heatmap.z, values)
    assert list(heatmap.y) == ["layer1", "layer2", "layer3"]
    assert list(heatmap.x) == ["block2", "block3"]
    assert [list(row) for row in heatmap.text] == [
        ["0.91", "0.10"],
        ["0.50", "0.00"],
        ["1.00", "0.33"],
    ]
    assert heatmap.texttemplate == "%{text}"
    assert (heatmap.zmin, heatmap.zmax) == (0.0, 1.0)
    viridis = go.Heatmap(colorscale=SEQUENTIAL).colorscale
    assert heatmap.colorscale == viridis
    assert fig.layout.yaxis.autorange == "reversed"
    assert "teacher stage" in fig.layout.yaxis.title.text
    assert "student stage" in fig.layout.xaxis.title.text


def test_cka_heatmap_errors():
    with pytest.raises(AnalysisError, match=r"shape \(2, 2\), expected \(2, 3\)"):
        cka_heatmap_figure(np.zeros((2, 2)), ["a", "b"], ["x", "y", "z"])
    with pytest.raises(AnalysisError, match=r"\[0, 1\]"):
        cka_heatmap_figure(np.array([[1.2]]), ["a"], ["x"])
    with pytest.raises(AnalysisError, match=r"\[0, 1\]"):
        cka_heatmap_figure(np.array([[math.nan]]), ["a"], ["x"])
    with pytest.raises(AnalysisError, match="expected"):
        cka_heatmap_figure(np.zeros((0, 0)), [], [])
