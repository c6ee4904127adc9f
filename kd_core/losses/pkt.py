r"""PKT: Passalis & Tefas, "Learning Deep Representations with Probabilistic Knowledge
Transfer", ECCV 2018, arXiv `1803.10837 <https://arxiv.org/abs/1803.10837>`_.

With cosine similarities of the L2-normalised pooled features mapped to ``[0, 1]`` and turned
into conditional probabilities per row,

.. math::

    p_{j|i} = \frac{(1 + \cos(x_i, x_j))/2}{\sum_k (1 + \cos(x_i, x_k))/2}, \qquad
    L = \frac{1}{B^2} \sum_{i,j} p^t_{j|i} \log\frac{p^t_{j|i} + \epsilon}{p^s_{j|i} + \epsilon}

(``epsilon = 1e-7``; the mean over all ``B^2`` pairs follows the authors' code, the paper sums).
Feature dimensions of student and teacher may differ. Config example: ``{"ce": 1, "pkt": 30000}``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from kd_core.losses.base import PooledFeatureLoss
from kd_core.losses.registry import register_loss

PKT_EPS = 1e-7


def conditional_probabilities(x: Tensor) -> Tensor:
    """``B x B`` row-stochastic matrix of the cosine-similarity kernel ``(1 + cos) / 2``."""
    unit = F.normalize(x, dim=1, eps=PKT_EPS)
    kernel = (unit @ unit.t() + 1.0) / 2.0
    return kernel / kernel.sum(dim=1, keepdim=True)


@register_loss
class ProbabilisticKnowledgeTransferLoss(PooledFeatureLoss):
    """KL divergence between teacher and student similarity distributions over the batch."""

    name = "pkt"

    def pooled_loss(self, student: Tensor, teacher: Tensor) -> Tensor:
        p_s = conditional_probabilities(student)
        p_t = conditional_probabilities(teacher)
        return torch.mean(p_t * torch.log((p_t + PKT_EPS) / (p_s + PKT_EPS)))
