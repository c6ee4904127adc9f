"""Faults during training: a run killed between its writes and at random moments (SIGKILL),
the server restarted under a running run, a disk that fills up during a checkpoint save.
Nothing written may be lost or left half-written, the run must be reported as it is, and
resuming must end where an uninterrupted run ends (same metrics, same weights).

``KD_CORE_RELIABILITY=full`` raises the kill trials from 8 to 50. Run with ``-s`` to see the
table of kill moments and outcomes.
"""

from __future__ import annotations

import errno
import io
import json
import os
import random
import re
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

import kd_core.checkpoints
import kd_core.training.trainer as trainer
from kd_core.checkpoints import load_checkpoint
from kd_core.training.run_files import FINAL_STATES, RunFiles
from kd_core.training.runs import RunManager, process_alive
from kd_core.training.trainer import train
from tests.browser.harness import AppPage, streamlit_server
from tests.reliability.faults import (
    RUN_TIMEOUT_S,
    KillReport,
    check_checkpoints,
    check_finished_run,
    check_metrics_file,
    fault_config,
    kill_trial,
    partial_writes,
    reference_run,
    wait_until,
)

FULL = os.environ.get("KD_CORE_RELIABILITY", "").strip().lower() == "full"
KILL_TRIALS = 50 if FULL else 8
KILL_SEED = 20260512
STEPS = 12
MAX_DELAY_S = 0.25
"""A random kill falls 0 to 0.25 s after a random step record, 0 to 12 (0: after the run
reports ``running``), whatever the machine's speed: after the 4th, 8th or 12th step it meets the
evaluation, the saves or the end."""
SAVE_TARGETED_EVERY = 4
"""Every 4th trial kills as soon as a checkpoint's temporary file appears (mid-save): that of
the 1st to 5th save (best 1, last 1, best 2, last 2, last 3), drawn at random."""
SAVES = 5
PARALLEL_TRIALS = 3


@pytest.fixture(autouse=True)
def _one_thread_workers(monkeypatch):
    """Workers inherit the environment: one OpenMP thread each (trials run three at a time)."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run every faulty run must end equal to."""
    return reference_run(tmp_path_factory.mktemp("reference") / "run", fault_config())


# --------------------------------------------------------------------------------------------
# Building blocks: the metrics reader and the liveness check.


def test_metrics_reader_keeps_every_whole_record_around_a_torn_line(tmp_path):
    files = RunFiles(tmp_path)
    written = [{"kind": "step", "step": s, "loss": 1.0 / s} for s in (1, 2, 3)]
    for record in written:
        files.append_metrics(record)
    with files.metrics.open("a") as torn:  # a write cut short (power loss, full disk)
        torn.write('{"kind": "step", "step": 4, "lo')
    assert list(files.read_metrics()) == written
    # The next record, appended after a resume, must not be glued to the torn fragment.
    files.append_metrics({"kind": "epoch", "epoch": 1, "step": 4})
    assert list(files.read_metrics()) == [*written, {"kind": "epoch", "epoch": 1, "step": 4}]


def test_a_dead_runs_pid_reused_by_a_similarly_named_run_is_not_alive(tmp_path):
    """``process_alive`` recognises a run's process by the run folder in its command line; a
    process of run ``...-demo-2`` must not pass for run ``...-demo``'s."""
    other_run = tmp_path / "20260101-000000-demo-2"
    sleeper = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", str(other_run)]
    )
    try:
        wait_until(lambda: Path(f"/proc/{sleeper.pid}/cmdline").read_bytes(), 10, "the process")
        assert process_alive(sleeper.pid, other_run)
        assert not process_alive(sleeper.pid, tmp_path / "20260101-000000-demo")
    finally:
        sleeper.kill()
        sleeper.wait()


# --------------------------------------------------------------------------------------------
# A kill at an exact moment, in this process: the trainer stops as a killed process would (no
# except clause runs), then a resume must end equal to the uninterrupted run.


class _Killed(BaseException):
    """Stands for SIGKILL: not an ``Exception``, so the trainer's handlers do not see it."""


@pytest.mark.parametrize("moment", ["after best.pt", "after last.pt", "after the metrics line"])
def test_a_kill_between_the_writes_of_an_epoch_loses_nothing(
    moment, tmp_path, monkeypatch, reference
):
    """Epoch 2 improves the top-1 (see ``fault_config``): it writes ``best.pt``, ``last.pt``
    and its metrics line. A kill between any two of these writes must not lose the epoch's
    metrics line nor leave ``best.pt`` older than the best epoch once the run is resumed."""
    top1 = reference.epoch_top1
    assert top1[1] > top1[0] and top1[2] <= top1[1], f"the premise fails: top-1 {top1}"
    config = fault_config()
    real_save, real_append = trainer.save_checkpoint, RunFiles.append_metrics

    def save_then_die(path, *args, metadata=None, **kwargs):
        saved = real_save(path, *args, metadata=metadata, **kwargs)
        if (metadata or {}).get("epoch") == 2 and moment == f"after {Path(path).name}":
            raise _Killed
        return saved

    def append_then_die(self, record):
        real_append(self, record)
        if record.get("kind") == "epoch" and record["epoch"] == 2 and "metrics" in moment:
            raise _Killed

    monkeypatch.setattr(trainer, "save_checkpoint", save_then_die)
    monkeypatch.setattr(RunFiles, "append_metrics", append_then_die)
    with pytest.raises(_Killed):
        train(config, tmp_path)
    files = RunFiles(tmp_path)
    assert files.read_status()["state"] == "running"  # as a killed process leaves it
    assert not (problems := check_metrics_file(files) + check_checkpoints(files)), problems
    monkeypatch.undo()
    train(config, tmp_path, resume=True)
    assert not (problems := check_finished_run(files, config, reference)), problems


# --------------------------------------------------------------------------------------------
# SIGKILL at random moments, through the real path (RunManager -> worker process).


def _summary(reports: list[KillReport]) -> str:
    lines = [f"{'trial':>5} {'killed at':>17}  {'killed during':<50} after kill  s"]
    for r in reports:
        target = (
            f"save #{r.save_index}"
            if r.target == "save"
            else f"step {r.after_steps} + {r.delay_s:.2f} s"
        )
        lines.append(
            f"{r.trial:>5} {target:>17}  {r.phase:<50} "
            f"{r.state_after_kill:<10} {r.seconds:.1f}"
            + (f"  PROBLEMS: {r.problems[:-1]}" if r.problems else "")
        )
    phases = Counter(
        r.phase.split(",")[0] if r.phase.startswith("saving") else r.phase for r in reports
    )
    lines.append("kill moments: " + ", ".join(f"{k}: {v}" for k, v in sorted(phases.items())))
    return "\n".join(lines)


@pytest.mark.timeout(120 + 30 * KILL_TRIALS)  # 7 to 11 s a trial on two busy cores
def test_sigkill_at_random_moments_then_resume(tmp_path, reference):
    """Each trial: start a run, SIGKILL its process group at a random moment (or mid-save),
    then check (a) every checkpoint loads, (b) every metrics line parses, (c) the run is
    reported ended, not running, with a sentence saying to resume, (d) resuming finishes the
    run equal to the uninterrupted one (final metrics and weights), with no partial file."""
    rng = random.Random(KILL_SEED)
    plan = [
        KillReport(trial, "save", save_index=rng.randint(1, SAVES))
        if trial % SAVE_TARGETED_EVERY == SAVE_TARGETED_EVERY - 1
        else KillReport(
            trial,
            "random",
            after_steps=rng.randint(0, STEPS),
            delay_s=round(rng.uniform(0, MAX_DELAY_S), 3),
        )
        for trial in range(KILL_TRIALS)
    ]
    config = fault_config()
    started = time.monotonic()
    with ThreadPoolExecutor(PARALLEL_TRIALS) as pool:
        reports = list(
            pool.map(
                lambda r: kill_trial(tmp_path / f"trial-{r.trial:03d}", r, config, reference), plan
            )
        )
    summary = _summary(reports)
    print(
        f"\n{KILL_TRIALS} kill trials, {PARALLEL_TRIALS} at a time, in "
        f"{time.monotonic() - started:.0f} s\n{summary}"
    )
    failed = [r for r in reports if r.problems]
    assert not failed, "\n\n".join(
        f"trial {r.trial} ({r.phase}):\n" + "\n".join(r.problems) for r in failed
    )
    # The trials must have hit the runs while they trained, not only after they ended.
    assert sum(r.state_at_kill == "running" for r in reports) >= KILL_TRIALS // 2, summary


# --------------------------------------------------------------------------------------------
# The server restarts while a run it launched trains.


def _parent_pid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


@pytest.mark.browser
def test_a_run_launched_from_the_app_outlives_a_server_restart(tmp_path, browser):
    """Launch a run on the Distill page, stop the server, start a new one on the same runs
    folder: the run trains on to the end, and the new server's Runs page follows it (chosen
    among other runs, its state updated on Refresh, the choice kept)."""
    from playwright.sync_api import expect

    env = {"KD_CORE_RUNS": str(tmp_path / "runs"), "KD_CORE_UPLOADS": str(tmp_path / "uploads")}
    manager = RunManager(tmp_path / "runs")
    with streamlit_server(env) as first:
        app = AppPage.open(browser, first.base_url)
        app.goto("/distill", expect_text="Distill a student")
        for label, value in (("Epochs", 8), ("Limit training images", 256),
                             ("Limit test images", 64)):  # fmt: skip
            app.set_number(label, value)
        app.page.get_by_role("button", name="Launch run").click()
        [run] = wait_until(manager.list, 30, "the app to create the run folder")
        info = wait_until(
            lambda: (i := manager.read(run.run_id)).state == "running" and i,
            RUN_TIMEOUT_S, "the run to start training",
        )  # fmt: skip
        worker = info.status["pid"]
        # The server started the run, in a session of its own: Ctrl-C in the server's
        # terminal (its process group) or closing that terminal (its session) misses it.
        assert _parent_pid(worker) == first.process.pid
        assert os.getsid(worker) != os.getsid(first.process.pid)
        assert os.getpgid(worker) != os.getpgid(first.process.pid)
        app.close()
    # The first server is gone (terminated); the run trains on.
    assert first.process.poll() is not None
    assert process_alive(worker, info.path)
    assert manager.read(run.run_id).state == "running"
    newer = _finished_run_folder(manager.root, "29990101-000000-newer")
    with streamlit_server(env) as second:
        app = AppPage.open(browser, second.base_url)
        app.goto("/runs", expect_text="Runs")
        chosen = app.page.get_by_role("combobox", name="Run", exact=True)
        expect(chosen).to_have_value(newer)  # the newest run first
        chosen.click()  # choose the run by typing its id (the box filters its options)
        chosen.fill(run.run_id)
        chosen.press("Enter")
        app.wait_idle()
        expect(chosen).to_have_value(run.run_id)
        state = app.page.get_by_text(re.compile(r"^State: \w+ · resnet8"))
        state_seen = state.inner_text().split(" · ")[0]
        wait_until(
            lambda: manager.read(run.run_id).state in FINAL_STATES,
            RUN_TIMEOUT_S, "the run to end", poll_s=0.5,
        )  # fmt: skip
        for _ in range(2):  # the second rerun would reset a stale choice
            app.page.get_by_role("button", name="Refresh").click()
            app.wait_idle()
            expect(chosen).to_have_value(run.run_id)
            expect(state).to_contain_text("State: finished")
        app.close()
    print(f"\nthe new server's Runs page first showed the run as: {state_seen!r}")
    assert state_seen in ("State: running", "State: finished"), state_seen
    files = RunFiles(info.path)
    assert manager.read(run.run_id).state == "finished", files.log.read_text()[-2000:]
    assert not (problems := check_metrics_file(files) + check_checkpoints(files)), problems
    epochs = [r["epoch"] for r in files.read_metrics() if r["kind"] == "epoch"]
    assert epochs == list(range(1, 9))
    assert load_checkpoint(files.last).metadata["epoch"] == 8
    assert partial_writes(files.dir) == []


def _finished_run_folder(root: Path, run_id: str) -> str:
    """A finished run folder (config and status only) created now: the newest run."""
    files = RunFiles(root / run_id)
    files.dir.mkdir(parents=True)
    fault_config().save(files.config)
    files.update_status(state="finished", created_at=time.time(), pid=None)
    return run_id


# --------------------------------------------------------------------------------------------
# The disk fills up while a checkpoint is written.


@pytest.mark.parametrize("failing", ["last.pt", "best.pt"])
def test_a_full_disk_during_a_checkpoint_save_keeps_the_previous_one(
    failing, tmp_path, monkeypatch, reference
):
    """The save of ``failing`` at epoch 2 runs out of space half-way through: the checkpoints
    saved before stay as they were, no temporary file is left, the run is marked failed with a
    sentence about the disk, the metrics written so far are kept, and once space is back a
    resume finishes the run equal to the uninterrupted one."""
    config = fault_config()
    files = RunFiles(tmp_path)
    real_save = torch.save
    before: dict[str, bytes] = {}

    def save_until_the_disk_is_full(payload, f, *args, **kwargs):
        is_last = "training_state" in payload
        if payload["metadata"]["epoch"] == 2 and failing == ("last.pt" if is_last else "best.pt"):
            before.update({p.name: p.read_bytes() for p in (files.last, files.best, files.metrics)})
            buffer = io.BytesIO()
            real_save(payload, buffer, *args, **kwargs)
            f.write(buffer.getvalue()[: buffer.tell() // 2])  # the part that fit
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(payload, f, *args, **kwargs)

    monkeypatch.setattr(kd_core.checkpoints.torch, "save", save_until_the_disk_is_full)
    with pytest.raises(OSError):
        train(config, tmp_path)
    monkeypatch.undo()

    assert before, "the failing save never happened"
    for name in ("last.pt", "best.pt"):
        assert (tmp_path / name).read_bytes() == before[name], f"{name} changed"
    assert partial_writes(tmp_path) == []
    assert check_checkpoints(files) == []
    status = files.read_status()
    assert status["state"] == "failed"
    message = status["error"]
    assert "No space left on device" in message and failing in message, message
    assert "resume" in message and "Traceback" not in message, message
    assert files.metrics.read_bytes() == before["metrics.jsonl"]  # kept, nothing torn
    assert check_metrics_file(files) == []
    assert next(r["epoch"] for r in files.read_metrics() if r["kind"] == "epoch") == 1

    train(config, tmp_path, resume=True)
    assert check_finished_run(files, config, reference) == []
    assert json.loads(files.status.read_text())["error"] is None
