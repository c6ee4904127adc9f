"""What the Distill page offers, as plain data: its form turned into a
:class:`~kd_core.training.config.TrainConfig` (with the sentence a user reads when a value is
wrong) and an estimate of how long the run will take.

Example::

    config = build_config(DistillForm(teacher="teacher.pt", weights={"ce": 1, "amd": 1000}))
    estimate_cpu_seconds("resnet8", epochs=10, train_images=10_000, teacher="resnet20")
    run = RunManager("runs").start(config)

Following the run once it is launched is :mod:`kd_core.views.runs`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kd_core.analysis.errors import AnalysisError
from kd_core.data.shapes import SPLIT_SIZES as SHAPES_SPLIT_SIZES
from kd_core.losses.amd import DEFAULT_MARGIN, DEFAULT_SCALE
from kd_core.losses.registry import build_loss, loss_class
from kd_core.training.config import TrainConfig, preset
from kd_core.training.device import resolve_device
from kd_core.training.methods import METHOD_SETS, METHODS, method_set
from kd_core.training.runs import check_config_for_launch

DEFAULT_PRESET = "shapes-short"
CLASSROOM_PRESET = "shapes-classroom"
"""The preset compare mode starts with: a classroom group ends in about 4 minutes on 2 cores."""
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
    temperature, dataset and training-image limit (objective: cross-entropy alone).

    >>> preset_form("shapes-short").epochs
    3
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
        limit_train=config.limit_train,
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


def group_configs(
    form: DistillForm, methods: Sequence[str], preset_name: str = DEFAULT_PRESET
) -> list[TrainConfig]:
    """One configuration per method of ``methods`` (names of
    :data:`~kd_core.training.methods.METHODS`), trained side by side as one group: the form's
    networks, data and schedule, each method's objective and parameters, the teacher for the
    methods that use one; named ``<run name>-<method>`` (``compare-<method>`` without a name).

    Raises:
        AnalysisError: no method, an unknown or repeated one, methods that need a teacher when
            there is none, or anything :func:`build_config` refuses.
    """
    if not methods:
        raise AnalysisError(
            f"Choose at least one method to compare (e.g. the classroom set: "
            f"{', '.join(METHOD_SETS['classroom'])})."
        )
    try:
        names = method_set(",".join(methods))
    except ValueError as error:
        raise AnalysisError(str(error)) from None
    needing = [METHODS[name].label for name in names if METHODS[name].uses_teacher]
    if form.teacher is None and needing:
        raise AnalysisError(
            f"{', '.join(needing)} distil from a teacher, and no teacher is chosen: choose a "
            "teacher, or compare vanilla runs only."
        )
    base = build_config(dataclasses.replace(form, weights={"ce": 1.0}), preset_name)
    prefix = form.name.strip() or "compare"
    configs = []
    for name in names:
        method = METHODS[name]
        teacher = form.teacher if method.uses_teacher else None
        overrides = {**method.overrides(), "name": f"{prefix}-{name}", "teacher": teacher}
        configs.append(base.with_overrides(overrides))
    return configs


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


DATA_PATH_LABELS = {"device": "data on the device", "loader": "data through the loader"}
"""How the Distill page names a run's data path (``status["data_path"]``)."""


def run_environment(status: Mapping[str, Any]) -> str | None:
    """Where a run trains, as the page shows it: ``"cuda (NVIDIA H100) · bf16 · data on the
    device"``; ``None`` before the run's process wrote it."""
    if "device" not in status:
        return None
    parts = [status["device"], status.get("precision")]
    parts.append(DATA_PATH_LABELS.get(status.get("data_path", "loader")))
    return " · ".join(str(part) for part in parts if part)
