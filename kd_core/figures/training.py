"""Training curves from a run's ``metrics.jsonl`` records (see ``kd_core.training.trainer``).

The trainer writes two kinds of records: ``{"kind": "step", "step", "epoch", "loss", "terms":
{name: value}, "lr", "progress"}`` every ``log_every`` steps, and ``{"kind": "epoch", "epoch",
"train_top1", "test_top1", "best_top1", "train_loss", "test_loss", ...}`` after each epoch.
Figures take the records as read back (``RunFiles.read_metrics()``)::

    records = list(RunFiles(run_dir).read_metrics())
    training_curves_figure(records, title="resnet8 + AMD")
    compare_runs_figure({"kd": kd_records, "amd": amd_records}, metric="test_top1")

A resumed run may log a step or an epoch twice; the later record wins. Missing or non-finite
values leave a gap (plotly's ``None``), never a NaN. With no records yet, the figure says so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from kd_core.analysis.errors import AnalysisError
from kd_core.figures.style import BLACK, BLUE, ORANGE, finish, series_colour
from kd_core.training.run_files import latest_records

Record = Mapping[str, Any]

STEP_METRICS = ("loss",)
"""Metrics logged per step (plotted against the step); every other metric is per epoch."""
METRIC_TITLES = {
    "test_top1": "test top-1 accuracy (%)",
    "train_top1": "train top-1 accuracy (%)",
    "best_top1": "best test top-1 accuracy (%)",
    "test_top5": "test top-5 accuracy (%)",
    "test_loss": "test loss (cross-entropy)",
    "train_loss": "train loss (sum of terms)",
    "loss": "training loss (sum of terms)",
    "lr": "learning rate",
    "images_per_second": "training speed (images / s)",
    "seconds": "epoch time (s)",
    "attention_cosine": "attention cosine to the teacher (deepest stage, 64 test images)",
}
NO_DATA = "No data yet: the run has not logged any record."


def _number(value: object) -> float | None:
    """``value`` as a float, or ``None`` (a gap) when missing or not finite."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _epoch_ticks(records: Sequence[Record]) -> dict[str, Any]:
    """Whole-epoch ticks: every epoch up to 10, else about ten evenly spaced."""
    last = max((r["epoch"] for r in records), default=1)
    return {"tick0": 0, "dtick": max(1, math.ceil(last / 10))}


def _no_data(fig: go.Figure, text: str, **position: Any) -> None:
    fig.add_annotation(
        text=text, showarrow=False, font={"size": 14, "color": "#666666"}, **position
    )


def _empty_figure(title: str) -> go.Figure:
    fig = go.Figure()
    _no_data(fig, NO_DATA, x=0.5, y=0.5, xref="paper", yref="paper")
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return finish(fig, title)


def training_curves_figure(
    records: Sequence[Record], *, title: str = "Training curves", log_loss: bool = False
) -> go.Figure:
    """Two panels: the loss per step (one line per loss term, plus their sum ``total`` when
    there are several terms) and the train and test top-1 accuracy per epoch.

    ``log_loss`` puts the loss on a log axis (values <= 0 are then left out). With no
    records the figure is empty with a "no data yet" note; a panel without records of its
    kind (before the first logged step or finished epoch) carries the same kind of note.
    """
    steps = latest_records(records, "step", "step")
    epochs = latest_records(records, "epoch", "epoch")
    if not steps and not epochs:
        return _empty_figure(title)
    fig = make_subplots(
        rows=2,
        cols=1,
        vertical_spacing=0.16,
        subplot_titles=("loss per step", "top-1 accuracy per epoch"),
    )
    term_names = list(dict.fromkeys(name for r in steps for name in r.get("terms", {})))
    lines = [
        (name, [r.get("terms", {}).get(name) for r in steps], series_colour(index))
        for index, name in enumerate(term_names)
    ]
    if len(term_names) != 1:
        lines.insert(0, ("total", [r.get("loss") for r in steps], BLACK))
    for name, values, colour in lines:
        numbers = [_number(v) for v in values]
        if log_loss:
            numbers = [v if v is not None and v > 0 else None for v in numbers]
        fig.add_trace(
            go.Scatter(
                x=[r["step"] for r in steps],
                y=numbers,
                name=name,
                mode="lines",
                line={"color": colour, "width": 2 if name == "total" else 1.5},
                legendgroup="loss",
                hovertemplate=f"step %{{x}}<br>{name}: %{{y:.4g}}<extra></extra>",
            ),
            row=1,
            col=1,
        )
    for name, label, colour in (("train_top1", "train", ORANGE), ("test_top1", "test", BLUE)):
        fig.add_trace(
            go.Scatter(
                x=[r["epoch"] for r in epochs],
                y=[_number(r.get(name)) for r in epochs],
                name=f"{label} top-1",
                mode="lines+markers",
                line={"color": colour, "width": 2},
                legendgroup="accuracy",
                hovertemplate=f"epoch %{{x}}<br>{label} top-1: %{{y:.2f}}%<extra></extra>",
            ),
            row=2,
            col=1,
        )
    if not steps:
        _no_data(fig, "no step logged yet", x=0.5, y=0.5, xref="x domain", yref="y domain")
    if not epochs:
        _no_data(fig, "no finished epoch yet", x=0.5, y=0.5, xref="x2 domain", yref="y2 domain")
    fig.update_xaxes(title_text="training step", row=1, col=1)
    fig.update_yaxes(
        title_text="loss (dimensionless)", type="log" if log_loss else "linear", row=1, col=1
    )
    fig.update_xaxes(title_text="epoch", row=2, col=1, **_epoch_ticks(epochs))
    fig.update_yaxes(title_text="top-1 accuracy (%)", range=[0, 100], row=2, col=1)
    return finish(fig, title, height=640)


def compare_runs_figure(
    runs: Mapping[str, Sequence[Record]], metric: str = "test_top1", *, title: str | None = None
) -> go.Figure:
    """One line per run: ``metric`` per epoch (or per step for :data:`STEP_METRICS`), in the
    run's categorical colour.

    Raises:
        AnalysisError: no run given, or records of the right kind exist but none has
            ``metric`` (the message lists the metrics they have).
    """
    if not runs:
        raise AnalysisError("No run to compare; pass at least one run's metric records.")
    axis = "step" if metric in STEP_METRICS else "epoch"
    label = METRIC_TITLES.get(metric, metric)
    title = title or f"{label[:1].upper()}{label[1:]} per {axis}"
    series = {name: latest_records(records, axis, axis) for name, records in runs.items()}
    present = [r for records in series.values() for r in records]
    if not present:
        return _empty_figure(title)
    if not any(_number(r.get(metric)) is not None for r in present):
        available = sorted({k for r in present for k, v in r.items() if _number(v) is not None})
        raise AnalysisError(
            f"No {axis} record has a value for {metric!r}; choose one of: "
            f"{', '.join(k for k in available if k != axis)}."
        )
    fig = go.Figure()
    for index, (name, records) in enumerate(series.items()):
        fig.add_trace(
            go.Scatter(
                x=[r[axis] for r in records],
                y=[_number(r.get(metric)) for r in records],
                name=name,
                mode="lines+markers" if axis == "epoch" else "lines",
                line={"color": series_colour(index), "width": 2},
                hovertemplate=f"{name}<br>{axis} %{{x}}<br>{label}: %{{y:.4g}}<extra></extra>",
            )
        )
    if axis == "step":
        fig.update_xaxes(title_text="training step")
    else:
        fig.update_xaxes(title_text="epoch", **_epoch_ticks(present))
    fig.update_yaxes(title_text=label)
    return finish(fig, title)
