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

import torch.nn.functional as F
from torch import Tensor

from kd_core.losses.base import StageFeatureLoss
from kd_core.losses.registry import register_loss
from kd_core.losses.validation import full_precision, require_number


def at_map(f: Tensor, p: float = 2.0) -> Tensor:
    """``B x N`` attention vector of a ``B x C x H x W`` map: ``normalize(mean_c |F_c|^p)``."""
    return F.normalize(full_precision(f).abs().pow(p).mean(dim=1).flatten(1), dim=1)


@register_loss
class AttentionTransferLoss(StageFeatureLoss):
    """Squared distance between normalised activation-attention maps, summed over layers."""

    name = "at"

    def __init__(
        self, p: float = 2.0, align: bool = False, layers: Sequence[int] | None = None
    ) -> None:
        super().__init__(align=align, layers=layers)
        # p < 1 would make |F|^p non-differentiable (infinite slope) at the zeros ReLU produces.
        self.p = require_number("at", "p", p, low=1.0)

    def layer_loss(self, index: int, f_s: Tensor, f_t: Tensor) -> Tensor:
        return (at_map(f_s, self.p) - at_map(f_t.detach(), self.p)).pow(2).mean()

    def extra_repr(self) -> str:
        return f"p={self.p}, {super().extra_repr()}"
