"""The distiller: a frozen teacher, a student and an objective; ``forward_train`` returns the
student's logits and the dict of weighted losses, which the training loop only sums."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from kd_core.checkpoints import load_checkpoint
from kd_core.data import dataset_info
from kd_core.data.model_inputs import input_recipe
from kd_core.losses import Objective
from kd_core.models import create_model
from kd_core.models.features import extract_features
from kd_core.outputs import ModelOutputs
from kd_core.training.config import TrainConfig

Extract = Callable[[Tensor], ModelOutputs]
"""A model's outputs on a batch: ``extract_features(model, images)`` or a compiled equivalent."""


class Distiller(nn.Module):
    """Student + frozen teacher (always in eval mode, no gradients) + :class:`Objective`.

    ``parameters()`` of the distiller are the trainable ones: the student's and the objective's
    (FitNet regressors); the teacher's are frozen. Example::

        distiller = Distiller(student, teacher, Objective({"ce": 1, "amd": 1000}))
        logits, losses = distiller.forward_train(images, labels)
        sum(losses.values()).backward()
    """

    def __init__(self, student: nn.Module, teacher: nn.Module | None, objective: Objective) -> None:
        super().__init__()
        if objective.needs_teacher and teacher is None:
            raise ValueError("The objective needs a teacher's outputs; give a teacher checkpoint.")
        self.student = student
        self.objective = objective
        # Kept out of the module tree (nn.Module would register it as a submodule): so
        # .train() never switches it to batch statistics, and it is not in parameters() or
        # state_dict().
        self.__dict__["_teacher"] = teacher if objective.needs_teacher else None
        if self._teacher is not None:
            self._teacher.eval().requires_grad_(False)
        self._extract: dict[str, Extract | None] = {}  # "student"/"teacher", by use_extractors

    def use_extractors(self, student: Extract, teacher: Extract | None = None) -> None:
        """Compute the student's (and the teacher's) outputs with these functions from now on,
        e.g. compiled ones (:mod:`kd_core.training.compiled`), instead of
        :func:`extract_features`."""
        self._extract.update(student=student, teacher=teacher)

    @property
    def teacher(self) -> nn.Module | None:
        return self._teacher

    def to(self, *args, **kwargs) -> Distiller:
        """``nn.Module.to`` for the student and the objective, and the teacher too."""
        super().to(*args, **kwargs)
        if self._teacher is not None:
            self._teacher.to(*args, **kwargs)
        return self

    def teacher_outputs(self, images: Tensor) -> ModelOutputs | None:
        """The teacher's outputs on ``images`` (no gradient), or ``None`` without a teacher.

        Computed under ``torch.inference_mode`` and returned as ordinary tensors (copies: the
        losses may save them for their backward pass, which inference tensors refuse)."""
        if self._teacher is None:
            return None
        extract = self._extract.get("teacher") or (lambda x: extract_features(self._teacher, x))
        with torch.inference_mode():
            outputs = extract(images)
        return ModelOutputs(
            logits=outputs.logits.clone(),
            stages={name: stage.clone() for name, stage in outputs.stages.items()},
            pooled=None if outputs.pooled is None else outputs.pooled.clone(),
        )

    def forward_train(
        self, images: Tensor, labels: Tensor, teacher_outputs: ModelOutputs | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Student logits and the weighted loss terms for one batch. ``teacher_outputs``, when
        given, are the teacher's on these images (computed once for a group of students)."""
        if teacher_outputs is None:
            teacher_outputs = self.teacher_outputs(images)
        extract = self._extract.get("student") or (lambda x: extract_features(self.student, x))
        student_outputs = extract(images)
        _, losses = self.objective(student_outputs, teacher_outputs, labels)
        return student_outputs.logits, losses

    def forward(self, images: Tensor) -> Tensor:
        """Evaluation: the student's logits."""
        return self.student(images)


def load_teacher(config: TrainConfig, num_classes: int) -> nn.Module | None:
    """The teacher of ``config`` from its checkpoint (``None`` without one), checked to score
    ``num_classes`` classes."""
    if config.teacher is None:
        return None
    loaded = load_checkpoint(config.teacher)
    if loaded.num_classes != num_classes:
        raise ValueError(
            f"The teacher scores {loaded.num_classes} classes but {config.dataset} has "
            f"{num_classes}; use a teacher trained on this dataset."
        )
    return loaded.model


def build_distiller(
    config: TrainConfig, num_classes: int, teacher: nn.Module | None = None
) -> Distiller:
    """Student, teacher (``teacher`` when given, e.g. shared by a group; else loaded from the
    config's checkpoint) and objective, checked against each other with one tiny forward pass
    before any training (stage sizes, layer counts, channels). The student's initial weights
    come from torch's global generator: seed it first."""
    if teacher is None:
        teacher = load_teacher(config, num_classes)
    student = create_model(config.student, num_classes=num_classes)
    params = {name: dict(values) for name, values in config.loss_params.items()}
    recipe = input_recipe(config.dataset, student)  # the student's own inputs (image folders)
    image_size = recipe["input_size"][-1] if recipe else dataset_info(config.dataset).image_size
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
