"""TensorBoard event files beside a run's ``metrics.jsonl`` (which stays the source of truth),
so ``tensorboard --logdir runs/`` shows every run, as RepDistiller's and mdistiller's users
expect.

Tags, all against the global step (epoch lines at the step their epoch ended, so one x axis
serves both and a resumed run can purge what it repeats):

* per logged step: ``loss/total`` and ``loss/<term>`` (each weighted term), ``lr``;
* per epoch: ``top1/train``, ``top1/test``, ``top5/test``, ``loss/train``, ``loss/test``,
  ``speed/images_per_second``, ``epoch``, and ``attention/cosine_to_teacher`` when probed;
* the run's configuration as text (``config``) and, when the run ends, as hparams with its
  final ``hparam/best_top1`` and ``hparam/last_top1``.

A resumed run opens its writer with ``purge_step`` at the step after its checkpoint: the
events a killed process wrote past that point are dropped, so curves continue without
duplicate steps. Without the ``tensorboard`` package (a bare PyTorch machine) runs train as
before, without event files.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kd_core.training.config import TrainConfig

EPOCH_TAGS = {
    "train_top1": "top1/train",
    "test_top1": "top1/test",
    "test_top5": "top5/test",
    "train_loss": "loss/train",
    "test_loss": "loss/test",
    "images_per_second": "speed/images_per_second",
    "epoch": "epoch",
    "attention_cosine": "attention/cosine_to_teacher",
}


def hparams_of(config: TrainConfig) -> dict[str, Any]:
    """The configuration as TensorBoard hparams (numbers, text and booleans only)."""
    optimizer = config.optimizer
    values: dict[str, Any] = {
        "student": config.student,
        "teacher": Path(config.teacher).name if config.teacher else "none",
        "dataset": config.dataset,
        "objective": ",".join(f"{name}={weight:g}" for name, weight in config.objective.items()),
        "epochs": config.epochs,
        "batch_size": config.batch_size,
        "lr": optimizer.lr,
        "weight_decay": optimizer.weight_decay,
        "schedule": optimizer.schedule,
        "warmup_epochs": optimizer.warmup_epochs,
        "seed": config.seed,
    }
    for loss, params in config.loss_params.items():
        for name, value in params.items():
            if isinstance(value, (bool, int, float, str)):
                values[f"{loss}.{name}"] = value
    return values


def open_log(
    run_dir: Path, config: TrainConfig, purge_step: int | None = None
) -> TensorBoardLog | None:
    """The run's :class:`TensorBoardLog`, or ``None`` where tensorboard is not installed."""
    try:
        return TensorBoardLog(run_dir, config, purge_step)
    except ImportError:
        return None


class TensorBoardLog:
    """The event writer of one run folder (open it on the process that writes the run)."""

    def __init__(self, run_dir: Path, config: TrainConfig, purge_step: int | None = None) -> None:
        from torch.utils.tensorboard import SummaryWriter  # seconds of import: only when used

        self.config = config
        self.writer = SummaryWriter(log_dir=str(run_dir), purge_step=purge_step)
        text = json.dumps(config.to_dict(), indent=2, sort_keys=True)
        self.writer.add_text("config", f"```\n{text}\n```", global_step=purge_step or 0)

    def record(self, record: Mapping[str, Any]) -> None:
        """Write one metrics record (a step line or an epoch line) as scalars."""
        step = int(record["step"])
        if record["kind"] == "step":
            self.writer.add_scalar("loss/total", record["loss"], step)
            for name, value in record.get("terms", {}).items():
                self.writer.add_scalar(f"loss/{name}", value, step)
            self.writer.add_scalar("lr", record["lr"], step)
            return
        for key, tag in EPOCH_TAGS.items():
            value = record.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(tag, value, step)
        self.writer.flush()  # an epoch's events are on disk with its metrics line

    def close(self, best_top1: float | None = None, last_top1: float | None = None) -> None:
        """Write the hparams (with the final metrics, when the run ended) and close."""
        from torch.utils.tensorboard.summary import hparams

        if best_top1 is not None and last_top1 is not None:
            metrics = {"hparam/best_top1": best_top1, "hparam/last_top1": last_top1}
            for summary in hparams(hparams_of(self.config), metrics):
                self.writer.file_writer.add_summary(summary)
            for tag, value in metrics.items():
                self.writer.add_scalar(tag, value)
        self.writer.close()
