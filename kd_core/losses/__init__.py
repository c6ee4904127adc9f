"""Distillation losses, by name: ``build_loss("amd", margin=1.35)``, ``list_losses()``, and the
weighted :class:`Objective`. One file per method; importing this package registers them all."""

from kd_core.losses import amd, at, ce, fitnet, kd, pkt, rkd, sp  # noqa: F401  (registration)
from kd_core.losses.base import DistillationLoss
from kd_core.losses.objective import Objective
from kd_core.losses.registry import build_loss, list_losses, loss_parameters
from kd_core.outputs import ModelOutputs

__all__ = [
    "DistillationLoss",
    "ModelOutputs",
    "Objective",
    "build_loss",
    "list_losses",
    "loss_parameters",
]
