"""The AMD workbench's server: ``streamlit run serve.py`` from the project root (``make run``).

It serves ``app.py`` (the script every session runs) and, as the server starts, imports the
modules that script needs in a background thread: torch, pandas, plotly and ``kd_core``, about
2.5 s of a quiet 2-core CPU. Without it the first session pays them after the browser has
connected; with it they are mostly done by then (measured in ``benchmarks/bench_app.py``). The
server answers its health check at once either way, and a session that arrives first simply
waits on Python's import lock for the modules still loading.
"""

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import streamlit as st


def import_app_modules() -> None:
    """Import what the first script run of the home page imports (nothing else is run)."""
    import app_pages._shared  # noqa: F401
    import kd_core.figures.margin  # noqa: F401


@asynccontextmanager
async def warm_up(_app: st.App) -> AsyncIterator[None]:
    """Start :func:`import_app_modules` in a daemon thread and serve at once."""
    threading.Thread(target=import_app_modules, name="import-app-modules", daemon=True).start()
    yield


app = st.App("app.py", lifespan=warm_up)
