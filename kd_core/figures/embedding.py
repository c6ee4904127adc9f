"""Scatter maps of embedded samples (:mod:`kd_core.analysis.embedding`), one panel per model.

Every point carries its sample index as ``customdata``, so a page that receives a lasso or box
selection (``dragmode="lasso"``) maps the selected points back to samples (and images). Points
are grouped into one trace per model and group (class, or correct / wrong), and each group has
one legend entry shared by all panels: clicking it hides that class everywhere. Figures with
more than ``WEBGL_THRESHOLD`` points in all use WebGL (``go.Scattergl``).

Example::

    maps = joint_embedding({"teacher": t.logits, "student": s.logits}, method="tsne")
    embedding_figure(
        {name: e.points for name, e in maps.items()}, t.labels,
        class_names=t.class_names, indices=maps["teacher"].indices, method="tsne",
    )
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from kd_core.analysis.embedding import Embedding
from kd_core.analysis.errors import AnalysisError
from kd_core.figures.style import (
    BLUE,
    CATEGORICAL,
    VERMILLION,
    WEBGL_THRESHOLD,
    finish,
)

ArrayLike = np.ndarray | torch.Tensor

COLOUR_BY = ("class", "correct")
MAX_COLUMNS = 3
"""Side-by-side panels per row."""
CLASS_SYMBOLS = ("circle", "diamond", "square", "x")
"""Marker of classes 1 to 8, 9 to 16, ... (the eight colours repeat)."""
MODEL_SYMBOLS = ("circle", "diamond", "square", "x", "triangle-up", "star")
"""Marker of each model when all models share one panel (``side_by_side=False``; classes are
then told apart by colour only, which repeats after eight classes)."""
AXIS_TITLES = {
    "pca": "PC {} (feature units)",
    "tsne": "t-SNE {} (arbitrary units)",
    "umap": "UMAP {} (arbitrary units)",
}
"""Axis title of each method (``{}`` is the axis number); others get "dimension {}"."""
METHOD_NAMES = {"pca": "PCA", "tsne": "t-SNE", "umap": "UMAP"}


def _model_symbol(position: int) -> str:
    return MODEL_SYMBOLS[position % len(MODEL_SYMBOLS)]


def _numpy(values: ArrayLike) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().numpy()
    return np.asarray(values)


def _checked_points(points: Mapping[str, ArrayLike], n: int) -> dict[str, np.ndarray]:
    if not points:
        raise AnalysisError("Nothing to draw: pass at least one model's embedded points.")
    checked = {}
    for name, values in points.items():
        array = _numpy(values).astype(np.float64)
        if array.shape != (n, 2):
            raise AnalysisError(
                f"{name}'s points have shape {array.shape}, expected ({n}, 2): one 2-D point "
                "per label."
            )
        if not np.isfinite(array).all():
            raise AnalysisError(f"{name}'s points contain NaN or infinite values.")
        checked[name] = array
    return checked


def _class_names(labels: np.ndarray, class_names: Sequence[str]) -> list[str]:
    count = int(labels.max()) + 1
    if not class_names:
        return [f"class {k}" for k in range(count)]
    if len(class_names) < count:
        raise AnalysisError(
            f"Labels go up to class {count - 1} but only {len(class_names)} class names were "
            "given: pass one name per class, or none."
        )
    return [str(name) for name in class_names]


def _groups(
    labels: np.ndarray,
    names: list[str],
    colour_by: str,
    correct: Mapping[str, ArrayLike] | None,
    models: Sequence[str],
) -> tuple[list[tuple[str, str, str]], dict[str, np.ndarray]]:
    """The groups to draw, as ``(name, colour, symbol)``, and for each model the group of each
    point (an index into that list)."""
    if colour_by == "class":
        groups = [
            (name, CATEGORICAL[k % len(CATEGORICAL)], CLASS_SYMBOLS[(k // 8) % len(CLASS_SYMBOLS)])
            for k, name in enumerate(names)
        ]
        return groups, {model: labels for model in models}
    if correct is None or set(models) - set(correct):
        raise AnalysisError(
            'colour_by="correct" needs the correct-prediction mask of every model: pass '
            "correct={name: FeatureSet.correct, ...}."
        )
    membership = {}
    for model in models:
        mask = _numpy(correct[model]).astype(bool).reshape(-1)
        if len(mask) != len(labels):
            raise AnalysisError(
                f"{model}'s correct mask has {len(mask)} entries for {len(labels)} samples."
            )
        membership[model] = np.where(mask, 0, 1)
    return [("correct", BLUE, "circle"), ("wrong", VERMILLION, "circle")], membership


def embedding_figure(
    points: Mapping[str, ArrayLike],
    labels: ArrayLike,
    *,
    colour_by: str = "class",
    correct: Mapping[str, ArrayLike] | None = None,
    class_names: Sequence[str] = (),
    indices: ArrayLike | None = None,
    side_by_side: bool = True,
    shared_axes: bool = True,
    method: str | None = None,
) -> go.Figure:
    """Embedded samples of each model, coloured by true class or by whether the model was right.

    Args:
        points: model name -> ``N x 2`` points of the same ``N`` samples, in the same order
            (e.g. ``Embedding.points`` of a joint or Procrustes-aligned embedding).
        labels: ``N`` true classes.
        colour_by: ``"class"`` (one colour per class) or ``"correct"`` (each model's right
            and wrong predictions; needs ``correct``).
        correct: model name -> ``N`` bool, whether the model predicted the sample right.
        class_names: names of the classes, for the legend and hover.
        indices: ``N`` sample indices (default ``0..N-1``), put in each point's ``customdata``.
        side_by_side: one panel per model (up to three per row); otherwise all models in one
            panel, told apart by marker symbol.
        shared_axes: side-by-side panels share (and zoom) their axes; meaningful for maps in
            one coordinate system (joint or aligned embeddings).
        method: ``"pca"``, ``"tsne"`` or ``"umap"``, for the titles; ``None`` for generic ones.

    Raises:
        AnalysisError: no model, points that are not ``N x 2`` finite values, ``colour_by``
            unknown, missing or mis-sized ``correct`` masks, too few class names.
    """
    if colour_by not in COLOUR_BY:
        raise AnalysisError(f"colour_by must be one of {', '.join(COLOUR_BY)}, got {colour_by!r}.")
    if method is not None and method not in METHOD_NAMES:
        raise AnalysisError(
            f"method must be one of {', '.join(METHOD_NAMES)} or None, got {method!r}."
        )
    label_array = _numpy(labels).astype(np.int64).reshape(-1)
    n = len(label_array)
    if n == 0:
        raise AnalysisError("Nothing to draw: there are no samples; select at least one.")
    if label_array.min() < 0:
        raise AnalysisError("Labels must be class indices >= 0.")
    by_model = _checked_points(points, n)
    models = list(by_model)
    index_array = np.arange(n) if indices is None else _numpy(indices).astype(np.int64)
    if index_array.shape != (n,):
        raise AnalysisError(f"Got {index_array.size} sample indices for {n} samples.")
    names = _class_names(label_array, class_names)
    groups, membership = _groups(label_array, names, colour_by, correct, models)

    panels = len(models) if side_by_side else 1
    columns = min(MAX_COLUMNS, panels)
    rows = math.ceil(panels / columns)
    fig = make_subplots(
        rows=rows,
        cols=columns,
        subplot_titles=models if side_by_side else None,
        shared_xaxes="all" if shared_axes and side_by_side else False,
        shared_yaxes="all" if shared_axes and side_by_side else False,
        horizontal_spacing=0.06,
        vertical_spacing=0.12,
    )
    scatter = go.Scattergl if n * len(models) > WEBGL_THRESHOLD else go.Scatter
    size = 7 if n <= WEBGL_THRESHOLD else 4
    shown: set[str] = set()
    for position, model in enumerate(models):
        panel = position if side_by_side else 0
        row, col = panel // columns + 1, panel % columns + 1
        xy = by_model[model]
        for group_index, (group, colour, symbol) in enumerate(groups):
            members = np.flatnonzero(membership[model] == group_index)
            if len(members) == 0:
                continue
            hover = [
                f"{model}<br>sample {index}<br>class: {names[label]}"
                + ("" if colour_by == "class" else f"<br>prediction: {group}")
                for index, label in zip(index_array[members], label_array[members], strict=True)
            ]
            fig.add_trace(
                scatter(
                    x=xy[members, 0],
                    y=xy[members, 1],
                    mode="markers",
                    name=group,
                    legendgroup=group,
                    showlegend=group not in shown,
                    marker={
                        "color": colour,
                        "symbol": symbol
                        if side_by_side
                        else MODEL_SYMBOLS[position % len(MODEL_SYMBOLS)],
                        "size": size,
                        "opacity": 0.8,
                    },
                    customdata=index_array[members],
                    hovertext=hover,
                    hovertemplate="%{hovertext}<br>(%{x:.3g}, %{y:.3g})<extra></extra>",
                ),
                row=row,
                col=col,
            )
            shown.add(group)

    axis = AXIS_TITLES.get(method, "dimension {} (arbitrary units)")
    fig.update_xaxes(title_text=axis.format(1))
    fig.update_yaxes(title_text=axis.format(2))
    fig.update_layout(dragmode="lasso", clickmode="event+select")
    what = METHOD_NAMES.get(method, "2-D") + " map"
    coloured = "true class" if colour_by == "class" else "correct / wrong prediction"
    title = f"{what} of {n} samples, coloured by {coloured}"
    if not side_by_side:
        symbols = ", ".join(
            f"{MODEL_SYMBOLS[i % len(MODEL_SYMBOLS)]} = {model}" for i, model in enumerate(models)
        )
        title += f"<br><sup>markers: {symbols}</sup>"
    finish(fig, title, height=max(420, 380 * rows))
    # A vertical legend on the right: a horizontal one above the panels would cover their titles.
    fig.update_layout(
        legend={"orientation": "v", "x": 1.02, "xanchor": "left", "y": 1.0, "yanchor": "top"},
        margin={"r": 150},
    )
    return fig


def embedding_caption(maps: Mapping[str, Embedding], method: str, layout: str) -> str:
    """What a reader of :func:`embedding_figure` should know about the maps it draws: for PCA
    the share of the variance that PC 1 and PC 2 keep (per model, or once for a joint map),
    for a neighbour method that distances between clusters mean nothing; and how the models'
    maps relate (``layout``: ``"joint"``, one coordinate system, or ``"aligned"``, each
    student rotated onto the teacher by Procrustes)."""
    parts = []
    if method == "pca":
        shares = {
            name: "{:.0%} and {:.0%}".format(*e.explained_variance_ratio)
            for name, e in maps.items()
        }
        if layout == "joint":  # one PCA of all rows: the same shares for every model
            parts.append(f"PC 1 and PC 2 keep {next(iter(shares.values()))} of the variance.")
        else:
            listed = "; ".join(f"{name}: {share}" for name, share in shares.items())
            parts.append(f"Share of the variance along PC 1 and PC 2 ({listed}).")
    else:
        parts.append(
            f"{METHOD_NAMES[method]} keeps neighbours together: distances between clusters and "
            "cluster sizes mean nothing."
        )
    if layout == "joint":
        parts.append("All models' rows are embedded together: one coordinate system.")
    elif len(maps) > 1:
        parts.append(
            "Each model is embedded on its own; each student's map is rotated, scaled and "
            "shifted onto the teacher's (Procrustes), so its shape is its own and the same "
            "sample sits at comparable places."
        )
    return " ".join(parts)
