"""The SVG line chart (kd_core.figures.svg_chart): valid XML whose drawn points map back to
the data through the axis ranges, with escaped text and clear refusals of data off its axes."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest

from kd_core.figures.svg_chart import (
    LEFT,
    RIGHT,
    WIDTH,
    Axis,
    Line,
    Panel,
    VerticalLine,
    line_chart_svg,
)

SVG = "{http://www.w3.org/2000/svg}"
AXIS = Axis(x_range=(0.0, 10.0), ticks=(0, 5, 10), title="x (units)", tick_suffix="°")


def polylines(svg: str) -> dict[str, np.ndarray]:
    """Every polyline of the document by its tooltip title: an (n, 2) array of pixels."""
    root = ET.fromstring(svg)
    return {
        node.find(f"{SVG}title").text: np.array(
            [[float(v) for v in point.split(",")] for point in node.get("points").split()]
        )
        for node in root.iter(f"{SVG}polyline")
    }


def texts(svg: str) -> list[str]:
    return [node.text for node in ET.fromstring(svg).iter(f"{SVG}text")]


def panel(lines, *, y_range=(-1.0, 1.0), height=200, verticals=()) -> Panel:
    return Panel("panel", "y (units)", y_range, (-1.0, 0.0, 1.0), height, lines, verticals)


def test_points_map_back_to_the_data():
    x = np.linspace(0.0, 10.0, 11)
    y = np.sin(x) * 0.9
    svg = line_chart_svg("title", AXIS, [panel([Line(x, y, "sine", "#0072B2")])])
    [(name, pixels)] = polylines(svg).items()
    assert name == "sine"
    # Inverse of the documented maps, written out here: x from the left edge, y from the top.
    plot_width = WIDTH - LEFT - RIGHT
    x_back = (pixels[:, 0] - LEFT) / plot_width * 10.0
    np.testing.assert_allclose(x_back, x, atol=0.01 * 10.0 / plot_width)
    [frame] = [n for n in ET.fromstring(svg).iter(f"{SVG}rect") if n.get("fill") == "none"]
    top, height = float(frame.get("y")), float(frame.get("height"))
    assert height == 200
    y_back = 1.0 - (pixels[:, 1] - top) / height * 2.0  # y = 1 at the frame's top, -1 at its foot
    np.testing.assert_allclose(y_back, y, atol=0.02 * 2.0 / 200)
    assert pixels[:, 0].min() == pytest.approx(LEFT) and pixels[:, 0].max() == WIDTH - RIGHT


def test_panels_stack_and_only_the_last_carries_x_labels():
    x = [0.0, 10.0]
    svg = line_chart_svg(
        "two panels",
        AXIS,
        [panel([Line(x, [1.0, -1.0], "down", "#000")]), panel([Line(x, [0.0, 1.0], "up", "#111")])],
    )
    lines = polylines(svg)
    assert lines["down"][:, 1].max() < lines["up"][:, 1].min()  # the first panel is above
    labels = texts(svg)
    assert labels.count("5°") == 1 and labels.count("x (units)") == 1
    assert labels.count("y (units)") == 2
    root = ET.fromstring(svg)
    assert root.find(f"{SVG}title").text == "two panels"
    assert root.get("role") == "img" and root.get("viewBox").startswith(f"0 0 {WIDTH} ")


def test_dashed_lines_and_verticals():
    line = Line([0.0, 10.0], [0.0, 0.5], "dashed one", "#E69F00", dashed=True)
    vertical = VerticalLine(2.5, "#0072B2", "boundary", "left")
    svg = line_chart_svg("t", AXIS, [panel([line], verticals=[vertical])])
    root = ET.fromstring(svg)
    [drawn] = list(root.iter(f"{SVG}polyline"))
    assert drawn.get("stroke-dasharray")
    coloured = [n for n in root.iter(f"{SVG}line") if n.get("stroke") == "#0072B2"]
    assert len(coloured) == 1
    assert float(coloured[0].get("x1")) == pytest.approx(LEFT + 0.25 * (WIDTH - LEFT - RIGHT))
    [label] = [n for n in root.iter(f"{SVG}text") if n.text == "boundary"]
    assert label.get("text-anchor") == "end"  # left of its line
    assert "dashed one" in texts(svg)  # the legend


def test_text_is_escaped():
    name = 'a < b & "c"'
    svg = line_chart_svg(f"title {name}", AXIS, [panel([Line([0.0, 1.0], [0.0, 0.0], name, "#0")])])
    assert name in polylines(svg)
    assert f"title {name}" in texts(svg)


@pytest.mark.parametrize(
    ("panels", "axis", "message"),
    [
        ([], AXIS, "at least one panel"),
        ([panel([])], Axis((1.0, 1.0), (), "x"), "x range"),
        ([panel([], y_range=(1.0, -1.0))], AXIS, "y range"),
        ([panel([Line([0.0, 1.0], [0.0], "short", "#0")])], AXIS, "2 x values but 1 y values"),
        ([panel([Line([0.0, 11.0], [0.0, 0.0], "wide", "#0")])], AXIS, r"wide: x.*outside"),
        ([panel([Line([0.0, 1.0], [0.0, 2.0], "tall", "#0")])], AXIS, r"tall: y.*outside"),
        ([panel([Line([0.0, 1.0], [0.0, float("nan")], "nan", "#0")])], AXIS, "outside"),
        ([panel([], verticals=[VerticalLine(-1.0, "#0")])], AXIS, "vertical lines"),
    ],
)
def test_bad_charts_are_refused(panels, axis, message):
    with pytest.raises(ValueError, match=message):
        line_chart_svg("t", axis, panels)
