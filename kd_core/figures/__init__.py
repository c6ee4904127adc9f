"""Figure builders for the workbench: pure functions (numpy, torch; plotly figures or SVG text),
no Streamlit.

Every figure computes its values with the same functions the losses use, so what the app shows
is what the loss computes.
"""

from kd_core.figures.margin import MarginCurves, boundary_angle, margin_curves, margin_figure

__all__ = ["MarginCurves", "boundary_angle", "margin_curves", "margin_figure"]
