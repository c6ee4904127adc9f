r"""Cross-entropy with the ground-truth labels.

.. math:: L = -\frac1B \sum_i \log \operatorname{softmax}(z_i)_{y_i}

(with optional label smoothing ``eps``: the target is ``(1 - eps) onehot(y) + eps / K``).

Config example: ``{"ce": 1}`` with ``{"ce": {"label_smoothing": 0.1}}``.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from kd_core.losses.base import DistillationLoss
from kd_core.losses.registry import register_loss
from kd_core.losses.validation import full_precision, require_number, require_tensor
from kd_core.outputs import ModelOutputs


@register_loss
class CrossEntropyLoss(DistillationLoss):
    """Cross-entropy of the student's logits against the labels (needs no teacher)."""

    name = "ce"
    needs_teacher = False

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.label_smoothing = require_number(
            "ce", "label_smoothing", label_smoothing, low=0.0, high=1.0
        )

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """``logits``: ``B x K``; ``target``: ``B`` integer labels in ``[0, K)``."""
        require_tensor("ce", "logits", logits, 2)
        if not isinstance(target, Tensor) or target.dim() != 1 or target.is_floating_point():
            raise ValueError("ce: target must be a 1-D tensor of integer class labels.")
        if target.shape[0] != logits.shape[0]:
            raise ValueError(
                f"ce: {logits.shape[0]} logits rows but {target.shape[0]} labels; "
                "pass one label per sample."
            )
        if logits.shape[0] == 0:  # F.cross_entropy would return NaN
            raise ValueError("ce: logits is an empty batch; pass at least one sample.")
        classes = logits.shape[1]
        if target.numel() and (int(target.min()) < 0 or int(target.max()) >= classes):
            raise ValueError(
                f"ce: labels must be in [0, {classes - 1}] for {classes} classes, "
                f"got values in [{int(target.min())}, {int(target.max())}]."
            )
        return F.cross_entropy(full_precision(logits), target, label_smoothing=self.label_smoothing)

    def from_outputs(
        self, student: ModelOutputs, teacher: ModelOutputs | None, target: Tensor
    ) -> Tensor:
        return self(student.logits, target)

    def extra_repr(self) -> str:
        return f"label_smoothing={self.label_smoothing}"
