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


@pytest.fixture(scope="session")
def browser():
    """One headless Debian Chromium for the whole session (never ``playwright install``), shared
    by every test that drives a real browser: a second sync Playwright in the same session
    fails."""
    from playwright.sync_api import sync_playwright

    from tests.browser.harness import launch_chromium

    with sync_playwright() as playwright:
        try:
            chromium = launch_chromium(playwright)
        except FileNotFoundError as exc:
            pytest.fail(str(exc))
        try:
            yield chromium
        finally:
            chromium.close()
