"""The runs API: processes started, queued by slot, cancelled, resumed, listed and deleted."""

from __future__ import annotations

import os
import signal
import time

import pytest

from kd_core.training.run_files import RunFiles
from kd_core.training.runs import RunManager

TIMEOUT_S = 120


def wait_for(manager, run_id, states, timeout=TIMEOUT_S):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = manager.read(run_id)
        if info.state in states:
            return info
        time.sleep(0.2)
    log = (manager.run_dir(run_id) / "train.log").read_text()
    raise AssertionError(f"run {run_id} stayed {info.state}; log:\n{log[-3000:]}")


@pytest.fixture
def manager(tmp_path):
    return RunManager(tmp_path / "runs", max_concurrent=1)


def test_two_runs_queue_for_one_slot_and_both_finish(manager, tiny_config):
    tiny_config.epochs = 1
    first = manager.start(tiny_config, name="first")
    second = manager.start(tiny_config, name="second")
    assert first.run_id != second.run_id
    assert second.state == "queued"
    done_first = wait_for(manager, first.run_id, {"finished", "failed"})
    assert done_first.state == "finished", done_first.status
    done_second = wait_for(manager, second.run_id, {"finished", "failed"})
    assert done_second.state == "finished", done_second.status
    # The second run could only start once the first had released the slot.
    assert done_second.status["started_at"] >= done_first.status["finished_at"] - 1.0
    assert [r.run_id for r in manager.list()] == [second.run_id, first.run_id]
    for run in (first, second):  # each worker trained below the app's CPU priority
        assert "CPU priority lowered by" in (manager.run_dir(run.run_id) / "train.log").read_text()
    manager.delete(first.run_id)
    assert not manager.run_dir(first.run_id).exists()


def _wait_for_checkpoint(files):
    deadline = time.monotonic() + TIMEOUT_S
    while not files.last.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert files.last.exists()


def test_cancel_keeps_what_was_written_and_resume_continues(manager, tiny_config):
    tiny_config.epochs = 40
    run = manager.start(tiny_config, name="long")
    files = RunFiles(manager.run_dir(run.run_id))
    _wait_for_checkpoint(files)
    with pytest.raises(ValueError, match="cancel it first"):
        manager.resume(run.run_id)
    manager.cancel(run.run_id)
    cancelled = wait_for(manager, run.run_id, {"cancelled"})
    assert cancelled.status["message"].startswith("cancelled")
    epochs_before = [m["epoch"] for m in files.read_metrics() if m["kind"] == "epoch"]
    assert epochs_before == list(range(1, len(epochs_before) + 1))

    manager.resume(run.run_id)
    wait_for(manager, run.run_id, {"running"})
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        epochs = [m["epoch"] for m in files.read_metrics() if m["kind"] == "epoch"]
        if epochs[-1] > epochs_before[-1]:
            break
        time.sleep(0.2)
    manager.cancel(run.run_id)
    wait_for(manager, run.run_id, {"cancelled"})
    # The resumed run went on from the epoch after its last checkpoint.
    assert epochs[len(epochs_before)] == epochs_before[-1] + 1


def test_a_killed_run_is_reported_failed_and_resumes(manager, tiny_config):
    tiny_config.epochs = 3
    run = manager.start(tiny_config, name="killed")
    files = RunFiles(manager.run_dir(run.run_id))
    _wait_for_checkpoint(files)
    os.killpg(manager.read(run.run_id).status["pid"], signal.SIGKILL)
    failed = wait_for(manager, run.run_id, {"failed"})
    assert "resume" in failed.status["error"]
    manager.resume(run.run_id)
    finished = wait_for(manager, run.run_id, {"finished", "failed"})
    assert finished.state == "finished", finished.status
    epochs = [m["epoch"] for m in files.read_metrics() if m["kind"] == "epoch"]
    assert epochs[-1] == 3


@pytest.mark.parametrize("run_id", ["../etc", "/etc/passwd", "a/b", "..", "", ".hidden"])
def test_path_like_run_ids_are_refused(manager, run_id):
    with pytest.raises(ValueError, match="run id"):
        manager.read(run_id)


def test_bad_configurations_never_start_a_process(manager, tiny_config):
    tiny_config.student = "resnet9000"
    with pytest.raises(ValueError, match="Unknown model"):
        manager.start(tiny_config)
    assert manager.list() == []


def test_a_second_process_sees_and_cancels_a_run_started_elsewhere(manager, tiny_config):
    import subprocess
    import sys
    from pathlib import Path

    tiny_config.epochs = 40
    config_file = manager.root.parent / "config.json"
    manager.root.mkdir(parents=True)
    tiny_config.save(config_file)
    script = (
        "import json, sys\n"
        "from kd_core.training.config import TrainConfig\n"
        "from kd_core.training.runs import RunManager\n"
        "config = TrainConfig.from_dict(json.load(open(sys.argv[2])))\n"
        "print(RunManager(sys.argv[1]).start(config, name='elsewhere').run_id)\n"
    )
    root = Path(__file__).resolve().parents[2]
    started = subprocess.run(
        [sys.executable, "-c", script, str(manager.root), str(config_file)],
        cwd=root, capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    run_id = started.stdout.strip()
    assert [r.run_id for r in manager.list()] == [run_id]
    wait_for(manager, run_id, {"running"})
    manager.cancel(run_id)
    assert wait_for(manager, run_id, {"cancelled"}).state == "cancelled"


def _group(tiny_config, teacher_checkpoint, epochs):
    amd = tiny_config.with_overrides(
        {"epochs": epochs, "teacher": teacher_checkpoint, "objective": {"ce": 1.0, "amd": 1000.0}}
    )
    vanilla = tiny_config.with_overrides({"epochs": epochs})
    return [vanilla, amd]


def test_a_group_trains_in_one_process_and_cancelling_one_leaves_the_other(
    manager, tiny_config, teacher_checkpoint
):
    runs = manager.start_group(_group(tiny_config, teacher_checkpoint, 40), ["vanilla", "amd"])
    ids = [r.run_id for r in runs]
    statuses = [r.status for r in runs]
    assert len({s["pid"] for s in statuses}) == 1 and len({s["group"] for s in statuses}) == 1
    assert all(s["group_runs"] == ids for s in statuses)
    _wait_for_checkpoint(RunFiles(manager.run_dir(ids[1])))
    manager.cancel(ids[0])
    wait_for(manager, ids[0], {"cancelled"})
    assert manager.read(ids[1]).state == "running"  # the other student goes on
    manager.cancel(ids[1])
    wait_for(manager, ids[1], {"cancelled"})


def test_a_killed_group_resumes_as_a_group_without_a_deleted_run(
    manager, tiny_config, teacher_checkpoint
):
    third = tiny_config.with_overrides({"epochs": 3, "name": "third"})
    configs = [*_group(tiny_config, teacher_checkpoint, 3), third]
    runs = manager.start_group(configs, ["vanilla", "amd", "third"])
    ids = [r.run_id for r in runs]
    _wait_for_checkpoint(RunFiles(manager.run_dir(ids[1])))
    os.killpg(manager.read(ids[0]).status["pid"], signal.SIGKILL)
    for run_id in ids:  # every student is reported failed once the killed process is gone
        wait_for(manager, run_id, {"failed"})
    manager.delete(ids[2])
    resumed = manager.resume(ids[1])
    assert resumed.state in ("queued", "running")
    assert manager.read(ids[0]).status["pid"] == resumed.status["pid"]  # one process again
    for run_id in ids[:2]:
        finished = wait_for(manager, run_id, {"finished", "failed"})
        assert finished.state == "finished", finished.status
        epochs = [
            m["epoch"] for m in RunFiles(finished.path).read_metrics() if m["kind"] == "epoch"
        ]
        assert epochs[-1] == 3
    assert manager.group_runs(ids[0]) == ids[:2]


def test_group_input_that_cannot_train_never_starts_a_process(
    manager, tiny_config, teacher_checkpoint
):
    configs = _group(tiny_config, teacher_checkpoint, 1)
    with pytest.raises(ValueError, match="both named 'same'"):
        manager.start_group(configs, ["same", "same"])
    with pytest.raises(ValueError, match="at least one student"):
        manager.start_group([], [])
    with pytest.raises(ValueError, match="must share batch_size"):
        manager.start_group(
            [configs[0], configs[1].with_overrides({"batch_size": 8})], [None, None]
        )
    assert manager.list() == []
