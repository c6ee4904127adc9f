"""Where the teacher and its students look, drawn on the image.

One row per figure (:func:`attention_overlay_figure`) or one row per stage
(:func:`stage_overlay_figure`): the image | each model's map | each difference. A map is a
semi-transparent heatmap over a greyscale copy of the image (grey, so every colour on the panel
comes from the map). All maps share ONE colour scale (Viridis, 0 to 1; each map divided by its
maximum, as :func:`~kd_core.analysis.attribution.normalize_maps` does); differences, student
minus teacher (:func:`~kd_core.analysis.agreement.difference_map`), share one diverging scale
from -1 to 1, white at 0. A map coarser than the image (a stage's 8 x 8 attention on a 32 x 32
image) is drawn at its own resolution, each cell covering its pixels. The object mask, when
given, is outlined on every panel.

Example::

    image = denormalize(dataset[i][0])                                  # 3 x 32 x 32 in [0, 1]
    maps = {name: attribution_maps(model, x[i : i + 1], method="gradcam")[0] for ...}
    attention_overlay_figure(image, maps, mask=dataset.masks[i])
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
import torch
from PIL import Image
from plotly.subplots import make_subplots
from torch import Tensor

from kd_core.analysis.agreement import difference_map
from kd_core.analysis.attribution import normalize_maps
from kd_core.analysis.errors import AnalysisError
from kd_core.figures.style import DIVERGING, SEQUENTIAL, finish

MAP_OPACITY = 0.65
"""Opacity of a heatmap over the greyscale image."""
MAP_SCALE_TITLE = "map value<br>(0–1, peak = 1)"
DIFFERENCE_SCALE_TITLE = "student −<br>teacher"
PIXEL_AXIS_TITLE = "x (pixels)"
PIXEL_Y_AXIS_TITLE = "y (pixels)"
ROW_HEIGHT = 260

ArrayLike = Tensor | np.ndarray


@dataclass(frozen=True)
class _Panel:
    """One heatmap panel: subplot title, values (``h x w``), colour axis and hover label."""

    title: str
    values: np.ndarray
    coloraxis: str
    hover_label: str


# ---------------------------------------------------------------- checks


def _array(name: str, value: object, ndim: int) -> np.ndarray:
    if isinstance(value, Tensor):
        value = value.detach().cpu().numpy()
    if not isinstance(value, np.ndarray) or value.ndim != ndim or 0 in value.shape:
        shape = value.shape if isinstance(value, np.ndarray) else type(value).__name__
        layout = {2: "H x W", 3: "3 x H x W"}[ndim]
        raise AnalysisError(f"{name} must be a non-empty {layout} array, got {shape}.")
    return value


def _image(image: object) -> np.ndarray:
    """The image as ``H x W x 3`` floats in [0, 1]."""
    image = _array("image", image, 3).astype(np.float64)
    if image.shape[0] != 3 or not np.isfinite(image).all():
        raise AnalysisError(f"image must be a finite 3 x H x W RGB array, got shape {image.shape}.")
    if image.min() < -1e-6 or image.max() > 1 + 1e-6:
        raise AnalysisError(
            f"image values must be in [0, 1], got {image.min():.3g} to {image.max():.3g}; "
            "undo the normalisation first with kd_core.data.denormalize."
        )
    return image.clip(0.0, 1.0).transpose(1, 2, 0)


def _map(name: str, value: object) -> Tensor:
    """``1 x h x w`` float64 map, checked: finite and non-negative."""
    values = _array(f"map {name!r}", value, 2).astype(np.float64)
    if not np.isfinite(values).all() or values.min() < 0:
        raise AnalysisError(
            f"map {name!r} must be finite and non-negative (attribution or attention maps); "
            f"got values from {np.nanmin(values):.3g} to {np.nanmax(values):.3g}."
        )
    return torch.from_numpy(values)[None]


def _mask(mask: object, height: int, width: int) -> np.ndarray | None:
    if mask is None:
        return None
    mask = _array("mask", mask, 2)
    if mask.shape != (height, width):
        raise AnalysisError(
            f"mask must match the image's {height} x {width} pixels, got {mask.shape}."
        )
    return mask.astype(bool)


def _pairs(names: Sequence[str], difference_of: tuple[str, str] | None) -> list[tuple[str, str]]:
    """``(teacher, student)`` pairs to difference: the given one, or every later map against
    the first."""
    if difference_of is None:
        return [(names[0], student) for student in names[1:]]
    if len(difference_of) != 2 or any(name not in names for name in difference_of):
        raise AnalysisError(
            f"difference_of must be (teacher name, student name) among the maps {list(names)}, "
            f"got {difference_of!r}."
        )
    return [tuple(difference_of)]


def _panels(maps: Mapping[str, object], difference_of: tuple[str, str] | None) -> list[_Panel]:
    """The map panels, then the difference panels, of one row."""
    if not maps:
        raise AnalysisError("No maps to draw: pass at least one {model name: H x W map}.")
    checked = {name: _map(name, value) for name, value in maps.items()}
    panels = [
        _Panel(name, normalize_maps(values)[0].numpy(), "coloraxis", name)
        for name, values in checked.items()
    ]
    for teacher, student in _pairs(list(checked), difference_of):
        difference = difference_map(checked[teacher], checked[student])[0].numpy()
        label = f"{student} − {teacher}"
        title = f"{student}<br>− {teacher}"
        panels.append(_Panel(title, difference.astype(np.float64), "coloraxis2", label))
    return panels


# ---------------------------------------------------------------- traces


def _to_uint8(rgb: np.ndarray) -> np.ndarray:
    return np.round(rgb * 255.0).astype(np.uint8)


def _grey(rgb: np.ndarray) -> np.ndarray:
    """Luminance (ITU-R BT.601) repeated on three channels."""
    luminance = rgb @ np.array([0.299, 0.587, 0.114])
    return np.repeat(luminance[..., None], 3, axis=2)


def _cell_centres(cells: int, pixels: int) -> np.ndarray:
    """Pixel coordinates of the centres of ``cells`` equal cells spanning ``pixels`` pixels
    (pixel ``i`` is centred at ``i``, so the image spans ``-0.5 .. pixels - 0.5``)."""
    return (np.arange(cells) + 0.5) * pixels / cells - 0.5


def _heatmap(panel: _Panel, height: int, width: int) -> go.Heatmap:
    rows, cols = panel.values.shape
    return go.Heatmap(
        z=panel.values,
        x=_cell_centres(cols, width),
        y=_cell_centres(rows, height),
        coloraxis=panel.coloraxis,
        opacity=MAP_OPACITY,
        name=panel.hover_label,
        hovertemplate=(
            f"{panel.hover_label}<br>x %{{x:.1f}} px, y %{{y:.1f}} px"
            "<br>value %{z:.3f}<extra></extra>"
        ),
    )


def _runs(changes: np.ndarray) -> list[tuple[int, int]]:
    """``(start, stop)`` of each run of True in a 1-D bool array."""
    edges = np.diff(np.concatenate([[False], changes, [False]]).astype(np.int8))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True))


def _outline_path(mask: np.ndarray) -> tuple[list[float | None], list[float | None]]:
    """The object's outline along pixel edges (pixel ``i`` spans ``i - 0.5 .. i + 0.5``): one
    segment per run of edges where the mask changes, ``None`` between segments."""
    padded = np.pad(mask, 1)
    across_rows = padded[1:, 1:-1] != padded[:-1, 1:-1]  # edge above pixel row r, per column
    across_cols = padded[1:-1, 1:] != padded[1:-1, :-1]  # edge left of pixel column c, per row
    xs: list[float | None] = []
    ys: list[float | None] = []
    for row, changes in enumerate(across_rows):
        for start, stop in _runs(changes):
            xs += [float(start) - 0.5, float(stop) - 0.5, None]
            ys += [row - 0.5, row - 0.5, None]
    for col, changes in enumerate(across_cols.T):
        for start, stop in _runs(changes):
            xs += [col - 0.5, col - 0.5, None]
            ys += [float(start) - 0.5, float(stop) - 0.5, None]
    return xs, ys


def _outline(path: tuple[list[float | None], list[float | None]], colour: str) -> go.Scatter:
    """The object outline as plain line segments (a contour trace would make the browser trace
    the same edges again, for every panel, on every draw)."""
    return go.Scatter(
        x=path[0],
        y=path[1],
        mode="lines",
        line={"color": colour, "width": 1.5},
        showlegend=False,
        name="object mask",
        hoverinfo="skip",
    )


def _png_source(pixels: np.ndarray) -> str:
    """``H x W x 3`` uint8 pixels as a PNG data URI (an image trace's ``source``: the browser
    decodes it, instead of painting a canvas from ``z`` for every panel)."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _headings(panels: list[_Panel], height: int, width: int, outlined: bool) -> list[str]:
    """Subplot titles of one row: the image, then each panel, with its resolution when it
    differs from the image's."""
    return ["image, object outlined" if outlined else "image"] + [
        p.title
        if p.values.shape == (height, width)
        else f"{p.title} · {p.values.shape[0]}×{p.values.shape[1]}"
        for p in panels
    ]


def _overlay_figure(
    image: object,
    rows: Mapping[str, Mapping[str, object]],
    difference_of: tuple[str, str] | None,
    title: str,
    mask: object,
) -> go.Figure:
    """Shared by both figures: one row per entry of ``rows`` (label -> maps)."""
    rgb = _image(image)
    height, width = rgb.shape[:2]
    outline = _mask(mask, height, width)
    panel_rows = {label: _panels(maps, difference_of) for label, maps in rows.items()}
    layouts = {tuple(p.title for p in panels) for panels in panel_rows.values()}
    if len(layouts) > 1:
        raise AnalysisError(
            f"Every row must hold maps of the same models in the same order; got {sorted(layouts)}."
        )
    columns = 1 + len(next(iter(panel_rows.values())))
    titles = [
        text
        for panels in panel_rows.values()
        for text in _headings(panels, height, width, outline is not None)
    ]
    fig = make_subplots(
        rows=len(panel_rows),
        cols=columns,
        subplot_titles=titles,
        horizontal_spacing=0.015,
        vertical_spacing=0.08 if len(panel_rows) > 1 else 0.0,
    )
    photo, grey = _png_source(_to_uint8(rgb)), _png_source(_to_uint8(_grey(rgb)))
    path = None if outline is None else _outline_path(outline)
    for row, (label, panels) in enumerate(panel_rows.items(), start=1):
        fig.add_trace(
            go.Image(
                source=photo, name="image", hovertemplate="x %{x}, y %{y} px<extra>image</extra>"
            ),
            row=row,
            col=1,
        )
        for col, panel in enumerate(panels, start=2):
            fig.add_trace(
                go.Image(source=grey, name="image (grey)", hoverinfo="skip"), row=row, col=col
            )
            fig.add_trace(_heatmap(panel, height, width), row=row, col=col)
        if path is not None:  # white on the image and maps, black on white differences
            for col, panel in enumerate([None, *panels], start=1):
                colour = "black" if panel and panel.coloraxis == "coloraxis2" else "white"
                fig.add_trace(_outline(path, colour), row=row, col=col)
        fig.update_yaxes(title_text=label, row=row, col=1)
    fig.update_xaxes(range=[-0.5, width - 0.5], showticklabels=False, showgrid=False)
    fig.update_yaxes(range=[height - 0.5, -0.5], showticklabels=False, showgrid=False)
    fig.update_xaxes(title_text=PIXEL_AXIS_TITLE, row=len(panel_rows))
    fig.update_annotations(font_size=12)
    for cell in range(1, len(panel_rows) * columns + 1):  # square pixels in every panel
        suffix = "" if cell == 1 else str(cell)
        fig.layout[f"yaxis{suffix}"].scaleanchor = f"x{suffix}"
    fig.update_layout(
        coloraxis={
            "colorscale": SEQUENTIAL,
            "cmin": 0.0,
            "cmax": 1.0,
            "colorbar": {"title": {"text": MAP_SCALE_TITLE}, "x": 1.01, "len": 0.9},
        }
    )
    if any(p.coloraxis == "coloraxis2" for p in next(iter(panel_rows.values()))):
        fig.update_layout(
            coloraxis2={
                "colorscale": DIVERGING,
                "cmin": -1.0,
                "cmax": 1.0,
                "colorbar": {"title": {"text": DIFFERENCE_SCALE_TITLE}, "x": 1.1, "len": 0.9},
            }
        )
    return finish(fig, title, height=ROW_HEIGHT * len(panel_rows) + 110)


def attention_overlay_figure(
    image: ArrayLike,
    maps: Mapping[str, ArrayLike],
    *,
    difference_of: tuple[str, str] | None = None,
    title: str = "Where each model looks",
    mask: ArrayLike | None = None,
) -> go.Figure:
    """One row: image | each map (dict order) | each difference.

    Args:
        image: ``3 x H x W`` RGB in ``[0, 1]`` (``kd_core.data.denormalize`` of a dataset item).
        maps: model name -> non-negative ``h x w`` map (any resolution); the first is the
            teacher.
        difference_of: ``(teacher name, student name)`` for a single difference panel; by
            default every later map minus the first.
        title: figure title.
        mask: optional ``H x W`` bool object mask, outlined on every panel.

    Raises:
        AnalysisError: malformed image, maps or mask; unknown names in ``difference_of``.
    """
    return _overlay_figure(image, {PIXEL_Y_AXIS_TITLE: maps}, difference_of, title, mask)


def stage_overlay_figure(
    image: ArrayLike,
    stage_maps: Mapping[str, Mapping[str, ArrayLike]],
    *,
    difference_of: tuple[str, str] | None = None,
    title: str = "Attention per stage",
    mask: ArrayLike | None = None,
) -> go.Figure:
    """One row per stage, shallow to deep, each laid out as :func:`attention_overlay_figure`.

    Args:
        stage_maps: row label (e.g. ``"layer2"`` or ``"layer2 / layer2"`` for paired stages)
            -> model name -> that stage's map (e.g. the AMD attention ``q`` of
            ``FeatureSet.attention``); the same model names, in the same order, in every row.

    The other arguments are those of :func:`attention_overlay_figure`.
    """
    if not stage_maps:
        raise AnalysisError("No stages to draw: pass at least one {stage: {model: map}}.")
    return _overlay_figure(image, stage_maps, difference_of, title, mask)
