r"""AT: Zagoruyko & Komodakis, "Paying More Attention to Attention", ICLR 2017,
arXiv `1612.03928 <https://arxiv.org/abs/1612.03928>`_.

.. math::

    Q(F) = \frac{\mathrm{vec}\big(\frac1C \sum_c |F_c|^p\big)}
                {\big\lVert \mathrm{vec}\big(\frac1C \sum_c |F_c|^p\big) \big\rVert_2},
    \qquad L = \sum_{layers} \frac{1}{BN} \sum_{i} \lVert Q(F_s^i) - Q(F_t^i) \rVert_2^2

with ``p = 2`` (the paper's choice; for p = 2 ``Q`` is AMD's attention map ``q`` up to its
epsilon). As in the widely used RepDistiller code the squared difference is averaged over the
``B * N`` entries, and layers are summed. Config example: ``{"ce": 1, "at": 1000}``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from kd_core.losses.base import DistillationLoss
from kd_core.losses.registry import register_loss
from kd_core.losses.validation import feature_pairs, full_precision, require_number
from kd_core.outputs import ModelOutputs


def at_map(f: Tensor, p: float = 2.0) -> Tensor:
    """``B x N`` attention vector of a ``B x C x H x W`` map: ``normalize(mean_c |F_c|^p)``."""
    return F.normalize(full_precision(f).abs().pow(p).mean(dim=1).flatten(1), dim=1)


@register_loss
class AttentionTransferLoss(DistillationLoss):
    """Squared distance between normalised activation-attention maps, summed over layers."""

    name = "at"

    def __init__(
        self, p: float = 2.0, align: bool = False, layers: Sequence[int] | None = None
    ) -> None:
        super().__init__()
        # p >= 1 (the paper uses p > 1): for p < 1 the gradient of |F|^p is infinite at the zeros
        # that ReLU features are full of, and the loss's gradients become NaN.
        self.p = require_number("at", "p", p, low=1.0)
        self.align = bool(align)
        self.layers = None if layers is None else list(layers)

    def forward(self, feats_s: Sequence[Tensor], feats_t: Sequence[Tensor]) -> Tensor:
        pairs = feature_pairs("at", feats_s, feats_t, layers=self.layers, align=self.align)
        return torch.stack(
            [
                (at_map(f_s, self.p) - at_map(f_t.detach(), self.p)).pow(2).mean()
                for f_s, f_t in pairs
            ]
        ).sum()

    def from_outputs(
        self, student: ModelOutputs, teacher: ModelOutputs | None, target: Tensor
    ) -> Tensor:
        return self(student.stage_list, teacher.stage_list)

    def extra_repr(self) -> str:
        return f"p={self.p}, align={self.align}, layers={self.layers}"
