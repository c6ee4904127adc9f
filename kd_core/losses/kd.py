r"""KD: Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural Network",
arXiv `1503.02531 <https://arxiv.org/abs/1503.02531>`_.

.. math::

    L = T^2 \cdot \frac1B \sum_i \mathrm{KL}\big(\operatorname{softmax}(t_i / T)\,\big\|\,
        \operatorname{softmax}(s_i / T)\big)

The ``T^2`` factor keeps the gradient magnitude comparable across temperatures.
Config example: ``{"ce": 0.1, "kd": 0.9}`` with ``{"kd": {"temperature": 4}}`` (the CIFAR-100
recipe).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from kd_core.losses.base import DistillationLoss
from kd_core.losses.registry import register_loss
from kd_core.losses.validation import (
    full_precision,
    require_number,
    require_same_batch,
    require_tensor,
)
from kd_core.outputs import ModelOutputs


@register_loss
class KnowledgeDistillationLoss(DistillationLoss):
    """Temperature-softened KL divergence from the teacher's to the student's class scores."""

    name = "kd"

    def __init__(self, temperature: float = 4.0) -> None:
        super().__init__()
        self.temperature = require_number(
            "kd", "temperature", temperature, low=0.0, low_inclusive=False
        )

    def forward(self, logits_s: Tensor, logits_t: Tensor) -> Tensor:
        """``logits_s``, ``logits_t``: ``B x K`` each; no gradient flows to the teacher."""
        require_tensor("kd", "student logits", logits_s, 2)
        require_tensor("kd", "teacher logits", logits_t, 2)
        require_same_batch("kd", logits_s, logits_t, "logits")
        if logits_s.shape[1] != logits_t.shape[1]:
            raise ValueError(
                f"kd: student has {logits_s.shape[1]} classes, teacher {logits_t.shape[1]}; "
                "both must score the same classes."
            )
        t = self.temperature
        log_p_s = F.log_softmax(full_precision(logits_s) / t, dim=1)
        log_p_t = F.log_softmax(full_precision(logits_t.detach()) / t, dim=1)
        return F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True) * t * t

    def from_outputs(
        self, student: ModelOutputs, teacher: ModelOutputs | None, target: Tensor
    ) -> Tensor:
        return self(student.logits, teacher.logits)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"
