"""The process behind one run, or the runs of one group:
``python -m kd_core.training.worker RUN_DIR [RUN_DIR ...] --slots DIR [--group ID]``.

It waits (``queued``) for a free slot, oldest run first, then trains the runs' ``config.json``
(several as one group: :func:`~kd_core.training.trainer.train_group`), polling each folder's
``cancel`` file after every step: a cancelled run stops, the others go on. Its standard output is
the run's ``train.log``. Started by :class:`kd_core.training.runs.RunManager`.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

from kd_core.training.config import TrainConfig
from kd_core.training.priority import lower_priority
from kd_core.training.run_files import RunFiles
from kd_core.training.runs import process_alive
from kd_core.training.trainer import RunCancelled, error_message, train_group

POLL_SECONDS = 0.5


def _queued_since(status: dict) -> float:
    return status.get("resumed_at") or status.get("created_at") or 0.0


def _first_in_queue(members: Sequence[RunFiles]) -> bool:
    """No other live queued run under the same root was queued before this one (a group
    queues as its first run)."""
    mine = _queued_since(members[0].read_status())
    own = {files.dir for files in members}
    for other in members[0].dir.parent.iterdir():
        if other in own or not (other / "status.json").is_file():
            continue
        status = RunFiles(other).read_status()
        if (
            status.get("state") == "queued"
            and _queued_since(status) < mine
            and process_alive(status.get("pid"), other)
        ):
            return False
    return True


def wait_for_slot(members: Sequence[RunFiles], slots: Path, max_concurrent: int) -> int | None:
    """Block until one of ``max_concurrent`` slot locks is ours; return its file descriptor
    (held until the process exits), or ``None`` when every run is cancelled while it waits."""
    slots.mkdir(parents=True, exist_ok=True)
    while not all(files.cancel_requested() for files in members):
        if _first_in_queue(members):
            for index in range(max_concurrent):
                handle = os.open(slots / f"slot-{index}.lock", os.O_CREAT | os.O_RDWR, 0o600)
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return handle
                except BlockingIOError:
                    os.close(handle)
        time.sleep(POLL_SECONDS)
    return None


def _print_progress(files: RunFiles, record: dict) -> None:
    if record["kind"] == "epoch":
        print(
            f"{files.dir.name}: epoch {record['epoch']}: train loss {record['train_loss']:.4f}, "
            f"test top-1 {record['test_top1']:.2f}%, {record['images_per_second']:.0f} img/s",
            flush=True,
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train one run folder, or a group's folders.")
    parser.add_argument("run_dirs", type=Path, nargs="+")
    parser.add_argument("--slots", type=Path, required=True)
    parser.add_argument("--max-concurrent", type=int, default=1)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--group", default=None, help="the group's id (several run folders)")
    args = parser.parse_args(argv)
    members = [RunFiles(d) for d in args.run_dirs]
    print(lower_priority(), flush=True)
    if wait_for_slot(members, args.slots, args.max_concurrent) is None:
        for files in members:
            files.update_status(
                state="cancelled", finished_at=time.time(), message="cancelled while queued"
            )
        return 0
    try:
        configs = [TrainConfig.from_dict(json.loads(f.config.read_text())) for f in members]
        outcomes = train_group(
            configs, [f.dir for f in members], resume=args.resume, group=args.group,
            on_progress=lambda index, record: _print_progress(members[index], record),
            should_stop=lambda index: members[index].cancel_requested(),
        )  # fmt: skip
    except Exception as error:
        traceback.print_exc()  # into train.log, for whoever debugs the run
        for files in members:
            if files.read_status().get("state") not in ("failed", "cancelled", "finished"):
                files.update_status(
                    state="failed", finished_at=time.time(), error=error_message(error)
                )
        return 2 if isinstance(error, ValueError) else 1
    for files, outcome in zip(members, outcomes, strict=True):
        if isinstance(outcome, RunCancelled):
            print(f"{files.dir.name}: cancelled: {outcome}", flush=True)
        elif isinstance(outcome, Exception):
            traceback.print_exception(outcome)
            print(f"{files.dir.name}: failed: {error_message(outcome)}", flush=True)
        else:
            print(f"{files.dir.name}: finished", flush=True)
    failed = [o for o in outcomes if isinstance(o, Exception) and not isinstance(o, RunCancelled)]
    return 0 if not failed else (2 if isinstance(failed[0], ValueError) else 1)


if __name__ == "__main__":
    sys.exit(main())
