"""Figures of the angular view (kd_core.figures.angular): traces, names and data on small
constructed inputs."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import plotly.graph_objects as go
import pytest
import torch

from kd_core.analysis.angular import (
    ALL_CLASSES,
    THETA_BIN_EDGES,
    angular_report,
    stage_angles,
    theta_histogram,
)
from kd_core.analysis.errors import AnalysisError
from kd_core.analysis.feature_set import FeatureSet
from kd_core.analysis.hypersphere import class_angles
from kd_core.figures.angular import (
    angular_maps_figure,
    class_angles_figure,
    hypersphere_figure,
    separation_figure,
    theta_histogram_figure,
)
from kd_core.figures.margin import boundary_angle
from kd_core.losses.amd import attention_map


def make_set(name, seed, labels=(0, 1, 0, 1), size=4):
    generator = torch.Generator().manual_seed(seed)
    n = len(labels)
    return FeatureSet(
        name=name,
        arch="test",
        indices=torch.arange(n),
        labels=torch.tensor(labels),
        logits=torch.zeros(n, 2),
        pooled=torch.randn(n, 5, generator=generator),
        attention={"layer": attention_map(torch.randn(n, 3, size, size, generator=generator))},
        class_names=("cat", "dog"),
    )


@pytest.fixture(scope="module")
def models():
    return [make_set("teacher", 0), make_set("student A", 1), make_set("student B", 2)]


@pytest.fixture(scope="module")
def angles(models):
    return stage_angles(models[0], models[1:], "layer")


def test_theta_histogram_figure(angles):
    fig = theta_histogram_figure(angles, margin=1.35)
    assert [type(t) for t in fig.data] == [go.Scatter] * 6
    assert [t.name for t in fig.data] == [
        f"{m}: {side}" for m in ("teacher", "student A", "student B")
        for side in ("positive", "negative")
    ]  # fmt: skip
    assert [t.line.dash for t in fig.data] == ["solid", "dash"] * 3
    assert fig.data[0].line.color == fig.data[1].line.color != fig.data[2].line.color
    assert np.allclose(fig.data[2].y, 100 * theta_histogram(angles[1].theta_pos()))
    assert np.allclose(fig.data[3].y, 100 * theta_histogram(angles[1].theta_neg()))
    assert np.allclose(fig.data[0].x, 0.5 * (THETA_BIN_EDGES[:-1] + THETA_BIN_EDGES[1:]))
    lines = sorted(shape.x0 for shape in fig.layout.shapes)
    assert lines == pytest.approx([boundary_angle(1.35), 60.0])
    assert fig.layout.xaxis.range[1] == 90 and "degrees" in fig.layout.xaxis.title.text
    assert len(theta_histogram_figure(angles, margin=1.0).layout.shapes) == 1  # one boundary
    with pytest.raises(AnalysisError, match="margin"):
        theta_histogram_figure(angles, margin=-1.0)


def test_angular_maps_figure(angles):
    fig = angular_maps_figure(angles, sample=2)
    assert [type(t) for t in fig.data] == [go.Heatmap] * 12
    names = [t.name for t in fig.data]
    assert names[:3] == ["teacher: q", "student A: q", "student B: q"]
    assert names[-1] == "student B: attentive"
    assert np.allclose(fig.data[1].z, angles[1].maps.q[2].numpy())
    assert np.allclose(fig.data[5].z, angles[2].maps.pos[2].numpy())
    # One colour scale per column, spanning every model's map of that term.
    assert [t.coloraxis for t in fig.data[:4]] == ["coloraxis"] * 3 + ["coloraxis2"]
    neg = np.stack([a.maps.neg[2].numpy() for a in angles])
    assert fig.layout.coloraxis3.cmin == pytest.approx(neg.min())
    assert fig.layout.coloraxis3.cmax == pytest.approx(neg.max())
    assert set(np.ravel(fig.data[0].customdata)) <= {"teacher-positive", "teacher-negative"}
    with pytest.raises(AnalysisError, match="sample must be"):
        angular_maps_figure(angles, sample=4)


def test_separation_figure(models):
    rows = angular_report(models[0], models[1:])
    fig = separation_figure(rows)
    assert [type(t) for t in fig.data] == [go.Bar] * 6
    assert [t.name for t in fig.data] == [m for m in ("teacher", "student A", "student B")
                                          for _ in range(2)]  # fmt: skip
    assert [t.showlegend for t in fig.data] == [True, False] * 3
    overall = [r for r in rows if r.class_name == ALL_CLASSES]
    assert list(fig.data[2].y) == [overall[1].separation]
    assert list(fig.data[3].y) == [overall[1].wasserstein_deg]
    assert list(fig.data[0].x) == ["layer"]


def test_separation_figure_draws_infinity_at_a_cap(models):
    rows = [r for r in angular_report(models[0], models[1:]) if r.class_name == ALL_CLASSES]
    rows[0] = replace(rows[0], separation=math.inf)
    fig = separation_figure(rows)
    finite = max(abs(r.separation) for r in rows[1:])
    assert fig.data[0].y[0] == pytest.approx(1.1 * finite)
    assert fig.data[0].text[0] == "∞"
    with pytest.raises(AnalysisError, match="Nothing to draw"):
        separation_figure([])


def test_class_angles_figure(models):
    fig = class_angles_figure([class_angles(m) for m in models])
    assert [type(t) for t in fig.data] == [go.Box] * 3
    assert [t.name for t in fig.data] == ["teacher", "student A", "student B"]
    assert list(fig.data[0].x) == ["cat", "dog", "cat", "dog"]
    assert np.allclose(fig.data[1].y, class_angles(models[1]).angles_deg)
    assert list(fig.layout.xaxis.categoryarray) == ["cat", "dog"]


def test_hypersphere_figure():
    points = np.eye(3)[[0, 1, 2, 0, 1]]
    fig = hypersphere_figure(
        points, [1, 0, 1, 1, 0], group_names=("cat", "dog"), sample_indices=[10, 11, 12, 13, 14]
    )
    assert [type(t) for t in fig.data] == [go.Surface, go.Scatter3d, go.Scatter3d]
    assert [t.name for t in fig.data[1:]] == ["cat", "dog"]
    dog = fig.data[2]
    assert list(dog.customdata) == [10, 12, 13]
    assert np.allclose(np.column_stack([dog.x, dog.y, dog.z]), points[[0, 2, 3]])
    assert "sample %{customdata}" in dog.hovertemplate
    sphere = fig.data[0]
    radius = np.sqrt(
        np.asarray(sphere.x) ** 2 + np.asarray(sphere.y) ** 2 + np.asarray(sphere.z) ** 2
    )
    assert np.allclose(radius, 1.0) and sphere.showlegend is False
    by_outcome = hypersphere_figure(points, ["wrong", "right", "right", "right", "wrong"])
    assert [t.name for t in by_outcome.data[1:]] == ["right", "wrong"]
    assert list(by_outcome.data[1].customdata) == [1, 2, 3]


def test_hypersphere_figure_repeats_colours_with_another_symbol():
    points = np.tile(np.eye(3)[0], (10, 1))
    fig = hypersphere_figure(points, list(range(10)))
    assert fig.data[1].marker.color == fig.data[9].marker.color
    assert fig.data[1].marker.symbol != fig.data[9].marker.symbol


def test_hypersphere_figure_refuses_bad_input():
    with pytest.raises(AnalysisError, match="N x 3"):
        hypersphere_figure(np.zeros((4, 2)), [0, 0, 1, 1])
    with pytest.raises(AnalysisError, match="one group"):
        hypersphere_figure(np.eye(3), [0, 1])
    with pytest.raises(AnalysisError, match="NaN"):
        hypersphere_figure(np.full((2, 3), np.nan), [0, 1])
