"""The CUDA checks of :mod:`tests.cuda.cuda_checks`, on the first CUDA device; skipped where
there is none (``make gpu-check`` runs them on a GPU machine)."""

from __future__ import annotations

import pytest
import torch

from tests.cuda.cuda_checks import CHECKS

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(
        not torch.cuda.is_available(), reason="needs a CUDA device: run make gpu-check"
    ),
]


@pytest.mark.parametrize("check", CHECKS, ids=[check.__name__[6:] for check in CHECKS])
def test_on_cuda(check, tmp_path):
    check(tmp_path, torch.device("cuda"))
