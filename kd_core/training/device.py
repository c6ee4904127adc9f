"""Where and in which precision to train: ``auto`` picks cuda, then mps, then cpu."""

from __future__ import annotations

from dataclasses import dataclass

import torch

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DATA_ON_DEVICE = ("auto", "on", "off")
"""Where batches are prepared (see :mod:`kd_core.training.data_path`)."""


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` (cuda, then mps, then cpu) or an explicit device such as ``cpu``, ``cuda:1``,
    ``mps``; a ``ValueError`` when it does not exist here."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise ValueError(f"Unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps.") from error
    if device.type == "cuda":
        count = torch.cuda.device_count()
        if count == 0 or (device.index is not None and device.index >= count):
            raise ValueError(
                f"Device {name!r} is not available here ({count} CUDA devices); use auto."
            )
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError("Device 'mps' is not available here; use auto or cpu.")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"Unsupported device {name!r}; use auto, cpu, cuda, cuda:N or mps.")
    return device


def tune_for(device: torch.device) -> None:
    """On CUDA, let cuDNN time its convolution algorithms once per input shape and keep the
    fastest (a training step has fixed shapes), unless deterministic algorithms were asked for
    (``torch.backends.cudnn.deterministic``); nothing elsewhere."""
    if device.type == "cuda" and not torch.backends.cudnn.deterministic:
        torch.backends.cudnn.benchmark = True


@dataclass(frozen=True)
class Precision:
    """The autocast dtype (``None``: fp32) and whether fp16 needs a gradient scaler."""

    dtype: torch.dtype | None

    @property
    def needs_scaler(self) -> bool:
        return self.dtype == torch.float16

    @property
    def label(self) -> str:
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]


def resolve_precision(name: str, device: torch.device) -> Precision:
    """``auto``: bf16 autocast on CUDA devices that support it, fp16 on other CUDA devices,
    fp32 elsewhere (CPU autocast is slower than fp32 for these convolutions)."""
    if name not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {name!r}.")
    if name == "fp32" or (name == "auto" and device.type != "cuda"):
        return Precision(None)
    if name == "auto":
        return Precision(torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
    if device.type != "cuda":
        raise ValueError(f"precision {name} needs a CUDA device; this run uses {device.type}.")
    return Precision(torch.bfloat16 if name == "bf16" else torch.float16)
