"""Device and precision resolution (this machine has no GPU: the CUDA paths are errors here)."""

from __future__ import annotations

import pytest
import torch

from kd_core.training.device import resolve_device, resolve_precision


def test_auto_and_cpu():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    if not torch.cuda.is_available() and torch.backends.mps.is_available():
        expected = "mps"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize("name", ["tpu", "cuda:99", "banana"])
def test_unavailable_devices_are_value_errors(name):
    with pytest.raises(ValueError, match="use auto"):
        resolve_device(name)


def test_precision_on_cpu():
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu).dtype is None
    assert resolve_precision("fp32", cpu).label == "fp32"
    with pytest.raises(ValueError, match="needs a CUDA device"):
        resolve_precision("fp16", cpu)
    with pytest.raises(ValueError, match="auto, fp32, bf16, fp16"):
        resolve_precision("fp8", cpu)


def test_fp16_needs_a_scaler_and_bf16_does_not():
    from kd_core.training.device import Precision

    assert Precision(torch.float16).needs_scaler
    assert not Precision(torch.bfloat16).needs_scaler
    assert Precision(torch.bfloat16).label == "bf16"
