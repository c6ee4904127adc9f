r"""SP: Tung & Mori, "Similarity-Preserving Knowledge Distillation", ICCV 2019,
arXiv `1907.09682 <https://arxiv.org/abs/1907.09682>`_.

.. math::

    G = \operatorname{rownorm}(Q Q^\top), \quad Q = \mathrm{reshape}(F, B \times CHW), \qquad
    L = \sum_{layers} \frac{1}{B^2} \lVert G_s - G_t \rVert_F^2

The student mimics which samples of the batch the teacher finds similar; channel and spatial
sizes may differ. By default the last stage is used, as in the paper's CIFAR experiments.
Config example: ``{"ce": 1, "sp": 3000}``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor

from kd_core.losses.base import StageFeatureLoss
from kd_core.losses.registry import register_loss
from kd_core.losses.validation import full_precision


def similarity_matrix(f: Tensor) -> Tensor:
    """``B x B`` row-normalised Gram matrix of the flattened features."""
    flat = full_precision(f).flatten(1)
    return F.normalize(flat @ flat.t(), dim=1)


@register_loss
class SimilarityPreservingLoss(StageFeatureLoss):
    """Squared Frobenius distance between batch similarity matrices, divided by ``B^2``."""

    name = "sp"
    same_size = False  # only the batch size must match

    def __init__(self, layers: Sequence[int] | None = (-1,)) -> None:
        super().__init__(layers=layers)

    def layer_loss(self, index: int, f_s: Tensor, f_t: Tensor) -> Tensor:
        return (similarity_matrix(f_s) - similarity_matrix(f_t.detach())).pow(2).mean()

    def extra_repr(self) -> str:
        return f"layers={self.layers}"
