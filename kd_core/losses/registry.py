"""Losses by name: ``register_loss`` adds a class, ``build_loss`` makes an instance."""

from __future__ import annotations

import inspect
from typing import Any, TypeVar

from kd_core.losses.base import DistillationLoss

_LOSSES: dict[str, type[DistillationLoss]] = {}
LossClass = TypeVar("LossClass", bound=type[DistillationLoss])


def register_loss(cls: LossClass) -> LossClass:
    """Class decorator: make ``cls`` available to :func:`build_loss` under ``cls.name``."""
    if cls.name in _LOSSES:
        raise ValueError(f"A loss named {cls.name!r} is already registered.")
    _LOSSES[cls.name] = cls
    return cls


def list_losses() -> list[str]:
    """The registered loss names, in registration order."""
    return list(_LOSSES)


def loss_class(name: str) -> type[DistillationLoss]:
    """The class registered as ``name``; a ``ValueError`` lists the known names otherwise."""
    if name not in _LOSSES:
        raise ValueError(f"Unknown loss {name!r}; accepted names: {', '.join(_LOSSES)}.")
    return _LOSSES[name]


def loss_parameters(name: str) -> dict[str, Any]:
    """The constructor parameters of loss ``name`` with their defaults (``inspect.Parameter.empty``
    where there is none)."""
    signature = inspect.signature(loss_class(name).__init__)
    return {
        p.name: p.default
        for p in signature.parameters.values()
        if p.name != "self"
        and p.kind not in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)
    }


def build_loss(name: str, **params: Any) -> DistillationLoss:
    """Instantiate the loss registered as ``name`` with ``params``.

    >>> build_loss("kd", temperature=4.0)
    KnowledgeDistillationLoss(temperature=4.0)
    """
    cls = loss_class(name)
    accepted = loss_parameters(name)
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        listed = ", ".join(accepted) or "none"
        raise ValueError(
            f"Loss {name!r} has no parameter {unknown}; accepted parameters: {listed}."
        )
    missing = [
        p
        for p, default in accepted.items()
        if default is inspect.Parameter.empty and p not in params
    ]
    if missing:
        raise ValueError(f"Loss {name!r} needs the parameter(s) {missing}.")
    return cls(**params)
