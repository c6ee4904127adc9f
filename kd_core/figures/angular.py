"""Figures of the angular view of AMD: theta histograms, the four maps the loss compares,
separation and distances per stage, class angles and a 3-D view of the hypersphere.

Inputs come from :mod:`kd_core.analysis.angular` and :mod:`kd_core.analysis.hypersphere`, whose
values come from the loss's own :func:`~kd_core.losses.amd.angular_terms`. Histograms are
drawn from the binned shares (:func:`~kd_core.analysis.angular.theta_histogram`), never from
the raw angles, so a figure stays small for any number of positions.

Example::

    angles = stage_angles(teacher, students, "layer3", split="mask")
    theta_histogram_figure(angles, margin=1.35)
    angular_maps_figure(angles, sample=0)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from kd_core.analysis.angular import (
    ALL_CLASSES,
    THETA_BIN_EDGES,
    AngularSummary,
    SplitAngles,
    theta_histogram,
)
from kd_core.analysis.errors import AnalysisError
from kd_core.analysis.hypersphere import ClassAngles
from kd_core.figures.margin import THETA_AXIS_TITLE, boundary_angle
from kd_core.figures.style import BLACK, CATEGORICAL, SEQUENTIAL, finish, series_colour
from kd_core.losses.amd import DEFAULT_MARGIN

MAP_TERMS = (
    ("q", "q (attention, unit L2 norm)"),
    ("pos", "pos = s cos(mθ)"),
    ("neg", "neg = s (1 − q)"),
    ("attentive", "attentive = −softplus(neg − pos)"),
)
"""The four maps of :func:`angular_maps_figure`: field of ``AngularMaps`` and column title."""
MARKER_SYMBOLS = ("circle", "diamond", "square", "cross")
"""Marker of the 1st to 8th group, the 9th to 16th... (colours repeat after eight)."""


def _require(items: Sequence, what: str) -> None:
    if len(items) == 0:
        raise AnalysisError(f"Nothing to draw: pass at least one {what}.")


def _legend_below(fig: go.Figure) -> go.Figure:
    """Move the legend under the plot (long legends would cover titles at the top)."""
    fig.update_layout(
        legend={"orientation": "h", "yanchor": "top", "y": -0.2, "x": 0.0},
        margin={"b": 110},
    )
    return fig


def _class_name(names: Sequence[str], label: int) -> str:
    return names[label] if 0 <= label < len(names) else str(label)


def _fmt(value: float) -> str:
    return f"{value:.2f}" if math.isfinite(value) else ("∞" if value > 0 else "−∞")


def theta_histogram_figure(
    angles: Sequence[SplitAngles], *, margin: float = DEFAULT_MARGIN
) -> go.Figure:
    """Theta histograms of positive (solid) and negative (dashed) positions, one colour per
    model (teacher first), as the share of positions per 0.5° bin, with the boundary angle of
    the loss (``pos = neg``) for ``margin`` and for ``m = 1`` as dotted vertical lines. The
    angle axis (degrees, up to 90°) starts 5° to 10° below the smallest angle or boundary
    shown, since large maps put most angles near 90°; zoom out to see 0°.

    Two traces per model, named ``"<model>: positive"`` and ``"<model>: negative"``.
    """
    _require(angles, "model's angles")
    fig = go.Figure()
    centres = 0.5 * (THETA_BIN_EDGES[:-1] + THETA_BIN_EDGES[1:])
    for index, model_angles in enumerate(angles):
        for side, theta, dash in (
            ("positive", model_angles.theta_pos(), "solid"),
            ("negative", model_angles.theta_neg(), "dash"),
        ):
            name = f"{model_angles.model}: {side}"
            fig.add_trace(
                go.Scatter(
                    x=centres,
                    y=100.0 * theta_histogram(theta),
                    name=name,
                    legendgroup=model_angles.model,
                    mode="lines",
                    line={"color": series_colour(index), "dash": dash, "shape": "hvh"},
                    hovertemplate=f"{name}<br>θ = %{{x:.2f}}°<br>%{{y:.2f}}% of positions"
                    "<extra></extra>",
                )
            )
    try:
        boundaries = {margin: boundary_angle(margin), 1.0: boundary_angle(1.0)}
    except ValueError as exc:
        raise AnalysisError(str(exc)) from None
    for index, (m, angle) in enumerate(boundaries.items()):
        fig.add_vline(
            x=angle,
            line={"color": BLACK, "dash": "dot", "width": 1.5},
            annotation_text=f"pos = neg at {angle:.1f}° (m = {m:g})",
            annotation_position="top left" if index == 0 else "bottom left",
        )
    smallest = min(min(a.theta_deg.min().item() for a in angles), *boundaries.values())
    start = max(0.0, 5.0 * math.floor(smallest / 5.0) - 5.0)
    fig.update_xaxes(title_text=THETA_AXIS_TITLE, range=[start, 90], dtick=5, ticksuffix="°")
    fig.update_yaxes(title_text="share of positions per 0.5° bin (%)")
    stage = angles[0].teacher_stage
    title = f"θ at {stage}: teacher-defined positive (solid) vs negative (dashed) positions"
    return _legend_below(finish(fig, title, height=500))


def angular_maps_figure(angles: Sequence[SplitAngles], sample: int) -> go.Figure:
    """The four maps the loss compares for one sample: rows are models, columns ``q``,
    ``pos``, ``neg`` and ``attentive``, as heatmaps with one colour scale per column (shared
    by all models). Hover says whether a position is teacher-positive.

    ``sample`` is the position of the sample in the feature set (0 to N - 1).
    """
    _require(angles, "model's angles")
    count = angles[0].positive.shape[0]
    if isinstance(sample, bool) or not isinstance(sample, int) or not 0 <= sample < count:
        raise AnalysisError(f"sample must be an integer from 0 to {count - 1}, got {sample!r}.")
    rows, cols = len(angles), len(MAP_TERMS)
    fig = make_subplots(
        rows=rows,
        cols=cols,
        column_titles=[title for _, title in MAP_TERMS],
        row_titles=[a.model for a in angles],
        horizontal_spacing=0.03,
        vertical_spacing=0.04,
    )
    side = np.where(angles[0].positive[sample].numpy(), "teacher-positive", "teacher-negative")
    for col, (term, _) in enumerate(MAP_TERMS, start=1):
        maps = [getattr(a.maps, term)[sample].numpy() for a in angles]
        axis = "coloraxis" if col == 1 else f"coloraxis{col}"
        domain = fig.layout[f"xaxis{col if col > 1 else ''}"].domain
        fig.update_layout(
            {
                axis: {
                    "colorscale": SEQUENTIAL,
                    "cmin": float(min(m.min() for m in maps)),
                    "cmax": float(max(m.max() for m in maps)),
                    "colorbar": {
                        "orientation": "h",
                        "x": 0.5 * (domain[0] + domain[1]),
                        "len": domain[1] - domain[0],
                        "y": -0.04,
                        "yanchor": "top",
                        "thickness": 12,
                    },
                }
            }
        )
        for row, (model_angles, values) in enumerate(zip(angles, maps, strict=True), start=1):
            fig.add_trace(
                go.Heatmap(
                    z=values,
                    coloraxis=axis,
                    customdata=side,
                    name=f"{model_angles.model}: {term}",
                    hovertemplate=f"{model_angles.model}<br>row %{{y}}, column %{{x}}<br>"
                    f"{term} = %{{z:.4f}}<br>%{{customdata}}<extra></extra>",
                ),
                row=row,
                col=col,
            )
    fig.update_xaxes(showticklabels=False, constrain="domain")
    fig.update_yaxes(showticklabels=False, autorange="reversed", constrain="domain")
    for index in range(2, rows * cols + 1):
        fig.layout[f"yaxis{index}"].scaleanchor = f"x{index}"
    fig.layout.yaxis.scaleanchor = "x"
    a = angles[0]
    return finish(
        fig,
        f"AMD maps of sample {sample} at {a.teacher_stage} (class "
        f"{_class_name(a.class_names, int(a.labels[sample]))})",
        height=170 * rows + 140,
    )


def separation_figure(rows: Sequence[AngularSummary]) -> go.Figure:
    """Two bar panels per teacher stage, one bar per model: the separation of positive and
    negative theta (pooled-std units) and the Wasserstein distance of theta to the teacher
    (degrees), from the all-classes rows of
    :func:`~kd_core.analysis.angular.angular_report`.

    An infinite separation (both sides constant) is drawn at 1.1 x the largest finite value
    and labelled ``∞``. Two traces per model (the second without a legend entry).
    """
    overall = [r for r in rows if r.class_name == ALL_CLASSES]
    _require(overall, f"summary row with class_name {ALL_CLASSES!r}")
    finite = [abs(r.separation) for r in overall if math.isfinite(r.separation)]
    cap = 1.1 * max(finite, default=0.0) or 1.0
    fig = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=(
            "separation of positive and negative θ",
            "Wasserstein distance of θ to the teacher",
        ),
    )
    models = list(dict.fromkeys(r.model for r in overall))
    for index, model in enumerate(models):
        mine = [r for r in overall if r.model == model]
        stages = [r.teacher_stage for r in mine]
        hover = [f"{model} at {r.stage} (teacher {r.teacher_stage})" for r in mine]
        separations = [
            r.separation if math.isfinite(r.separation) else math.copysign(cap, r.separation)
            for r in mine
        ]
        panels = (
            (1, separations, [_fmt(r.separation) for r in mine]),
            (2, [r.wasserstein_deg for r in mine], [f"{r.wasserstein_deg:.2f}°" for r in mine]),
        )
        for col, values, text in panels:
            fig.add_trace(
                go.Bar(
                    x=stages,
                    y=values,
                    text=text,
                    textposition="outside",
                    name=model,
                    legendgroup=model,
                    showlegend=col == 1,
                    marker_color=series_colour(index),
                    customdata=hover,
                    hovertemplate="%{customdata}<br>%{text}<extra></extra>",
                ),
                row=1,
                col=col,
            )
    fig.update_xaxes(title_text="teacher stage")
    fig.update_yaxes(title_text="(mean θ neg − mean θ pos) / pooled std", row=1, col=1)
    fig.update_yaxes(title_text="Wasserstein distance (degrees)", row=1, col=2)
    fig.update_layout(barmode="group")
    title = "How sharply each model separates the teacher's positives"
    return _legend_below(finish(fig, title, height=460))


def class_angles_figure(class_angles: Sequence[ClassAngles]) -> go.Figure:
    """Box plots of each sample's angle to its class's mean direction, per class (x) and
    model (one colour per model, teacher first): smaller angles mean tighter classes.

    One ``go.Box`` trace per model.
    """
    _require(class_angles, "model's class angles")
    labels = sorted({int(label) for c in class_angles for label in c.labels.tolist()})
    order = [_class_name(class_angles[0].class_names, label) for label in labels]
    fig = go.Figure()
    for index, model in enumerate(class_angles):
        names = [_class_name(model.class_names, int(label)) for label in model.labels.tolist()]
        fig.add_trace(
            go.Box(
                x=names,
                y=model.angles_deg,
                name=model.model,
                marker_color=series_colour(index),
                boxmean=True,
                hovertemplate=f"{model.model}<br>%{{x}}: %{{y:.1f}}°<extra></extra>",
            )
        )
    fig.update_layout(boxmode="group")
    fig.update_xaxes(title_text="class", categoryorder="array", categoryarray=order)
    fig.update_yaxes(title_text="angle to the class mean direction (degrees)", rangemode="tozero")
    return finish(fig, "Angle of each sample's pooled feature to its class mean", height=440)


def _sphere_mesh(resolution: int = 24) -> go.Surface:
    """A faint unit sphere to draw the points on (no hover, no legend)."""
    polar, azimuth = np.meshgrid(
        np.linspace(0.0, np.pi, resolution), np.linspace(0.0, 2 * np.pi, 2 * resolution)
    )
    return go.Surface(
        x=np.sin(polar) * np.cos(azimuth),
        y=np.sin(polar) * np.sin(azimuth),
        z=np.cos(polar),
        name="unit sphere",
        opacity=0.12,
        showscale=False,
        colorscale=[[0.0, "#999999"], [1.0, "#999999"]],
        hoverinfo="skip",
        showlegend=False,
    )


def hypersphere_figure(
    points: np.ndarray,
    groups: Sequence,
    *,
    group_names: Sequence[str] = (),
    sample_indices: Sequence[int] | None = None,
    model: str = "",
) -> go.Figure:
    """3-D scatter of points on :math:`S^2` (e.g. from
    :func:`~kd_core.analysis.hypersphere.sphere_projection`) over a faint unit sphere.

    ``groups`` gives each point's group: integer class labels (named by ``group_names`` when
    given) or any strings (``"correct"`` / ``"wrong"``, ``"positive"`` / ``"negative"``). One
    ``Scatter3d`` trace (WebGL) per group, in sorted order, after the sphere's ``Surface``
    (colours repeat after eight groups, with another marker symbol); hover shows the sample
    index (``sample_indices``, default 0 to N - 1).
    """
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3 or len(points) == 0:
        raise AnalysisError(f"points must be N x 3 with N >= 1, got shape {points.shape}.")
    if not np.isfinite(points).all():
        raise AnalysisError("points contain NaN or infinite values; recompute the projection.")
    groups = np.asarray(groups)
    indices = np.arange(len(points)) if sample_indices is None else np.asarray(sample_indices)
    if groups.shape != (len(points),) or indices.shape != (len(points),):
        raise AnalysisError(
            f"Give one group and one sample index per point ({len(points)}), got "
            f"{groups.size} groups and {indices.size} indices."
        )
    fig = go.Figure(_sphere_mesh())
    for index, group in enumerate(np.unique(groups)):
        chosen = groups == group
        is_label = np.issubdtype(groups.dtype, np.integer)
        name = _class_name(group_names, int(group)) if is_label else str(group)
        fig.add_trace(
            go.Scatter3d(
                x=points[chosen, 0],
                y=points[chosen, 1],
                z=points[chosen, 2],
                mode="markers",
                name=name,
                marker={
                    "size": 3,
                    "color": series_colour(index),
                    "symbol": MARKER_SYMBOLS[index // len(CATEGORICAL) % len(MARKER_SYMBOLS)],
                },
                customdata=indices[chosen],
                hovertemplate=f"sample %{{customdata}}<br>{name}<extra></extra>",
            )
        )
    axis = {"range": [-1.1, 1.1], "zeroline": False}
    fig.update_layout(
        scene={
            "xaxis": {**axis, "title": {"text": "PC 1 (view)"}},
            "yaxis": {**axis, "title": {"text": "PC 2 (view)"}},
            "zaxis": {**axis, "title": {"text": "PC 3 (view)"}},
            "aspectmode": "cube",
        }
    )
    prefix = f"{model}: " if model else ""
    return finish(
        fig,
        f"{prefix}unit features on S² (a PCA view re-normalised to the sphere, not an isometry)",
        height=560,
    )
