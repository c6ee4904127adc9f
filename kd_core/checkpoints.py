"""Read the community's checkpoints safely, recognise the network they hold, and save our own.

:func:`load_checkpoint` takes a path or the bytes of an upload and returns a ready model
(:class:`LoadedCheckpoint`). Nothing in a file is ever executed: PyTorch files are read with
``torch.load(weights_only=True)``, which refuses every Python object but tensors and plain
data (``argparse.Namespace`` is allowed only for the ``opt``/``args`` entries that RepDistiller
and torchdistill store, only while reading). Every unreadable input raises
:class:`CheckpointError` (a ``ValueError``) whose message says what is wrong and what to do.

Layouts read (``LoadedCheckpoint.source_format``):

* ``"state_dict"``: a bare ``model.state_dict()``.
* ``"repdistiller"``: ``{"model": state_dict, "epoch", "best_acc" | "accuracy", "optimizer",
  "opt": Namespace}`` (RepDistiller/CRD, mdistiller's ``cifar_teachers`` downloads and its
  ``student_*`` files, which hold just ``{"model": state_dict}``).
* ``"mdistiller"``: mdistiller's training states ``{"epoch", "model": DataParallel(distiller)
  .state_dict(), "optimizer", "best_acc"}``: the student is read from ``module.student.*``;
  the teacher and the distiller's extra modules are skipped.
* ``"torchdistill"``: ``save_ckpt``'s ``{"model", "optimizer", "lr_scheduler", "best_value",
  "args": Namespace}``.
* ``"checkpoint"``: weights under ``"state_dict"``, ``"net"``, ``"student"`` or ``"ema"``, also
  one level deeper (``{"model": {"state_dict": ...}}``).
* ``"safetensors"``: ``.safetensors`` files (recognised by their header, not their name); the
  header's metadata becomes ``metadata``, and files from :func:`export_safetensors` name their
  architecture.
* ``"kd_core"``: files from :func:`save_checkpoint` (their ``training_state``, for resuming
  a run, is read by :func:`load_training_state` only).

``module.`` (DataParallel / DistributedDataParallel) and ``_orig_mod.`` (``torch.compile``)
prefixes are removed. Without an explicit ``arch`` the architecture is the registry entry
(:func:`kd_core.models.list_models`) whose parameter names and shapes the weights match, the
classifier's output size aside; that output size is ``num_classes``.

Example::

    loaded = load_checkpoint("resnet56_vanilla/ckpt_epoch_240.pth")
    loaded.arch, loaded.num_classes, loaded.metadata["epoch"]   # "resnet56", 100, 240
    summarize(loaded)["stages"]["layer3"]                       # [1, 64, 8, 8]
"""

from __future__ import annotations

import argparse
import builtins
import contextlib
import io
import json
import math
import os
import re
import stat
import struct
import tempfile
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, BinaryIO

import torch
from torch import Tensor, nn

from kd_core import models
from kd_core.pickle_scan import pickle_globals

__all__ = [
    "MAX_CHECKPOINT_BYTES",
    "CheckpointError",
    "LoadedCheckpoint",
    "export_safetensors",
    "load_checkpoint",
    "load_training_state",
    "save_checkpoint",
    "summarize",
]

MAX_CHECKPOINT_BYTES = 2 * 1024**3
"""Default size limit for :func:`load_checkpoint` (2 GiB); files are checked before reading."""

FORMAT_VERSION = 1
_WEIGHT_KEYS = ("model", "state_dict", "net", "student", "ema")
_PREFIXES = ("module.", "_orig_mod.")
_REPDISTILLER_KEYS = {"model", "epoch", "best_acc", "accuracy", "optimizer", "opt"}
_TRAINING_STATE_KEYS = {"optimizer", "lr_scheduler", "scheduler", "scaler", "amp"}
_SAFETENSORS_RESERVED = {"format", "format_version", "arch", "num_classes", "metadata"}
# torch.save's legacy (non-zip) format starts with the pickled magic number 0x1950a86a20f9469cfc6c.
_LEGACY_TORCH_MAGIC = b"\x80\x02\x8a\x0a" + bytes.fromhex("6cfc9c46f9206aa85019")
_ZIP_MAGIC = b"PK\x03\x04"
_DOTTED = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+")
_SAFETENSORS_MAX_HEADER = 100_000_000
_CLASS_PROBE = 1009  # a prime no layer width equals: the axes of this size are the head's
_CLOSEST_SHOWN = 3  # closest entries named in an error


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the problem and what to do."""


@dataclass
class LoadedCheckpoint:
    """A network read from a checkpoint, in eval mode, on the CPU.

    Attributes:
        model: the network (``create_model(arch, num_classes)`` with the weights loaded).
        arch: its registry name.
        num_classes: its number of outputs.
        metadata: what else the file stored (epoch, best accuracy, the training options...),
            JSON-friendly: tensors with one element become numbers, ``Namespace`` a dict.
        source_format: the layout recognised (see the module docstring).
        source: the path, or the name given for uploaded bytes.
        weights_key: where the weights were in the file (``"model"``,
            ``"model/module.student."``...); ``None`` for a bare state dict or safetensors.
        skipped: stored entries that were not loaded (optimizer state, a distiller's teacher...).
        also_matches: other registry names the weights fit as well as ``arch``.
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


# --------------------------------------------------------------------------------------------
# Reading bytes: where they come from and what format they are in.


@dataclass
class _Source:
    name: str
    path: Path | None
    data: bytes | None
    size: int
    head: bytes

    def read_all(self) -> bytes:
        if self.data is not None:
            return self.data
        assert self.path is not None
        return self.path.read_bytes()

    def read_range(self, start: int, length: int) -> bytes:
        if self.data is not None:
            return self.data[start : start + length]
        assert self.path is not None
        with self.path.open("rb") as f:
            f.seek(start)
            return f.read(length)

    def torch_target(self) -> str | BinaryIO:
        return str(self.path) if self.path is not None else io.BytesIO(self.data or b"")


def _format_size(size: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size} bytes" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _open_source(source: object, name: str | None, max_bytes: int) -> _Source:
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        label = name or "uploaded file"
        if len(data) > max_bytes:
            raise CheckpointError(
                f"{label} is {_format_size(len(data))}, over the {_format_size(max_bytes)} "
                "limit; pass a larger max_bytes if you expect a checkpoint this big."
            )
        return _Source(label, None, data, len(data), data[:64])
    if not isinstance(source, (str, os.PathLike)):
        raise CheckpointError(
            f"A checkpoint source must be a path (str or pathlib.Path) or bytes, "
            f"got {type(source).__name__}."
        )
    path = Path(source).expanduser()
    label = name or str(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise CheckpointError(f"{label}: no such file; check the path.") from None
    except OSError as exc:
        raise CheckpointError(f"{label}: cannot be read ({exc.strerror or exc}).") from None
    if stat.S_ISDIR(info.st_mode):
        found: list[str] = []
        with contextlib.suppress(OSError):
            suffixes = {".pth", ".pt", ".ckpt", ".bin", ".safetensors"}
            found = sorted(p.name for p in path.iterdir() if p.suffix in suffixes)[:5]
        hint = f" (it holds {', '.join(found)})" if found else ""
        raise CheckpointError(f"{label} is a directory; pass a checkpoint file inside it{hint}.")
    if not stat.S_ISREG(info.st_mode):
        raise CheckpointError(f"{label} is not a regular file; pass a checkpoint file.")
    if info.st_size > max_bytes:
        raise CheckpointError(
            f"{label} is {_format_size(info.st_size)}, over the {_format_size(max_bytes)} "
            "limit; pass a larger max_bytes if you expect a checkpoint this big."
        )
    try:
        with path.open("rb") as f:
            head = f.read(64)
    except OSError as exc:
        raise CheckpointError(f"{label}: cannot be read ({exc.strerror or exc}).") from None
    return _Source(label, path, None, info.st_size, head)


def _looks_like_text(sample: bytes) -> bool:
    if not sample or b"\x00" in sample:
        return False
    printable = sum(b in b"\t\n\r\f" or 32 <= b < 127 or b >= 128 for b in sample)
    if printable / len(sample) < 0.95:
        return False
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start >= len(sample) - 3  # a character cut at the end of the sample
    return True


def _text_problem(src: _Source) -> str:
    text = src.read_range(0, 512).decode("utf-8", errors="replace")
    lowered = text.lstrip().lower()
    if lowered.startswith("version https://git-lfs"):
        return (
            f"{src.name} is a Git LFS pointer, not the weights; fetch the real file "
            "(git lfs pull) and load that."
        )
    if lowered.startswith(("<!doctype html", "<html")):
        return (
            f"{src.name} is an HTML page (a failed download?), not a checkpoint; download the "
            "file itself."
        )
    first = text.strip().splitlines()[0][:40] if text.strip() else ""
    return (
        f"{src.name} is a text file (starts with {first!r}), not a checkpoint; kd_core reads "
        "PyTorch files (.pth/.pt) and .safetensors files."
    )


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


# --------------------------------------------------------------------------------------------
# Finding the weights in what was read.


def _is_tensor_dict(obj: object) -> bool:
    return (
        isinstance(obj, Mapping)
        and len(obj) > 0
        and all(isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items())
    )


def _contains_tensors(obj: object, depth: int = 0) -> bool:
    if isinstance(obj, Tensor):
        return True
    if depth > 4:
        return False
    if isinstance(obj, Mapping):
        return any(_contains_tensors(v, depth + 1) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return any(_contains_tensors(v, depth + 1) for v in obj)
    return False


def _short_floats(value: Any, dtype: torch.dtype) -> Any:
    """Low-precision numbers as the shortest decimals that read back to the same ``dtype``
    value (73.2, not 73.19999694824219)."""
    if isinstance(value, list):
        return [_short_floats(v, dtype) for v in value]
    if not isinstance(value, float) or not math.isfinite(value):
        return value
    for digits in range(3, 10):
        short = float(f"{value:.{digits}g}")
        if torch.tensor(short, dtype=dtype).item() == value:
            return short
    return value


def _jsonable(value: object, depth: int = 0) -> Any:
    """A JSON-friendly copy of ``value``: numbers, strings, lists and string-keyed dicts."""
    if depth > 8:
        return repr(value)[:200]
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Tensor):
        if value.numel() <= 16:
            items = value.detach().cpu().tolist()
            if value.dtype in (torch.float16, torch.bfloat16, torch.float32):
                items = _short_floats(items, value.dtype)
            return _jsonable(items, depth + 1)
        dtype = str(value.dtype).removeprefix("torch.")
        return f"<tensor {'x'.join(map(str, value.shape))} {dtype}>"
    if isinstance(value, argparse.Namespace):
        value = vars(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v, depth + 1) for v in value]
    if hasattr(value, "item"):  # numpy scalars
        with contextlib.suppress(Exception):
            return _jsonable(value.item(), depth + 1)
    return repr(value)[:200]


@dataclass
class _Found:
    state_dict: dict[str, Tensor]
    source_format: str
    location: str | None = None  # the dict keys leading to the weights, "/"-joined
    prefix: str = ""  # key prefixes removed from the weights
    metadata: dict[str, Any] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    arch: str | None = None
    num_classes: int | None = None

    @property
    def weights_key(self) -> str | None:
        return "/".join(part for part in (self.location, self.prefix) if part) or None


def _strip_prefixes(state_dict: dict[str, Tensor]) -> tuple[dict[str, Tensor], str]:
    removed = ""
    while True:
        for prefix in _PREFIXES:
            if all(key.startswith(prefix) for key in state_dict):
                state_dict = {key[len(prefix) :]: v for key, v in state_dict.items()}
                removed += prefix
                break
        else:
            return state_dict, removed


def _describe_keys(keys: list[str]) -> str:
    shown = ", ".join(repr(k) for k in keys[:6])
    return f"[{shown}{', ...' if len(keys) > 6 else ''}]"


def _find_weights(obj: object, name: str) -> _Found:
    if isinstance(obj, Tensor):
        raise CheckpointError(
            f"{name} holds a single tensor ({'x'.join(map(str, obj.shape))}), not a network's "
            "weights; save model.state_dict() instead."
        )
    if not isinstance(obj, Mapping):
        raise CheckpointError(
            f"{name} holds a {type(obj).__name__}, not a network's weights; save "
            "model.state_dict() (or a dict with it under 'model')."
        )
    if not obj:
        raise CheckpointError(f"{name} holds an empty dict: there are no weights in it.")
    if obj.get("format") == "kd_core":
        return _kd_core_weights(obj, name)
    if _is_tensor_dict(obj):
        return _Found(dict(obj), "state_dict")
    top = dict(obj)
    location: tuple[str, ...] | None = None
    for key in _WEIGHT_KEYS:
        if _is_tensor_dict(top.get(key)):
            location = (key,)
            break
    else:
        for key in _WEIGHT_KEYS:
            inner = top.get(key)
            if isinstance(inner, Mapping):
                nested = next((k for k in _WEIGHT_KEYS if _is_tensor_dict(inner.get(k))), None)
                if nested is not None:
                    location = (key, nested)
                    break
    if location is None:
        raise CheckpointError(
            f"{name} holds a dict with keys {_describe_keys([str(k) for k in top])} but no "
            f"weights: no tensor state dict at the top or under {', '.join(_WEIGHT_KEYS)}; "
            "save model.state_dict()."
        )
    weights = top[location[0]] if len(location) == 1 else top[location[0]][location[1]]
    found = _Found(dict(weights), "checkpoint", location="/".join(location))
    if location[0] == "model" and len(location) == 1:
        if "best_value" in top or ("args" in top and "lr_scheduler" in top):
            found.source_format = "torchdistill"
        elif set(top) <= _REPDISTILLER_KEYS:
            found.source_format = "repdistiller"
    for key, value in top.items():
        key = str(key)
        if key == location[0]:
            if len(location) == 2:
                for inner_key, inner_value in value.items():
                    if inner_key != location[1]:
                        _keep(found, f"{key}/{inner_key}", inner_value)
            continue
        _keep(found, key, value)
    return found


def _keep(found: _Found, key: str, value: object) -> None:
    """Record a stored entry as metadata, or as skipped when it is training state or weights."""
    if key in _TRAINING_STATE_KEYS:
        found.skipped.append(f"{key} (training state)")
    elif _contains_tensors(value) and not isinstance(value, Tensor):
        found.skipped.append(f"{key} (more weights, not loaded)")
    elif isinstance(value, Tensor) and value.numel() > 16:
        found.skipped.append(f"{key} (tensor {'x'.join(map(str, value.shape))})")
    else:
        found.metadata[key] = _jsonable(value)


def _kd_core_weights(obj: Mapping, name: str) -> _Found:
    version = obj.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise CheckpointError(f"{name}: kd_core checkpoint without a valid format_version.")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{name} was written by a newer kd_core (format_version {version}, this one reads "
            f"up to {FORMAT_VERSION}); upgrade kd_core to read it."
        )
    arch, num_classes, weights = obj.get("arch"), obj.get("num_classes"), obj.get("state_dict")
    if (
        not isinstance(arch, str)
        or not isinstance(num_classes, int)
        or not _is_tensor_dict(weights)
    ):
        raise CheckpointError(
            f"{name}: kd_core checkpoint is missing its arch, num_classes or state_dict; "
            "it is damaged, save it again."
        )
    metadata = obj.get("metadata")
    return _Found(
        dict(weights),
        "kd_core",
        location="state_dict",
        metadata=_jsonable(metadata) if isinstance(metadata, Mapping) else {},
        skipped=["training_state (training state)"] if "training_state" in obj else [],
        arch=arch,
        num_classes=num_classes,
    )


def _split_distiller(found: _Found) -> None:
    """mdistiller's ``DataParallel(distiller).state_dict()``: keep ``student.*``, skip the rest."""
    if not any(key.startswith("student.") for key in found.state_dict):
        return
    parts: dict[str, int] = {}
    for key in found.state_dict:
        part = key.split(".", 1)[0]
        parts[part] = parts.get(part, 0) + 1
    found.state_dict = {
        key.removeprefix("student."): value
        for key, value in found.state_dict.items()
        if key.startswith("student.")
    }
    found.source_format = "mdistiller"
    found.prefix += "student."
    for part, count in parts.items():
        if part != "student":
            found.skipped.append(f"{part}.* ({count} tensors of the distiller)")


# --------------------------------------------------------------------------------------------
# Which registered network the weights belong to.


@dataclass(frozen=True)
class _Signature:
    shapes: dict[str, tuple[int | None, ...]]  # None marks the axis that is the class count
    class_keys: tuple[str, ...]


@cache
def _signature(name: str) -> _Signature | None:
    """Parameter/buffer names and shapes of registry model ``name``, built on the meta device
    (no memory, no weights) with a class count no layer has otherwise, so that the axes of that
    size are the classifier's; ``None`` when the registry cannot build it."""
    try:
        with torch.device("meta"):
            model = models.create_model(name, num_classes=_CLASS_PROBE)
    except Exception:
        try:  # a network whose construction needs real tensors: build it for real, once
            model = models.create_model(name, num_classes=_CLASS_PROBE)
        except Exception:
            return None
    shapes: dict[str, tuple[int | None, ...]] = {}
    class_keys = []
    for key, value in model.state_dict().items():
        shape = tuple(value.shape)
        if _CLASS_PROBE in shape:
            class_keys.append(key)
            shape = tuple(None if s == _CLASS_PROBE else s for s in shape)
        shapes[key] = shape
    return _Signature(shapes, tuple(class_keys))


def _shape_text(shape: tuple[int | None, ...]) -> str:
    return "x".join("K" if s is None else str(s) for s in shape) or "scalar"


@dataclass
class _Match:
    arch: str
    total: int
    matching: int
    union: int
    missing: list[str]
    unexpected: list[str]
    mismatched: list[tuple[str, tuple[int, ...], tuple[int | None, ...]]]
    classes: set[int]

    @property
    def exact(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched) and len(self.classes) <= 1

    @property
    def score(self) -> float:
        return self.matching / max(self.union, 1)

    @property
    def num_classes(self) -> int | None:
        return next(iter(self.classes)) if len(self.classes) == 1 else None

    def differences(self) -> str:
        parts = []
        if self.missing:
            parts.append(f"{len(self.missing)} missing, first: {self.missing[0]}")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} unexpected, first: {self.unexpected[0]}")
        if self.mismatched:
            key, got, want = self.mismatched[0]
            parts.append(
                f"{len(self.mismatched)} with another shape, first: {key} is "
                f"{_shape_text(got)} in the checkpoint, {_shape_text(want)} in the model"
            )
        if len(self.classes) > 1:
            parts.append(f"inconsistent class counts {sorted(self.classes)}")
        return "; ".join(parts)

    def describe(self) -> str:
        return f"{self.arch} ({self.matching}/{self.total} keys match; {self.differences()})"


def _compare(arch: str, sig: _Signature, shapes: dict[str, tuple[int, ...]]) -> _Match:
    missing, mismatched, classes = [], [], set()
    matching = 0
    for key, want in sig.shapes.items():
        got = shapes.get(key)
        if got is None:
            if key.endswith(".num_batches_tracked"):
                matching += 1  # old checkpoints lack it; BatchNorm fills it in when loading
            else:
                missing.append(key)
            continue
        same_rank = len(got) == len(want)
        if not same_rank or any(w is not None and g != w for g, w in zip(got, want, strict=True)):
            mismatched.append((key, got, want))
            continue
        classes.update(g for g, w in zip(got, want, strict=True) if w is None)
        matching += 1
    unexpected = [key for key in shapes if key not in sig.shapes]
    return _Match(
        arch,
        total=len(sig.shapes),
        matching=matching,
        union=len(sig.shapes) + len(unexpected),
        missing=missing,
        unexpected=unexpected,
        mismatched=mismatched,
        classes=classes,
    )


def _shapes(state_dict: dict[str, Tensor]) -> dict[str, tuple[int, ...]]:
    return {key: tuple(value.shape) for key, value in state_dict.items()}


def _registry() -> list[str]:
    return list(models.list_models())


def _check_arch_name(arch: object, name: str) -> str:
    known = _registry()
    if not isinstance(arch, str) or arch not in known:
        raise CheckpointError(
            f"{name}: unknown architecture {arch!r}; accepted names: {', '.join(known)}."
        )
    return arch


def _match_arch(arch: str, shapes: dict[str, tuple[int, ...]], name: str) -> _Match:
    sig = _signature(arch)
    if sig is None:
        raise CheckpointError(f"{name}: the registry could not build {arch!r} to compare with.")
    return _compare(arch, sig, shapes)


def _infer_arch(shapes: dict[str, tuple[int, ...]], name: str) -> tuple[_Match, list[_Match]]:
    """The registry entry whose names and shapes the weights match, and the others that do."""
    matches = []
    for arch in _registry():
        sig = _signature(arch)
        if sig is not None:
            matches.append(_compare(arch, sig, shapes))
    exact = [m for m in matches if m.exact]
    if exact:
        return exact[0], exact[1:]
    closest = sorted(matches, key=lambda m: m.score, reverse=True)[:_CLOSEST_SHOWN]
    described = "; ".join(m.describe() for m in closest) or "the registry is empty"
    keys = list(shapes)
    raise CheckpointError(
        f"{name}: its weights ({len(keys)} tensors, {_describe_keys(keys)}) match no registered "
        f"architecture; closest: {described}. Check that this is a checkpoint of a network in "
        "kd_core.models.list_models(), or pass arch=... to see how it differs from one."
    )


def _resolve(
    found: _Found, arch: str | None, num_classes: int | None, name: str
) -> tuple[str, int, tuple[str, ...]]:
    if num_classes is not None and (
        isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1
    ):
        raise CheckpointError(f"num_classes must be a positive integer, got {num_classes!r}.")
    shapes = _shapes(found.state_dict)
    explicit = arch is not None
    arch = arch if explicit else found.arch
    others: tuple[str, ...] = ()
    if arch is not None:
        arch = _check_arch_name(arch, name)
        match = _match_arch(arch, shapes, name)
        if not match.exact:
            fits = ""
            if explicit:
                with contextlib.suppress(CheckpointError):
                    best, rest = _infer_arch(shapes, name)
                    fits = f" It fits {', '.join([best.arch] + [m.arch for m in rest])}."
            origin = "" if explicit else " (as its metadata says)"
            raise CheckpointError(
                f"{name} does not fit architecture {arch!r}{origin}: {match.differences()} "
                f"({match.matching}/{match.total} keys match).{fits}"
            )
    else:
        match, rest = _infer_arch(shapes, name)
        arch, others = match.arch, tuple(m.arch for m in rest)
    classes = match.num_classes
    if classes is None:
        classes = num_classes or found.num_classes
        if classes is None:
            raise CheckpointError(
                f"{name}: cannot tell the number of classes of {arch!r}; pass num_classes=..."
            )
    if num_classes is not None and num_classes != classes:
        head = next(iter(_signature(arch).class_keys), "classifier")  # type: ignore[union-attr]
        raise CheckpointError(
            f"{name}: its classifier has {classes} classes ({head} is "
            f"{_shape_text(shapes.get(head, ()))}), not num_classes={num_classes}; pass "
            f"num_classes={classes} or leave it out."
        )
    return arch, classes, others


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


def _read_found(src: _Source) -> _Found:
    """Recognise the format by the first bytes, read it, and find the weights."""
    if src.size == 0:
        raise CheckpointError(f"{src.name} is empty (0 bytes); the file was not saved completely.")
    safetensors_length = _safetensors_header_length(src)
    if src.head.startswith(_ZIP_MAGIC) or src.head.startswith(_LEGACY_TORCH_MAGIC):
        found = _find_weights(_read_torch(src), src.name)
    elif safetensors_length is not None:
        tensors, header = _read_safetensors(src, safetensors_length)
        found = _safetensors_found(tensors, header, src.name)
    elif src.head[:1] == b"\x80":
        data = src.read_all()
        objects = pickle_globals(data)
        if objects:
            raise CheckpointError(_not_allowed_message(src.name, objects))
        raise CheckpointError(
            f"{src.name} is a plain Python pickle, not a PyTorch checkpoint; save the weights "
            "with torch.save(model.state_dict(), path)."
        )
    elif _looks_like_text(src.read_range(0, 4096)):
        raise CheckpointError(_text_problem(src))
    else:
        raise CheckpointError(
            f"{src.name} is not a checkpoint: its first bytes match no known format (PyTorch "
            ".pth/.pt, safetensors); check that this is the right file and that it is complete."
        )
    return found


# --------------------------------------------------------------------------------------------
# Public API.


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
        source: a path, or the bytes of a file (an upload).
        arch: the registry name of the network; inferred from the weights when ``None``.
        num_classes: the expected class count; read from the classifier when ``None``.
        name: how messages refer to the source (e.g. an upload's file name).
        max_bytes: refuse larger inputs (checked before reading).

    Raises:
        CheckpointError: for anything that is not a readable checkpoint of a registered
            network, with a message that says what is wrong and what to do.
    """
    src = _open_source(source, name, max_bytes)
    try:
        found = _read_found(src)
    except OSError as exc:  # the file went away or became unreadable while being read
        raise CheckpointError(f"{src.name}: cannot be read ({exc.strerror or exc}).") from None
    found.state_dict, found.prefix = _strip_prefixes(found.state_dict)
    _split_distiller(found)
    arch, classes, others = _resolve(found, arch, num_classes, src.name)
    try:
        model = models.create_model(arch, num_classes=classes)
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
    )


def _state_dict_for_saving(model: nn.Module) -> dict[str, Tensor]:
    if not isinstance(model, nn.Module):
        raise CheckpointError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
    state, _ = _strip_prefixes(dict(model.state_dict()))
    return {key: value.detach().to("cpu").clone().contiguous() for key, value in state.items()}


def _check_saveable(
    state: dict[str, Tensor], arch: str | None, num_classes: int | None
) -> tuple[str, int]:
    found = _Found(state, "kd_core")
    return _resolve(found, arch, num_classes, "model")[:2]


def _atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Write through ``write`` into a temporary file next to ``path``, then rename it over."""
    directory = path.parent
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename durable where directories can be synced
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


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
    _atomic_write(path, lambda f: torch.save(payload, f))
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
    if not (src.head.startswith(_ZIP_MAGIC) or src.head.startswith(_LEGACY_TORCH_MAGIC)):
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
    if isinstance(loaded_or_model, LoadedCheckpoint):
        model = loaded_or_model.model
        arch = arch or loaded_or_model.arch
        num_classes = num_classes or loaded_or_model.num_classes
        stored.update(loaded_or_model.metadata)
    else:
        model = loaded_or_model
    stored.update(metadata or {})
    state = _state_dict_for_saving(model)
    arch, num_classes = _check_saveable(state, arch, num_classes)
    header = {
        "format": "kd_core",
        "format_version": str(FORMAT_VERSION),
        "arch": arch,
        "num_classes": str(num_classes),
        "metadata": json.dumps(_jsonable(stored)),
    }
    import safetensors.torch

    data = safetensors.torch.save(state, metadata=header)
    _atomic_write(path, lambda f: f.write(data))
    return path


def _input_size(arch: str) -> int:
    """The image side ``arch`` is made for: the registry's hint, else 224 for ``tv_*``, else 32."""
    info = getattr(models, "model_info", None)
    if callable(info):
        with contextlib.suppress(Exception):
            size = info(arch).input_size
            if isinstance(size, int) and size > 0:
                return size
    return 224 if arch.startswith("tv_") else 32


def summarize(loaded: LoadedCheckpoint) -> dict[str, Any]:
    """What to show about a loaded checkpoint, JSON-friendly.

    Keys: ``architecture``, ``num_classes``, ``parameters``, ``source``, ``source_format``,
    ``weights_key``, ``input_shape``, ``stages`` (name -> output shape for one image of
    ``input_shape``; empty when the network declares no stages), ``pooled_shape``,
    ``logits_shape``, ``metadata``, ``skipped``, ``also_matches``.
    """
    model = loaded.model
    side = _input_size(loaded.arch)
    input_shape = [1, 3, side, side]
    stages: dict[str, list[int]] = {}
    pooled_shape = logits_shape = None
    device = next(iter(model.parameters()), torch.empty(0)).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            x = torch.zeros(*input_shape, device=device)
            try:
                outputs = models.extract_features(model, x)
            except ValueError:  # the network declares no stages: logits only
                logits_shape = list(model(x).shape)
            else:
                stages = {k: list(v.shape) for k, v in outputs.stages.items()}
                pooled_shape = list(outputs.pooled.shape) if outputs.pooled is not None else None
                logits_shape = list(outputs.logits.shape)
    finally:
        model.train(was_training)
    return {
        "architecture": loaded.arch,
        "num_classes": loaded.num_classes,
        "parameters": sum(p.numel() for p in model.parameters()),
        "source": loaded.source,
        "source_format": loaded.source_format,
        "weights_key": loaded.weights_key,
        "input_shape": input_shape,
        "stages": stages,
        "pooled_shape": pooled_shape,
        "logits_shape": logits_shape,
        "metadata": _jsonable(loaded.metadata),
        "skipped": list(loaded.skipped),
        "also_matches": list(loaded.also_matches),
    }
