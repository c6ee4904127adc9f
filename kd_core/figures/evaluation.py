"""Where a classifier goes wrong: the confusion matrix and per-class accuracy of several models.

Inputs come from :mod:`kd_core.analysis.evaluation` (``EvaluationSummary.confusion`` and
``.per_class_accuracy``)::

    summary = evaluation_summary(features)
    confusion_figure(summary.confusion, summary.class_names)
    per_class_accuracy_figure({"teacher": summary.per_class_accuracy}, summary.class_names)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
import torch
from torch import Tensor

from kd_core.analysis.errors import AnalysisError
from kd_core.figures.style import SEQUENTIAL, finish, series_colour

MAX_CELL_LABELS = 20
"""Confusion matrices with at most this many classes print their values in the cells."""


def _labels(class_names: Sequence[str], count: int) -> list[str]:
    if not class_names:
        return [f"class {k}" for k in range(count)]
    if len(class_names) != count:
        raise AnalysisError(
            f"There are {len(class_names)} class names for {count} classes; pass one name per "
            "class, or none."
        )
    return [str(name) for name in class_names]


def confusion_figure(
    confusion: Tensor | np.ndarray, class_names: Sequence[str] = (), *, normalize: bool = True
) -> go.Figure:
    """Heatmap of a ``K x K`` confusion matrix: rows the true class (top to bottom), columns
    the predicted class, Viridis.

    With ``normalize`` each row is divided by its total, so a cell is the percentage of the true
    class predicted as the column's class (the diagonal is the per-class accuracy); rows of
    classes without samples are left blank. The raw count is always in the hover.

    Raises:
        AnalysisError: not a square matrix of non-negative counts, no samples at all, or a
            class-name count that differs from ``K``.
    """
    counts = torch.as_tensor(confusion).detach().cpu().to(torch.float64).numpy()
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1] or counts.shape[0] == 0:
        raise AnalysisError(
            f"A confusion matrix must be K x K, got shape {counts.shape}; pass "
            "EvaluationSummary.confusion."
        )
    if not np.all(np.isfinite(counts)) or np.any(counts < 0):
        raise AnalysisError("A confusion matrix holds counts: finite values >= 0 only.")
    total = counts.sum()
    if total == 0:
        raise AnalysisError("The confusion matrix counts no samples; evaluate at least one.")
    labels = _labels(class_names, counts.shape[0])
    rows = counts.sum(axis=1, keepdims=True)
    shares = np.divide(100.0 * counts, rows, out=np.zeros_like(counts), where=rows > 0)
    # Plotly draws None as an empty cell: rows without samples stay blank, never NaN.
    z = (
        [
            [share if row_total > 0 else None for share in row]
            for row, row_total in zip(shares.tolist(), rows[:, 0], strict=True)
        ]
        if normalize
        else counts.tolist()
    )
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=labels,
            y=labels,
            customdata=np.stack([counts, shares], axis=-1),
            colorscale=SEQUENTIAL,
            zmin=0,
            zmax=100 if normalize else None,
            colorbar={"title": {"text": "% of true class" if normalize else "samples"}},
            texttemplate=(
                ("%{z:.0f}" if normalize else "%{z}")
                if counts.shape[0] <= MAX_CELL_LABELS
                else None
            ),
            hovertemplate=(
                "true: %{y}<br>predicted: %{x}<br>count: %{customdata[0]:.0f}<br>"
                "%{customdata[1]:.1f}% of the true class<extra></extra>"
            ),
        )
    )
    fig.update_xaxes(title_text="predicted class", tickangle=-45 if len(labels) > 10 else 0)
    fig.update_yaxes(title_text="true class", autorange="reversed")
    accuracy = 100.0 * np.trace(counts) / total
    unit = "% of each true class" if normalize else "sample counts"
    return finish(
        fig,
        f"Confusion matrix ({unit}): {int(total)} samples, {accuracy:.1f}% on the diagonal",
        height=max(420, 24 * len(labels) + 160),
    )


def per_class_accuracy_figure(
    accuracies: Mapping[str, Mapping[int, float]], class_names: Sequence[str]
) -> go.Figure:
    """Grouped bars: for each class, one bar per model with its accuracy on that class (%).

    ``accuracies`` maps a model's name to ``EvaluationSummary.per_class_accuracy`` (class index
    -> percent); a class missing from it (no samples) has no bar, and its hover says so.

    Raises:
        AnalysisError: no model, no class name, a class index outside ``class_names`` or an
            accuracy outside ``[0, 100]``.
    """
    if not accuracies:
        raise AnalysisError("No model to show; pass at least one model's per-class accuracy.")
    if not class_names:
        raise AnalysisError("Per-class accuracy needs the class names; pass one per class.")
    labels = _labels(class_names, len(class_names))
    fig = go.Figure()
    for index, (model, by_class) in enumerate(accuracies.items()):
        for k, value in by_class.items():
            if not 0 <= k < len(labels):
                raise AnalysisError(
                    f"{model} has an accuracy for class {k}, but there are {len(labels)} class "
                    "names; pass the names of all the model's classes."
                )
            if not 0.0 <= float(value) <= 100.0:
                raise AnalysisError(
                    f"{model}'s accuracy on {labels[k]} is {value}; accuracies are "
                    "percentages from 0 to 100."
                )
        values = [by_class.get(k) for k in range(len(labels))]
        fig.add_trace(
            go.Bar(
                x=labels,
                y=values,
                name=model,
                marker_color=series_colour(index),
                hovertext=[
                    f"{model}<br>{label}: "
                    + ("no samples" if value is None else f"{value:.1f}% correct")
                    for label, value in zip(labels, values, strict=True)
                ],
                hoverinfo="text",
            )
        )
    fig.update_layout(barmode="group")
    fig.update_xaxes(title_text="class", tickangle=-45 if len(labels) > 10 else 0)
    fig.update_yaxes(title_text="accuracy (% of the class's samples)", range=[0, 100])
    return finish(fig, "Accuracy per class")
