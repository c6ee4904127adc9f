"""The files of one run folder, each written so that a crash never leaves it half-written.

``config.json`` (the resolved configuration), ``status.json`` (state, timestamps, device,
versions, error), ``metrics.jsonl`` (one JSON line per logging step and per epoch, flushed),
``last.pt`` / ``best.pt`` (checkpoints), ``train.log`` and, to ask a run to stop, ``cancel``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from kd_core.files import atomic_write

STATES = ("queued", "running", "finished", "failed", "cancelled")
FINAL_STATES = ("finished", "failed", "cancelled")


def write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    """Write ``data`` as indented JSON to ``path``, atomically (see :mod:`kd_core.files`)."""
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    atomic_write(path, lambda file: file.write(text.encode()))


class RunFiles:
    """Paths and atomic writers of one run folder."""

    def __init__(self, run_dir: str | os.PathLike) -> None:
        self.dir = Path(run_dir)
        self.config = self.dir / "config.json"
        self.status = self.dir / "status.json"
        self.metrics = self.dir / "metrics.jsonl"
        self.last = self.dir / "last.pt"
        self.best = self.dir / "best.pt"
        self.log = self.dir / "train.log"
        self.cancel_flag = self.dir / "cancel"

    def read_status(self) -> dict[str, Any]:
        """The status, or ``{}`` when the run has not written one yet."""
        try:
            return json.loads(self.status.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def update_status(self, **fields: Any) -> dict[str, Any]:
        """Merge ``fields`` into the status (``updated_at`` set to now) and write it atomically."""
        status = {**self.read_status(), **fields, "updated_at": time.time()}
        if status.get("state") not in STATES:
            raise ValueError(f"Run state must be one of {', '.join(STATES)}.")
        write_json_atomic(self.status, status)
        return status

    def append_metrics(self, record: Mapping[str, Any]) -> None:
        """Append one JSON line and flush it to disk (a crash keeps every line written). A torn
        last line (a write cut short by a full disk or a power loss) is ended first, so that the
        new record starts a line of its own instead of being lost with the fragment."""
        line = (json.dumps(record, sort_keys=True) + "\n").encode()
        with self.metrics.open("ab+") as file:
            if file.seek(0, os.SEEK_END) > 0:
                file.seek(-1, os.SEEK_END)
                if file.read(1) != b"\n":
                    line = b"\n" + line
            file.write(line)
            file.flush()
            os.fsync(file.fileno())

    def remove_partial_checkpoints(self) -> None:
        """Delete the temporary files (``.last.pt.*.tmp``, ``.best.pt.*.tmp``) of checkpoint
        saves that a kill cut short. Only the run's own process saves its checkpoints, so when
        it starts none of them is being written."""
        for name in (self.last.name, self.best.name):
            for partial in self.dir.glob(f".{name}.*.tmp"):
                partial.unlink(missing_ok=True)

    def read_metrics(self) -> Iterator[dict[str, Any]]:
        """The metric records written so far (a torn last line, from a crash, is skipped)."""
        if not self.metrics.exists():
            return
        for line in self.metrics.read_text().splitlines():
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                continue

    def log_line(self, message: str) -> None:
        with self.log.open("a") as file:
            file.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")

    def request_cancel(self) -> None:
        self.cancel_flag.touch()

    def cancel_requested(self) -> bool:
        return self.cancel_flag.exists()


def latest_records(
    records: Sequence[Mapping[str, Any]], kind: str, axis: str
) -> list[Mapping[str, Any]]:
    """The metric records of ``kind`` (``"step"`` or ``"epoch"``) sorted by ``axis``, keeping
    the last record written for each value (a resumed run repeats some steps and epochs)."""
    by_position: dict[int, Mapping[str, Any]] = {}
    for record in records:
        position = record.get(axis)
        if (
            record.get("kind") == kind
            and isinstance(position, int)
            and not isinstance(position, bool)
        ):
            by_position[position] = record
    return [by_position[position] for position in sorted(by_position)]
