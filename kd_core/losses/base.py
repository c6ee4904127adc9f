"""The common shape of every loss: a module with a natural ``forward`` and a ``from_outputs``
adapter through which the objective feeds it student and teacher outputs."""

from __future__ import annotations

import abc
from typing import ClassVar

from torch import Tensor, nn

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
