"""Line charts as standalone SVG text: panels stacked on a shared x axis, drawn on the server.

For a figure whose whole point is a few curves that a slider redraws (Home's margin geometry),
plotly's 4.7 MB of JavaScript is the slowest thing a browser loads for the page; an SVG of
the same curves is about 20 kB, shown as an image and saved as a vector file.

Coordinates: a panel maps ``x`` in ``x_range`` to ``[left, left + plot_width]`` and ``y`` in
its ``y_range`` to ``[top + height, top]`` (SVG's y grows downwards), both linearly:

    px = left + (x - x0) / (x1 - x0) * plot_width
    py = top + (y1 - y) / (y1 - y0) * height

Points are written with two decimals (a hundredth of a pixel). Every text is XML-escaped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal
from xml.sax.saxutils import escape, quoteattr

FONT = "Helvetica, Arial, sans-serif"
GRID = "#e5e5e5"
INK = "#333333"
WIDTH = 900
LEFT, RIGHT = 80, 20
TITLE_HEIGHT = 50
PANEL_TITLE_HEIGHT = 28
PANEL_GAP = 30
X_AXIS_HEIGHT = 55
LEGEND_ROW_HEIGHT = 22
LEGEND_COLUMNS = 2


@dataclass(frozen=True)
class Line:
    """One curve: ``y[i]`` at ``x[i]``, solid or dashed, named in the legend and its tooltip."""

    x: Sequence[float]
    y: Sequence[float]
    name: str
    colour: str
    dashed: bool = False


@dataclass(frozen=True)
class VerticalLine:
    """A dotted vertical line at ``x`` across its panel, labelled (if ``label``) near its
    bottom, on the ``label_side`` of the line."""

    x: float
    colour: str
    label: str | None = None
    label_side: Literal["left", "right"] = "right"


@dataclass(frozen=True)
class Panel:
    """One panel: its title, y axis (title, range, ticks), height in pixels, and what it draws.
    Every y value of its lines must lie in ``y_range``."""

    title: str
    y_title: str
    y_range: tuple[float, float]
    y_ticks: Sequence[float]
    height: int
    lines: Sequence[Line]
    verticals: Sequence[VerticalLine] = ()


@dataclass(frozen=True)
class Axis:
    """The shared x axis: range, ticks, title and the suffix of every tick label (e.g. °)."""

    x_range: tuple[float, float]
    ticks: Sequence[float]
    title: str
    tick_suffix: str = ""


def _num(value: float) -> str:
    return f"{value:.2f}"


def _text(x: float, y: float, content: str, **attributes: str | float) -> str:
    extra = "".join(f" {k.replace('_', '-')}={quoteattr(str(v))}" for k, v in attributes.items())
    return f'<text x="{_num(x)}" y="{_num(y)}"{extra}>{escape(content)}</text>'


def _stroke(line: Line) -> str:
    """The stroke attributes of ``line``, shared by its curve and its legend swatch."""
    dash = ' stroke-dasharray="8 5"' if line.dashed else ""
    return f'stroke="{line.colour}" stroke-width="2.5"{dash}'


def _check(name: str, values: Sequence[float], low: float, high: float) -> None:
    for value in values:
        if not (math.isfinite(value) and low <= value <= high):
            raise ValueError(
                f"{name}: the value {value} lies outside the axis range [{low}, {high}] "
                "(widen the range or clip the data)."
            )


class _Frame:
    """The pixel box of one panel and its linear maps from data to pixels."""

    def __init__(self, axis: Axis, panel: Panel, top: float) -> None:
        self.x0, self.x1 = axis.x_range
        self.y0, self.y1 = panel.y_range
        self.left, self.top = LEFT, top
        self.width, self.height = WIDTH - LEFT - RIGHT, panel.height

    def px(self, x: float) -> float:
        return self.left + (x - self.x0) / (self.x1 - self.x0) * self.width

    def py(self, y: float) -> float:
        return self.top + (self.y1 - y) / (self.y1 - self.y0) * self.height


def _panel(axis: Axis, panel: Panel, frame: _Frame, with_x_labels: bool) -> list[str]:
    bottom = frame.top + frame.height
    parts = [
        _text(frame.left, frame.top - 10, panel.title, font_size=14, fill=INK),
        f'<rect x="{frame.left}" y="{_num(frame.top)}" width="{frame.width}" '
        f'height="{frame.height}" fill="none" stroke="{GRID}"/>',
    ]
    for tick in panel.y_ticks:
        y = frame.py(tick)
        parts.append(
            f'<line x1="{frame.left}" y1="{_num(y)}" x2="{frame.left + frame.width}" '
            f'y2="{_num(y)}" stroke="{GRID}"/>'
        )
        parts.append(_text(frame.left - 6, y + 4, f"{tick:g}", text_anchor="end", font_size=11))
    for tick in axis.ticks:
        x = frame.px(tick)
        parts.append(
            f'<line x1="{_num(x)}" y1="{_num(frame.top)}" x2="{_num(x)}" y2="{_num(bottom)}" '
            f'stroke="{GRID}"/>'
        )
        if with_x_labels:
            label = f"{tick:g}{axis.tick_suffix}"
            parts.append(_text(x, bottom + 16, label, text_anchor="middle", font_size=11))
    middle = frame.top + frame.height / 2
    parts.append(
        _text(
            20, middle, panel.y_title, text_anchor="middle", font_size=12,
            transform=f"rotate(-90 20 {_num(middle)})",
        )
    )  # fmt: skip
    for line in panel.lines:
        pairs = zip(line.x, line.y, strict=True)
        points = " ".join(f"{_num(frame.px(x))},{_num(frame.py(y))}" for x, y in pairs)
        parts.append(
            f'<polyline points="{points}" fill="none" {_stroke(line)}>'
            f"<title>{escape(line.name)}</title></polyline>"
        )
    for vertical in panel.verticals:
        x = frame.px(vertical.x)
        parts.append(
            f'<line x1="{_num(x)}" y1="{_num(frame.top)}" x2="{_num(x)}" y2="{_num(bottom)}" '
            f'stroke="{vertical.colour}" stroke-width="1.5" stroke-dasharray="2 3"/>'
        )
        if vertical.label:
            left = vertical.label_side == "left"
            parts.append(
                _text(
                    x - 5 if left else x + 5, bottom - 8, vertical.label,
                    text_anchor="end" if left else "start", font_size=12, fill=vertical.colour,
                )
            )  # fmt: skip
    return parts


def _legend(lines: Sequence[Line], top: float) -> list[str]:
    parts = []
    column_width = (WIDTH - LEFT - RIGHT) / LEGEND_COLUMNS
    for index, line in enumerate(lines):
        row, column = divmod(index, LEGEND_COLUMNS)
        x = LEFT + column * column_width
        y = top + row * LEGEND_ROW_HEIGHT
        parts.append(
            f'<line x1="{_num(x)}" y1="{_num(y)}" x2="{_num(x + 30)}" y2="{_num(y)}" '
            f"{_stroke(line)}/>"
        )
        parts.append(_text(x + 38, y + 4, line.name, font_size=12))
    return parts


def line_chart_svg(title: str, axis: Axis, panels: Sequence[Panel]) -> str:
    """``panels`` stacked top to bottom on the shared x ``axis`` (tick labels and title under
    the last one), the figure ``title`` above and a legend of every line below, as one SVG
    document (``viewBox`` set, so it scales to any width; white background).

    Raises:
        ValueError: if there is no panel, the x range or a y range is empty, a line's x and y
            differ in length, or a value (a point, a tick, a vertical line) lies outside its
            axis range.
    """
    if not panels:
        raise ValueError("A line chart needs at least one panel.")
    x0, x1 = axis.x_range
    if not x0 < x1:
        raise ValueError(f"The x range must grow from left to right, got {axis.x_range}.")
    _check("x ticks", axis.ticks, x0, x1)
    lines = [line for panel in panels for line in panel.lines]
    for panel in panels:
        y0, y1 = panel.y_range
        if not y0 < y1:
            raise ValueError(f"{panel.title}: the y range must grow upwards, got {panel.y_range}.")
        _check(f"{panel.title}: y ticks", panel.y_ticks, y0, y1)
        _check(f"{panel.title}: vertical lines", [v.x for v in panel.verticals], x0, x1)
        for line in panel.lines:
            if len(line.x) != len(line.y):
                raise ValueError(f"{line.name}: {len(line.x)} x values but {len(line.y)} y values.")
            _check(f"{line.name}: x", line.x, x0, x1)
            _check(f"{line.name}: y", line.y, y0, y1)

    body: list[str] = []
    top = TITLE_HEIGHT + PANEL_TITLE_HEIGHT
    for index, panel in enumerate(panels):
        frame = _Frame(axis, panel, top)
        body += _panel(axis, panel, frame, with_x_labels=index == len(panels) - 1)
        top += panel.height + PANEL_TITLE_HEIGHT + PANEL_GAP
    bottom = top - PANEL_TITLE_HEIGHT - PANEL_GAP
    middle = LEFT + (WIDTH - LEFT - RIGHT) / 2
    body.append(_text(middle, bottom + 38, axis.title, text_anchor="middle", font_size=12))
    legend_top = bottom + X_AXIS_HEIGHT + 10
    body += _legend(lines, legend_top)
    rows = -(-len(lines) // LEGEND_COLUMNS)
    height = math.ceil(legend_top + rows * LEGEND_ROW_HEIGHT)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" '
        f'width="{WIDTH}" height="{height}" font-family={quoteattr(FONT)} fill="{INK}" '
        f'role="img"><title>{escape(title)}</title>'
        f'<rect width="{WIDTH}" height="{height}" fill="#ffffff"/>'
        + _text(LEFT, 28, title, font_size=15)
        + "".join(body)
        + "</svg>"
    )
