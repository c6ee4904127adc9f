"""Packages whose public names are imported on first use (PEP 562), so that a light caller
(the app's home page and sidebar, ``python -m kd_core --help``) does not pay for torch.

A package lists where each name lives and hands the module's attribute lookups to
:func:`lazy_attributes`::

    __getattr__, __dir__ = lazy_attributes(__name__, {"load_checkpoint": ".loading"})

``from kd_core.checkpoints import load_checkpoint`` then imports ``kd_core.checkpoints.loading``
at that moment, and only then; the name is kept in the package afterwards, so the lookup runs
once. A name not listed raises ``AttributeError`` as usual.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping


def lazy_attributes(
    package: str, names: Mapping[str, str]
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package`` whose attribute ``name`` is
    ``names[name]``: a module path, relative to ``package`` when it starts with ``.``, whose
    attribute of the same name is returned, or the module itself when the path ends with
    ``:module`` (e.g. ``{"torch": "torch:module"}``)."""

    def __getattr__(name: str) -> object:
        try:
            target = names[name]
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        path, _, kind = target.partition(":")
        module = importlib.import_module(path, package)
        value = module if kind == "module" else getattr(module, name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *names})

    return __getattr__, __dir__
