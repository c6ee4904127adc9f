"""The training loop: :func:`train` (one run) and :func:`train_group` (several students in
lockstep), from :class:`TrainConfig` to run folders.

Per step: the teacher's forward pass once, then for each student the distiller returns logits
and named losses, the loop sums them, steps SGD and sets the scheduled rate. Per epoch:
evaluation (top-1, top-5, loss), ``best`` when top-1 improves, a metrics line, then the ``last``
checkpoint; with a teacher, the epoch's line also holds ``attention_cosine`` (see
:mod:`kd_core.training.probe`). Batches come through the ``DataLoader`` or from the splits held
on the device, in the same order (:mod:`kd_core.training.data_path`; the status's
``data_path`` says which). On an image folder, a timm student's batches are prepared with its
own input recipe and the teacher sees the same batches (AMD and AT align the stage sizes;
:func:`~kd_core.data.model_inputs.shared_inputs` refuses students of different recipes in one
group and a teacher that accepts no other size). Everything random is seeded from
``(seed, epoch)``, so resuming from ``last`` at an epoch boundary repeats the same run. Under
``torchrun`` (``WORLD_SIZE > 1``) the student is wrapped in DistributedDataParallel, the data are
sharded, metrics are summed across processes and only rank 0 writes.

A group: every student sees the same batches in the same order (same data, batch size, seed
and epochs), starts from the same initial weights when its architecture and seed are the same,
and has its own objective, optimizer, schedule and run folder; the teacher's outputs are
computed once per batch and shared. So a student of a group ends exactly as it would alone
(for networks without random layers such as dropout, whose draws interleave), and the
difference between two students is their objectives'. Cancelling or a failure of one student
stops that student only.
"""

from __future__ import annotations

import math
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

import kd_core
from kd_core.checkpoints import load_training_state, save_checkpoint
from kd_core.data import create_dataset, dataset_info
from kd_core.data.model_inputs import shared_inputs
from kd_core.models import create_model
from kd_core.outputs import ModelOutputs
from kd_core.training.compiled import CompiledExtract
from kd_core.training.config import TrainConfig
from kd_core.training.data_path import Batches, DataPath, resolve_data_on_device
from kd_core.training.device import Precision, resolve_device, resolve_precision, tune_for
from kd_core.training.distiller import Distiller, build_distiller, load_teacher
from kd_core.training.distributed import Distributed, TrainStep, distributed_from_env
from kd_core.training.evaluation import evaluate
from kd_core.training.optim import build_optimizer, lr_factor, set_lr, sgd_step
from kd_core.training.probe import AttentionProbe
from kd_core.training.run_files import RunFiles
from kd_core.training.tensorboard import TensorBoardLog, open_log

ProgressCallback = Callable[[dict[str, Any]], None]
GROUP_FIELDS = (
    "dataset", "data_root", "data_seed", "limit_train", "limit_test", "epochs", "batch_size",
    "seed", "device", "precision", "channels_last", "data_on_device", "compile",
)  # fmt: skip
"""What the students of a group share: the same batches in the same order need the same data,
batch size, seed and epochs (and one device, one data path, one teacher compiled or not).
Teachers must be the same file or none."""


class RunCancelled(Exception):
    """Raised inside :func:`train` when a cancel was requested; the run stops after the step."""


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (full disk, lost permission); the message says which
    file and what to do. The previous file of that name is intact: saves are atomic."""


@dataclass
class TrainResult:
    """What a finished (or cancelled) run achieved."""

    epochs_done: int
    best_top1: float
    last_top1: float
    seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)


def check_group(configs: Sequence[TrainConfig]) -> str | None:
    """Check that ``configs`` can train in lockstep; returns the shared teacher path (or
    ``None``). A ``ValueError`` names the field and the students that differ."""
    if not configs:
        raise ValueError("A group needs at least one student; choose one or more methods.")
    for config in configs:
        config.check()
    first = configs[0]
    for number, config in enumerate(configs[1:], start=2):
        for name in GROUP_FIELDS:
            if getattr(config, name) != getattr(first, name):
                raise ValueError(
                    f"The students of a group must share {name} (they train on the same "
                    f"batches): student 1 has {getattr(first, name)!r}, student {number} "
                    f"{getattr(config, name)!r}. Make them equal or train them separately."
                )
    teachers = sorted({c.teacher for c in configs if c.teacher is not None})
    if len(teachers) > 1:
        raise ValueError(
            f"The students of a group learn from one teacher, got {len(teachers)}: "
            f"{', '.join(teachers)}. Train the students of each teacher as their own group."
        )
    return teachers[0] if teachers else None


def _environment(device: torch.device, precision: Precision, data_path: str) -> dict[str, Any]:
    return {
        "device": str(device)
        if device.type != "cuda"
        else f"cuda ({torch.cuda.get_device_name(device)})",
        "precision": precision.label,
        "data_path": data_path,
        "versions": {
            "kd_core": kd_core.__version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
    }


def train(
    config: TrainConfig,
    run_dir: str | os.PathLike | None = None,
    *,
    resume: bool = False,
    on_progress: ProgressCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> TrainResult:
    """Train ``config``'s student, writing the run folder ``run_dir`` when given.

    ``on_progress`` receives every metrics record (step and epoch lines); ``should_stop`` is
    polled after every step: when it returns true the run stops there, keeps what it wrote and
    raises :class:`RunCancelled`. With ``resume`` the run continues from ``run_dir/last.pt``.
    Errors in the configuration raise ``ValueError`` before any training. ``status.json``
    ends as ``finished``, ``cancelled`` or ``failed`` (with the error message).
    """
    [outcome] = train_group(
        [config], [run_dir], resume=resume,
        on_progress=None if on_progress is None else lambda _, record: on_progress(record),
        should_stop=None if should_stop is None else lambda _: should_stop(),
    )  # fmt: skip
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


def train_group(
    configs: Sequence[TrainConfig],
    run_dirs: Sequence[str | os.PathLike | None],
    *,
    resume: bool = False,
    group: str | None = None,
    on_progress: Callable[[int, dict[str, Any]], None] | None = None,
    should_stop: Callable[[int], bool] | None = None,
) -> list[TrainResult | Exception]:
    """Train the students of ``configs`` in lockstep (see the module docstring), student ``i``
    into ``run_dirs[i]``; each status records ``group`` (its group's id) when given. With
    ``resume``, a student whose folder has a ``last.pt`` continues from it, the others start.

    ``on_progress(i, record)`` receives student ``i``'s metrics records; ``should_stop(i)`` is
    polled after each of its steps. Returns, per student, its :class:`TrainResult`, or the
    exception that stopped it (:class:`RunCancelled` or an error, also in its status) while the
    others went on. A problem shared by all (configuration, data, teacher) raises.
    """
    if len(run_dirs) != len(configs):
        raise ValueError(f"{len(configs)} configurations but {len(run_dirs)} run folders.")
    files = [RunFiles(d) if d is not None else None for d in run_dirs]
    folders = [f.dir.resolve() for f in files if f is not None]
    if len(set(folders)) != len(folders):
        raise ValueError("Two students of the group share a run folder; give each its own.")
    main = int(os.environ.get("RANK", "0")) == 0
    resumes = [resume and f is not None and f.last.exists() for f in files]
    for config, run_files, resumed in zip(configs, files, resumes, strict=True):
        if run_files is not None and main:
            _prepare_folder(config, run_files, resumed)
    distributed = None
    try:
        teacher = check_group(configs)
        device = resolve_device(configs[0].device)
        distributed = distributed_from_env(device)
        if distributed.enabled and len(configs) > 1:
            raise ValueError(
                "A group of students trains in one process; under torchrun, train them one "
                "at a time."
            )
        return _fit(configs, files, teacher, distributed, device, resumes, group,
                    on_progress, should_stop)  # fmt: skip
    except Exception as error:  # shared by all: every student still training failed
        for run_files in files:
            if run_files is not None and main and run_files.read_status().get("state") not in (
                "cancelled", "finished",
            ):  # fmt: skip
                run_files.update_status(
                    state="failed", finished_at=time.time(), error=error_message(error)
                )
        raise
    finally:
        if distributed is not None and distributed.owns_group:
            dist.destroy_process_group()


def _prepare_folder(config: TrainConfig, files: RunFiles, resume: bool) -> None:
    files.dir.mkdir(parents=True, exist_ok=True)
    files.remove_partial_checkpoints()  # left by a killed process
    if not resume:  # a fresh run: nothing of an earlier run in this folder is kept
        for stale in (files.metrics, files.last, files.best, files.cancel_flag):
            stale.unlink(missing_ok=True)
        config.save(files.config)


def error_message(error: BaseException) -> str:
    """A one-line message for a user: the sentence of our own errors, the type otherwise."""
    if isinstance(error, (ValueError, CheckpointWriteError)):
        return str(error)
    return f"{type(error).__name__}: {error}"


@dataclass
class _Student:
    """One student of the loop: its distiller, optimiser and run folder, where it stands, and
    (once it stopped) its outcome."""

    index: int
    config: TrainConfig
    files: RunFiles | None
    distiller: Distiller
    trainable: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    emit: Callable[[dict[str, Any]], None]
    start_epoch: int = 0
    best_top1: float = -1.0
    step: int = 0
    last_top1: float = math.nan
    history: list[dict[str, Any]] = field(default_factory=list)
    outcome: TrainResult | Exception | None = None
    board: TensorBoardLog | None = None
    sums: Tensor | None = None
    term_sums: dict[str, Tensor] = field(default_factory=dict)
    seen: int = 0
    train_seconds: float = 0.0  # this epoch's steps, its share of the shared work included

    def begin_epoch(self, device: torch.device) -> None:
        self.distiller.train()
        self.sums = torch.zeros(3, dtype=torch.float64, device=device)  # loss, correct, count
        self.term_sums, self.seen, self.train_seconds = {}, 0, 0.0

    def train_step(
        self, images: Tensor, labels: Tensor, teacher: ModelOutputs | None, epoch: float,
        epochs: int, steps_per_epoch: int, precision: Precision, distributed: bool,
    ) -> None:  # fmt: skip
        """One SGD step on the batch; ``epoch`` is the fractional progress in epochs."""
        started = time.perf_counter()
        lr = self.config.optimizer.lr * lr_factor(
            self.config.optimizer, epoch, epochs, steps_per_epoch
        )
        set_lr(self.optimizer, lr)
        logits, losses, loss = sgd_step(
            (lambda: self.trainable(images, labels))
            if distributed
            else (lambda: self.distiller.forward_train(images, labels, teacher)),
            self.optimizer, self.scaler, precision, images.device,
        )  # fmt: skip
        self.step += 1
        self.seen += labels.numel()
        detached = loss.detach()
        self.sums += torch.stack(
            [
                detached.double() * labels.numel(),
                logits.detach().argmax(1).eq(labels).sum().double(),
                # torch.full, not torch.tensor: no copy from the host, so no wait for the device.
                torch.full((), labels.numel(), dtype=torch.float64, device=labels.device),
            ]
        )
        for name, value in losses.items():
            self.term_sums[name] = (
                self.term_sums.get(name, 0.0) + value.detach().double() * labels.numel()
            )
        self.train_seconds += time.perf_counter() - started
        if self.step % self.config.log_every == 0:
            self.emit(
                {
                    "kind": "step", "epoch": math.floor(epoch) + 1, "step": self.step, "lr": lr,
                    "loss": detached.item(), "terms": {k: v.item() for k, v in losses.items()},
                    "progress": (epoch + 1 / steps_per_epoch) / epochs,
                }
            )  # fmt: skip

    def end_epoch(
        self, epoch: int, test_loader: Batches, device: torch.device, precision: Precision,
        distributed: Distributed, num_classes: int, writes: bool, probe: AttentionProbe | None,
    ) -> None:  # fmt: skip
        """Evaluate (and ``probe`` the attention), save ``best`` when top-1 improved, write the
        metrics line, save ``last``."""
        config = self.config
        if distributed.enabled:
            dist.all_reduce(self.sums)
        loss_sum, correct, count = self.sums.tolist()
        count = max(count, 1.0)
        evaluation_started = time.time()
        evaluation = evaluate(self.distiller.student, test_loader, device, precision, distributed)
        # This student's share of the epoch: its steps, its part of the shared loading and
        # teacher pass, its evaluation (for a run alone: the epoch's time).
        seconds = self.train_seconds + time.time() - evaluation_started
        self.last_top1 = evaluation["top1"]
        improved = self.last_top1 > self.best_top1
        self.best_top1 = max(self.best_top1, self.last_top1)
        record = {
            "kind": "epoch", "epoch": epoch + 1, "step": self.step,
            "lr": self.optimizer.param_groups[0]["lr"], "train_images": int(count),
            "train_loss": loss_sum / count, "train_top1": 100.0 * correct / count,
            "train_terms": {k: float(v) / max(self.seen, 1) for k, v in self.term_sums.items()},
            "test_images": evaluation["images"], "test_loss": evaluation["loss"],
            "test_top1": self.last_top1, "test_top5": evaluation["top5"],
            "best_top1": self.best_top1, "seconds": seconds,
            "images_per_second": count / max(self.train_seconds, 1e-9),  # training steps only
            "progress": (epoch + 1) / config.epochs,
        }  # fmt: skip
        if probe is not None:
            record["attention_cosine"] = probe(self.distiller.student)
        self.history.append(record)
        # `best`, the metrics line, then `last`: a resume repeats every epoch after `last`
        # (identically: it is seeded), rewriting the other two, so a kill between these writes
        # loses no metrics line and never leaves `best` older than the best epoch.
        metadata = {
            "epoch": epoch + 1, "top1": self.last_top1, "best_top1": self.best_top1,
            "dataset": config.dataset, "objective": config.objective, "seed": config.seed,
        }  # fmt: skip
        student = self.distiller.student
        if writes and improved:
            _save(self.files.best, student, config, num_classes, metadata)
        self.emit(record)
        if writes:
            state = {
                "student": student.state_dict(), "objective": self.distiller.objective.state_dict(),
                "optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict(),
                "epoch": epoch + 1, "best_top1": self.best_top1, "step": self.step,
            }  # fmt: skip
            _save(self.files.last, student, config, num_classes, metadata, state)

    def stop(self, outcome: TrainResult | Exception, writes: bool) -> None:
        """Record how this student ended, in its status and its TensorBoard log too."""
        self.outcome = outcome
        if self.board is not None:
            finished = isinstance(outcome, TrainResult)
            self.board.close(*((outcome.best_top1, outcome.last_top1) if finished else ()))
        if not writes:
            return
        if isinstance(outcome, RunCancelled):
            self.files.update_status(
                state="cancelled", finished_at=time.time(), message=str(outcome)
            )
        elif isinstance(outcome, Exception):
            self.files.update_status(
                state="failed", finished_at=time.time(), error=error_message(outcome)
            )
        else:
            self.files.update_status(
                state="finished", finished_at=time.time(), best_top1=outcome.best_top1,
                last_top1=outcome.last_top1, epochs_done=outcome.epochs_done,
            )  # fmt: skip


def _fit(
    configs: Sequence[TrainConfig],
    files: Sequence[RunFiles | None],
    teacher_path: str | None,
    distributed: Distributed,
    device: torch.device,
    resumes: Sequence[bool],
    group: str | None,
    on_progress: Callable[[int, dict[str, Any]], None] | None,
    should_stop: Callable[[int], bool] | None,
) -> list[TrainResult | Exception]:
    first = configs[0]
    precision = resolve_precision(first.precision, device)
    tune_for(device)
    data = {"root": first.data_root, "seed": first.data_seed}
    train_set = create_dataset(
        first.dataset, split="train", augment=True, limit=first.limit_train, **data
    )
    test_set = create_dataset(
        first.dataset, split="test", augment=False, limit=first.limit_test, **data
    )
    num_classes = dataset_info(first.dataset).num_classes or len(train_set.classes)
    teacher = load_teacher(first.with_overrides({"teacher": teacher_path}), num_classes)
    if dataset_info(first.dataset).per_model_inputs:  # the students' own input recipe (timm)
        built = [create_model(config.student, num_classes=num_classes) for config in configs]
        train_set = shared_inputs(train_set, built, teacher, augment=True)
        test_set = shared_inputs(test_set, built, teacher)
    on_device = resolve_data_on_device(first.data_on_device, (train_set, test_set), device)
    channels_last = device.type == "cuda" and first.channels_last
    data_path = DataPath(train_set, test_set, on_device, device, channels_last, distributed)
    students = [
        _student(index, config, run_files, teacher, num_classes, distributed, device, precision,
                 resumed, group, on_progress, data_path.label)
        for index, (config, run_files, resumed) in enumerate(
            zip(configs, files, resumes, strict=True)
        )
    ]  # fmt: skip
    writes = distributed.is_main
    if first.compile:
        _compile(students, teacher, writes)
    probe = AttentionProbe(teacher.to(device), test_set, device) if teacher is not None else None
    started = time.time()
    test_loader = data_path.test_batches(first.batch_size * 2)
    for epoch in range(min(s.start_epoch for s in students), first.epochs):
        active = [s for s in students if s.outcome is None and s.start_epoch <= epoch]
        if not active:
            break
        loader = data_path.train_batches(first.seed, epoch, first.batch_size)
        steps_per_epoch = max(len(loader), 1)
        for student in active:
            student.begin_epoch(device)
        fetched = time.perf_counter()
        for batch_index, (images, labels) in enumerate(loader):
            images = images.to(device, non_blocking=True)
            labels = labels.to(device, non_blocking=True)
            if channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            training = [s for s in active if s.outcome is None]
            loaded = time.perf_counter()
            shared = _teacher_outputs(training, images, precision, distributed)
            _share_time(training, loaded - fetched, time.perf_counter() - loaded)
            for student in training:
                try:
                    student.train_step(
                        images, labels, shared, epoch + batch_index / steps_per_epoch,
                        first.epochs, steps_per_epoch, precision, distributed.enabled,
                    )  # fmt: skip
                    if should_stop is not None and should_stop(student.index):
                        raise RunCancelled(
                            f"cancelled during epoch {epoch + 1}, step {student.step}"
                        )
                except Exception as error:  # this student stops; the others go on
                    student.stop(error, writes and student.files is not None)
            if all(s.outcome is not None for s in active):
                break
            fetched = time.perf_counter()
        for student in (s for s in active if s.outcome is None):
            try:
                student.end_epoch(
                    epoch, test_loader, device, precision, distributed, num_classes,
                    writes and student.files is not None, probe,
                )  # fmt: skip
            except Exception as error:
                student.stop(error, writes and student.files is not None)
    for student in (s for s in students if s.outcome is None):
        result = TrainResult(
            epochs_done=len(student.history) + student.start_epoch,
            best_top1=student.best_top1, last_top1=student.last_top1,
            seconds=time.time() - started, history=student.history,
        )  # fmt: skip
        student.stop(result, writes and student.files is not None)
    return [s.outcome for s in students]


def _student(
    index: int, config: TrainConfig, files: RunFiles | None, teacher: nn.Module | None,
    num_classes: int, distributed: Distributed, device: torch.device, precision: Precision,
    resume: bool, group: str | None,
    on_progress: Callable[[int, dict[str, Any]], None] | None, data_path: str,
) -> _Student:  # fmt: skip
    """Build one student as a run of its own would: seed, then student (and regressors)."""
    torch.manual_seed(config.seed)  # the student's (and regressors') initial weights
    distiller = build_distiller(config, num_classes, teacher if config.teacher else None)
    distiller.to(device)
    if device.type == "cuda" and config.channels_last:
        distiller.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(distiller.parameters(), config.optimizer)
    scaler = torch.amp.GradScaler(device.type, enabled=precision.needs_scaler)
    writes = files is not None and distributed.is_main
    board: TensorBoardLog | None = None  # opened below, once the resumed step is known

    def emit(record: dict[str, Any]) -> None:
        if writes:
            files.append_metrics(record)
            if board is not None:
                board.record(record)
        if on_progress is not None and distributed.is_main:
            on_progress(index, record)

    trainable: nn.Module = distiller
    if distributed.enabled:
        trainable = nn.parallel.DistributedDataParallel(TrainStep(distiller))
    student = _Student(index, config, files, distiller, trainable, optimizer, scaler, emit)
    if resume:
        state = load_training_state(files.last)
        distiller.student.load_state_dict(state["student"])
        distiller.objective.load_state_dict(state["objective"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        student.start_epoch, student.best_top1 = state["epoch"], state["best_top1"]
        student.step = state["step"]
        student.last_top1 = files.read_status().get("last_top1", math.nan)
    if writes:
        board = student.board = open_log(files.dir, config, student.step + 1 if resume else None)
        files.update_status(
            state="running", started_at=time.time(), pid=os.getpid(), error=None,
            **({"group": group} if group else {}), **_environment(device, precision, data_path),
        )  # fmt: skip
    return student


def _compile(students: Sequence[_Student], teacher: nn.Module | None, writes: bool) -> None:
    """Every student's forward pass, and the shared teacher's once, through ``torch.compile``; a
    failure is one sentence on stderr and in the statuses, and the run goes on uncompiled."""

    def note(sentence: str) -> None:
        print(sentence, file=sys.stderr, flush=True)
        for student in students:
            if writes and student.files is not None:
                student.files.update_status(compile_fallback=sentence)

    shared = CompiledExtract(teacher, "teacher", note) if teacher is not None else None
    for student in students:
        distiller = student.distiller
        distiller.use_extractors(
            CompiledExtract(distiller.student, f"student {student.config.student}", note),
            shared if distiller.teacher is not None else None,
        )


def _teacher_outputs(
    students: Sequence[_Student], images: Tensor, precision: Precision, distributed: Distributed
) -> ModelOutputs | None:
    """The shared teacher's outputs on the batch, computed once for every student that needs
    them (under DDP each student's wrapped forward computes its own)."""
    needing = [s for s in students if s.distiller.teacher is not None]
    if not needing or distributed.enabled:
        return None
    with torch.autocast(
        images.device.type,
        dtype=precision.dtype or torch.float32,
        enabled=precision.dtype is not None,
    ):
        return needing[0].distiller.teacher_outputs(images)


def _share_time(students: Sequence[_Student], data: float, teacher: float) -> None:
    """Charge the batch's loading time to every student in equal parts, and the teacher's pass
    to those that use it: alone, a student's images per second are those of its run."""
    needing = [s for s in students if s.distiller.teacher is not None]
    for student in students:
        student.train_seconds += data / len(students)
        if student.distiller.teacher is not None:
            student.train_seconds += teacher / len(needing)


def _save(
    path: Path,
    model: nn.Module,
    config: TrainConfig,
    num_classes: int,
    metadata: dict[str, Any],
    training_state: dict[str, Any] | None = None,
) -> None:
    """:func:`save_checkpoint`, with a failed write (full disk, lost permission) turned into a
    :class:`CheckpointWriteError` that names the file and what to do."""
    try:
        save_checkpoint(
            path, model, config.student, num_classes, metadata=metadata,
            training_state=training_state,
        )  # fmt: skip
    except OSError as error:
        raise CheckpointWriteError(
            f"Saving the checkpoint {path.name} failed ({error.strerror or error}); the previous "
            f"{path.name}, if any, is kept. Free disk space in {path.parent} (or fix its "
            "permissions), then resume the run."
        ) from error
