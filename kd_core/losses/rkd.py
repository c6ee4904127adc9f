r"""RKD: Park, Kim, Lu & Cho, "Relational Knowledge Distillation", CVPR 2019,
arXiv `1904.05068 <https://arxiv.org/abs/1904.05068>`_.

Distance-wise and angle-wise potentials on the pooled features, compared with the Huber
(smooth L1, delta = 1) loss :math:`\ell_\delta`:

.. math::

    \psi_D(x_i, x_j) = \frac{\lVert x_i - x_j \rVert_2}{\mu}, \quad
    \mu = \operatorname{mean}_{i \ne j} \lVert x_i - x_j \rVert_2, \qquad
    \psi_A(x_i, x_j, x_k) = \langle e_{ij}, e_{kj} \rangle, \quad
    e_{ij} = \frac{x_i - x_j}{\lVert x_i - x_j \rVert_2}

    L = w_D\, \operatorname{mean}\, \ell_\delta(\psi_D^s, \psi_D^t)
      + w_A\, \operatorname{mean}\, \ell_\delta(\psi_A^s, \psi_A^t)

Defaults ``w_D = 25``, ``w_A = 50`` follow the RepDistiller benchmark (the paper: 1 and 2, with
its own global weight). Config example: ``{"ce": 1, "rkd": 1}``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from kd_core.losses.base import PooledFeatureLoss
from kd_core.losses.registry import register_loss
from kd_core.losses.validation import require_number

DISTANCE_EPS = 1e-12


def normalized_distances(x: Tensor) -> Tensor:
    """``B x B`` Euclidean distances over their mean on distinct pairs (0 on the diagonal)."""
    squared = x.pow(2).sum(dim=1)
    gram = x @ x.t()
    distances = (squared[:, None] + squared[None, :] - 2.0 * gram).clamp(min=DISTANCE_EPS).sqrt()
    distances = distances * (1.0 - torch.eye(x.shape[0], dtype=x.dtype, device=x.device))
    positive = distances > 0
    mean = distances.sum() / positive.sum().clamp(min=1)
    return distances / mean.clamp(min=DISTANCE_EPS)


def triplet_angles(x: Tensor) -> Tensor:
    """``B x B x B``: entry ``[i, j, k]`` is the cosine of the angle at ``x_i`` between ``x_j``
    and ``x_k``."""
    edges = F.normalize(x[None, :, :] - x[:, None, :], dim=2)
    return torch.bmm(edges, edges.transpose(1, 2))


@register_loss
class RelationalKnowledgeDistillationLoss(PooledFeatureLoss):
    """Huber loss on normalised pairwise distances and on triplet angles of pooled features."""

    name = "rkd"

    def __init__(self, distance_weight: float = 25.0, angle_weight: float = 50.0) -> None:
        super().__init__()
        self.distance_weight = require_number("rkd", "distance_weight", distance_weight, low=0.0)
        self.angle_weight = require_number("rkd", "angle_weight", angle_weight, low=0.0)

    def pooled_loss(self, student: Tensor, teacher: Tensor) -> Tensor:
        distance = F.smooth_l1_loss(normalized_distances(student), normalized_distances(teacher))
        angle = F.smooth_l1_loss(triplet_angles(student), triplet_angles(teacher))
        return self.distance_weight * distance + self.angle_weight * angle

    def extra_repr(self) -> str:
        return f"distance_weight={self.distance_weight}, angle_weight={self.angle_weight}"
