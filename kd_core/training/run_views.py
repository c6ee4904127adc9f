"""What the Distill and Runs pages show about runs, as plain data: a form turned into a
:class:`~kd_core.training.config.TrainConfig`, a time estimate, one row per run, the final
metrics of a run, comparisons and CSV text.

Metric records are those of ``metrics.jsonl`` (see :mod:`kd_core.training.trainer`): ``step``
records (``loss``, ``terms``, ``lr``, ``progress``) and ``epoch`` records (``test_top1``,
``best_top1``, ``seconds``, ...). A resumed run may repeat an epoch; the later record wins.

Example::

    config = build_config(DistillForm(teacher="teacher.pt", weights={"ce": 1, "amd": 1000}))
    estimate_cpu_seconds("resnet8", epochs=10, train_images=10_000, teacher="resnet20")
    run = RunManager("runs").start(config)
    rows = [run_row(info, list(RunFiles(info.path).read_metrics())) for info in manager.list()]
"""

from __future__ import annotations

import csv
import io
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kd_core.analysis.errors import AnalysisError
from kd_core.data.shapes import SPLIT_SIZES as SHAPES_SPLIT_SIZES
from kd_core.losses.amd import DEFAULT_MARGIN, DEFAULT_SCALE
from kd_core.losses.registry import build_loss, loss_class
from kd_core.training.config import TrainConfig, preset
from kd_core.training.device import resolve_device
from kd_core.training.run_files import FINAL_STATES, RunFiles, latest_records
from kd_core.training.runs import RunInfo, check_config_for_launch
from kd_core.workspace import method_name

Record = Mapping[str, Any]

DEFAULT_PRESET = "shapes-short"
DISTILL_WEIGHTS = {"ce": 1.0, "amd": 1000.0}
"""The objective the form starts with when there is a teacher: the AMD recipe of the bundled
``student_resnet8_amd`` (Jeon et al. use ``L = CE + 1000 * AMD`` on CIFAR-100)."""

CPU_IMAGES_PER_SECOND = {
    "resnet8": 1280.0,
    "resnet20": 500.0,
    "resnet56": 220.0,
    "resnet8x4": 190.0,
    "resnet32x4": 40.0,
}
"""Training throughput (forward + backward + SGD step, 32 x 32 images) measured on two CPU
threads. A forward pass alone (teacher, evaluation) costs about :data:`FORWARD_SHARE` of it."""
FORWARD_SHARE = 1.0 / 3.0

SPLIT_SIZES = {
    "shapes": dict(SHAPES_SPLIT_SIZES),
    "cifar10": {"train": 50_000, "test": 10_000},
    "cifar100": {"train": 50_000, "test": 10_000},
}
"""Images per split of the datasets whose size is fixed (an image folder's is not)."""


@dataclass
class DistillForm:
    """The values of the Distill page's form (see :func:`build_config`).

    ``teacher`` is a checkpoint path or ``None``; ``weights`` maps loss names to weights
    (zero weights are dropped); ``limit_train`` / ``limit_test`` of ``None`` or 0 use the
    whole split; an empty ``name`` lets the run manager name the run.
    """

    student: str = "resnet8"
    teacher: str | None = None
    dataset: str = "shapes"
    data_root: str | None = None
    weights: dict[str, float] = field(default_factory=lambda: {"ce": 1.0})
    amd_margin: float = DEFAULT_MARGIN
    amd_scale: float = DEFAULT_SCALE
    amd_local: bool = False
    kd_temperature: float = 4.0
    epochs: int = 10
    batch_size: int = 64
    lr: float = 0.05
    limit_train: int | None = None
    limit_test: int | None = None
    seed: int = 0
    device: str = "auto"
    name: str = ""


def preset_form(preset_name: str = DEFAULT_PRESET) -> DistillForm:
    """The form filled with preset ``preset_name``'s epochs, batch size, learning rate, KD
    temperature and dataset (objective: cross-entropy alone).

    >>> preset_form("shapes-short").epochs
    10
    """
    try:
        config = preset(preset_name)
    except ValueError as error:
        raise AnalysisError(str(error)) from None
    return DistillForm(
        student=config.student,
        dataset=config.dataset,
        kd_temperature=float(config.loss_params.get("kd", {}).get("temperature", 4.0)),
        epochs=config.epochs,
        batch_size=config.batch_size,
        lr=config.optimizer.lr,
    )


def _loss_params(form: DistillForm, weights: Mapping[str, float]) -> dict[str, dict[str, Any]]:
    """The parameters the form sets, for the terms of the objective only."""
    params = {
        "amd": {"margin": form.amd_margin, "scale": form.amd_scale, "local": form.amd_local},
        "kd": {"temperature": form.kd_temperature},
    }
    return {name: values for name, values in params.items() if name in weights}


def _limit(value: int | None) -> int | None:
    return None if value in (None, 0) else value


def build_config(form: DistillForm, preset_name: str = DEFAULT_PRESET) -> TrainConfig:
    """The :class:`TrainConfig` of ``form`` on top of preset ``preset_name`` (its optimiser,
    schedule and other settings), checked as :meth:`RunManager.start` will check it.

    The preset's schedule is fitted to ``form.epochs``: its warm-up is shortened to at most
    half the run (a 1-epoch run warms up for half an epoch) and its step milestones scale
    with the run (cifar100's 150, 180, 210 of 240 epochs become 15, 18, 21 of 24). Terms with
    weight 0 are dropped.

    Raises:
        AnalysisError: a sentence naming what is wrong, e.g. terms that need a teacher when
            there is none, a rate <= 0, a device that is not here, a missing teacher file.
    """
    weights = {name: float(w) for name, w in form.weights.items() if w != 0}
    if not weights:
        raise AnalysisError("Every objective weight is 0: give ce (or another term) a weight > 0.")
    try:
        needing = [name for name in weights if loss_class(name).needs_teacher]
    except ValueError as error:  # an unknown loss name
        raise AnalysisError(str(error)) from None
    if form.teacher is None and needing:
        raise AnalysisError(
            f"The terms {', '.join(needing)} distil from a teacher, and no teacher is chosen: "
            "choose a teacher or set their weights to 0."
        )
    try:
        base = preset(preset_name)
    except ValueError as error:
        raise AnalysisError(str(error)) from None
    epochs = form.epochs
    warmup = min(base.optimizer.warmup_epochs, epochs / 2) if epochs >= 1 else 0.0
    scale = epochs / base.epochs
    milestones = sorted({max(1, round(m * scale)) for m in base.optimizer.milestones})
    overrides = {
        "student": form.student,
        "teacher": form.teacher,
        "dataset": form.dataset,
        "data_root": form.data_root or None,
        "objective": weights,
        "loss_params": _loss_params(form, weights),
        "epochs": epochs,
        "batch_size": form.batch_size,
        "lr": float(form.lr),
        "warmup_epochs": warmup,
        "milestones": milestones,
        "limit_train": _limit(form.limit_train),
        "limit_test": _limit(form.limit_test),
        "seed": form.seed,
        "device": form.device,
        "name": form.name.strip() or None,
    }
    try:
        config = base.with_overrides(overrides)
        check_config_for_launch(config)
        resolve_device(config.device)
        for name, params in config.loss_params.items():
            build_loss(name, **params)
    except ValueError as error:
        raise AnalysisError(str(error)) from None
    return config


def split_size(dataset: str, split: str, limit: int | None = None) -> int | None:
    """Images a run sees per epoch in ``split``: ``min(limit, size)``, or ``None`` when the
    dataset's size is unknown (an image folder) and there is no limit.

    >>> split_size("shapes", "train", limit=64)
    64
    """
    limit = _limit(limit)
    size = SPLIT_SIZES.get(dataset, {}).get(split)
    if size is None:
        return limit
    return size if limit is None else min(limit, size)


def estimate_cpu_seconds(
    student: str,
    epochs: int,
    train_images: int,
    test_images: int = 0,
    teacher: str | None = None,
) -> float | None:
    r"""Seconds a run takes on a two-thread CPU, from :data:`CPU_IMAGES_PER_SECOND` (``r``):

    .. math:: t = E \Big( N_{train} \big(\tfrac{1}{r_s} + \tfrac{1}{3 r_t}\big)
        + \tfrac{N_{test}}{3 r_s} \Big)

    (the teacher and the evaluation only run forward passes, about a third of a training
    step). ``None`` when an architecture has no measured speed.

    >>> estimate_cpu_seconds("resnet8", epochs=10, train_images=12_800)
    100.0
    """
    student_rate = CPU_IMAGES_PER_SECOND.get(student)
    teacher_rate = CPU_IMAGES_PER_SECOND.get(teacher) if teacher is not None else math.inf
    if student_rate is None or teacher_rate is None:
        return None
    per_train_image = 1.0 / student_rate + FORWARD_SHARE / teacher_rate
    per_epoch = train_images * per_train_image + test_images * FORWARD_SHARE / student_rate
    return epochs * per_epoch


def format_duration(seconds: float | None) -> str:
    """``"45 s"``, ``"3 min 20 s"``, ``"2 h 05 min"``; ``"–"`` for ``None`` or non-finite.

    >>> format_duration(200)
    '3 min 20 s'
    """
    if seconds is None or not math.isfinite(seconds):
        return "–"
    total = max(0, round(seconds))
    if total < 60:
        return f"{total} s"
    if total < 600:
        minutes, rest = divmod(total, 60)
        return f"{minutes} min {rest} s" if rest else f"{minutes} min"
    hours, minutes = divmod(round(total / 60), 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min"


def epoch_records(records: Sequence[Record]) -> list[Record]:
    """The ``epoch`` records, one per epoch in epoch order (the last written wins)."""
    return latest_records(records, "epoch", "epoch")


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


@dataclass(frozen=True)
class RunProgress:
    """Where a run stands, from its status and metric records.

    Attributes:
        fraction: share of the planned training done, in ``[0, 1]`` (1 once finished).
        step, loss, terms, lr: the latest logged step (``terms``: loss name -> weighted value).
        last_top1, best_top1: test top-1 (%) of the latest epoch and the best so far.
    """

    state: str
    fraction: float
    epochs_done: int
    epochs: int
    step: int | None = None
    loss: float | None = None
    terms: dict[str, float] = field(default_factory=dict)
    lr: float | None = None
    last_top1: float | None = None
    best_top1: float | None = None
    error: str | None = None


def run_progress(info: RunInfo, records: Sequence[Record]) -> RunProgress:
    """The :class:`RunProgress` of ``info`` given its metric ``records``."""
    epochs = epoch_records(records)
    steps = [r for r in records if r.get("kind") == "step"]
    latest_step = steps[-1] if steps else {}
    latest_epoch = epochs[-1] if epochs else {}
    fraction = _number(records[-1].get("progress")) if records else None
    if info.state == "finished":
        fraction = 1.0
    terms = {k: v for k, v in latest_step.get("terms", {}).items() if _number(v) is not None}
    status = info.status
    return RunProgress(
        state=info.state,
        fraction=min(max(fraction or 0.0, 0.0), 1.0),
        epochs_done=int(latest_epoch.get("epoch", status.get("epochs_done", 0))),
        epochs=int(info.config.get("epochs", 0)),
        step=latest_step.get("step"),
        loss=_number(latest_step.get("loss")),
        terms=terms,
        lr=_number(latest_step.get("lr")),
        last_top1=_number(latest_epoch.get("test_top1", status.get("last_top1"))),
        best_top1=_number(latest_epoch.get("best_top1", status.get("best_top1"))),
        error=status.get("error") if info.state == "failed" else None,
    )


def run_duration(info: RunInfo, now: float | None = None) -> float | None:
    """Seconds since the run (last) started, up to its end; ``None`` before it starts."""
    started = _number(info.status.get("started_at"))
    if started is None:
        return None
    if info.state in FINAL_STATES:
        end = _number(info.status.get("finished_at")) or _number(info.status.get("updated_at"))
    else:
        end = time.time() if now is None else now
    return None if end is None else max(end - started, 0.0)


def teacher_name(path: str | None) -> str:
    """A short name for a teacher checkpoint path: its file name without ``.pt``, the run's
    folder name for a run's ``best.pt``/``last.pt``, or ``"none"``.

    >>> teacher_name("runs/20260101-120000-amd/best.pt")
    'run 20260101-120000-amd'
    """
    if not path:
        return "none"
    file = Path(path)
    if file.name in (RunFiles(file.parent).best.name, RunFiles(file.parent).last.name):
        return f"run {file.parent.name}"
    return file.stem


def objective_name(config: Mapping[str, Any]) -> str:
    """The method name of a run's config (``vanilla``, ``AMD``, ``KD+AT``...)."""
    return method_name(config.get("objective", {}), config.get("loss_params"))


def run_row(info: RunInfo, records: Sequence[Record], now: float | None = None) -> dict[str, Any]:
    """One row of the runs table: run id, state, student, teacher, objective, epochs done,
    best and last top-1 (%), duration and creation time."""
    progress = run_progress(info, records)
    created = _number(info.status.get("created_at"))
    return {
        "run": info.run_id,
        "state": info.state,
        "student": info.config.get("student", "?"),
        "teacher": teacher_name(info.config.get("teacher")),
        "objective": objective_name(info.config),
        "epochs": f"{progress.epochs_done}/{progress.epochs}",
        "best top-1 (%)": progress.best_top1,
        "last top-1 (%)": progress.last_top1,
        "duration": format_duration(run_duration(info, now)),
        "created": time.strftime("%Y-%m-%d %H:%M", time.localtime(created)) if created else "–",
    }


def final_metrics(info: RunInfo, records: Sequence[Record]) -> dict[str, Any]:
    """The figures a run ended with (or has so far): top-1/top-5 (%), test loss, train top-1,
    epochs, training time (sum of epoch times, s) and mean training speed (images/s)."""
    progress = run_progress(info, records)
    epochs = epoch_records(records)
    last = epochs[-1] if epochs else {}
    seconds = [s for s in (_number(r.get("seconds")) for r in epochs) if s is not None]
    speeds = [s for s in (_number(r.get("images_per_second")) for r in epochs) if s is not None]
    return {
        "best top-1 (%)": progress.best_top1,
        "last top-1 (%)": progress.last_top1,
        "last top-5 (%)": _number(last.get("test_top5")),
        "test loss": _number(last.get("test_loss")),
        "train top-1 (%)": _number(last.get("train_top1")),
        "epochs": progress.epochs_done,
        "training time (s)": sum(seconds) if seconds else None,
        "images/s": sum(speeds) / len(speeds) if speeds else None,
    }


def comparison_rows(
    runs: Sequence[RunInfo], records: Mapping[str, Sequence[Record]]
) -> list[dict[str, Any]]:
    """One row per run for a comparison table: run id, student, objective and
    :func:`final_metrics`, sorted by best top-1, best first (runs without one last)."""
    rows = [
        {
            "run": info.run_id,
            "student": info.config.get("student", "?"),
            "objective": objective_name(info.config),
            **final_metrics(info, records.get(info.run_id, [])),
        }
        for info in runs
    ]
    best = "best top-1 (%)"
    return sorted(rows, key=lambda row: (row[best] is None, -(row[best] or 0.0)))


def queue_position(runs: Sequence[RunInfo], run_id: str) -> int | None:
    """1-based place of ``run_id`` among the queued runs (oldest queued first, as the worker
    takes them), or ``None`` when it is not queued."""
    queued = sorted(
        (r for r in runs if r.state == "queued"),
        key=lambda r: r.status.get("resumed_at") or r.status.get("created_at") or 0.0,
    )
    ids = [r.run_id for r in queued]
    return ids.index(run_id) + 1 if run_id in ids else None


def _flatten(record: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in record.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def records_csv(records: Sequence[Record]) -> str:
    """CSV text of ``records`` (metric records or table rows): nested mappings become dotted
    columns (``terms.amd``), columns in order of first appearance, missing values empty
    (``""`` when there are no records).

    >>> records_csv([{"step": 1, "terms": {"ce": 2.0}}, {"epoch": 1}])
    'step,terms.ce,epoch\\r\\n1,2.0,\\r\\n,,1\\r\\n'
    """
    if not records:
        return ""
    rows = [_flatten(r) for r in records]
    columns = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, restval="")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def log_tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a text file (``""`` when it does not exist yet)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
