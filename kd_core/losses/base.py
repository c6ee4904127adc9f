"""The common shape of every loss: a module with a natural ``forward`` and a ``from_outputs``
adapter through which the objective feeds it student and teacher outputs."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import Tensor, nn

from kd_core.losses.validation import feature_pairs, pooled_pair
from kd_core.outputs import ModelOutputs


class DistillationLoss(nn.Module, abc.ABC):
    """Base class of the registered losses.

    Subclasses set ``name`` (the registry key) and ``needs_teacher``, implement ``forward``
    with the inputs their paper uses, and ``from_outputs`` to pick those inputs from
    :class:`~kd_core.outputs.ModelOutputs`.
    """

    name: ClassVar[str]
    needs_teacher: ClassVar[bool] = True

    @abc.abstractmethod
    def from_outputs(
        self, student: ModelOutputs, teacher: ModelOutputs | None, target: Tensor
    ) -> Tensor:
        """The scalar loss for one batch, read from the networks' outputs."""


class StageFeatureLoss(DistillationLoss):
    """A loss on stage features: validated student/teacher pairs (optionally a subset chosen by
    ``layers``, optionally spatially aligned), one :meth:`layer_loss` per pair, summed."""

    same_size: ClassVar[bool] = True
    """Whether a pair must have equal ``H x W`` (then ``align=True`` pools the larger map)."""

    def __init__(self, align: bool = False, layers: Sequence[int] | None = None) -> None:
        super().__init__()
        self.align = bool(align)
        self.layers = None if layers is None else list(layers)

    @abc.abstractmethod
    def layer_loss(self, index: int, f_s: Tensor, f_t: Tensor) -> Tensor:
        """The loss of the ``index``-th pair (the teacher side must carry no gradient)."""

    def check_pairs(self, pairs: list[tuple[Tensor, Tensor]]) -> None:
        """Further checks of the validated pairs, before any computation (none by default)."""

    def forward(self, feats_s: Sequence[Tensor], feats_t: Sequence[Tensor]) -> Tensor:
        """Sum over layer pairs of :meth:`layer_loss`; lists of ``B x C x H x W`` tensors."""
        pairs = feature_pairs(
            self.name, feats_s, feats_t,
            layers=self.layers, align=self.align, same_size=self.same_size,
        )  # fmt: skip
        self.check_pairs(pairs)
        losses = [self.layer_loss(index, f_s, f_t) for index, (f_s, f_t) in enumerate(pairs)]
        return torch.stack(losses).sum()

    def from_outputs(
        self, student: ModelOutputs, teacher: ModelOutputs | None, target: Tensor
    ) -> Tensor:
        return self(student.stage_list, teacher.stage_list)

    def extra_repr(self) -> str:
        return f"align={self.align}, layers={self.layers}"


class PooledFeatureLoss(DistillationLoss):
    """A loss on the pooled ``B x D`` features (dimensions may differ between the networks)."""

    @abc.abstractmethod
    def pooled_loss(self, student: Tensor, teacher: Tensor) -> Tensor:
        """The loss of validated fp32 (or fp64) features; ``teacher`` is detached."""

    def forward(self, pooled_s: Tensor, pooled_t: Tensor) -> Tensor:
        return self.pooled_loss(*pooled_pair(self.name, pooled_s, pooled_t))

    def from_outputs(
        self, student: ModelOutputs, teacher: ModelOutputs | None, target: Tensor
    ) -> Tensor:
        if student.pooled is None or teacher.pooled is None:
            raise ValueError(
                f"{self.name}: needs the pooled (penultimate) features of both networks."
            )
        return self(student.pooled, teacher.pooled)
