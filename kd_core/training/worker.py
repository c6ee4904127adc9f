"""The process behind one run: ``python -m kd_core.training.worker RUN_DIR --slots DIR``.

It waits (``queued``) for a free slot, oldest run first, then trains the run's
``config.json``, polling the folder's ``cancel`` file after every step. Its standard output is
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
from kd_core.training.run_files import RunFiles
from kd_core.training.runs import process_alive
from kd_core.training.trainer import RunCancelled, error_message, train

POLL_SECONDS = 0.5


def _queued_since(status: dict) -> float:
    return status.get("resumed_at") or status.get("created_at") or 0.0


def _first_in_queue(files: RunFiles) -> bool:
    """No other live queued run under the same root was queued before this one."""
    mine = _queued_since(files.read_status())
    for other in files.dir.parent.iterdir():
        if other == files.dir or not (other / "status.json").is_file():
            continue
        status = RunFiles(other).read_status()
        if (
            status.get("state") == "queued"
            and _queued_since(status) < mine
            and process_alive(status.get("pid"), other)
        ):
            return False
    return True


def wait_for_slot(files: RunFiles, slots: Path, max_concurrent: int) -> int | None:
    """Block until one of ``max_concurrent`` slot locks is ours; return its file descriptor
    (held until the process exits), or ``None`` when the run is cancelled while it waits."""
    slots.mkdir(parents=True, exist_ok=True)
    while not files.cancel_requested():
        if _first_in_queue(files):
            for index in range(max_concurrent):
                handle = os.open(slots / f"slot-{index}.lock", os.O_CREAT | os.O_RDWR, 0o600)
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return handle
                except BlockingIOError:
                    os.close(handle)
        time.sleep(POLL_SECONDS)
    return None


def _print_progress(record: dict) -> None:
    if record["kind"] == "epoch":
        print(
            f"epoch {record['epoch']}: train loss {record['train_loss']:.4f}, "
            f"test top-1 {record['test_top1']:.2f}%, {record['images_per_second']:.0f} img/s",
            flush=True,
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run one training run folder.")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--slots", type=Path, required=True)
    parser.add_argument("--max-concurrent", type=int, default=1)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)
    files = RunFiles(args.run_dir)
    if wait_for_slot(files, args.slots, args.max_concurrent) is None:
        files.update_status(
            state="cancelled", finished_at=time.time(), message="cancelled while queued"
        )
        return 0
    try:
        config = TrainConfig.from_dict(json.loads(files.config.read_text()))
        train(
            config, files.dir, resume=args.resume and files.last.exists(),
            on_progress=_print_progress, should_stop=files.cancel_requested,
        )  # fmt: skip
    except RunCancelled as cancelled:
        print(f"cancelled: {cancelled}", flush=True)
        return 0
    except Exception as error:
        traceback.print_exc()  # into train.log, for whoever debugs the run
        if files.read_status().get("state") != "failed":
            files.update_status(state="failed", finished_at=time.time(), error=error_message(error))
        return 2 if isinstance(error, ValueError) else 1
    print("finished", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
