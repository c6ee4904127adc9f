"""Runs on disk, each in its own process: start, list, read, cancel, resume, delete.

The app (or any script) calls :class:`RunManager`; every run is a detached process
(``python -m kd_core.training.worker RUN_DIR``) in its own session, so the server never blocks
on a run and a run survives a restart of the server. At most ``max_concurrent`` runs train at
once: a started run waits, ``queued``, for a free slot (a file lock that the operating system
releases when the process ends, however it ends), oldest first.

Example::

    manager = RunManager("runs", max_concurrent=1)
    run = manager.start(TrainConfig(student="resnet8", epochs=2), name="demo")
    manager.read(run.run_id).status["state"]     # queued / running / finished / ...
    manager.cancel(run.run_id)
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kd_core.data import list_datasets
from kd_core.models import list_models
from kd_core.training.config import TrainConfig
from kd_core.training.run_files import FINAL_STATES, RunFiles
from kd_core.training.trainer import check_group

RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
"""A run id, matched whole (``fullmatch``: ``$`` would also accept a trailing newline)."""
SLOTS_DIR = ".slots"


@dataclass
class RunInfo:
    """A run as read from its folder."""

    run_id: str
    path: Path
    status: dict[str, Any]
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def state(self) -> str:
        return self.status.get("state", "queued")


def check_config_for_launch(config: TrainConfig) -> None:
    """What can be checked before a process is started: field values, names, the teacher file."""
    config.check()
    if config.student not in list_models():
        raise ValueError(
            f"Unknown model {config.student!r}; accepted names: {', '.join(list_models())}."
        )
    if config.dataset not in list_datasets():
        raise ValueError(
            f"Unknown dataset {config.dataset!r}; accepted names: {', '.join(list_datasets())}."
        )
    if config.teacher is not None and not Path(config.teacher).expanduser().is_file():
        raise ValueError(f"The teacher checkpoint {config.teacher} does not exist.")


def new_run_id(root: Path, config: TrainConfig, name: str | None = None) -> str:
    """``YYYYmmdd-HHMMSS-<name>``, the name reduced to safe characters, unique under ``root``."""
    label = name or config.name or f"{config.student}-{'-'.join(sorted(config.objective))}"
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", label).strip("-")[:60] or "run"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    candidate, counter = f"{stamp}-{slug}", 1
    while (root / candidate).exists():
        counter += 1
        candidate = f"{stamp}-{slug}-{counter}"
    return candidate


def process_alive(pid: int | None, run_dir: Path) -> bool:
    """Whether ``pid`` is a live process of this run (not a reused pid of another program, nor
    the process of a run whose folder name merely contains this one's: ``...-demo-2``)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.exists():
        try:
            arguments = cmdline.read_bytes().split(b"\0")
        except OSError:
            return False
        return any(Path(os.fsdecode(arg)).name == run_dir.name for arg in arguments if arg)
    return True


class RunManager:
    """Start and follow training runs under ``root`` (one folder per run)."""

    def __init__(self, root: str | os.PathLike, max_concurrent: int = 1) -> None:
        if isinstance(max_concurrent, bool) or not isinstance(max_concurrent, int):
            raise ValueError("max_concurrent must be a positive integer.")
        if max_concurrent < 1:
            raise ValueError(f"max_concurrent must be a positive integer, got {max_concurrent}.")
        self.root = Path(root).expanduser().resolve()
        self.max_concurrent = max_concurrent

    def run_dir(self, run_id: str) -> Path:
        """The folder of ``run_id``; a ``ValueError`` for any id that is not a plain name
        (no separators, no ``..``): nothing outside ``root`` is ever touched."""
        if not isinstance(run_id, str) or not RUN_ID.fullmatch(run_id) or ".." in run_id:
            raise ValueError(
                f"{run_id!r} is not a run id; run ids are letters, digits, '-', '_' and '.'."
            )
        path = self.root / run_id
        if path.parent != self.root:
            raise ValueError(f"{run_id!r} is not a run id.")
        return path

    def start(self, config: TrainConfig, name: str | None = None) -> RunInfo:
        """Check ``config``, create the run folder and start its process; returns at once."""
        [info] = self._launch([config], [name])
        return info

    def start_group(
        self, configs: Sequence[TrainConfig], names: Sequence[str | None]
    ) -> list[RunInfo]:
        """Check the students of a group (see :func:`~kd_core.training.trainer.train_group`),
        create one run folder each, and start one process that trains them side by side;
        every status records the group's id and its runs."""
        labels = [name or config.name for config, name in zip(configs, names, strict=True)]
        repeated = sorted({n for n in labels if n and labels.count(n) > 1})
        if repeated:
            raise ValueError(
                f"Two students are both named {repeated[0]!r}; give each student its own name."
            )
        check_group(configs)
        return self._launch(list(configs), list(labels), group=True)

    def _launch(
        self, configs: list[TrainConfig], names: list[str | None], group: bool = False
    ) -> list[RunInfo]:
        for config in configs:
            check_config_for_launch(config)
        self.root.mkdir(parents=True, exist_ok=True)
        members: list[RunFiles] = []
        for config, name in zip(configs, names, strict=True):
            files = RunFiles(self.run_dir(new_run_id(self.root, config, name)))
            files.dir.mkdir()
            config.save(files.config)
            members.append(files)
        extra = {}
        if group:
            extra = {"group": f"group-{members[0].dir.name}",
                     "group_runs": [f.dir.name for f in members]}  # fmt: skip
        for files in members:
            files.update_status(state="queued", created_at=time.time(), error=None, **extra)
        self._spawn(members, resume=False, group=extra.get("group"))
        return [self.read(files.dir.name) for files in members]

    def group_runs(self, run_id: str) -> list[str]:
        """The run ids of ``run_id``'s group that still exist (just ``[run_id]`` alone)."""
        status = self.read(run_id).status
        names = status.get("group_runs") or [run_id]
        return [n for n in names if RUN_ID.fullmatch(n) and (self.root / n).is_dir()]

    def resume(self, run_id: str) -> RunInfo:
        """Continue a run that failed, was cancelled or whose process died, from ``last``. A run
        of a group resumes with every other run of its group that did not finish or was not
        cancelled, as one group again (a deleted run is left out)."""
        info = self.read(run_id)
        if info.state in ("queued", "running"):
            raise ValueError(f"Run {run_id} is still {info.state}; cancel it first.")
        members = [run_id] + [
            other for other in self.group_runs(run_id)
            if other != run_id and self.read(other).state not in ("finished", "cancelled")
        ]  # fmt: skip
        busy = [m for m in members if self.read(m).state in ("queued", "running")]
        if busy:
            raise ValueError(
                f"Run {busy[0]} of this group is still {self.read(busy[0]).state}; cancel it "
                "or wait for it before resuming the group."
            )
        files = [RunFiles(self.run_dir(m)) for m in members]
        for run_files in files:
            run_files.cancel_flag.unlink(missing_ok=True)
            run_files.update_status(state="queued", error=None, resumed_at=time.time())
        self._spawn(files, resume=True, group=info.status.get("group"))
        return self.read(run_id)

    def _spawn(self, members: list[RunFiles], resume: bool, group: str | None = None) -> None:
        """One worker process for ``members`` (a run, or the runs of a group); its output goes
        to the first run's ``train.log``."""
        command = [
            sys.executable, "-m", "kd_core.training.worker", *(str(f.dir) for f in members),
            "--slots", str(self.root / SLOTS_DIR), "--max-concurrent", str(self.max_concurrent),
        ]  # fmt: skip
        if resume:
            command.append("--resume")
        if group:
            command += ["--group", group]
        project = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            p for p in (project, os.environ.get("PYTHONPATH", "")) if p
        )}  # fmt: skip
        first = members[0]
        for files in members[1:]:
            files.log_line(f"trained in one process with its group; the log is {first.log}")
        with first.log.open("ab") as log:
            process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, env=env, cwd=project,
            )  # fmt: skip
        # Reap the worker when it exits, so no zombie lingers while the server lives on.
        threading.Thread(target=process.wait, name=f"reap-{first.dir.name}", daemon=True).start()
        for files in members:
            files.update_status(state="queued", pid=process.pid)

    def read(self, run_id: str) -> RunInfo:
        """A run's status (corrected to ``failed`` when its process died unfinished), config."""
        path = self.run_dir(run_id)
        if not path.is_dir():
            raise ValueError(f"There is no run {run_id!r} under {self.root}.")
        files = RunFiles(path)
        status = files.read_status()
        if status.get("state") in ("queued", "running") and not process_alive(
            status.get("pid"), path
        ):
            status = {
                **status, "state": "failed",
                "error": "The run's process ended before the run finished (killed or crashed); "
                "resume it to continue from its last checkpoint.",
            }  # fmt: skip
        try:
            config = TrainConfig.from_dict(_read_json(files.config)).to_dict()
        except (ValueError, TypeError):
            config = {}
        return RunInfo(run_id=run_id, path=path, status=status, config=config)

    def list(self) -> list[RunInfo]:
        """Every run under ``root``, newest first."""
        if not self.root.is_dir():
            return []
        runs = [
            self.read(p.name)
            for p in self.root.iterdir()
            if p.is_dir() and RUN_ID.fullmatch(p.name) and (p / "status.json").exists()
        ]
        return sorted(runs, key=lambda r: r.status.get("created_at", 0), reverse=True)

    def cancel(self, run_id: str) -> RunInfo:
        """Ask a run to stop after its current step (a queued run stops before starting)."""
        info = self.read(run_id)
        if info.state not in FINAL_STATES:
            RunFiles(info.path).request_cancel()
        return self.read(run_id)

    def delete(self, run_id: str) -> None:
        """Remove a run's folder; only a run that is no longer queued or running."""
        info = self.read(run_id)
        if info.state not in FINAL_STATES:
            raise ValueError(f"Run {run_id} is {info.state}; cancel it before deleting it.")
        shutil.rmtree(info.path)


def _read_json(path: Path) -> dict[str, Any]:
    import json

    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
