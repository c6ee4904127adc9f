"""Writing checkpoints: :func:`save_checkpoint` (kd_core's own format, with an optional
training state to resume from), :func:`load_training_state` (that state back), and
:func:`export_safetensors`. Every write is atomic: a temporary file renamed over the target."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from kd_core.checkpoints.architecture import _resolve
from kd_core.checkpoints.errors import FORMAT_VERSION, MAX_CHECKPOINT_BYTES, CheckpointError
from kd_core.checkpoints.layouts import _strip_prefixes
from kd_core.checkpoints.loading import LoadedCheckpoint
from kd_core.checkpoints.metadata import _jsonable
from kd_core.checkpoints.readers import _is_torch_file, _read_torch
from kd_core.checkpoints.registry import _Found
from kd_core.checkpoints.source import _open_source
from kd_core.files import atomic_write


def _state_dict_for_saving(model: nn.Module) -> dict[str, Tensor]:
    if not isinstance(model, nn.Module):
        raise CheckpointError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
    state, _ = _strip_prefixes(dict(model.state_dict()))
    return {key: value.detach().to("cpu").clone().contiguous() for key, value in state.items()}


def _check_saveable(
    state: dict[str, Tensor],
    arch: str | None,
    num_classes: int | None,
    model_args: dict[str, Any] | None = None,
) -> tuple[str, int]:
    found = _Found(state, "kd_core", arch=arch, model_args=dict(model_args or {}))
    return _resolve(found, arch, num_classes, "model")[:2]


def _check_plain(value: object, where: str, depth: int = 0) -> None:
    """Only what ``torch.load(weights_only=True)`` reads back: tensors, numbers, strings and
    dicts/lists/tuples of them."""
    if value is None or isinstance(value, (Tensor, bool, int, float, str, bytes)):
        return
    if depth < 32 and isinstance(value, dict):
        for key, item in value.items():
            _check_plain(key, f"{where} key {key!r}", depth + 1)
            _check_plain(item, f"{where}[{key!r}]", depth + 1)
        return
    if depth < 32 and isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_plain(item, f"{where}[{index}]", depth + 1)
        return
    raise CheckpointError(
        f"{where} has type {type(value).__name__}; a checkpoint can hold only tensors, numbers, "
        "strings and dicts/lists of them (what torch.load(weights_only=True) reads back)."
    )


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    arch: str,
    num_classes: int,
    metadata: Mapping[str, Any] | None = None,
    *,
    training_state: Mapping[str, Any] | None = None,
) -> Path:
    """Save ``model`` in kd_core's format, atomically (a crash never leaves a partial file).

    The file holds ``{"format": "kd_core", "format_version": 1, "arch", "num_classes",
    "state_dict", "metadata"}``; ``metadata`` is stored JSON-friendly. The weights must fit
    ``create_model(arch, num_classes)`` (a :class:`CheckpointError` otherwise).

    ``training_state`` (optimizer state, epoch... to resume a run) is stored as given under
    ``"training_state"``, if it holds only tensors, numbers, strings and dicts/lists of them;
    :func:`load_training_state` reads it back, :func:`load_checkpoint` skips it.
    """
    path = Path(path).expanduser()
    state = _state_dict_for_saving(model)
    arch, num_classes = _check_saveable(state, arch, num_classes)
    payload: dict[str, Any] = {
        "format": "kd_core",
        "format_version": FORMAT_VERSION,
        "arch": arch,
        "num_classes": num_classes,
        "state_dict": state,
        "metadata": _jsonable(dict(metadata or {})),
    }
    if training_state is not None:
        if not isinstance(training_state, Mapping):
            raise CheckpointError(
                f"training_state must be a dict, got {type(training_state).__name__}."
            )
        training_state = dict(training_state)
        _check_plain(training_state, "training_state")
        payload["training_state"] = training_state
    atomic_write(path, lambda f: torch.save(payload, f))
    return path


def load_training_state(
    source: str | os.PathLike | bytes,
    *,
    name: str | None = None,
    max_bytes: int = MAX_CHECKPOINT_BYTES,
) -> dict[str, Any]:
    """The ``training_state`` that :func:`save_checkpoint` stored in a kd_core checkpoint
    (tensors on the CPU), read with ``weights_only=True`` like every checkpoint.

    Raises:
        CheckpointError: an unreadable file, another format, or no training state in it.
    """
    src = _open_source(source, name, max_bytes)
    if src.size == 0:
        raise CheckpointError(f"{src.name} is empty (0 bytes); the file was not saved completely.")
    if not _is_torch_file(src):
        raise CheckpointError(
            f"{src.name} is not a kd_core checkpoint; training can resume only from the files "
            "kd_core's training writes."
        )
    obj = _read_torch(src)
    if not isinstance(obj, Mapping) or obj.get("format") != "kd_core":
        raise CheckpointError(
            f"{src.name} is not a kd_core checkpoint; training can resume only from the files "
            "kd_core's training writes."
        )
    state = obj.get("training_state")
    if not isinstance(state, Mapping):
        raise CheckpointError(
            f"{src.name} holds no training state (it was saved for inference only); resume "
            "from the run's last checkpoint instead."
        )
    return dict(state)


def export_safetensors(
    loaded_or_model: LoadedCheckpoint | nn.Module,
    path: str | os.PathLike,
    metadata: Mapping[str, Any] | None = None,
    *,
    arch: str | None = None,
    num_classes: int | None = None,
) -> Path:
    """Write the weights as a ``.safetensors`` file whose header names the architecture.

    The header's string metadata holds ``format`` (``"kd_core"``), ``format_version``,
    ``arch``, ``num_classes`` and ``metadata`` (the JSON of a loaded checkpoint's metadata
    updated with ``metadata``), so :func:`load_checkpoint` reads it back without inference.
    For a bare model, ``arch``/``num_classes`` are inferred when not given.
    """
    path = Path(path).expanduser()
    stored: dict[str, Any] = {}
    model_args: dict[str, Any] = {}
    if isinstance(loaded_or_model, LoadedCheckpoint):
        model = loaded_or_model.model
        model_args = loaded_or_model.model_args
        arch = arch or loaded_or_model.arch
        num_classes = num_classes or loaded_or_model.num_classes
        stored.update(loaded_or_model.metadata)
    else:
        model = loaded_or_model
    stored.update(metadata or {})
    state = _state_dict_for_saving(model)
    arch, num_classes = _check_saveable(state, arch, num_classes, model_args)
    header = {
        "format": "kd_core",
        "format_version": str(FORMAT_VERSION),
        "arch": arch,
        "num_classes": str(num_classes),
        "metadata": json.dumps(_jsonable(stored)),
    }
    import safetensors.torch

    data = safetensors.torch.save(state, metadata=header)
    atomic_write(path, lambda f: f.write(data))
    return path
