"""The one recipe behind the bundled checkpoints (`make assets`) and the results table
(`make table`), fixed before any result was seen, so both scripts train the same runs.

* Teacher: resnet20 on ``shapes`` (50,000 training images), 30 epochs, batch 128, SGD lr 0.1
  with one warm-up epoch and cosine decay, weight decay 5e-4, seed 0. How it was found:
  ``docs/results.md``, "How the teacher was trained".
* Students: resnet8 with the ``shapes-short`` preset (the Distill page's default): 3 epochs
  (150,000 images seen), batch 128, SGD lr 0.1 with a 0.2-epoch warm-up and cosine decay, from
  the shipped (fp16) teacher file, seeds 0, 1, 2. The budget was chosen to fit 10 methods x 3
  seeds in about two hours on a 2-core CPU; measured, a seed's group of ten takes about 50 minutes.
* Methods: vanilla (CE alone), KD (RepDistiller's CE 0.1 + KD 0.9, T = 4), AT and AMD each at
  beta = 100, 1,000 (the community's weight) and 10,000, AMD global+local and AMD+KD at
  beta = 1,000. The bundled students are the seed-0 runs of the beta = 1,000 methods.

A run is reused when its folder holds a finished run of the identical configuration, whose
``name`` carries the teacher file's hash: a retrained teacher retrains every student. Missing
runs of one seed train as one group (the teacher's forward pass shared), and ``resume``
continues a run folder that an interrupted invocation left.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kd_core.training.config import TrainConfig, preset
from kd_core.training.methods import METHODS, Method
from kd_core.training.optim import OptimizerConfig
from kd_core.training.run_files import RunFiles
from kd_core.training.trainer import train_group

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINTS = ROOT / "assets" / "checkpoints"
TEACHER_FILE = CHECKPOINTS / "teacher_resnet20.pt"
RUNS = ROOT / "runs"
TEACHER_RUN = RUNS / "assets" / "teacher_resnet20"
STUDENT_RUNS = RUNS / "table"

TEACHER_CONFIG = TrainConfig(
    student="resnet20",
    dataset="shapes",
    epochs=30,
    batch_size=128,
    optimizer=OptimizerConfig(lr=0.1, schedule="cosine", warmup_epochs=1),
    seed=0,
    log_every=100,
)
STUDENT_ARCH = "resnet8"
STUDENT_PRESET = preset("shapes-short")  # what the Distill page starts from, too
STUDENT_EPOCHS = STUDENT_PRESET.epochs
STUDENT_OPTIMIZER = STUDENT_PRESET.optimizer
STUDENT_BATCH = STUDENT_PRESET.batch_size
SEEDS = (0, 1, 2)


@dataclass(frozen=True)
class Row:
    """One row of the table: a method, its run-folder slug, and whether it is bundled
    (``assets/checkpoints/student_resnet8_<slug>.pt``)."""

    label: str
    slug: str
    method: Method
    bundled: bool = False


def _beta(name: str, beta: float) -> Method:
    """``METHODS[name]`` (CE + 1000 x its loss) with the weight ``beta`` instead."""
    method = METHODS[name]
    return Method(f"{method.label}, beta {beta:,.0f}", {"ce": 1.0, name: beta}, method.params)


ROWS = (
    Row("vanilla", "vanilla", METHODS["vanilla"], bundled=True),
    Row("KD", "kd", METHODS["kd"], bundled=True),
    Row("AT, beta 100", "at_100", _beta("at", 100.0)),
    Row("AT, beta 1,000", "at", METHODS["at"], bundled=True),
    Row("AT, beta 10,000", "at_10000", _beta("at", 10_000.0)),
    Row("AMD, beta 100", "amd_100", _beta("amd", 100.0)),
    Row("AMD, beta 1,000", "amd", METHODS["amd"], bundled=True),
    Row("AMD, beta 10,000", "amd_10000", _beta("amd", 10_000.0)),
    Row("AMD global+local", "amd_local", METHODS["amd_local"], bundled=True),
    Row("AMD+KD", "amd_kd", METHODS["amd_kd"], bundled=True),
)


def file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def student_config(row: Row, seed: int, limit_train: int | None = None) -> TrainConfig:
    """The configuration of one student run (the teacher named by its path relative to the
    project root, and by its hash in ``name``)."""
    method = row.method
    teacher = TEACHER_FILE.relative_to(ROOT).as_posix() if method.uses_teacher else None
    tag = f"-teacher-{file_hash(TEACHER_FILE)[:12]}" if method.uses_teacher else ""
    return TrainConfig(
        student=STUDENT_ARCH, teacher=teacher, dataset="shapes", objective=method.objective,
        loss_params=method.params, epochs=STUDENT_EPOCHS, batch_size=STUDENT_BATCH,
        optimizer=STUDENT_OPTIMIZER, seed=seed, limit_train=limit_train, log_every=100,
        name=f"{row.slug}-seed{seed}{tag}",
    )  # fmt: skip


def student_run_dir(row: Row, seed: int) -> Path:
    return STUDENT_RUNS / f"{row.slug}-seed{seed}"


def finished_run(run_dir: Path, config: TrainConfig) -> dict[str, Any] | None:
    """The record of a finished run of exactly ``config`` in ``run_dir``, or ``None``."""
    files = RunFiles(run_dir)
    if not (files.status.exists() and files.config.exists()):
        return None
    status = files.read_status()
    earlier = TrainConfig.from_dict(json.loads(files.config.read_text()))
    if status.get("state") != "finished" or earlier.to_dict() != config.to_dict():
        return None
    return run_record(files, config)


def run_record(files: RunFiles, config: TrainConfig) -> dict[str, Any]:
    """Accuracy and timing of a finished run, from its status and metrics files."""
    status = files.read_status()
    epochs = [r for r in files.read_metrics() if r.get("kind") == "epoch"]
    return {
        "last_top1": status["last_top1"],
        "best_top1": status["best_top1"],
        "epochs": config.epochs,
        "seconds": round(status["finished_at"] - status["started_at"], 1),
        "seconds_per_epoch": [round(r["seconds"], 1) for r in epochs],
        "images_per_second": [round(r["images_per_second"], 1) for r in epochs],
        "load_average": status.get("load_average"),
        "group_seconds": status.get("group_seconds"),
    }


def train_or_reuse(configs: list[TrainConfig], run_dirs: list[Path]) -> list[dict[str, Any]]:
    """Each run's record: reused where ``run_dirs[i]`` holds a finished run of exactly
    ``configs[i]``, the others trained now as one group (the teacher's pass shared; each student
    ends as it would alone). A record carries the machine's 1-minute load average sampled every
    :data:`LOAD_INTERVAL` seconds while the group trained: a timing taken beside other work is
    labelled so in the reports."""
    records = [finished_run(d, c) for c, d in zip(configs, run_dirs, strict=True)]
    missing = [i for i, record in enumerate(records) if record is None]
    for i in missing:  # a folder of another configuration is no run to continue
        files = RunFiles(run_dirs[i])
        if files.config.exists() and json.loads(files.config.read_text()) != configs[i].to_dict():
            shutil.rmtree(run_dirs[i])
    if missing:
        started = time.time()
        with load_samples() as load:
            outcomes = train_group(
                [configs[i] for i in missing], [run_dirs[i] for i in missing],
                resume=True, group=time.strftime("group-%Y%m%d-%H%M%S"),
            )  # fmt: skip
        for i, outcome in zip(missing, outcomes, strict=True):
            if isinstance(outcome, Exception):
                raise SystemExit(f"{configs[i].name} failed: {outcome}")
            files = RunFiles(run_dirs[i])
            files.update_status(load_average=load, group_seconds=round(time.time() - started, 1))
            records[i] = run_record(files, configs[i])
            print(f"{run_dirs[i].name}: top-1 {records[i]['last_top1']:.2f}%", flush=True)
    return records


LOAD_INTERVAL = 20.0


@contextmanager
def load_samples(interval: float = LOAD_INTERVAL) -> Iterator[list[float]]:
    """A list that holds the 1-minute load average, sampled when the block starts, every
    ``interval`` seconds inside it (a background thread) and when it ends."""
    samples = [_load()]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(interval):
            samples.append(_load())

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield samples
    finally:
        stop.set()
        thread.join()
        samples.append(_load())


def _load() -> float:
    return round(os.getloadavg()[0], 2)
