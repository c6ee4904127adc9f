"""Input checks shared by every loss: each failure is a ``ValueError`` that names the problem
and what is accepted, raised before any computation."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def require_number(
    loss: str,
    name: str,
    value: float,
    *,
    low: float | None = None,
    high: float | None = None,
    low_inclusive: bool = True,
) -> float:
    """``value`` as a float if it is finite and in ``[low, high]`` (``(low, high]`` when not
    ``low_inclusive``); a ``ValueError`` naming the accepted range otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{loss}: {name} must be a number, got {value!r}.")
    value = float(value)
    bounds = (
        f"{'[' if low_inclusive else '('}{'-inf' if low is None else low}, "
        f"{'inf' if high is None else high}]"
    )
    if not math.isfinite(value):
        raise ValueError(f"{loss}: {name} must be finite, got {value}; accepted range {bounds}.")
    too_low = low is not None and (value < low if low_inclusive else value <= low)
    too_high = high is not None and value > high
    if too_low or too_high:
        raise ValueError(f"{loss}: {name} must be in {bounds}, got {value}.")
    return value


def require_tensor(loss: str, what: str, value: object, ndim: int) -> Tensor:
    """Check that ``value`` is a floating tensor with ``ndim`` dimensions."""
    if not isinstance(value, Tensor):
        raise ValueError(f"{loss}: {what} must be a torch.Tensor, got {type(value).__name__}.")
    if value.dim() != ndim:
        layout = {2: "B x D", 4: "B x C x H x W"}.get(ndim, f"{ndim}-D")
        raise ValueError(
            f"{loss}: {what} must be {ndim}-D ({layout}), got shape {tuple(value.shape)}."
        )
    if not value.is_floating_point():
        raise ValueError(f"{loss}: {what} must be a floating-point tensor, got {value.dtype}.")
    return value


def require_same_batch(loss: str, student: Tensor, teacher: Tensor, what: str) -> None:
    """Student and teacher tensors must describe the same samples."""
    if student.shape[0] != teacher.shape[0]:
        raise ValueError(
            f"{loss}: {what} batch sizes differ (student {student.shape[0]}, "
            f"teacher {teacher.shape[0]}); pass the same batch through both networks."
        )
    if student.shape[0] == 0:
        raise ValueError(f"{loss}: {what} is an empty batch; pass at least one sample.")


def select_layers(
    loss: str, features: Sequence[Tensor], layers: Sequence[int] | None, side: str
) -> list[Tensor]:
    """Pick the stage features a loss uses: all of them, or those at the indices ``layers``."""
    if isinstance(features, Tensor) or not isinstance(features, Sequence):
        raise ValueError(
            f"{loss}: {side} features must be a list of B x C x H x W tensors (one per stage), "
            f"got {type(features).__name__}."
        )
    if layers is None:
        return list(features)
    count = len(features)
    bad = [i for i in layers if not -count <= i < count]
    if bad:
        raise ValueError(
            f"{loss}: layer indices {bad} are out of range for {count} {side} stages; "
            f"accepted indices are {-count}..{count - 1}."
        )
    return [features[i] for i in layers]


def align_spatial(f_s: Tensor, f_t: Tensor) -> tuple[Tensor, Tensor]:
    """Average-pool whichever map is larger, per dimension, to the smaller ``H x W``."""
    size = (min(f_s.shape[2], f_t.shape[2]), min(f_s.shape[3], f_t.shape[3]))
    if f_s.shape[2:] != size:
        f_s = F.adaptive_avg_pool2d(f_s, size)
    if f_t.shape[2:] != size:
        f_t = F.adaptive_avg_pool2d(f_t, size)
    return f_s, f_t


def feature_pairs(
    loss: str,
    feats_s: Sequence[Tensor],
    feats_t: Sequence[Tensor],
    *,
    layers: Sequence[int] | None = None,
    align: bool = False,
    same_size: bool = True,
) -> list[tuple[Tensor, Tensor]]:
    """Validate student/teacher stage features and pair them up, layer by layer.

    Checks: equal numbers of layers (at least one), 4-D tensors, equal batch sizes and, when
    ``same_size`` and not ``align``, equal spatial sizes. With ``align`` the larger map of each
    pair is average-pooled to the smaller size.
    """
    student = select_layers(loss, feats_s, layers, "student")
    teacher = select_layers(loss, feats_t, layers, "teacher")
    if len(student) != len(teacher):
        raise ValueError(
            f"{loss}: got {len(student)} student layers and {len(teacher)} teacher layers; "
            "pass one teacher feature per student feature (or choose the same `layers`)."
        )
    if not student:
        raise ValueError(f"{loss}: no layers to distil; pass at least one feature pair.")
    pairs = []
    for index, (f_s, f_t) in enumerate(zip(student, teacher, strict=True)):
        require_tensor(loss, f"student feature {index}", f_s, 4)
        require_tensor(loss, f"teacher feature {index}", f_t, 4)
        require_same_batch(loss, f_s, f_t, f"feature {index}")
        if same_size and f_s.shape[2:] != f_t.shape[2:]:
            if not align:
                raise ValueError(
                    f"{loss}: layer {index} spatial sizes differ (student "
                    f"{tuple(f_s.shape[2:])}, teacher {tuple(f_t.shape[2:])}); pick layers of "
                    "equal size or set align=True to average-pool the larger map."
                )
            f_s, f_t = align_spatial(f_s, f_t)
        pairs.append((f_s, f_t))
    return pairs


def compute_dtype(tensor: Tensor) -> torch.dtype:
    """float64 stays float64; everything else (fp16, bf16, fp32) is computed in fp32."""
    return torch.float64 if tensor.dtype == torch.float64 else torch.float32


def full_precision(tensor: Tensor) -> Tensor:
    """``tensor`` in its :func:`compute_dtype` (losses never compute in fp16/bf16)."""
    return tensor.to(compute_dtype(tensor))


def pooled_pair(loss: str, student: Tensor, teacher: Tensor) -> tuple[Tensor, Tensor]:
    """Validate pooled features (``B x D`` each, dims may differ); teacher detached, both in
    full precision."""
    require_tensor(loss, "student pooled feature", student, 2)
    require_tensor(loss, "teacher pooled feature", teacher, 2)
    require_same_batch(loss, student, teacher, "pooled feature")
    return full_precision(student), full_precision(teacher.detach())
