"""The home page under Streamlit's AppTest (no browser): it runs, shows the formula, the metrics
and the chart, and the margin slider drives the boundary metric."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import kd_core
from kd_core.figures.margin import boundary_angle

APP = Path(__file__).resolve().parents[2] / "app.py"


@pytest.fixture
def app() -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _metric(at: AppTest, label: str):
    [metric] = [m for m in at.metric if m.label == label]
    return metric


def test_home_renders(app):
    assert app.title.values == ["Angular margin-based distillation (AMD)"]
    latex = " ".join(app.latex.values)
    for piece in (r"\arccos q", r"s\cos(m\theta)", r"\operatorname{softplus}", r"L_{\mathrm{G+L}}"):
        assert piece in latex
    assert len(app.get("plotly_chart")) == 1
    chosen = _metric(app, "Boundary angle, chosen margin")
    assert chosen.value == f"{boundary_angle(1.35):.1f}°"
    assert chosen.proto.delta.endswith("° vs m = 1")
    assert chosen.proto.delta.startswith("-")
    assert _metric(app, "Boundary angle, no margin (m = 1)").value == "60.0°"


def test_sidebar_shows_versions_and_device(app):
    sidebar = " ".join(app.sidebar.markdown.values)
    assert f"kd_core `{kd_core.__version__}`" in sidebar
    assert "torch `" in sidebar
    assert any(f"compute device: `{d}" in sidebar for d in ("cuda", "mps", "cpu"))


def test_margin_slider_moves_the_boundary(app):
    [slider] = [s for s in app.slider if s.label == "Angular margin m"]
    assert slider.value == pytest.approx(1.35)
    slider.set_value(1.0).run()
    assert not app.exception
    assert _metric(app, "Boundary angle, chosen margin").value == "60.0°"

    slider.set_value(2.5).run()
    assert not app.exception
    assert _metric(app, "Boundary angle, chosen margin").value == f"{boundary_angle(2.5):.1f}°"


def test_scale_slider_changes_the_chart_not_the_boundary(app):
    [scale] = [s for s in app.select_slider if s.label == "Scale s"]
    scale.set_value(4.0).run()
    assert not app.exception
    assert _metric(app, "Boundary angle, chosen margin").value == f"{boundary_angle(1.35):.1f}°"
    [chart] = app.get("plotly_chart")
    assert "scale s = 4" in chart.proto.spec


def test_workspace_at_a_glance(open_page):
    at = open_page()
    [table] = at.dataframe
    rows = table.value
    assert list(rows["role"]) == ["teacher", "student", "student"]
    assert list(rows["architecture"]) == ["resnet20", "resnet8", "resnet8"]
    assert list(rows["checkpoint"]) == ["resnet20 teacher", "resnet8 vanilla", "resnet8 AMD"]
    assert rows["top-1 (%)"].between(70, 90).all()
