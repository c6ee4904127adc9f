"""The distiller: a frozen teacher, a student and an objective; ``forward_train`` returns the
student's logits and the dict of weighted losses, which the training loop only sums."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from kd_core.losses import Objective
from kd_core.models.features import extract_features


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

    @property
    def teacher(self) -> nn.Module | None:
        return self._teacher

    def to(self, *args, **kwargs) -> Distiller:
        """``nn.Module.to`` for the student and the objective, and the teacher too."""
        super().to(*args, **kwargs)
        if self._teacher is not None:
            self._teacher.to(*args, **kwargs)
        return self

    def forward_train(self, images: Tensor, labels: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Student logits and the weighted loss terms for one batch."""
        teacher_outputs = None
        if self._teacher is not None:
            with torch.no_grad():
                teacher_outputs = extract_features(self._teacher, images)
        student_outputs = extract_features(self.student, images)
        _, losses = self.objective(student_outputs, teacher_outputs, labels)
        return student_outputs.logits, losses

    def forward(self, images: Tensor) -> Tensor:
        """Evaluation: the student's logits."""
        return self.student(images)
