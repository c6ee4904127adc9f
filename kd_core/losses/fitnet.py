r"""FitNet hints: Romero et al., "FitNets: Hints for Thin Deep Nets", ICLR 2015,
arXiv `1412.6550 <https://arxiv.org/abs/1412.6550>`_.

.. math:: L = \sum_{layers} \frac{1}{BCHW} \lVert r(F_s) - F_t \rVert_2^2

where ``r`` is a learned 1x1 convolution from the student's to the teacher's channels (the
regressor). Its parameters belong to this loss: give ``loss.parameters()`` (or the objective's
``parameters()``) to the optimizer. The paper's regressor is a general convolution and the hint
is one middle layer; pick it with ``layers=[1]``. Config example: ``{"ce": 1, "fitnet": 100}``
with ``{"fitnet": {"student_channels": [32], "teacher_channels": [128], "layers": [1]}}``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kd_core.losses.base import DistillationLoss
from kd_core.losses.registry import register_loss
from kd_core.losses.validation import feature_pairs, full_precision
from kd_core.outputs import ModelOutputs


@register_loss
class FitNetLoss(DistillationLoss):
    """MSE between regressed student features and teacher features, summed over layers."""

    name = "fitnet"

    def __init__(
        self,
        student_channels: Sequence[int],
        teacher_channels: Sequence[int],
        align: bool = False,
        layers: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        student_channels, teacher_channels = list(student_channels), list(teacher_channels)
        if len(student_channels) != len(teacher_channels) or not student_channels:
            raise ValueError(
                f"fitnet: got {len(student_channels)} student and {len(teacher_channels)} teacher "
                "channel counts; give one (positive) count per distilled layer on each side."
            )
        if any(not isinstance(c, int) or c <= 0 for c in student_channels + teacher_channels):
            raise ValueError("fitnet: channel counts must be positive integers.")
        self.regressors = nn.ModuleList(
            nn.Conv2d(c_s, c_t, kernel_size=1)
            for c_s, c_t in zip(student_channels, teacher_channels, strict=True)
        )
        self.align = bool(align)
        self.layers = None if layers is None else list(layers)

    def forward(self, feats_s: Sequence[Tensor], feats_t: Sequence[Tensor]) -> Tensor:
        pairs = feature_pairs("fitnet", feats_s, feats_t, layers=self.layers, align=self.align)
        if len(pairs) != len(self.regressors):
            raise ValueError(
                f"fitnet: {len(pairs)} layer pairs but {len(self.regressors)} regressors; "
                "student_channels/teacher_channels must list one count per distilled layer."
            )
        losses = []
        for index, ((f_s, f_t), regressor) in enumerate(zip(pairs, self.regressors, strict=True)):
            if f_s.shape[1] != regressor.in_channels or f_t.shape[1] != regressor.out_channels:
                raise ValueError(
                    f"fitnet: layer {index} has {f_s.shape[1]} student and {f_t.shape[1]} teacher "
                    f"channels, but its regressor maps {regressor.in_channels} -> "
                    f"{regressor.out_channels}."
                )
            losses.append(F.mse_loss(full_precision(regressor(f_s)), full_precision(f_t.detach())))
        return torch.stack(losses).sum()

    def from_outputs(
        self, student: ModelOutputs, teacher: ModelOutputs | None, target: Tensor
    ) -> Tensor:
        return self(student.stage_list, teacher.stage_list)

    def extra_repr(self) -> str:
        return f"align={self.align}, layers={self.layers}"
