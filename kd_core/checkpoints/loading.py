"""Reading a checkpoint into a ready network: :func:`load_checkpoint` and what it returns,
:class:`LoadedCheckpoint`. The format is recognised (:mod:`~kd_core.checkpoints.formats`), the
weights found (:mod:`~kd_core.checkpoints.layouts`), the architecture checked or inferred
(:mod:`~kd_core.checkpoints.architecture`), and the weights loaded strictly. A folder is read as
a timm hub folder (:mod:`~kd_core.checkpoints.hub`): its ``config.json`` names the architecture,
and files exported from one carry that config in their metadata."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from kd_core import models
from kd_core.checkpoints.architecture import _resolve
from kd_core.checkpoints.errors import MAX_CHECKPOINT_BYTES, CheckpointError
from kd_core.checkpoints.formats import _read_found
from kd_core.checkpoints.hub import apply_hub_config, hub_folder, read_hub_config
from kd_core.checkpoints.layouts import _refine, _strip_prefixes
from kd_core.checkpoints.source import _open_source


@dataclass
class LoadedCheckpoint:
    """A network read from a checkpoint, in eval mode, on the CPU.

    Attributes:
        model: the network (``create_model(arch, num_classes)`` with the weights loaded).
        arch: its registry name.
        num_classes: its number of outputs.
        metadata: what else the file stored (epoch, best accuracy, the training options...),
            JSON-friendly: tensors with one element become numbers, ``Namespace`` a dict.
        source_format: the layout recognised (a name of :func:`list_layouts`, or
            ``"safetensors"``; see the package docstring).
        source: the path, or the name given for uploaded bytes.
        weights_key: where the weights were in the file (``"model"``,
            ``"model/module.student."``...); ``None`` for a bare state dict or safetensors.
        skipped: stored entries that were not loaded (optimizer state, a distiller's teacher...).
        also_matches: other registry names the weights fit as well as ``arch``.
        file_format: the file format recognised (a name of :func:`list_formats`); ``None``
            when the checkpoint was not read from a file.
        model_args: the timm ``create_model`` keywords the model was built with (from a hub
            folder's ``config.json``; ``{}`` otherwise).
    """

    model: nn.Module
    arch: str
    num_classes: int
    metadata: dict[str, Any] = field(default_factory=dict)
    source_format: str = "state_dict"
    source: str = "<bytes>"
    weights_key: str | None = None
    skipped: tuple[str, ...] = ()
    also_matches: tuple[str, ...] = ()
    file_format: str | None = None
    model_args: dict[str, Any] = field(default_factory=dict)


def load_checkpoint(
    source: str | os.PathLike | bytes,
    arch: str | None = None,
    num_classes: int | None = None,
    *,
    name: str | None = None,
    max_bytes: int = MAX_CHECKPOINT_BYTES,
) -> LoadedCheckpoint:
    """Read a checkpoint and return its network, ready to run.

    Args:
        source: a path (a file, or a timm hub folder or hub cache repository), or the bytes
            of a file (an upload).
        arch: the registry name of the network; inferred from the weights when ``None``.
        num_classes: the expected class count; read from the classifier when ``None``.
        name: how messages refer to the source (e.g. an upload's file name).
        max_bytes: refuse larger inputs (checked before reading).

    Raises:
        CheckpointError: for anything that is not a readable checkpoint of a registered
            network, with a message that says what is wrong and what to do.
    """
    config = None
    folder = _hub_folder_of(source)
    if folder is not None:
        name = name or str(source)
        source, config = read_hub_config(folder, name)
    src = _open_source(source, name, max_bytes)
    try:
        found = _read_found(src)
    except OSError as exc:  # the file went away or became unreadable while being read
        raise CheckpointError(f"{src.name}: cannot be read ({exc.strerror or exc}).") from None
    config = config or found.metadata.get("timm_config")  # an export of a hub folder
    if isinstance(config, dict):
        apply_hub_config(found, config)
    found.state_dict, found.prefix = _strip_prefixes(found.state_dict)
    _refine(found)
    arch, classes, others = _resolve(found, arch, num_classes, src.name)
    try:
        model = models.create_model(
            arch,
            num_classes=classes,
            model_args=found.model_args if arch == found.arch else None,
            pretrained_cfg=found.pretrained_cfg if arch == found.arch else None,
        )
        model.load_state_dict(found.state_dict, strict=True)
    except Exception as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        detail = lines[-1] if lines else type(exc).__name__
        raise CheckpointError(
            f"{src.name}: the weights do not load into {arch} ({detail[:200]})."
        ) from None
    model.eval()
    return LoadedCheckpoint(
        model=model,
        arch=arch,
        num_classes=classes,
        metadata=found.metadata,
        source_format=found.source_format,
        source=src.name,
        weights_key=found.weights_key,
        skipped=tuple(found.skipped),
        also_matches=others,
        file_format=found.file_format,
        model_args=found.model_args if arch == found.arch else {},
    )


def _hub_folder_of(source: object) -> Path | None:
    """The hub folder a path names, if it names a folder that is one."""
    if not isinstance(source, (str, os.PathLike)):
        return None
    path = Path(source).expanduser()
    return hub_folder(path) if path.is_dir() else None
