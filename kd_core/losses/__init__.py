"""Distillation losses, by name: ``build_loss("amd", margin=1.35)``, ``list_losses()``, and the
weighted :class:`Objective`. One file per method; the registry imports them all when a loss is
first looked up by name (:func:`~kd_core.losses.registry.list_losses`), and the names below on
first use (:mod:`kd_core.lazy`), so that :mod:`~kd_core.losses.amd_constants` reads without
torch."""

from kd_core.lazy import lazy_attributes

__getattr__, __dir__ = lazy_attributes(
    __name__,
    {
        "DistillationLoss": ".base",
        "Objective": ".objective",
        "build_loss": ".registry",
        "list_losses": ".registry",
        "loss_parameters": ".registry",
        "ModelOutputs": "kd_core.outputs",
    },
)

__all__ = [
    "DistillationLoss",
    "ModelOutputs",
    "Objective",
    "build_loss",
    "list_losses",
    "loss_parameters",
]
