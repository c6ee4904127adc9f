"""Confusion heatmap and per-class accuracy bars: trace types, names and data on small inputs."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import pytest
import torch

from kd_core.analysis.errors import AnalysisError
from kd_core.figures.evaluation import confusion_figure, per_class_accuracy_figure
from kd_core.figures.style import series_colour

# Rows: true class. Class "c" has no samples.
CONFUSION = torch.tensor([[3, 1, 0], [2, 2, 0], [0, 0, 0]])
NAMES = ("a", "b", "c")


def test_normalised_confusion_shows_row_percentages_and_counts_in_the_hover():
    fig = confusion_figure(CONFUSION, NAMES)
    assert len(fig.data) == 1 and isinstance(fig.data[0], go.Heatmap)
    heatmap = fig.data[0]
    assert list(heatmap.x) == list(NAMES) and list(heatmap.y) == list(NAMES)
    z = [list(row) for row in heatmap.z]
    assert z[0] == [75.0, 25.0, 0.0] and z[1] == [50.0, 50.0, 0.0]
    assert z[2] == [None, None, None]  # no samples: blank cells, not NaN
    customdata = np.asarray(heatmap.customdata)
    np.testing.assert_array_equal(customdata[..., 0], CONFUSION.numpy())
    assert "count: %{customdata[0]" in heatmap.hovertemplate
    assert heatmap.colorscale[0][1].lower() == "#440154"  # Viridis starts dark purple
    assert (heatmap.zmin, heatmap.zmax) == (0, 100)
    assert fig.layout.yaxis.autorange == "reversed"  # first true class on top
    assert fig.layout.xaxis.title.text == "predicted class"
    assert fig.layout.yaxis.title.text == "true class"
    assert "8 samples, 62.5% on the diagonal" in fig.layout.title.text


def test_raw_confusion_shows_counts_and_default_names():
    fig = confusion_figure(CONFUSION.numpy(), normalize=False)
    heatmap = fig.data[0]
    assert [list(row) for row in heatmap.z] == CONFUSION.tolist()
    assert list(heatmap.x) == ["class 0", "class 1", "class 2"]
    assert heatmap.zmax is None and heatmap.colorbar.title.text == "samples"


def test_large_confusions_drop_the_cell_labels():
    assert confusion_figure(torch.eye(5, dtype=torch.int64)).data[0].texttemplate == "%{z:.0f}"
    assert confusion_figure(torch.eye(30, dtype=torch.int64)).data[0].texttemplate is None


@pytest.mark.parametrize(
    ("confusion", "names", "match"),
    [
        (torch.zeros(2, 3), (), "must be K x K"),
        (torch.zeros(0, 0), (), "must be K x K"),
        (torch.zeros(3, 3), (), "counts no samples"),
        (torch.tensor([[1.0, -1.0], [0.0, 1.0]]), (), "finite values >= 0"),
        (torch.tensor([[1.0, float("nan")], [0.0, 1.0]]), (), "finite values >= 0"),
        (torch.eye(3), ("a", "b"), "2 class names for 3 classes"),
    ],
)
def test_bad_confusions_are_analysis_errors(confusion, names, match):
    with pytest.raises(AnalysisError, match=match):
        confusion_figure(confusion, names)


def test_per_class_bars_one_trace_per_model_with_gaps_for_absent_classes():
    accuracies = {"teacher": {0: 90.0, 1: 80.0, 2: 70.0}, "student": {0: 60.0, 2: 100.0}}
    fig = per_class_accuracy_figure(accuracies, NAMES)
    assert [type(t) for t in fig.data] == [go.Bar, go.Bar]
    assert [t.name for t in fig.data] == ["teacher", "student"]
    assert list(fig.data[0].y) == [90.0, 80.0, 70.0]
    assert list(fig.data[1].y) == [60.0, None, 100.0]
    assert list(fig.data[1].x) == list(NAMES)
    assert [t.marker.color for t in fig.data] == [series_colour(0), series_colour(1)]
    assert fig.data[1].hovertext[1] == "student<br>b: no samples"
    assert fig.data[0].hovertext[0] == "teacher<br>a: 90.0% correct"
    assert fig.layout.barmode == "group"
    assert tuple(fig.layout.yaxis.range) == (0, 100)
    assert "%" in fig.layout.yaxis.title.text


@pytest.mark.parametrize(
    ("accuracies", "names", "match"),
    [
        ({}, NAMES, "No model to show"),
        ({"m": {0: 50.0}}, (), "needs the class names"),
        ({"m": {3: 50.0}}, NAMES, "accuracy for class 3, but there are 3 class names"),
        ({"m": {0: 120.0}}, NAMES, "accuracy on a is 120.0"),
        ({"m": {0: float("nan")}}, NAMES, "accuracy on a is nan"),
    ],
)
def test_bad_per_class_inputs_are_analysis_errors(accuracies, names, match):
    with pytest.raises(AnalysisError, match=match):
        per_class_accuracy_figure(accuracies, names)
