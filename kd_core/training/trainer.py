"""The training loop: one function, :func:`train`, from a :class:`TrainConfig` to a run folder.

Per step: the distiller returns logits and named losses, the loop sums them, steps SGD and
sets the scheduled rate. Per epoch: evaluation (top-1, top-5, loss), ``best`` when top-1
improves, a metrics line, then the ``last`` checkpoint. Everything random is seeded from
``(seed, epoch)``, so resuming from ``last`` at an epoch boundary repeats the same run.
Under ``torchrun`` (``WORLD_SIZE > 1``) the student is wrapped in DistributedDataParallel, the
data are sharded, metrics are summed across processes and only rank 0 writes.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler, Subset

import kd_core
from kd_core.checkpoints import load_checkpoint, load_training_state, save_checkpoint
from kd_core.data import create_dataset, dataset_info
from kd_core.losses import Objective
from kd_core.models import create_model
from kd_core.models.features import extract_features
from kd_core.training.config import TrainConfig
from kd_core.training.device import Precision, resolve_device, resolve_precision
from kd_core.training.distiller import Distiller
from kd_core.training.optim import build_optimizer, lr_factor, set_lr
from kd_core.training.run_files import RunFiles

ProgressCallback = Callable[[dict[str, Any]], None]


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


@dataclass
class _Distributed:
    rank: int = 0
    world_size: int = 1
    owns_group: bool = False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _distributed_from_env(device: torch.device) -> _Distributed:
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return _Distributed()
    owns_group = not dist.is_initialized()
    if owns_group:
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return _Distributed(dist.get_rank(), dist.get_world_size(), owns_group)


def _seed_everything(seed: int, epoch: int) -> torch.Generator:
    """Seed torch's global RNG (augmentation, dropout) for this epoch; return the generator
    that orders the epoch's batches."""
    torch.manual_seed(seed * 100_003 + epoch)
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def build_distiller(config: TrainConfig, num_classes: int) -> Distiller:
    """Student, teacher (from its checkpoint) and objective, checked against each other with one
    tiny forward pass before any training (stage sizes, layer counts, channels)."""
    teacher = None
    if config.teacher is not None:
        loaded = load_checkpoint(config.teacher)
        if loaded.num_classes != num_classes:
            raise ValueError(
                f"The teacher scores {loaded.num_classes} classes but {config.dataset} has "
                f"{num_classes}; use a teacher trained on this dataset."
            )
        teacher = loaded.model
    student = create_model(config.student, num_classes=num_classes)
    params = {name: dict(values) for name, values in config.loss_params.items()}
    image_size = dataset_info(config.dataset).image_size
    fitnet = params.get("fitnet", {})
    wants_fitnet = config.objective.get("fitnet", 0) > 0 and teacher is not None
    if wants_fitnet and not {"student_channels", "teacher_channels"} <= set(fitnet):
        params["fitnet"] = {**fitnet, **_fitnet_channels(student, teacher, fitnet, image_size)}
    used = {name: value for name, value in params.items() if name in config.objective}
    distiller = Distiller(student, teacher, Objective(config.objective, params=used))
    _dry_run(distiller, image_size)
    return distiller


def _stage_channels(model: nn.Module, image_size: int) -> list[int]:
    was_training = model.training
    try:
        with torch.no_grad():
            outputs = extract_features(model.eval(), torch.zeros(2, 3, image_size, image_size))
    finally:
        model.train(was_training)
    return [stage.shape[1] for stage in outputs.stage_list]


def _fitnet_channels(
    student: nn.Module, teacher: nn.Module, fitnet: dict[str, Any], image_size: int
) -> dict[str, list[int]]:
    """FitNet regressor sizes read from the stage outputs (for the chosen ``layers``)."""
    student_channels = _stage_channels(student, image_size)
    teacher_channels = _stage_channels(teacher, image_size)
    layers = fitnet.get("layers")
    pick = range(len(student_channels)) if layers is None else layers
    return {
        "student_channels": [student_channels[i] for i in pick],
        "teacher_channels": [teacher_channels[i] for i in pick],
    }


def _dry_run(distiller: Distiller, image_size: int) -> None:
    images = torch.zeros(2, 3, image_size, image_size)
    labels = torch.zeros(2, dtype=torch.long)
    was_training = distiller.training
    distiller.eval()
    try:
        with torch.no_grad():
            distiller.forward_train(images, labels)
    except ValueError as error:
        raise ValueError(
            f"The student, teacher and objective do not fit together: {error}"
        ) from None
    finally:
        distiller.train(was_training)


def _loader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool,
    generator: torch.Generator | None,
    distributed: _Distributed,
) -> DataLoader:
    """Training batches in the (seed, epoch) order, sharded under DDP; evaluation batches in
    order, each process taking every ``world_size``-th image (no padding: exact counts)."""
    sampler = None
    if distributed.enabled and shuffle:
        sampler = DistributedSampler(
            dataset, num_replicas=distributed.world_size, rank=distributed.rank,
            shuffle=True, seed=generator.initial_seed(),
        )  # fmt: skip
    elif distributed.enabled:
        dataset = Subset(dataset, range(distributed.rank, len(dataset), distributed.world_size))
    elif shuffle:
        sampler = RandomSampler(dataset, generator=generator)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=False)


def evaluate(
    model: nn.Module,
    loader: DataLoader,
    device: torch.device,
    precision: Precision,
    distributed: _Distributed | None = None,
) -> dict[str, float]:
    """Top-1 and top-5 accuracy (percent) and mean cross-entropy of ``model`` over ``loader``."""
    was_training = model.training
    model.eval()
    totals = torch.zeros(4, dtype=torch.float64, device=device)  # loss, top1, top5, count
    with (
        torch.no_grad(),
        torch.autocast(
            device.type, dtype=precision.dtype or torch.float32, enabled=precision.dtype is not None
        ),
    ):
        for images, labels in loader:
            images, labels = (
                images.to(device, non_blocking=True),
                labels.to(device, non_blocking=True),
            )
            logits = model(images).float()
            k = min(5, logits.shape[1])
            top = logits.topk(k, dim=1).indices
            hits = top.eq(labels[:, None])
            totals += torch.stack(
                [
                    F.cross_entropy(logits, labels, reduction="sum").double(),
                    hits[:, 0].sum().double(),
                    hits.any(dim=1).sum().double(),
                    torch.tensor(float(labels.numel()), dtype=torch.float64, device=device),
                ]
            )
    if distributed is not None and distributed.enabled:
        dist.all_reduce(totals)
    model.train(was_training)
    loss, top1, top5, count = totals.tolist()
    count = max(count, 1.0)
    return {
        "loss": loss / count, "top1": 100.0 * top1 / count, "top5": 100.0 * top5 / count,
        "images": int(count),
    }  # fmt: skip


def _environment(device: torch.device, precision: Precision) -> dict[str, Any]:
    return {
        "device": str(device)
        if device.type != "cuda"
        else f"cuda ({torch.cuda.get_device_name(device)})",
        "precision": precision.label,
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
    files = RunFiles(run_dir) if run_dir is not None else None
    main = int(os.environ.get("RANK", "0")) == 0
    if files is not None and main:
        files.dir.mkdir(parents=True, exist_ok=True)
        files.remove_partial_checkpoints()  # left by a killed process
        if not resume:  # a fresh run: nothing of an earlier run in this folder is kept
            for stale in (files.metrics, files.last, files.best, files.cancel_flag):
                stale.unlink(missing_ok=True)
            config.save(files.config)
    distributed = None
    try:
        config.check()
        device = resolve_device(config.device)
        distributed = _distributed_from_env(device)
        result = _fit(config, files, distributed, device, resume, on_progress, should_stop)
    except RunCancelled as cancelled:
        if files is not None and main:
            files.update_status(state="cancelled", finished_at=time.time(), message=str(cancelled))
        raise
    except Exception as error:
        if files is not None and main:
            files.update_status(state="failed", finished_at=time.time(), error=error_message(error))
        raise
    finally:
        if distributed is not None and distributed.owns_group:
            dist.destroy_process_group()
    if files is not None and main:
        files.update_status(
            state="finished", finished_at=time.time(), best_top1=result.best_top1,
            last_top1=result.last_top1, epochs_done=result.epochs_done,
        )  # fmt: skip
    return result


def error_message(error: BaseException) -> str:
    """A one-line message for a user: the sentence of our own errors, the type otherwise."""
    if isinstance(error, (ValueError, CheckpointWriteError)):
        return str(error)
    return f"{type(error).__name__}: {error}"


def _fit(
    config: TrainConfig,
    files: RunFiles | None,
    distributed: _Distributed,
    device: torch.device,
    resume: bool,
    on_progress: ProgressCallback | None,
    should_stop: Callable[[], bool] | None,
) -> TrainResult:
    precision = resolve_precision(config.precision, device)
    writes = files is not None and distributed.is_main

    train_set = create_dataset(
        config.dataset,
        split="train",
        root=config.data_root,
        augment=True,
        seed=config.data_seed,
        limit=config.limit_train,
    )
    test_set = create_dataset(
        config.dataset,
        split="test",
        root=config.data_root,
        augment=False,
        seed=config.data_seed,
        limit=config.limit_test,
    )
    num_classes = dataset_info(config.dataset).num_classes or len(train_set.classes)
    torch.manual_seed(config.seed)  # the student's (and regressors') initial weights
    distiller = build_distiller(config, num_classes)
    distiller.to(device)
    if device.type == "cuda" and config.channels_last:
        distiller.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(distiller.parameters(), config.optimizer)
    scaler = torch.amp.GradScaler(device.type, enabled=precision.needs_scaler)

    start_epoch, best_top1, step = 0, -1.0, 0
    if resume and files is not None and files.last.exists():
        state = load_training_state(files.last)
        distiller.student.load_state_dict(state["student"])
        distiller.objective.load_state_dict(state["objective"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        start_epoch, best_top1, step = state["epoch"], state["best_top1"], state["step"]

    trainable: nn.Module = distiller
    if distributed.enabled:
        trainable = nn.parallel.DistributedDataParallel(_TrainStep(distiller))

    if writes:
        files.update_status(
            state="running",
            started_at=time.time(),
            pid=os.getpid(),
            error=None,
            **_environment(device, precision),
        )

    def emit(record: dict[str, Any]) -> None:
        if writes:
            files.append_metrics(record)
        if on_progress is not None and distributed.is_main:
            on_progress(record)

    history, started, last_top1 = [], time.time(), float("nan")
    test_loader = _loader(test_set, config.batch_size * 2, False, None, distributed)
    for epoch in range(start_epoch, config.epochs):
        generator = _seed_everything(config.seed, epoch)
        loader = _loader(train_set, config.batch_size, True, generator, distributed)
        steps_per_epoch = max(len(loader), 1)
        distiller.train()
        sums = torch.zeros(3, dtype=torch.float64, device=device)  # loss, correct, count
        term_sums: dict[str, Tensor] = {}
        epoch_started, seen = time.time(), 0
        for batch_index, (images, labels) in enumerate(loader):
            lr = config.optimizer.lr * lr_factor(
                config.optimizer,
                epoch + batch_index / steps_per_epoch,
                config.epochs,
                steps_per_epoch,
            )
            set_lr(optimizer, lr)
            images = images.to(device, non_blocking=True)
            labels = labels.to(device, non_blocking=True)
            if device.type == "cuda" and config.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            with torch.autocast(
                device.type,
                dtype=precision.dtype or torch.float32,
                enabled=precision.dtype is not None,
            ):
                logits, losses = (
                    trainable(images, labels)
                    if distributed.enabled
                    else distiller.forward_train(images, labels)
                )
                loss = sum(losses.values())
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            step += 1
            seen += labels.numel()
            detached = loss.detach()
            sums += torch.stack(
                [
                    detached.double() * labels.numel(),
                    logits.detach().argmax(1).eq(labels).sum().double(),
                    torch.tensor(float(labels.numel()), dtype=torch.float64, device=device),
                ]
            )
            for name, value in losses.items():
                term_sums[name] = (
                    term_sums.get(name, 0.0) + value.detach().double() * labels.numel()
                )
            if step % config.log_every == 0:
                emit(
                    {
                        "kind": "step",
                        "epoch": epoch + 1,
                        "step": step,
                        "lr": lr,
                        "loss": detached.item(),
                        "terms": {k: v.item() for k, v in losses.items()},
                        "progress": (epoch + (batch_index + 1) / steps_per_epoch) / config.epochs,
                    }
                )
            if should_stop is not None and should_stop():
                raise RunCancelled(f"cancelled during epoch {epoch + 1}, step {step}")
        if distributed.enabled:
            dist.all_reduce(sums)
        loss_sum, correct, count = sums.tolist()
        count = max(count, 1.0)
        train_seconds = time.time() - epoch_started
        evaluation = evaluate(distiller.student, test_loader, device, precision, distributed)
        last_top1 = evaluation["top1"]
        improved = last_top1 > best_top1
        best_top1 = max(best_top1, last_top1)
        seconds = time.time() - epoch_started  # training and evaluation
        record = {
            "kind": "epoch",
            "epoch": epoch + 1,
            "step": step,
            "lr": lr,
            "train_images": int(count),
            "train_loss": loss_sum / count,
            "train_top1": 100.0 * correct / count,
            "train_terms": {k: float(v) / max(seen, 1) for k, v in term_sums.items()},
            "test_images": evaluation["images"],
            "test_loss": evaluation["loss"],
            "test_top1": last_top1,
            "test_top5": evaluation["top5"],
            "best_top1": best_top1,
            "seconds": seconds,
            "images_per_second": count / max(train_seconds, 1e-9),  # training steps only
            "progress": (epoch + 1) / config.epochs,
        }
        history.append(record)
        # `best`, the metrics line, then `last`: a resume repeats every epoch after `last`
        # (identically: it is seeded), rewriting the other two, so a kill between these writes
        # loses no metrics line and never leaves `best` older than the best epoch.
        metadata = {
            "epoch": epoch + 1,
            "top1": last_top1,
            "best_top1": best_top1,
            "dataset": config.dataset,
            "objective": config.objective,
            "seed": config.seed,
        }
        if writes and improved:
            _save(files.best, distiller.student, config, num_classes, metadata)
        emit(record)
        if writes:
            state = {
                "student": distiller.student.state_dict(),
                "objective": distiller.objective.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict(),
                "epoch": epoch + 1,
                "best_top1": best_top1,
                "step": step,
            }
            _save(files.last, distiller.student, config, num_classes, metadata, state)
    result = TrainResult(
        epochs_done=len(history) + start_epoch,
        best_top1=best_top1,
        last_top1=last_top1,
        seconds=time.time() - started,
        history=history,
    )
    return result


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


class _TrainStep(nn.Module):
    """What DistributedDataParallel wraps: its forward is the distiller's ``forward_train``."""

    def __init__(self, distiller: Distiller) -> None:
        super().__init__()
        self.distiller = distiller

    def forward(self, images: Tensor, labels: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        return self.distiller.forward_train(images, labels)
