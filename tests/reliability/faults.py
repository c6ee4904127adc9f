"""Fault injection for training runs: kill a run's process at a chosen moment, read what it
left behind, and check the invariants of a run folder.

A run folder is sound when every checkpoint in it loads (``last.pt`` with its training state),
every line of ``metrics.jsonl`` is a whole JSON record, and, once the run has finished, there is
one epoch record per epoch, one step record per logged step, ``best.pt`` holds the epoch with
the best test top-1, and no half-written temporary file is left. The checks return the
problems they find as sentences (an empty list: sound), so that a test can run many trials
and report all of them at once.

Example::

    reference = reference_run(tmp_path / "ref", fault_config())
    plan = KillReport(trial=0, target="random", after_steps=5, delay_s=0.1)
    report = kill_trial(tmp_path / "trial-00", plan, fault_config(), reference)
    report.phase, report.problems      # "epoch 2", []
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch

from kd_core.checkpoints import CheckpointError, load_checkpoint, load_training_state
from kd_core.training.config import TrainConfig
from kd_core.training.optim import OptimizerConfig
from kd_core.training.run_files import FINAL_STATES, RunFiles, latest_records
from kd_core.training.runs import RunManager
from kd_core.training.trainer import train
from kd_core.workspace import run_checkpoints

T = TypeVar("T")

RUN_TIMEOUT_S = 180.0
DEATH_TIMEOUT_S = 15.0
COMPARED = ("train_loss", "train_top1", "test_loss", "test_top1", "test_top5", "best_top1")
"""Final-epoch metrics a resumed run must share with the uninterrupted one."""
CHECKPOINT_TEMPS = (".last.pt.", ".best.pt.")
METRIC_TOLERANCE = 1e-5
WEIGHT_TOLERANCE = 1e-5


def fault_config(**overrides: Any) -> TrainConfig:
    """Three epochs of resnet8 on 128 ``shapes`` images (4 steps per epoch, a metrics line per
    step), no teacher: about a second of training. With seed 4 and lr 0.2 the test top-1 goes
    7.81, 9.38, 7.81 %: epoch 2 improves and epoch 3 does not, so ``best.pt`` must end as
    epoch 2 (a stale ``best.pt`` would show)."""
    config = TrainConfig(
        student="resnet8", dataset="shapes", epochs=3, batch_size=32, limit_train=128,
        limit_test=64, log_every=1, device="cpu", seed=4, optimizer=OptimizerConfig(lr=0.2),
    )  # fmt: skip
    return config.with_overrides(overrides) if overrides else config


def wait_until(condition: Callable[[], T], timeout_s: float, what: str, poll_s: float = 0.05) -> T:
    """Poll ``condition`` until it returns something true; an ``AssertionError`` naming ``what``
    after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(poll_s)


def partial_writes(run_dir: Path) -> list[str]:
    """Temporary files of atomic writes in ``run_dir`` (``.last.pt.XXXX.tmp``,
    ``.status.json.XXXX.tmp`` ...)."""
    return sorted(name for name in os.listdir(run_dir) if name.endswith(".tmp"))


def partial_checkpoints(run_dir: Path) -> list[str]:
    """The temporary files of checkpoint saves in ``run_dir``."""
    return [name for name in partial_writes(run_dir) if name.startswith(CHECKPOINT_TEMPS)]


def kill_process_group(pid: int) -> None:
    """SIGKILL the run's process group (the worker leads its own session); a process that has
    already exited is no error."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def reap(pid: int) -> None:
    """Collect a killed child of this process (it stays a zombie until then)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


# --------------------------------------------------------------------------------------------
# Checks on a run folder.


def check_metrics_file(files: RunFiles) -> list[str]:
    """Every line of ``metrics.jsonl`` is a whole JSON record, and the file ends with a newline
    (a torn last line would glue itself to the next record appended after a resume)."""
    if not files.metrics.exists():
        return []
    text = files.metrics.read_text()
    problems = []
    if text and not text.endswith("\n"):
        problems.append(f"metrics.jsonl ends with a torn line: {text.splitlines()[-1][:80]!r}")
    for number, line in enumerate(text.splitlines(), start=1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            problems.append(f"metrics.jsonl line {number} is not JSON: {line[:80]!r}")
            continue
        if not isinstance(record, dict) or record.get("kind") not in ("step", "epoch"):
            problems.append(f"metrics.jsonl line {number} is not a metrics record: {line[:80]!r}")
    return problems


def check_checkpoints(files: RunFiles) -> list[str]:
    """``last.pt`` loads with its training state, ``best.pt`` loads, and the app's list of run
    checkpoints names only ``best.pt`` files (never a temporary file)."""
    problems = []
    loaded = {}
    for path in (files.last, files.best):
        if not path.exists():
            continue
        try:
            loaded[path.name] = load_checkpoint(path)
        except CheckpointError as error:
            problems.append(f"{path.name} does not load: {error}")
            continue
        if loaded[path.name].arch != "resnet8":
            problems.append(f"{path.name} holds {loaded[path.name].arch}, not resnet8")
    if "last.pt" in loaded:
        try:
            state = load_training_state(files.last)
        except CheckpointError as error:
            problems.append(f"last.pt has no readable training state: {error}")
        else:
            if state.get("epoch") != loaded["last.pt"].metadata.get("epoch"):
                problems.append("last.pt's training state and metadata name different epochs")
    listed = [entry.path.name for entry in run_checkpoints(files.dir.parent)]
    if any(name != "best.pt" for name in listed):
        problems.append(f"the app lists run checkpoints {listed}, not only best.pt files")
    return problems


def epochs_logged(files: RunFiles) -> int:
    """The number of the last epoch with a metrics record (0 when none)."""
    epochs = latest_records(list(files.read_metrics()), "epoch", "epoch")
    return int(epochs[-1]["epoch"]) if epochs else 0


def checkpoint_epoch(path: Path) -> int:
    """The epoch stored in a kd_core checkpoint's metadata (0 when there is no file)."""
    return int(load_checkpoint(path).metadata["epoch"]) if path.exists() else 0


@dataclass
class Reference:
    """An uninterrupted run: its final epoch record and its last and best weights."""

    final: dict[str, Any]
    epoch_top1: list[float]
    best_top1: float
    last_weights: dict[str, torch.Tensor]
    best_weights: dict[str, torch.Tensor]
    seconds: float


def reference_run(run_dir: Path, config: TrainConfig) -> Reference:
    """Train ``config`` in this process without interruption (CPU, deterministic)."""
    started = time.monotonic()
    result = train(config, run_dir)
    files = RunFiles(run_dir)
    return Reference(
        final=dict(result.history[-1]),
        epoch_top1=[record["test_top1"] for record in result.history],
        best_top1=result.best_top1,
        last_weights=load_checkpoint(files.last).model.state_dict(),
        best_weights=load_checkpoint(files.best).model.state_dict(),
        seconds=time.monotonic() - started,
    )


def _weights_differ(path: Path, expected: dict[str, torch.Tensor]) -> float:
    weights = load_checkpoint(path).model.state_dict()
    return max((weights[k].double() - v.double()).abs().max().item() for k, v in expected.items())


def check_finished_run(files: RunFiles, config: TrainConfig, reference: Reference) -> list[str]:
    """The invariants of a run that finished (after any number of kills and resumes), and its
    agreement with the uninterrupted ``reference`` (same configuration and seed)."""
    problems = check_metrics_file(files) + check_checkpoints(files)
    records = list(files.read_metrics())
    epochs = latest_records(records, "epoch", "epoch")
    if [r["epoch"] for r in epochs] != list(range(1, config.epochs + 1)):
        problems.append(f"epoch records {[r['epoch'] for r in epochs]}, not 1..{config.epochs}")
    steps_per_epoch = math.ceil(config.limit_train / config.batch_size)
    total = steps_per_epoch * config.epochs
    logged = [r["step"] for r in latest_records(records, "step", "step")]
    if logged != list(range(config.log_every, total + 1, config.log_every)):
        problems.append(f"step records {logged}, not every {config.log_every} up to {total}")
    if checkpoint_epoch(files.last) != config.epochs:
        problems.append(f"last.pt holds epoch {checkpoint_epoch(files.last)}, not {config.epochs}")
    if epochs and files.best.exists():
        best_record = max(epochs, key=lambda r: r["test_top1"])  # the first of equals
        best_meta = load_checkpoint(files.best).metadata
        if best_meta.get("epoch") != best_record["epoch"]:
            problems.append(
                f"best.pt holds epoch {best_meta.get('epoch')} (top-1 {best_meta.get('top1')}), "
                f"but the best epoch is {best_record['epoch']} (top-1 {best_record['test_top1']})"
            )
        elif (gap := _weights_differ(files.best, reference.best_weights)) > WEIGHT_TOLERANCE:
            problems.append(f"best.pt's weights differ from the uninterrupted run's by {gap:.2e}")
    elif not files.best.exists():
        problems.append("the finished run has no best.pt")
    status = files.read_status()
    if status.get("state") != "finished":
        problems.append(f"status.json says {status.get('state')!r}, not 'finished'")
    if status.get("best_top1") != reference.best_top1:
        problems.append(f"status best_top1 {status.get('best_top1')} != {reference.best_top1}")
    if epochs:
        final = epochs[-1]
        for name in COMPARED:
            if not math.isclose(final[name], reference.final[name], abs_tol=METRIC_TOLERANCE):
                problems.append(
                    f"final {name} {final[name]} differs from the uninterrupted run's "
                    f"{reference.final[name]}"
                )
    if files.last.exists() and (gap := _weights_differ(files.last, reference.last_weights)) > (
        WEIGHT_TOLERANCE
    ):
        problems.append(f"last.pt's weights differ from the uninterrupted run's by {gap:.2e}")
    leftovers = partial_checkpoints(files.dir)
    if leftovers:
        problems.append(f"partial checkpoints left after the run finished: {leftovers}")
    return problems


# --------------------------------------------------------------------------------------------
# One kill trial through the real path: RunManager -> worker process -> SIGKILL -> resume.


@dataclass
class KillReport:
    """What one trial did and found."""

    trial: int
    target: str
    """``"random"``: ``delay_s`` after the run's ``after_steps``-th step record (after it
    reports ``running`` for 0); ``"save"``: as soon as the temporary file of its
    ``save_index``-th checkpoint save appears."""
    after_steps: int = 0
    delay_s: float = 0.0
    save_index: int = 0
    state_at_kill: str = ""
    epochs_logged: int = 0
    last_epoch: int = 0
    best_epoch: int = 0
    partial: tuple[str, ...] = ()
    state_after_kill: str = ""
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def phase(self) -> str:
        """Where the run was when it died, read from what it left."""
        if self.state_at_kill == "finished":
            return "after the end"
        if self.partial:
            which = "last.pt" if any(n.startswith(".last.pt") for n in self.partial) else "best.pt"
            return f"saving {which}, epoch {self.last_epoch + 1}"
        if self.epochs_logged > self.last_epoch:
            return f"after the metrics line, before last.pt, epoch {self.epochs_logged}"
        if self.last_epoch > self.epochs_logged:
            return f"after last.pt, before the metrics line, epoch {self.last_epoch}"
        if self.best_epoch > self.epochs_logged:
            return f"after best.pt, before the metrics line, epoch {self.best_epoch}"
        return f"epoch {self.epochs_logged + 1}"


def _wait_for_save(files: RunFiles, save_index: int) -> bool:
    """Poll (every millisecond) until the temporary file of the ``save_index``-th checkpoint
    save seen exists; ``False`` when the run ended first (a save can be missed)."""
    seen: set[str] = set()
    deadline = time.monotonic() + RUN_TIMEOUT_S
    for polls in itertools.count():
        seen.update(partial_checkpoints(files.dir))
        if len(seen) >= save_index:
            return True
        if polls % 100 == 0:
            if files.read_status().get("state") in FINAL_STATES:
                return False
            if time.monotonic() > deadline:
                raise AssertionError(f"{files.dir.name} neither saved a checkpoint nor ended")
        time.sleep(0.001)
    raise AssertionError("unreachable")


def _steps_written(files: RunFiles) -> int:
    return files.metrics.read_bytes().count(b'"kind": "step"') if files.metrics.exists() else 0


def _wait_for_steps(files: RunFiles, steps: int) -> None:
    """Poll (every 2 ms) until the run has written ``steps`` step records (for 0: until it
    reports ``running``), or has ended."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        state = files.read_status().get("state")
        if state in FINAL_STATES or (state == "running" and _steps_written(files) >= steps):
            return
        time.sleep(0.002)
    raise AssertionError(f"{files.dir.name} neither wrote {steps} steps nor ended")


def kill_trial(
    root: Path, report: KillReport, config: TrainConfig, reference: Reference
) -> KillReport:
    """Start a run under ``root``, SIGKILL its process at the moment ``report`` plans, check
    what it left and how it is reported, resume it to the end and check the finished run
    against ``reference``; fills ``report`` in."""
    started = time.monotonic()
    manager = RunManager(root, max_concurrent=1)
    run = manager.start(config, name=f"kill-{report.trial:03d}")
    files = RunFiles(run.path)
    pid = run.status["pid"]
    if report.target == "save":
        _wait_for_save(files, report.save_index)
    else:
        _wait_for_steps(files, report.after_steps)
        time.sleep(report.delay_s)
    kill_process_group(pid)
    report.state_at_kill = files.read_status().get("state", "")
    try:
        info = wait_until(
            lambda: (i := manager.read(run.run_id)).state not in ("queued", "running") and i,
            DEATH_TIMEOUT_S,
            "the killed run to be reported as ended",
        )
    except AssertionError as error:
        report.problems.append(f"{error} (still {manager.read(run.run_id).state!r})")
        info = manager.read(run.run_id)
    finally:
        reap(pid)
    report.state_after_kill = info.state
    report.partial = tuple(partial_checkpoints(files.dir))
    report.epochs_logged = epochs_logged(files)
    report.problems += check_metrics_file(files) + check_checkpoints(files)
    if not report.problems:
        report.last_epoch = checkpoint_epoch(files.last)
        report.best_epoch = checkpoint_epoch(files.best)
        if abs(report.last_epoch - report.epochs_logged) > 1:
            report.problems.append(
                f"last.pt holds epoch {report.last_epoch} but the metrics end at epoch "
                f"{report.epochs_logged}"
            )
    if info.state == "failed" and "resume it" not in (info.status.get("error") or ""):
        report.problems.append(f"the killed run's error does not say what to do: {info.status}")
    if info.state != "finished":
        manager.resume(run.run_id)
        wait_until(
            lambda: manager.read(run.run_id).state in FINAL_STATES,
            RUN_TIMEOUT_S,
            "the resumed run to end",
            poll_s=0.2,
        )
    report.problems += check_finished_run(files, config, reference)
    if report.problems:
        report.problems.append(f"train.log tail: {files.log.read_text()[-1500:]}")
    report.seconds = time.monotonic() - started
    return report
