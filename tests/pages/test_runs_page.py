"""The Runs page under AppTest. Run folders are written before the app starts, as runs left
by an earlier server would be: listed, compared, downloaded, resumed and deleted."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

from kd_core.checkpoints import save_checkpoint
from kd_core.models import create_model
from kd_core.training.config import TrainConfig
from kd_core.training.run_files import FINAL_STATES, RunFiles
from kd_core.training.runs import RunManager

APP = Path(__file__).resolve().parents[2] / "app.py"
VANILLA = "20260101-100000-vanilla"
AMD = "20260101-110000-amd"
STOP_TIMEOUT_S = 90


def write_run(
    root: Path, run_id: str, state: str, top1: list[float], objective: dict[str, float]
) -> RunFiles:
    """A run folder as the trainer leaves it: config, status, one step and one epoch record per
    accuracy in ``top1``, a log and (when it has epochs) a best checkpoint."""
    files = RunFiles(root / run_id)
    files.dir.mkdir(parents=True)
    config = TrainConfig(
        student="resnet8", objective=objective, epochs=len(top1) + 1, batch_size=32,
        limit_train=64, limit_test=64, device="cpu",
        teacher=None if objective == {"ce": 1.0} else "assets/checkpoints/teacher_resnet20.pt",
    )  # fmt: skip
    config.save(files.config)
    created = time.mktime(time.strptime(run_id[:15], "%Y%m%d-%H%M%S"))
    for epoch, accuracy in enumerate(top1, start=1):
        files.append_metrics(
            {"kind": "step", "epoch": epoch, "step": 2 * epoch, "lr": 0.05,
             "loss": 2.0 / epoch, "terms": {"ce": 2.0 / epoch}, "progress": epoch / 3}
        )  # fmt: skip
        files.append_metrics(
            {"kind": "epoch", "epoch": epoch, "step": 2 * epoch, "test_top1": accuracy,
             "best_top1": max(top1[:epoch]), "train_top1": accuracy - 5, "test_top5": 90.0,
             "test_loss": 1.0, "seconds": 10.0, "images_per_second": 100.0}
        )  # fmt: skip
    files.update_status(
        state=state, created_at=created, started_at=created + 1, finished_at=created + 61,
        pid=None, error="out of memory" if state == "failed" else None,
    )  # fmt: skip
    files.log_line(f"epoch {len(top1)} done")
    if top1:
        torch.manual_seed(0)
        save_checkpoint(files.best, create_model("resnet8", num_classes=10), "resnet8", 10)
    return files


@pytest.fixture
def runs_root(app_folders) -> Path:
    """The runs folder the app reads (``app_folders`` points ``KD_CORE_RUNS`` at it)."""
    return app_folders / "runs"


def start_app() -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    at.switch_page("app_pages/runs.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.fixture
def app(runs_root, tmp_path) -> AppTest:
    write_run(runs_root, VANILLA, "finished", [40.0, 55.0], {"ce": 1.0})
    write_run(runs_root, AMD, "failed", [50.0, 65.0], {"ce": 1.0, "amd": 1000.0})
    return start_app()


def _widget(elements, label: str):
    """The widget of the page (not the sidebar's) labelled ``label``."""
    [widget] = [w for w in elements if w.label == label]
    return widget


def test_no_runs_points_to_the_distill_page(runs_root, tmp_path):
    at = start_app()
    [info] = at.info
    assert "No runs yet" in info.value and "Distill" in info.value


def test_runs_written_before_the_start_are_listed(app):
    [table, _comparison] = app.dataframe
    listed = table.value
    assert list(listed["run"]) == [AMD, VANILLA]  # newest first
    assert list(listed["state"]) == ["failed", "finished"]
    assert list(listed["objective"]) == ["AMD", "vanilla"]
    assert list(listed["teacher"]) == ["teacher_resnet20", "none"]
    assert list(listed["epochs"]) == ["2/3", "2/3"]
    assert list(listed["best top-1 (%)"]) == [65.0, 55.0]
    assert list(listed["duration"]) == ["1 min", "1 min"]
    assert any("out of memory" in e.value for e in app.error)  # the newest (failed) run


def test_two_runs_are_compared(app):
    assert _widget(app.main.multiselect, "Runs to compare").value == [AMD, VANILLA]
    compare, _curves = app.get("plotly_chart")
    traces = json.loads(compare.proto.spec)["data"]
    assert [t["name"] for t in traces] == [AMD, VANILLA]
    assert [t["y"] for t in traces] == [[50.0, 65.0], [40.0, 55.0]]
    comparison = app.dataframe[1].value
    assert list(comparison["run"]) == [AMD, VANILLA]  # best top-1 first
    assert list(comparison["training time (s)"]) == [20.0, 20.0]

    _widget(app.main.selectbox, "Metric").set_value("loss").run()
    traces = json.loads(app.get("plotly_chart")[0].proto.spec)["data"]
    assert traces[0]["y"] == [2.0, 1.0]


def test_downloads_of_the_selected_run(app):
    labels = [b.label for b in app.get("download_button")]
    assert labels == [
        "Table (CSV)", "The comparison (CSV)",
        "Best checkpoint (.pt)", "Metrics (CSV)", "Configuration (JSON)",
    ]  # fmt: skip
    _widget(app.main.selectbox, "Run").set_value(VANILLA).run()
    assert not app.error
    [config] = app.json
    assert json.loads(config.value)["objective"] == {"ce": 1.0}
    assert "Best checkpoint (.pt)" in [b.label for b in app.get("download_button")]


def test_delete_needs_the_confirmation(app, runs_root):
    _widget(app.main.selectbox, "Run").set_value(VANILLA).run()
    delete = _widget(app.main.button, "Delete run")
    assert delete.disabled
    _widget(app.main.checkbox, f"Yes, delete {VANILLA} and its checkpoints").check().run()
    _widget(app.main.button, "Delete run").click().run()
    assert not app.exception
    assert not (runs_root / VANILLA).exists()
    assert (runs_root / AMD).exists()
    assert any(f"Run {VANILLA} deleted." in s.value for s in app.success)
    assert list(app.dataframe[0].value["run"]) == [AMD]


def test_a_failed_run_is_resumed_then_cancelled(app, runs_root):
    assert _widget(app.main.selectbox, "Run").value == AMD
    _widget(app.main.button, "Resume run").click().run()
    assert not app.exception
    assert any(f"Run {AMD} resumed." in s.value for s in app.success)
    assert RunManager(runs_root).read(AMD).state in ("queued", "running")
    _widget(app.main.button, "Cancel run").click().run()
    assert (runs_root / AMD / "cancel").exists()
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while (state := RunManager(runs_root).read(AMD).state) not in FINAL_STATES:
        assert time.monotonic() < deadline, (runs_root / AMD / "train.log").read_text()
        time.sleep(0.5)
    assert state == "cancelled"


def test_a_group_is_one_row_that_opens_into_its_students(runs_root):
    ids = ["20260102-100000-class-vanilla", "20260102-100000-class-amd"]
    for run_id, objective, top1 in zip(
        ids, [{"ce": 1.0}, {"ce": 1.0, "amd": 1000.0}], [[40.0, 50.0], [45.0, 58.0]], strict=True
    ):
        files = write_run(runs_root, run_id, "finished", top1, objective)
        files.update_status(group="group-class", group_runs=ids)
    write_run(runs_root, VANILLA, "finished", [30.0], {"ce": 1.0})
    at = start_app()
    table, members = at.main.dataframe[0].value, at.main.dataframe[1].value
    assert list(table["run"]) == ["group-class", VANILLA]
    assert table["objective"][0] == "group of 2: vanilla, AMD"
    assert list(members["run"]) == ids
    assert list(members["best top-1 (%)"]) == [50.0, 58.0]
    [expander] = [e for e in at.main.expander if e.label.startswith("group-class")]
    assert "2 students trained side by side" in expander.label
