"""Model tests run batch-2 forward passes of small images: one intra-op thread is as fast, and
it avoids OpenMP's thread barriers, which cost seconds per model on a busy 2-core machine."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _one_intra_op_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
