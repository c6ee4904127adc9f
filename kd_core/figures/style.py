"""Shared look of every figure: colour-blind-safe palettes and the common layout.

Categorical colours are Okabe-Ito (distinguishable with the common colour-vision
deficiencies); continuous maps use Viridis (sequential, perceptually uniform) and a
blue-white-red diverging scale for signed differences.
"""

from __future__ import annotations

import plotly.graph_objects as go

BLUE = "#0072B2"
ORANGE = "#E69F00"
GREEN = "#009E73"
VERMILLION = "#D55E00"
SKY = "#56B4E9"
PURPLE = "#CC79A7"
YELLOW = "#F0E442"
BLACK = "#000000"
CATEGORICAL = [BLUE, ORANGE, GREEN, VERMILLION, SKY, PURPLE, YELLOW, BLACK]
"""Okabe-Ito, in the order series are coloured (teacher first, then students)."""
SEQUENTIAL = "Viridis"
DIVERGING = "RdBu_r"
WEBGL_THRESHOLD = 1000
"""Scatter plots with more points than this use WebGL (``go.Scattergl``)."""
FIGURE_CONFIG = {
    "toImageButtonOptions": {"format": "svg", "scale": 1},
    "displaylogo": False,
}
"""plotly.js options of every figure, in the app and in the HTML report: the camera button
saves an SVG (vector, drawn by the browser: no server-side renderer), for papers and slides."""


def series_colour(index: int) -> str:
    """The categorical colour of the ``index``-th series (cycles after eight)."""
    return CATEGORICAL[index % len(CATEGORICAL)]


def finish(fig: go.Figure, title: str, *, height: int | None = None) -> go.Figure:
    """Apply the common layout (title, white template, compact margins, horizontal legend)."""
    fig.update_layout(
        title={"text": title, "font": {"size": 15}, "y": 0.99, "yanchor": "top"},
        template="plotly_white",
        margin={"t": 100, "b": 40, "l": 60, "r": 20},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.04, "x": 0.0},
    )
    if height is not None:
        fig.update_layout(height=height)
    return fig
