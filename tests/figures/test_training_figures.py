"""Training curves from metrics.jsonl records: trace counts, names and values."""

from __future__ import annotations

import plotly.graph_objects as go
import pytest

from kd_core.analysis.errors import AnalysisError
from kd_core.figures.style import series_colour
from kd_core.figures.training import NO_DATA, compare_runs_figure, training_curves_figure


def _step(step: int, terms: dict[str, float], epoch: int = 1) -> dict:
    return {
        "kind": "step", "step": step, "epoch": epoch, "lr": 0.05, "progress": step / 10,
        "loss": sum(terms.values()), "terms": terms,
    }  # fmt: skip


def _epoch(epoch: int, train: float, test: float) -> dict:
    return {
        "kind": "epoch", "epoch": epoch, "step": 2 * epoch, "train_top1": train,
        "test_top1": test, "best_top1": test, "train_loss": 1.0, "test_loss": 1.2,
    }  # fmt: skip


RECORDS = [
    _step(1, {"ce": 2.0, "amd": 0.5}),
    _step(2, {"ce": 1.5, "amd": 0.25}),
    _epoch(1, 40.0, 35.0),
    _step(3, {"ce": 1.0, "amd": 0.125}, epoch=2),
    _step(4, {"ce": 0.5, "amd": 0.0625}, epoch=2),
    _epoch(2, 60.0, 55.5),
]


def _traces(fig: go.Figure) -> dict[str, go.Scatter]:
    return {trace.name: trace for trace in fig.data}


def test_curves_have_a_line_per_term_plus_total_and_train_test_accuracy():
    fig = training_curves_figure(RECORDS, title="resnet8 + AMD")
    assert all(isinstance(t, go.Scatter) for t in fig.data)
    assert [t.name for t in fig.data] == ["total", "ce", "amd", "train top-1", "test top-1"]
    traces = _traces(fig)
    assert list(traces["total"].x) == [1, 2, 3, 4]
    assert list(traces["total"].y) == [2.5, 1.75, 1.125, 0.5625]
    assert list(traces["ce"].y) == [2.0, 1.5, 1.0, 0.5]
    assert list(traces["amd"].y) == [0.5, 0.25, 0.125, 0.0625]
    assert list(traces["train top-1"].x) == [1, 2] and list(traces["train top-1"].y) == [40, 60]
    assert list(traces["test top-1"].y) == [35.0, 55.5]
    # Loss on the top panel, accuracy on the bottom one.
    assert {traces[n].yaxis for n in ("total", "ce", "amd")} == {"y"}
    assert {traces[n].yaxis for n in ("train top-1", "test top-1")} == {"y2"}
    assert traces["ce"].line.color == series_colour(0)
    assert traces["amd"].line.color == series_colour(1)
    assert fig.layout.title.text == "resnet8 + AMD"
    assert fig.layout.yaxis.type == "linear" and tuple(fig.layout.yaxis2.range) == (0, 100)
    assert fig.layout.xaxis.title.text == "training step"
    assert fig.layout.xaxis2.title.text == "epoch"


def test_a_single_term_is_not_repeated_as_a_total():
    records = [_step(1, {"ce": 2.0}), _step(2, {"ce": 1.0}), _epoch(1, 50.0, 45.0)]
    fig = training_curves_figure(records)
    assert [t.name for t in fig.data] == ["ce", "train top-1", "test top-1"]


def test_repeated_records_keep_the_latest_and_non_finite_values_are_gaps():
    records = [
        _step(2, {"ce": 9.0}),  # logged, then the run crashed and resumed
        _step(1, {"ce": 3.0}),
        _step(2, {"ce": float("nan")}),
        _step(3, {"ce": float("inf")}),
        _epoch(1, 10.0, float("nan")),
        {"kind": "status", "step": 5},  # other kinds are ignored
    ]
    traces = _traces(training_curves_figure(records))
    assert list(traces["ce"].x) == [1, 2, 3]
    assert list(traces["ce"].y) == [3.0, None, None]
    assert list(traces["test top-1"].y) == [None]


def test_log_scale_drops_non_positive_losses():
    records = [_step(1, {"ce": 2.0, "amd": 0.0}), _step(2, {"ce": 1.0, "amd": 0.5})]
    fig = training_curves_figure(records, log_loss=True)
    assert fig.layout.yaxis.type == "log"
    assert list(_traces(fig)["amd"].y) == [None, 0.5]


def test_no_records_gives_a_no_data_figure():
    fig = training_curves_figure([], title="waiting")
    assert len(fig.data) == 0
    assert [a.text for a in fig.layout.annotations] == [NO_DATA]
    assert fig.layout.title.text == "waiting"


def test_panels_without_records_say_so():
    steps_only = training_curves_figure([_step(1, {"ce": 1.0})])
    texts = [a.text for a in steps_only.layout.annotations]
    assert "no finished epoch yet" in texts and "no step logged yet" not in texts
    assert list(_traces(steps_only)["test top-1"].y) == []
    epochs_only = training_curves_figure([_epoch(1, 10.0, 20.0)])
    assert "no step logged yet" in [a.text for a in epochs_only.layout.annotations]


def test_compare_runs_overlays_one_line_per_run():
    other = [_epoch(1, 30.0, 25.0), _epoch(2, 50.0, 45.0), _epoch(3, 70.0, 65.0)]
    fig = compare_runs_figure({"amd": RECORDS, "kd": other})
    assert [t.name for t in fig.data] == ["amd", "kd"]
    assert list(fig.data[0].x) == [1, 2] and list(fig.data[0].y) == [35.0, 55.5]
    assert list(fig.data[1].x) == [1, 2, 3] and list(fig.data[1].y) == [25.0, 45.0, 65.0]
    assert [t.line.color for t in fig.data] == [series_colour(0), series_colour(1)]
    assert fig.layout.yaxis.title.text == "test top-1 accuracy (%)"
    assert fig.layout.xaxis.title.text == "epoch"


def test_compare_runs_plots_step_metrics_per_step():
    fig = compare_runs_figure({"amd": RECORDS}, metric="loss")
    assert list(fig.data[0].x) == [1, 2, 3, 4]
    assert list(fig.data[0].y) == [2.5, 1.75, 1.125, 0.5625]
    assert fig.layout.xaxis.title.text == "training step"


def test_compare_runs_without_epochs_yet_is_a_no_data_figure():
    fig = compare_runs_figure({"amd": [_step(1, {"ce": 1.0})], "kd": []})
    assert len(fig.data) == 0 and [a.text for a in fig.layout.annotations] == [NO_DATA]


def test_compare_runs_errors():
    with pytest.raises(AnalysisError, match="No run to compare"):
        compare_runs_figure({})
    with pytest.raises(AnalysisError, match=r"No epoch record has a value for 'top9'.*test_top1"):
        compare_runs_figure({"amd": RECORDS}, metric="top9")
