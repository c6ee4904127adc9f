r"""AMD: angular margin-based distillation (Jeon et al., Neurocomputing 518 (2023) 466-481,
arXiv `2302.14130 <https://arxiv.org/abs/2302.14130>`_).

The student learns the *angular distribution* of the teacher's attention. For a stage output
:math:`F \in \mathbb{R}^{B \times C \times H \times W}`:

.. math::

    a = \sum_c F_c^2, \qquad q = \frac{a}{\lVert a \rVert_2 + 10^{-6}} \in S^{N-1},\ N = HW

    \theta = \arccos q, \quad
    \mathrm{pos} = s\cos(m\theta), \quad
    \mathrm{neg} = s(1 - q), \quad
    \mathrm{amd} = \mathrm{pos} - \log(e^{\mathrm{pos}} + e^{\mathrm{neg}})
                 = -\operatorname{softplus}(\mathrm{neg} - \mathrm{pos})

    L = \tfrac13 \sum_{x \in \{\mathrm{amd}, \mathrm{pos}, \mathrm{neg}\}}
        \operatorname{mse}\big(\hat x_s, \hat x_t\big), \quad \hat x = x / \lVert x \rVert_2

Every entry of ``q`` is the cosine of the angle :math:`\theta` between the attention vector and
one axis of the hypersphere. The multiplicative margin :math:`m > 1` (SphereFace-style) shrinks
``pos`` faster than ``cos`` as the angle grows, so only strongly attended positions keep
``pos > neg``: the loss asks the student to separate attended (positive) from background
(negative) positions as sharply as the teacher does, with a margin.

The global+local variant also applies the per-layer loss to the four quadrants of the globally
normalised map: :math:`L = w \cdot \mathrm{mean}_{quadrants} L_Q + (1 - w) L`, ``w = 0.2``.

Differences from the authors' code (see ``shared/amd-spec.md``):

* ``amd`` is computed as ``-softplus(neg - pos)`` instead of ``pos - log(exp(pos) + exp(neg))``:
  the same value, without the fp16 overflow of ``exp(64)``; the loss always runs in fp32
  (float64 stays float64), also under ``torch.autocast``.
* The three MSE terms are computed on one stacked tensor: the same value in one pass.
* The authors' global+local class crashes; the formula above is the intended one. Quadrants
  with no positions (maps of height or width 1) are skipped.
* ``align=True`` (off by default) average-pools the larger map when stage sizes differ.

Example (the CIFAR-100 recipe weights AMD like attention transfer, beta = 1000)::

    loss = build_loss("amd", margin=1.35, scale=64.0, local=True)
    value = loss(student_stage_features, teacher_stage_features)   # lists of B x C x H x W
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from kd_core.losses.amd_constants import ARCCOS_EPS as ARCCOS_EPS  # re-exported
from kd_core.losses.amd_constants import DEFAULT_LOCAL_WEIGHT as DEFAULT_LOCAL_WEIGHT
from kd_core.losses.amd_constants import DEFAULT_MARGIN as DEFAULT_MARGIN
from kd_core.losses.amd_constants import DEFAULT_SCALE as DEFAULT_SCALE
from kd_core.losses.base import StageFeatureLoss
from kd_core.losses.registry import register_loss
from kd_core.losses.validation import compute_dtype, feature_pairs, require_number, require_tensor

NORM_EPS = 1e-6
"""Added to ``||a||`` when normalising the attention map (the reference value)."""


@dataclass(frozen=True)
class AngularMaps:
    """What the AMD loss sees for one feature map, each ``B x H x W`` (the app shows these).

    Attributes:
        q: attention map, unit L2 norm per sample, entries in ``[0, 1]``.
        theta: ``arccos(q)`` in radians, in ``[0, pi/2]``.
        pos: ``s * cos(m * theta)``, the positive feature with the angular margin.
        neg: ``s * (1 - q)``, the negative feature.
        attentive: ``pos - logaddexp(pos, neg)`` = ``log sigmoid(pos - neg)``, always <= 0.
    """

    q: Tensor
    theta: Tensor
    pos: Tensor
    neg: Tensor
    attentive: Tensor

    def stacked(self) -> Tensor:
        """``3 x B x H x W``: attentive, pos, neg (the three terms of the loss)."""
        return torch.stack((self.attentive, self.pos, self.neg))


@contextlib.contextmanager
def _autocast_off(tensor: Tensor) -> Iterator[None]:
    """Disable autocast on the tensor's device so the loss is computed in fp32 (or fp64)."""
    with torch.autocast(device_type=tensor.device.type, enabled=False):
        yield


def _check_hyperparameters(margin: float, scale: float) -> tuple[float, float]:
    return (
        require_number("amd", "margin", margin, low=0.0, low_inclusive=False),
        require_number("amd", "scale", scale, low=0.0, low_inclusive=False),
    )


class _ChannelEnergy(torch.autograd.Function):
    """``a = sum_c f_c^2`` (``B x H x W``) with a one-kernel backward ``grad_f = 2 f grad_a``.

    Autograd's own graph for this (``pow`` + ``sum``, or ``vecdot``) runs two or three full-size
    kernels in the backward pass; on CIFAR stage shapes this halves the cost of the loss.
    """

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, f: Tensor) -> Tensor:
        ctx.save_for_backward(f)
        return torch.linalg.vecdot(f, f, dim=1)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: Tensor) -> Tensor:
        (f,) = ctx.saved_tensors
        return f * (2.0 * grad).unsqueeze(1)


def _attention_map(f: Tensor) -> Tensor:
    """:func:`attention_map` without the checks; call it with autocast disabled."""
    f = f.to(compute_dtype(f))
    energy = _ChannelEnergy.apply(f)  # B x H x W, sum of squares over channels
    norm = torch.linalg.vector_norm(energy.flatten(1), dim=1)
    return energy / (norm + NORM_EPS)[:, None, None]


def _angular_terms(q: Tensor, margin: float, scale: float) -> AngularMaps:
    """:func:`angular_terms` without the checks."""
    theta = torch.acos(q.clamp(-1.0 + ARCCOS_EPS, 1.0 - ARCCOS_EPS))
    pos = scale * torch.cos(margin * theta)
    neg = scale * (1.0 - q)
    attentive = -F.softplus(neg - pos)
    return AngularMaps(q=q, theta=theta, pos=pos, neg=neg, attentive=attentive)


def attention_map(f: Tensor) -> Tensor:
    r"""The attention map of AMD (attention transfer with p = 2), on the unit hypersphere.

    :math:`a = \sum_c F_c^2` and :math:`q = a / (\lVert a \rVert_2 + 10^{-6})`, the norm taken
    over the ``H * W`` positions of each sample.

    Args:
        f: ``B x C x H x W`` feature map (any floating dtype).

    Returns:
        ``B x H x W`` map with unit L2 norm per sample (zero for an all-zero map), in fp32
        (fp64 for fp64 input).

    >>> q = attention_map(torch.ones(2, 3, 4, 4))
    >>> torch.allclose(q.flatten(1).norm(dim=1), torch.ones(2))
    True
    """
    require_tensor("amd", "feature map", f, 4)
    with _autocast_off(f):
        return _attention_map(f)


def angular_terms(
    q: Tensor, *, margin: float = DEFAULT_MARGIN, scale: float = DEFAULT_SCALE
) -> AngularMaps:
    r"""The elementwise part of AMD, from an attention map ``q`` (any shape, entries in [0, 1]).

    :math:`\theta = \arccos q`, :math:`\mathrm{pos} = s\cos(m\theta)`,
    :math:`\mathrm{neg} = s(1-q)`, :math:`\mathrm{amd} = -\operatorname{softplus}(\mathrm{neg} -
    \mathrm{pos})`. Used by the loss and by every view of it (margin curves, maps, histograms).
    """
    margin, scale = _check_hyperparameters(margin, scale)
    with _autocast_off(q):
        return _angular_terms(q, margin, scale)


def angular_maps(
    f: Tensor, *, margin: float = DEFAULT_MARGIN, scale: float = DEFAULT_SCALE
) -> AngularMaps:
    """:func:`attention_map`, then :func:`angular_terms`: everything the loss sees for ``f``."""
    require_tensor("amd", "feature map", f, 4)
    margin, scale = _check_hyperparameters(margin, scale)
    with _autocast_off(f):
        return _angular_terms(_attention_map(f), margin, scale)


def quadrant_slices(height: int, width: int) -> list[tuple[slice, slice]]:
    """The 2 x 2 quadrants of an ``H x W`` map, cut at ``H // 2`` and ``W // 2``; empty ones
    (for a side of length 1) are left out. 7 x 7 gives 3x3, 3x4, 4x3 and 4x4."""
    h, w = height // 2, width // 2
    rows = [r for r in (slice(0, h), slice(h, height)) if r.stop > r.start]
    cols = [c for c in (slice(0, w), slice(w, width)) if c.stop > c.start]
    return [(r, c) for r in rows for c in cols]


NORMALIZE_EPS = 1e-12
"""``x / max(||x||, eps)``: the L2 normalisation of step 6 (as ``F.normalize``)."""

Region = tuple[slice, slice, float]
"""Rows, columns and weight of one term of the loss: the whole map or a quadrant."""


def _regions(height: int, width: int, local: bool, local_weight: float) -> list[Region]:
    whole = (slice(0, height), slice(0, width))
    if not local:
        return [(*whole, 1.0)]
    quadrants = quadrant_slices(height, width)
    return [(*whole, 1.0 - local_weight)] + [
        (rows, cols, local_weight / len(quadrants)) for rows, cols in quadrants
    ]


def _normalized(x: Tensor) -> tuple[Tensor, Tensor]:
    """``x / max(||x||, eps)`` along the last dimension, and the clamped norm."""
    norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True).clamp_min(NORMALIZE_EPS)
    return x / norm, norm


def _region_loss(
    student: Tensor, teacher: Tensor, regions: list[Region], with_grad: bool
) -> tuple[Tensor, Tensor | None]:
    """Step 6 summed over weighted regions, and (optionally) its gradient w.r.t. ``student``.

    ``student`` and ``teacher`` are ``3 x B x H x W`` (attentive, pos, neg). For each region,
    ``w * mean((x_hat - t_hat)^2)``; the gradient goes through the normalisation:
    ``dL/dx = (g - x_hat <x_hat, g>) / ||x||`` with ``g = 2 w (x_hat - t_hat) / n``
    (``g / eps`` where the norm is clamped).
    """
    loss = student.new_zeros(())
    grad = torch.zeros_like(student) if with_grad and len(regions) > 1 else None
    for rows, cols, weight in regions:
        x_hat, norm = _normalized(student[..., rows, cols].flatten(2))
        t_hat, _ = _normalized(teacher[..., rows, cols].flatten(2))
        diff = x_hat.sub(t_hat)
        loss += torch.linalg.vecdot(diff.view(-1), diff.view(-1)) * (weight / diff.numel())
        if not with_grad:
            continue
        g = diff.mul_(2.0 * weight / diff.numel())
        radial = torch.linalg.vecdot(x_hat, g).unsqueeze(-1).mul_(norm > NORMALIZE_EPS)
        g = g.addcmul_(x_hat, radial, value=-1.0).div_(norm)
        if grad is None:
            return loss, g.view_as(student)
        grad[..., rows, cols] += g.view_as(grad[..., rows, cols])
    return loss, grad


class _AngularDistance(torch.autograd.Function):
    """Steps 2-6 of the loss for the student map ``q`` against the teacher's stacked terms,
    with the gradient w.r.t. ``q`` computed in the forward pass in closed form.

    One scalar output, no autograd graph over the ~20 elementwise steps: on CIFAR stage shapes
    this is most of the saving over the reference. The gradient, with ``sigma = sigmoid(neg -
    pos)``: ``d pos/dq = s m sin(m theta) / sin(theta)`` (0 where ``q`` is clamped, since
    ``theta = arccos q``), ``d neg/dq = -s``, ``d amd = sigma (d pos - d neg)``.
    """

    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx,
        q: Tensor,
        teacher: Tensor,
        margin: float,
        scale: float,
        regions: list[Region],
    ) -> Tensor:
        terms = _angular_terms(q, margin, scale)
        with_grad = ctx.needs_input_grad[0]
        loss, grad = _region_loss(terms.stacked(), teacher, regions, with_grad)
        if grad is not None:
            g_amd, g_pos, g_neg = grad
            d_pos = torch.sin(margin * terms.theta).div_(torch.sin(terms.theta))
            d_pos.mul_(q <= 1.0 - ARCCOS_EPS).mul_(scale * margin)  # q >= 0 always
            sigma = torch.expm1(terms.attentive).neg_()  # 1 - exp(amd) = sigmoid(neg - pos)
            via_pos = torch.addcmul(g_pos, sigma, g_amd).mul_(d_pos)
            via_neg = torch.addcmul(g_neg, sigma, g_amd, value=-1.0)
            ctx.save_for_backward(via_pos.add_(via_neg, alpha=-scale))
        return loss

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: torch.autograd.function.FunctionCtx, grad_loss: Tensor):
        (grad_q,) = ctx.saved_tensors
        return grad_loss * grad_q, None, None, None, None


def amd_layer_loss(
    f_s: Tensor,
    f_t: Tensor,
    *,
    margin: float = DEFAULT_MARGIN,
    scale: float = DEFAULT_SCALE,
    local: bool = False,
    local_weight: float = DEFAULT_LOCAL_WEIGHT,
    align: bool = False,
) -> Tensor:
    """AMD loss of one student/teacher layer pair (scalar, fp32; no gradient to the teacher).

    Args:
        f_s, f_t: ``B x C x H x W`` student and teacher features (channels may differ).
        margin: angular margin ``m`` (> 0; 1 means no margin).
        scale: scale ``s`` (> 0).
        local: add the four-quadrant ("fine-grained") term.
        local_weight: weight ``w`` of the quadrant term, in ``[0, 1]``.
        align: average-pool the larger map when the spatial sizes differ (otherwise an error).
    """
    margin, scale = _check_hyperparameters(margin, scale)
    local_weight = require_number("amd", "local_weight", local_weight, low=0.0, high=1.0)
    [(f_s, f_t)] = feature_pairs("amd", [f_s], [f_t], align=align)
    with _autocast_off(f_s):
        with torch.no_grad():
            teacher = _angular_terms(_attention_map(f_t.detach()), margin, scale).stacked()
        regions = _regions(*teacher.shape[-2:], local, local_weight)
        return _AngularDistance.apply(_attention_map(f_s), teacher, margin, scale, regions)


@register_loss
class AMDLoss(StageFeatureLoss):
    """AMD over several layers: one :func:`amd_layer_loss` per student/teacher pair, summed.

    Config example (objective mapping): ``{"ce": 1, "kd": 0.9, "amd": 1000}`` with
    ``{"amd": {"margin": 1.35, "scale": 64, "local": True}}``.
    """

    name = "amd"

    def __init__(
        self,
        margin: float = DEFAULT_MARGIN,
        scale: float = DEFAULT_SCALE,
        local: bool = False,
        local_weight: float = DEFAULT_LOCAL_WEIGHT,
        align: bool = False,
        layers: Sequence[int] | None = None,
    ) -> None:
        super().__init__(align=align, layers=layers)
        self.margin, self.scale = _check_hyperparameters(margin, scale)
        self.local_weight = require_number("amd", "local_weight", local_weight, low=0.0, high=1.0)
        self.local = bool(local)

    def layer_loss(self, index: int, f_s: Tensor, f_t: Tensor) -> Tensor:
        return amd_layer_loss(
            f_s, f_t, margin=self.margin, scale=self.scale,
            local=self.local, local_weight=self.local_weight,
        )  # fmt: skip

    def extra_repr(self) -> str:
        return (
            f"margin={self.margin}, scale={self.scale}, local={self.local}, "
            f"local_weight={self.local_weight}, {super().extra_repr()}"
        )
