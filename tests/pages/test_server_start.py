"""What the server does around the script runs: ``serve.py`` imports the app's modules while it
starts, and each run ends by freezing the long-lived objects so that Streamlit's collection
after the run skips them (both measured in ``benchmarks/bench_app.py``)."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import app_pages._shared as shared

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def unfrozen(monkeypatch: pytest.MonkeyPatch):
    """No object frozen before or after the test, and no module count remembered."""
    gc.unfreeze()
    monkeypatch.setattr(shared, "_frozen_modules", 0)
    yield
    gc.unfreeze()


def test_freezing_happens_once_per_set_of_imported_modules(unfrozen, monkeypatch):
    shared.freeze_long_lived_objects()
    frozen = gc.get_freeze_count()
    assert frozen > 10_000  # torch, pandas, streamlit and kd_core are loaded here

    # Frozen objects that lose their last reference are freed (e.g. by an earlier test's
    # thread), so the count may shrink between calls: a freeze shows as a growth by the 1,000
    # lists made after the first one, which stay alive until the end.
    made_later = [[] for _ in range(1000)]  # a later run's objects, no new module: not frozen
    shared.freeze_long_lived_objects()
    unchanged = gc.get_freeze_count()
    assert unchanged <= frozen

    monkeypatch.setitem(sys.modules, "a_module_imported_later", sys)  # a page's first imports
    shared.freeze_long_lived_objects()
    assert gc.get_freeze_count() > unchanged + 500  # frozen now, the 1,000 lists with them
    assert len(made_later) == 1000


def test_a_collection_after_freezing_skips_the_frozen_objects(unfrozen):
    shared.freeze_long_lived_objects()
    cycle: list[object] = []
    cycle.append(cycle)  # garbage made by a run after the freeze is still collected
    del cycle
    assert gc.collect(2) >= 1


def test_serve_imports_the_app_modules_in_a_thread_and_serves_at_once():
    """In a new interpreter: the lifespan returns before the imports are done, and the thread
    it started imports the shared glue and the home page's figure."""
    code = """
        import asyncio, sys, threading
        import serve

        async def start():
            async with serve.warm_up(serve.app):
                return [t for t in threading.enumerate() if t.name == "import-app-modules"]

        [thread] = asyncio.run(start())
        thread.join(timeout=120)
        assert not thread.is_alive()
        assert {"app_pages._shared", "kd_core.figures.margin", "torch"} <= set(sys.modules)
        assert serve.app.script_path.name == "app.py"
    """
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
