"""The training loop: run folder contents, distillation objectives, resume, cancel, errors."""

from __future__ import annotations

import json

import pytest
import torch

from kd_core.checkpoints import load_checkpoint
from kd_core.training.run_files import RunFiles
from kd_core.training.trainer import RunCancelled, train


def test_a_run_writes_config_status_metrics_and_checkpoints(tmp_path, tiny_config):
    records = []
    result = train(tiny_config, tmp_path, on_progress=records.append)
    files = RunFiles(tmp_path)
    status = files.read_status()
    assert status["state"] == "finished" and status["device"] == "cpu"
    assert status["versions"]["torch"] == torch.__version__
    metrics = list(files.read_metrics())
    assert metrics == records
    epochs = [m for m in metrics if m["kind"] == "epoch"]
    steps = [m for m in metrics if m["kind"] == "step"]
    assert [m["epoch"] for m in epochs] == [1, 2]
    assert len(steps) == 2 * 3  # 96 images / batch 32, logged every step
    assert result.best_top1 == max(m["test_top1"] for m in epochs)
    assert 0.0 <= epochs[-1]["test_top1"] <= epochs[-1]["test_top5"] <= 100.0
    best = load_checkpoint(files.best)
    assert best.arch == "resnet8" and best.num_classes == 10
    assert best.metadata["best_top1"] == result.best_top1


@pytest.mark.parametrize(
    "objective",
    [
        {"ce": 1.0, "kd": 0.9},
        {"ce": 1.0, "amd": 1000.0},
        {"ce": 1.0, "at": 1000.0},
        {"ce": 1.0, "fitnet": 1.0},
        {"ce": 1.0, "sp": 100.0, "pkt": 100.0, "rkd": 1.0},
    ],
)
def test_distillation_objectives_train_and_log_their_terms(
    tmp_path, tiny_config, teacher_checkpoint, objective
):
    tiny_config.teacher = teacher_checkpoint
    tiny_config.objective = objective
    tiny_config.epochs = 1
    train(tiny_config, tmp_path)
    epoch = [m for m in RunFiles(tmp_path).read_metrics() if m["kind"] == "epoch"][-1]
    assert set(epoch["train_terms"]) == set(objective)
    assert all(value >= 0 and value == value for value in epoch["train_terms"].values())


def _weights(path):
    return load_checkpoint(path).model.state_dict()


def test_resume_after_a_cancel_equals_an_uninterrupted_run(
    tmp_path, tiny_config, teacher_checkpoint
):
    tiny_config.teacher = teacher_checkpoint
    tiny_config.objective = {"ce": 1.0, "amd": 1000.0}
    whole = tmp_path / "whole"
    train(tiny_config, whole)

    interrupted = tmp_path / "interrupted"
    steps = {"n": 0}

    def stop_in_second_epoch() -> bool:
        steps["n"] += 1
        return steps["n"] == 4  # the first step of epoch 2 (3 steps per epoch)

    with pytest.raises(RunCancelled):
        train(tiny_config, interrupted, should_stop=stop_in_second_epoch)
    files = RunFiles(interrupted)
    assert files.read_status()["state"] == "cancelled"
    assert load_checkpoint(files.last).metadata["epoch"] == 1
    train(tiny_config, interrupted, resume=True)
    assert files.read_status()["state"] == "finished"
    for key, value in _weights(whole / "last.pt").items():
        torch.testing.assert_close(_weights(files.last)[key], value, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"student": "resnet9000"}, "Unknown model"),
        ({"dataset": "mnist"}, "mnist"),
        ({"objective": {"ce": 1, "amd": 1000}}, "need a teacher"),
        ({"objective": {"banana": 1}, "teacher": "x"}, None),
        ({"epochs": 0}, "epochs must be a positive integer"),
        ({"optimizer": {"lr": -0.1}}, "lr must be"),
        ({"teacher": "/nonexistent/teacher.pt", "objective": {"ce": 1, "kd": 1}}, "teacher"),
    ],
)
def test_configuration_errors_fail_before_any_work(tmp_path, tiny_config, change, message):
    config = tiny_config.with_overrides(
        {k: v for k, v in change.items() if k != "optimizer"} | change.get("optimizer", {})
    )
    with pytest.raises(ValueError, match=message or "banana"):
        train(config, tmp_path)
    status = RunFiles(tmp_path).read_status()
    assert status["state"] == "failed" and status["error"]
    assert not (tmp_path / "metrics.jsonl").exists()


def test_status_file_is_valid_json_after_every_update(tmp_path):
    files = RunFiles(tmp_path)
    files.update_status(state="queued")
    files.update_status(state="running", device="cpu")
    assert json.loads(files.status.read_text())["device"] == "cpu"
    with pytest.raises(ValueError, match="queued, running"):
        files.update_status(state="paused")


def test_a_fresh_run_in_a_used_folder_starts_clean(tmp_path, tiny_config):
    tiny_config.epochs = 1
    train(tiny_config, tmp_path)
    train(tiny_config, tmp_path)
    epochs = [m["epoch"] for m in RunFiles(tmp_path).read_metrics() if m["kind"] == "epoch"]
    assert epochs == [1]
