"""One tiny report per test process, shared by the report tests (:mod:`tests.report.tiny`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kd_core.report.build import Report
from tests.report.tiny import shared_tiny_report


@pytest.fixture(scope="session")
def tiny_folder() -> Path:
    return shared_tiny_report()[0]


@pytest.fixture(scope="session")
def report() -> Report:
    return shared_tiny_report()[1]
