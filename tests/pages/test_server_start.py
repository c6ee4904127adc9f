"""What the server does around the script runs: ``serve.py`` imports the app's modules while it
starts, and each run ends by freezing the long-lived objects so that Streamlit's collection
after the run skips them (both measured in ``benchmarks/bench_app.py``)."""

from __future__ import annotations

import gc
import sys

import pytest

import app_pages._shared as shared
from tests.fresh_python import run_fresh_python


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


def test_serve_imports_the_first_page_at_once_and_torch_after_the_first_run():
    """In a new interpreter: the lifespan returns before the imports are done; the thread it
    started imports the shared glue and Home's figure, but not torch until a script run has
    ended (the first page is drawn without competing with it), then the models' glue."""
    run_fresh_python(
        """
        import asyncio, sys, threading, time
        import serve

        async def start():
            async with serve.warm_up(serve.app):
                return [t for t in threading.enumerate() if t.name == "import-app-modules"]

        [thread] = asyncio.run(start())
        deadline = time.monotonic() + 120
        while "kd_core.figures.margin" not in sys.modules and time.monotonic() < deadline:
            time.sleep(0.05)
        import app_pages._shared as shared

        time.sleep(1.0)  # the thread now waits for a run to end
        assert thread.is_alive()
        assert "torch" not in sys.modules and "app_pages._models" not in sys.modules
        shared.end_script_run()
        thread.join(timeout=120)
        assert not thread.is_alive()
        assert {"app_pages._models", "torch"} <= set(sys.modules)
        assert serve.app.script_path.name == "app.py"
        """
    )


def test_serve_imports_torch_anyway_when_no_page_is_drawn():
    run_fresh_python(
        """
        import sys
        import serve

        serve.import_app_modules(wait_s=0.1, draw_s=60.0)  # no run: no wait to draw
        assert {"app_pages._shared", "app_pages._models", "torch"} <= set(sys.modules)
        """
    )
