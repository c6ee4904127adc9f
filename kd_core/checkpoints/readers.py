"""Reading the bytes of the two file families safely, with a message for every way they fail.

PyTorch files are read with ``torch.load(weights_only=True)`` (``argparse.Namespace`` is allowed
only while reading, for the ``opt``/``args`` entries RepDistiller and torchdistill store);
safetensors files have their header checked before ``safetensors`` reads them. Every failure
becomes a :class:`CheckpointError` saying what is wrong (truncated, corrupted, a ZIP archive
that is no checkpoint, Python objects that are not allowed...) and what to do.
"""

from __future__ import annotations

import argparse
import builtins
import json
import re
import struct
import warnings

import torch
from torch import Tensor

from kd_core.checkpoints.errors import CheckpointError
from kd_core.checkpoints.source import _Source

# torch.save's legacy (non-zip) format starts with the pickled magic number 0x1950a86a20f9469cfc6c.
_LEGACY_TORCH_MAGIC = b"\x80\x02\x8a\x0a" + bytes.fromhex("6cfc9c46f9206aa85019")
_ZIP_MAGIC = b"PK\x03\x04"
_DOTTED = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+")
_SAFETENSORS_MAX_HEADER = 100_000_000


def _is_torch_file(src: _Source) -> bool:
    """Whether the first bytes are those of a ``torch.save`` file (ZIP or legacy)."""
    return src.head.startswith(_ZIP_MAGIC) or src.head.startswith(_LEGACY_TORCH_MAGIC)


def _safetensors_header_length(src: _Source) -> int | None:
    """The header length if the first bytes look like a safetensors header, else ``None``."""
    if src.size < 10 or src.head[8:10] not in (b'{"', b"{}", b"{ "):
        return None
    (length,) = struct.unpack("<Q", src.head[:8])
    return length if 2 <= length <= _SAFETENSORS_MAX_HEADER else None


def _not_allowed_message(name: str, objects: list[str]) -> str:
    what = f" ({', '.join(objects[:3])})" if objects else ""
    return (
        f"{name} contains Python objects that are not allowed when loading weights only{what}; "
        "kd_core reads checkpoints with torch.load(weights_only=True) and never executes such "
        "objects. If you trust the file, load it in your own code and re-save just the weights: "
        "torch.save(model.state_dict(), 'weights.pth')."
    )


def _read_torch(src: _Source) -> object:
    """``torch.load`` the source (weights only, CPU), turning every failure into a message."""
    try:
        with (
            warnings.catch_warnings(),
            torch.serialization.safe_globals([argparse.Namespace]),
        ):
            warnings.simplefilter("ignore")
            return torch.load(src.torch_target(), map_location="cpu", weights_only=True)
    except Exception as exc:  # every torch.load failure becomes a CheckpointError
        raise CheckpointError(_torch_load_problem(src, exc)) from None


def _torch_load_problem(src: _Source, exc: Exception) -> str:
    text = str(exc)
    if "weights only load failed" in text.lower():
        # A cut-off file can end inside a global's name: only whole dotted names count, and
        # the builtins torch names bare ("GLOBAL exec was not an allowed global").
        objects = [
            n
            for n in re.findall(r"GLOBAL ([\w.]+)", text)
            if _DOTTED.fullmatch(n) or hasattr(builtins, n)
        ]
        if objects:
            return _not_allowed_message(src.name, list(dict.fromkeys(objects)))
    if src.head.startswith(_ZIP_MAGIC):
        if "central directory" in text or "failed reading zip" in text:
            return (
                f"{src.name} is truncated or corrupted (the ZIP archive torch.save writes is "
                "incomplete); copy or download the file again."
            )
        hints = ("data.pkl", "subdirectory", "file not found", 'hasRecord("version")')
        if any(hint in text for hint in hints):
            return (
                f"{src.name} is a ZIP archive but not a PyTorch checkpoint (torch.save's archives "
                "hold a data.pkl in one folder); pass the .pth file itself."
            )
    truncated = ("truncated", "ran out of input", "unexpected eof")
    if (
        src.head.startswith(_LEGACY_TORCH_MAGIC)
        or isinstance(exc, EOFError)
        or any(hint in text.lower() for hint in truncated)
    ):
        return (
            f"{src.name} is truncated or corrupted (its data ends early or is damaged); copy or "
            "download the file again."
        )
    unpickler = re.search(r"WeightsUnpickler error:\s*(\S.*)", text)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    detail = unpickler.group(1).strip() if unpickler else lines[0] if lines else ""
    return (
        f"{src.name} is corrupted: its data cannot be decoded "
        f"({detail[:160] or type(exc).__name__}); copy or download the file again."
    )


def _read_safetensors(src: _Source, length: int) -> tuple[dict[str, Tensor], dict[str, str]]:
    if 8 + length > src.size:
        raise CheckpointError(
            f"{src.name} is a truncated safetensors file (its header alone needs "
            f"{8 + length} bytes, the file has {src.size}); copy or download it again."
        )
    try:
        header = json.loads(src.read_range(8, length).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CheckpointError(
            f"{src.name}: its safetensors header is not valid JSON; the file is corrupted."
        ) from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{src.name}: its safetensors header is not a JSON object.")
    raw_meta = header.get("__metadata__") or {}
    metadata = {str(k): str(v) for k, v in raw_meta.items()} if isinstance(raw_meta, dict) else {}
    ends = [
        entry["data_offsets"][1]
        for key, entry in header.items()
        if key != "__metadata__" and isinstance(entry, dict) and "data_offsets" in entry
    ]
    needed = 8 + length + max(ends, default=0)
    if src.size < needed:
        raise CheckpointError(
            f"{src.name} is a truncated safetensors file ({src.size} of {needed} bytes); "
            "copy or download it again."
        )
    import safetensors.torch

    try:
        if src.path is not None:
            tensors = safetensors.torch.load_file(str(src.path), device="cpu")
        else:
            tensors = safetensors.torch.load(src.read_all())
    except Exception as exc:
        raise CheckpointError(
            f"{src.name} could not be read as a safetensors file ({str(exc)[:160]}); "
            "the file is corrupted."
        ) from None
    return tensors, metadata
