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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kd_core.data import list_datasets
from kd_core.models import list_models
from kd_core.training.config import TrainConfig
from kd_core.training.run_files import FINAL_STATES, RunFiles

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
        check_config_for_launch(config)
        self.root.mkdir(parents=True, exist_ok=True)
        run_id = new_run_id(self.root, config, name)
        files = RunFiles(self.run_dir(run_id))
        files.dir.mkdir()
        config.save(files.config)
        files.update_status(state="queued", created_at=time.time(), error=None)
        self._spawn(files, resume=False)
        return self.read(run_id)

    def resume(self, run_id: str) -> RunInfo:
        """Continue a run that failed, was cancelled or whose process died, from ``last``."""
        info = self.read(run_id)
        if info.state in ("queued", "running"):
            raise ValueError(f"Run {run_id} is still {info.state}; cancel it first.")
        files = RunFiles(info.path)
        files.cancel_flag.unlink(missing_ok=True)
        files.update_status(state="queued", error=None, resumed_at=time.time())
        self._spawn(files, resume=True)
        return self.read(run_id)

    def _spawn(self, files: RunFiles, resume: bool) -> None:
        command = [
            sys.executable, "-m", "kd_core.training.worker", str(files.dir),
            "--slots", str(self.root / SLOTS_DIR), "--max-concurrent", str(self.max_concurrent),
        ]  # fmt: skip
        if resume:
            command.append("--resume")
        project = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            p for p in (project, os.environ.get("PYTHONPATH", "")) if p
        )}  # fmt: skip
        with files.log.open("ab") as log:
            process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, env=env, cwd=project,
            )  # fmt: skip
        # Reap the worker when it exits, so no zombie lingers while the server lives on.
        threading.Thread(target=process.wait, name=f"reap-{files.dir.name}", daemon=True).start()
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
