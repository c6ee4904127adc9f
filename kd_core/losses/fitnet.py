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

import torch.nn.functional as F
from torch import Tensor, nn

from kd_core.losses.base import StageFeatureLoss
from kd_core.losses.registry import register_loss
from kd_core.losses.validation import full_precision


@register_loss
class FitNetLoss(StageFeatureLoss):
    """MSE between regressed student features and teacher features, summed over layers."""

    name = "fitnet"

    def __init__(
        self,
        student_channels: Sequence[int],
        teacher_channels: Sequence[int],
        align: bool = False,
        layers: Sequence[int] | None = None,
    ) -> None:
        super().__init__(align=align, layers=layers)
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

    def check_pairs(self, pairs: list[tuple[Tensor, Tensor]]) -> None:
        if len(pairs) != len(self.regressors):
            raise ValueError(
                f"fitnet: {len(pairs)} layer pairs but {len(self.regressors)} regressors; "
                "student_channels/teacher_channels must list one count per distilled layer."
            )
        for index, ((f_s, f_t), regressor) in enumerate(zip(pairs, self.regressors, strict=True)):
            if f_s.shape[1] != regressor.in_channels or f_t.shape[1] != regressor.out_channels:
                raise ValueError(
                    f"fitnet: layer {index} has {f_s.shape[1]} student and {f_t.shape[1]} "
                    f"teacher channels, but its regressor maps {regressor.in_channels} -> "
                    f"{regressor.out_channels}."
                )

    def layer_loss(self, index: int, f_s: Tensor, f_t: Tensor) -> Tensor:
        regressed = self.regressors[index](f_s)
        return F.mse_loss(full_precision(regressed), full_precision(f_t.detach()))
