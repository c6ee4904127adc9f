"""Run code in a new interpreter, where nothing is imported yet: how the tests check what a
module or a page imports (torch, torchvision, timm...) and what a server does as it starts."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def run_fresh_python(code: str, env: Mapping[str, str] | None = None, timeout: float = 300) -> str:
    """Run ``code`` (dedented) in a new interpreter with the project importable and ``env`` added
    to the environment; fail with its stderr if it fails, else return its standard output."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=PROJECT_ROOT,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT), **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout
