"""Losses by name: ``register_loss`` adds a class, ``build_loss`` makes an instance.

The built-in losses register themselves when their modules are imported; every lookup by name
imports them first (:data:`BUILTIN_MODULES`), so the registry is complete whichever module was
imported before."""

from __future__ import annotations

import importlib
import inspect
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from kd_core.losses.base import DistillationLoss

BUILTIN_MODULES = ("amd", "at", "ce", "fitnet", "kd", "pkt", "rkd", "sp")
"""The modules of :mod:`kd_core.losses` holding one method each, in registration order."""
_LOSSES: dict[str, type[DistillationLoss]] = {}
_builtin_ready = False  # the built-in losses are imported and listed first
LossClass = TypeVar("LossClass", bound="type[DistillationLoss]")


def _builtin_module_names() -> list[str]:
    return [f"kd_core.losses.{name}" for name in BUILTIN_MODULES]


def _import_builtin() -> None:
    """Import the built-in losses once, and list them first, in :data:`BUILTIN_MODULES` order
    (whichever was imported first; losses registered by other code keep their order after)."""
    global _builtin_ready
    if _builtin_ready:
        return
    modules = _builtin_module_names()
    for module in modules:
        importlib.import_module(module)
    rank = {module: index for index, module in enumerate(modules)}
    ordered = sorted(_LOSSES.items(), key=lambda item: rank.get(item[1].__module__, len(rank)))
    _LOSSES.clear()
    _LOSSES.update(ordered)
    _builtin_ready = True


def register_loss(cls: LossClass) -> LossClass:
    """Class decorator: make ``cls`` available to :func:`build_loss` under ``cls.name`` (a
    name of the built-in losses is taken: they are imported first)."""
    if cls.__module__ not in _builtin_module_names():
        _import_builtin()
    if cls.name in _LOSSES:
        raise ValueError(f"A loss named {cls.name!r} is already registered.")
    _LOSSES[cls.name] = cls
    return cls


def list_losses() -> list[str]:
    """The registered loss names, in registration order."""
    _import_builtin()
    return list(_LOSSES)


def loss_class(name: str) -> type[DistillationLoss]:
    """The class registered as ``name``; a ``ValueError`` lists the known names otherwise."""
    _import_builtin()
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
