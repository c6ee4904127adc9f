"""JSON-friendly copies of what a checkpoint stores besides its weights (epoch, accuracy, the
training options...): one-element tensors become numbers, ``Namespace`` a dict, big tensors a
short description, low-precision floats their shortest decimals."""

from __future__ import annotations

import argparse
import contextlib
import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor


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
