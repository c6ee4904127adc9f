"""The AMD workbench's server: ``streamlit run serve.py`` from the project root (``make run``).

It serves ``app.py`` (the script every session runs) and, as the server starts, imports the
modules that script needs in a background thread, in two steps:

1. at once, what the first page needs: the shared glue and Home's figure (Streamlit, pandas
   and ``kd_core``'s light modules, no torch), about 0.5 s of a quiet 2-core CPU;
2. once the first script run has ended (or after :data:`FIRST_PAGE_WAIT_S` without one), the
   glue of the pages that run models: torch, the analyses, the run manager, about 2 s.

Home and the sidebar import no torch, so the first page is drawn without waiting for step 2, and
step 2 does not compete with it for the CPU; the next page finds torch loaded (measured in
``benchmarks/bench_app.py``). The server answers its health check at once either way, and a
session that needs a module still loading waits on Python's import lock.
"""

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import streamlit as st

FIRST_PAGE_WAIT_S = 10.0
"""How long step 2 waits for the first script run to end before it imports anyway."""


def import_app_modules(wait_s: float = FIRST_PAGE_WAIT_S) -> None:
    """Import what the first page imports, then, once a script run has ended (at most ``wait_s``
    seconds later), what the pages that run models import (nothing is run)."""
    import app_pages._shared as shared
    import kd_core.figures.margin  # noqa: F401

    shared.FIRST_RUN_ENDED.wait(wait_s)
    import app_pages._models  # noqa: F401


@asynccontextmanager
async def warm_up(_app: st.App) -> AsyncIterator[None]:
    """Start :func:`import_app_modules` in a daemon thread and serve at once."""
    threading.Thread(target=import_app_modules, name="import-app-modules", daemon=True).start()
    yield


app = st.App("app.py", lifespan=warm_up)
