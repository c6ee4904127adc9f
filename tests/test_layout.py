"""Project-wide rules: kd_core is usable without Streamlit."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import kd_core

ROOT = Path(__file__).resolve().parents[1]


def test_kd_core_never_imports_streamlit():
    modules = [m.name for m in pkgutil.walk_packages(kd_core.__path__, prefix="kd_core.")]
    assert "kd_core.losses.amd" in modules
    script = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print('streamlit' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"
