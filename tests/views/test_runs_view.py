"""The Runs page's view: progress, durations, run rows, final metrics, comparisons, queue places
and CSV text."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import pytest

from kd_core.training.config import TrainConfig
from kd_core.training.runs import RunInfo
from kd_core.views.runs import (
    comparison_rows,
    epoch_records,
    final_metrics,
    format_duration,
    group_of,
    log_tail,
    queue_position,
    records_csv,
    run_duration,
    run_progress,
    run_row,
    table_rows,
    teacher_name,
)

AMD_WEIGHTS = {"ce": 1.0, "amd": 1000.0}


def step(step: int, epoch: int, loss: float, progress: float, **terms: float) -> dict:
    return {"kind": "step", "step": step, "epoch": epoch, "loss": loss, "lr": 0.05,
            "terms": terms, "progress": progress}  # fmt: skip


def epoch(number: int, test_top1: float, best_top1: float, **extra) -> dict:
    return {"kind": "epoch", "epoch": number, "step": 10 * number, "test_top1": test_top1,
            "best_top1": best_top1, "progress": number / 4, **extra}  # fmt: skip


def run_info(run_id="r1", state="finished", epochs=4, **status) -> RunInfo:
    config = TrainConfig(epochs=epochs, objective=dict(AMD_WEIGHTS), teacher="t/teacher.pt")
    return RunInfo(run_id, Path("/runs") / run_id, {"state": state, **status}, config.to_dict())


# -- runs ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0 s"), (44.6, "45 s"), (60, "1 min"), (200, "3 min 20 s"), (599, "9 min 59 s"),
        (600, "10 min"), (3599, "1 h 00 min"), (7500, "2 h 05 min"), (None, "–"),
        (math.nan, "–"),
    ],
)  # fmt: skip
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


def test_epoch_records_keep_the_last_of_a_repeated_epoch():
    records = [epoch(1, 40, 40), step(5, 2, 1.0, 0.3), epoch(2, 50, 50), epoch(2, 52, 52)]
    assert [(r["epoch"], r["test_top1"]) for r in epoch_records(records)] == [(1, 40), (2, 52)]


def test_progress_of_a_running_run():
    records = [step(5, 1, 2.0, 0.1, ce=1.5, amd=0.5), epoch(1, 40.0, 40.0),
               step(12, 2, 1.2, 0.4, ce=1.0, amd=math.nan)]  # fmt: skip
    progress = run_progress(run_info(state="running"), records)
    assert progress.fraction == pytest.approx(0.4)
    assert (progress.epochs_done, progress.epochs, progress.step) == (1, 4, 12)
    assert progress.loss == 1.2
    assert progress.terms == {"ce": 1.0}  # a NaN term is left out
    assert (progress.last_top1, progress.best_top1, progress.error) == (40.0, 40.0, None)


def test_progress_of_finished_failed_and_empty_runs():
    finished = run_progress(run_info(), [step(3, 1, 1.0, 0.5), epoch(2, 60.0, 61.0)])
    assert (finished.fraction, finished.last_top1, finished.best_top1) == (1.0, 60.0, 61.0)
    failed = run_progress(run_info(state="failed", error="out of memory"), [])
    assert (failed.fraction, failed.epochs_done, failed.error) == (0.0, 0, "out of memory")
    assert failed.loss is None and failed.best_top1 is None
    # a finished run whose metrics file is gone still shows what its status recorded
    from_status = run_progress(run_info(best_top1=70.0, last_top1=69.0, epochs_done=4), [])
    assert (from_status.best_top1, from_status.epochs_done) == (70.0, 4)


def test_duration():
    assert run_duration(run_info(started_at=100.0, finished_at=160.0)) == 60.0
    assert run_duration(run_info(state="running", started_at=100.0), now=130.0) == 30.0
    assert run_duration(run_info(state="queued")) is None


def test_teacher_names():
    assert teacher_name(None) == "none"
    assert teacher_name("assets/checkpoints/teacher_resnet20.pt") == "teacher_resnet20"
    assert teacher_name("/r/runs/20260101-120000-big/best.pt") == "run 20260101-120000-big"


def test_run_row():
    info = run_info(created_at=0.0, started_at=10.0, finished_at=130.0)
    row = run_row(info, [epoch(1, 40.0, 40.0), epoch(2, 35.0, 40.0)])
    assert row["run"] == "r1" and row["state"] == "finished"
    assert (row["student"], row["teacher"], row["objective"]) == ("resnet8", "teacher", "AMD")
    assert row["epochs"] == "2/4"
    assert (row["best top-1 (%)"], row["last top-1 (%)"]) == (40.0, 35.0)
    assert row["duration"] == "2 min"
    assert row["created"] == "–"  # created_at 0 is not a time


def test_final_metrics_and_comparison():
    records = {
        "a": [epoch(1, 50.0, 50.0, seconds=10.0, images_per_second=100.0, test_top5=90.0)],
        "b": [epoch(1, 60.0, 60.0, seconds=10.0, images_per_second=300.0),
              epoch(2, 70.0, 70.0, seconds=30.0, images_per_second=500.0, test_loss=0.5)],
    }  # fmt: skip
    metrics = final_metrics(run_info("b"), records["b"])
    assert metrics["training time (s)"] == 40.0
    assert metrics["images/s"] == 400.0
    assert (metrics["best top-1 (%)"], metrics["test loss"], metrics["epochs"]) == (70.0, 0.5, 2)
    assert metrics["last top-5 (%)"] is None
    rows = comparison_rows([run_info("c"), run_info("a"), run_info("b")], records)
    assert [row["run"] for row in rows] == ["b", "a", "c"]  # best first, no metrics last
    assert rows[1]["last top-5 (%)"] == 90.0


def test_queue_position():
    runs = [
        run_info("late", "queued", created_at=30.0),
        run_info("busy", "running", created_at=5.0),
        run_info("first", "queued", created_at=10.0),
        run_info("resumed", "queued", created_at=1.0, resumed_at=40.0),
        run_info("done", "finished", created_at=0.0),
    ]
    places = {r.run_id: queue_position(runs, r.run_id) for r in runs}
    assert places == {"late": 2, "busy": None, "first": 1, "resumed": 3, "done": None}


def test_records_csv_flattens_and_reads_back():
    records = [step(1, 1, 2.5, 0.1, ce=2.0, amd=0.5), epoch(1, 40.0, 40.0)]
    rows = list(csv.DictReader(io.StringIO(records_csv(records))))
    assert list(rows[0]) == ["kind", "step", "epoch", "loss", "lr", "terms.ce", "terms.amd",
                             "progress", "test_top1", "best_top1"]  # fmt: skip
    assert (rows[0]["terms.amd"], rows[0]["test_top1"]) == ("0.5", "")
    assert (rows[1]["kind"], rows[1]["test_top1"], rows[1]["terms.ce"]) == ("epoch", "40.0", "")
    assert records_csv([]) == ""


def test_log_tail(tmp_path):
    log = tmp_path / "train.log"
    log.write_text("".join(f"line {i}\n" for i in range(50)))
    assert log_tail(log, 3) == "line 47\nline 48\nline 49"
    assert log_tail(tmp_path / "missing.log") == ""


def test_a_group_is_one_row_that_expands_into_its_students():
    alone = run_info(run_id="r-alone")
    group = {"group": "group-g1", "group_runs": ["g-vanilla", "g-amd"]}
    vanilla = run_info(run_id="g-vanilla", **group, epochs_done=2, best_top1=60.0)
    vanilla.config.update(objective={"ce": 1.0}, teacher=None)
    amd = run_info(run_id="g-amd", **group, state="running", epochs_done=1, best_top1=65.0)
    amd.config["teacher"] = "assets/checkpoints/teacher_resnet20.pt"
    rows, groups = table_rows([alone, vanilla, amd], {})
    assert [row["run"] for row in rows] == ["r-alone", "group-g1"]
    assert [row["run"] for row in groups["group-g1"]] == ["g-vanilla", "g-amd"]
    summary = rows[1]
    assert summary["objective"] == "group of 2: vanilla, AMD"
    assert summary["state"] == "1 finished, 1 running"
    assert summary["teacher"] == "teacher_resnet20"
    assert summary["best top-1 (%)"] is None
    assert group_of(alone) is None and group_of(amd) == "group-g1"
