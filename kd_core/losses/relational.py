"""Checks shared by the losses that read pooled ``B x D`` features (PKT, RKD)."""

from __future__ import annotations

from torch import Tensor

from kd_core.losses.validation import full_precision, require_same_batch, require_tensor
from kd_core.outputs import ModelOutputs


def pooled_pair(loss: str, student: Tensor, teacher: Tensor) -> tuple[Tensor, Tensor]:
    """Validate pooled features (``B x D`` each, dims may differ); teacher detached, both fp32."""
    require_tensor(loss, "student pooled feature", student, 2)
    require_tensor(loss, "teacher pooled feature", teacher, 2)
    require_same_batch(loss, student, teacher, "pooled feature")
    return full_precision(student), full_precision(teacher.detach())


def pooled_outputs(
    loss: str, student: ModelOutputs, teacher: ModelOutputs
) -> tuple[Tensor, Tensor]:
    """The pooled features of both outputs, or a clear error when a network did not give one."""
    if student.pooled is None or teacher.pooled is None:
        raise ValueError(f"{loss}: needs the pooled (penultimate) features of both networks.")
    return student.pooled, teacher.pooled
