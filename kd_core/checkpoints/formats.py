"""Recognising a file by its first bytes: the registered file formats, and the refusals.

Tried in this order: ``torch.save``'s ZIP archive, its legacy pickle format, safetensors. A
file no format claims is refused with the reason: a plain pickle (naming the Python objects it
would create), a text file (Git LFS pointer, HTML page...), or unknown bytes.
"""

from __future__ import annotations

import json
from typing import NoReturn

from torch import Tensor

from kd_core.checkpoints.errors import CheckpointError
from kd_core.checkpoints.layouts import _find_weights
from kd_core.checkpoints.readers import (
    _LEGACY_TORCH_MAGIC,
    _ZIP_MAGIC,
    _not_allowed_message,
    _read_safetensors,
    _read_torch,
    _safetensors_header_length,
)
from kd_core.checkpoints.registry import _formats, _Found, register_format
from kd_core.checkpoints.source import _looks_like_text, _Source, _text_problem
from kd_core.pickle_scan import pickle_globals

_SAFETENSORS_RESERVED = {"format", "format_version", "arch", "num_classes", "metadata"}


def _read_found(src: _Source) -> _Found:
    """Recognise the format by the first bytes, read it, and find the weights."""
    if src.size == 0:
        raise CheckpointError(f"{src.name} is empty (0 bytes); the file was not saved completely.")
    for file_format in _formats():
        if file_format.detect(src):
            found = file_format.read(src)
            found.file_format = file_format.name
            return found
    _refuse(src)


def _refuse(src: _Source) -> NoReturn:
    """The :class:`CheckpointError` for a file no registered format recognises."""
    if src.head[:1] == b"\x80":
        data = src.read_all()
        objects = pickle_globals(data)
        if objects:
            raise CheckpointError(_not_allowed_message(src.name, objects))
        raise CheckpointError(
            f"{src.name} is a plain Python pickle, not a PyTorch checkpoint; save the weights "
            "with torch.save(model.state_dict(), path)."
        )
    if _looks_like_text(src.read_range(0, 4096)):
        raise CheckpointError(_text_problem(src))
    raise CheckpointError(
        f"{src.name} is not a checkpoint: its first bytes match no known format (PyTorch "
        ".pth/.pt, safetensors); check that this is the right file and that it is complete."
    )


# --------------------------------------------------------------------------------------------
# The formats, in the order they are tried.


def _torch_weights(src: _Source) -> _Found:
    """``torch.load`` (weights only) the file, then find the weights by their layout."""
    return _find_weights(_read_torch(src), src.name)


register_format(
    "torch_zip",
    "torch.save's ZIP archive (the default since PyTorch 1.6): .pth/.pt files, read with "
    "torch.load(weights_only=True).",
    detect=lambda src: src.head.startswith(_ZIP_MAGIC),
)(_torch_weights)

register_format(
    "torch_legacy",
    "torch.save's legacy pickle format (_use_new_zipfile_serialization=False, PyTorch < 1.6), "
    "read with torch.load(weights_only=True).",
    detect=lambda src: src.head.startswith(_LEGACY_TORCH_MAGIC),
)(_torch_weights)


@register_format(
    "safetensors",
    "safetensors files (recognised by their header, not their name); the header's metadata "
    "becomes metadata, and export_safetensors's files name their architecture.",
    detect=lambda src: _safetensors_header_length(src) is not None,
)
def _safetensors_weights(src: _Source) -> _Found:
    length = _safetensors_header_length(src)
    assert length is not None
    tensors, header = _read_safetensors(src, length)
    return _safetensors_found(tensors, header, src.name)


def _safetensors_found(tensors: dict[str, Tensor], header: dict[str, str], name: str) -> _Found:
    if not tensors:
        raise CheckpointError(f"{name} is a safetensors file without tensors: no weights in it.")
    found = _Found(dict(tensors), "safetensors")
    for key, value in header.items():
        if key not in _SAFETENSORS_RESERVED:
            found.metadata[key] = value
    if "metadata" in header:
        try:
            stored = json.loads(header["metadata"])
        except json.JSONDecodeError:
            found.metadata["metadata"] = header["metadata"]
        else:
            if isinstance(stored, dict):
                found.metadata.update(stored)
            else:
                found.metadata["metadata"] = stored
    if "arch" in header:
        found.arch = header["arch"]
    if "num_classes" in header:
        try:
            found.num_classes = int(header["num_classes"])
        except ValueError:
            raise CheckpointError(
                f"{name}: its num_classes metadata {header['num_classes']!r} is not a number."
            ) from None
    return found
