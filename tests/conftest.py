"""Settings for the whole suite.

Tests run tiny forward passes (batches of 2 to 64 small images): one intra-op thread is as fast
as two, and it avoids OpenMP barriers that cost seconds per pass when the other core is busy
(the browser tests' server, a training subprocess). Subprocesses get ``OMP_NUM_THREADS=1``.
"""

from __future__ import annotations

import os

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_intra_op_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    yield
    torch.set_num_threads(threads)
