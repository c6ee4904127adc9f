"""One registry of networks, keyed by the community's names."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from torch import nn

from kd_core.models.resnet_cifar import CifarResNet

_SMALL = (16, 16, 32, 64)
_WIDE = (32, 64, 128, 256)
_MODELS: dict[str, Callable[..., nn.Module]] = {
    **{f"resnet{d}": partial(CifarResNet, d, _SMALL) for d in (8, 14, 20, 32, 44, 56, 110)},
    "resnet8x4": partial(CifarResNet, 8, _WIDE),
    "resnet32x4": partial(CifarResNet, 32, _WIDE),
}


def list_models() -> list[str]:
    """The names :func:`create_model` accepts."""
    return list(_MODELS)


def create_model(name: str, num_classes: int = 100) -> nn.Module:
    """Build network ``name`` with ``num_classes`` outputs; ``model(x)`` returns logits and
    :func:`~kd_core.models.features.extract_features` the stage outputs, pooled feature and
    logits in the same pass."""
    if name not in _MODELS:
        raise ValueError(f"Unknown model {name!r}; accepted names: {', '.join(_MODELS)}.")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}.")
    return _MODELS[name](num_classes=num_classes)
