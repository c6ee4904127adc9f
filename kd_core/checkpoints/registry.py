"""The two registries of the checkpoint reader: file formats and weights layouts.

A *file format* is recognised by a file's first bytes (``detect``) and read into a
:class:`_Found` (``read``): ``register_format(name, description, detect=...)`` decorates the
reader. A *weights layout* is recognised in the object a PyTorch file holds:
``register_layout(name, description)`` decorates a function ``find(obj, name)`` that returns a
:class:`_Found` when ``obj`` (a non-empty mapping) has that layout and ``None`` otherwise; with
``refines=True`` it decorates ``refine(found)`` instead, which looks at the weights any layout or
format gave (``module.``/``_orig_mod.`` prefixes removed) and may relabel them in place.

Both are tried in registration order, the first match winning, so that order is the precedence;
the modules that register (:mod:`~kd_core.checkpoints.formats`,
:mod:`~kd_core.checkpoints.layouts`) define them in that order. Adding a format or a layout is
one function plus its registration.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from kd_core.checkpoints.source import _Source

if TYPE_CHECKING:
    from torch import Tensor


@dataclass
class _Found:
    """The weights a format or layout found, and what came with them."""

    state_dict: dict[str, Tensor]
    source_format: str
    location: str | None = None  # the dict keys leading to the weights, "/"-joined
    prefix: str = ""  # key prefixes removed from the weights
    metadata: dict[str, Any] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    arch: str | None = None
    num_classes: int | None = None
    file_format: str | None = None  # the registered file format it was read from
    model_args: dict[str, Any] = field(default_factory=dict)  # timm create_model keywords
    pretrained_cfg: dict[str, Any] = field(default_factory=dict)  # timm's input recipe

    @property
    def weights_key(self) -> str | None:
        return "/".join(part for part in (self.location, self.prefix) if part) or None


@dataclass(frozen=True)
class FileFormat:
    """A registered file format.

    Attributes:
        name: its registry name (``LoadedCheckpoint.file_format``).
        description: one line for people (documentation, messages).
        detect: whether a source's first bytes are this format's.
        read: read the source and find the weights; a :class:`CheckpointError` when it cannot.
    """

    name: str
    description: str
    detect: Callable[[_Source], bool]
    read: Callable[[_Source], _Found]


@dataclass(frozen=True)
class Layout:
    """A registered weights layout.

    Attributes:
        name: its registry name (``LoadedCheckpoint.source_format``).
        description: one line for people (documentation, messages).
        find: ``find(obj, name) -> _Found | None``, or for a refining layout
            ``refine(found) -> None``.
        refines: whether it relabels weights already found instead of finding them.
    """

    name: str
    description: str
    find: Callable[..., Any]
    refines: bool = False


_FORMATS: dict[str, FileFormat] = {}
_LAYOUTS: dict[str, Layout] = {}
ReadFormat = TypeVar("ReadFormat", bound=Callable[[_Source], _Found])
FindLayout = TypeVar("FindLayout", bound=Callable[..., Any])


def register_format(
    name: str, description: str, *, detect: Callable[[_Source], bool]
) -> Callable[[ReadFormat], ReadFormat]:
    """Decorator: register the reader it decorates as file format ``name``, recognised by
    ``detect``; formats are tried in registration order."""

    def register(read: ReadFormat) -> ReadFormat:
        if name in _FORMATS:
            raise ValueError(f"A checkpoint file format named {name!r} is already registered.")
        _FORMATS[name] = FileFormat(name, description, detect, read)
        return read

    return register


def register_layout(
    name: str, description: str, *, refines: bool = False
) -> Callable[[FindLayout], FindLayout]:
    """Decorator: register the function it decorates as weights layout ``name`` (see the module
    docstring for the two kinds); layouts are tried in registration order."""

    def register(find: FindLayout) -> FindLayout:
        if name in _LAYOUTS:
            raise ValueError(f"A checkpoint layout named {name!r} is already registered.")
        _LAYOUTS[name] = Layout(name, description, find, refines)
        return find

    return register


def list_formats() -> list[str]:
    """The registered file format names, in the order they are tried."""
    return list(_FORMATS)


def list_layouts() -> list[str]:
    """The registered weights layout names, in the order they are tried (those that find the
    weights, then those that refine them)."""
    return [layout.name for layout in _layouts(False) + _layouts(True)]


def format_info(name: str) -> FileFormat:
    """The file format registered as ``name``; a ``ValueError`` lists the known names otherwise."""
    if name not in _FORMATS:
        raise ValueError(f"Unknown checkpoint file format {name!r}; known: {', '.join(_FORMATS)}.")
    return _FORMATS[name]


def layout_info(name: str) -> Layout:
    """The weights layout registered as ``name``; a ``ValueError`` lists the known names
    otherwise."""
    if name not in _LAYOUTS:
        raise ValueError(f"Unknown checkpoint layout {name!r}; known: {', '.join(_LAYOUTS)}.")
    return _LAYOUTS[name]


def _formats() -> list[FileFormat]:
    return list(_FORMATS.values())


def _layouts(refines: bool) -> list[Layout]:
    return [layout for layout in _LAYOUTS.values() if layout.refines == refines]
