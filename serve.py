"""The AMD workbench's server: ``streamlit run serve.py`` from the project root (``make run``).

It serves ``app.py`` (the script every session runs) and, as the server starts, imports the
modules that script needs in a background thread, in two steps:

1. at once, what the first page needs: the shared glue and Home's figure (Streamlit, pandas
   and ``kd_core``'s light modules, no torch), about 0.5 s of a quiet 2-core CPU;
2. :data:`PAGE_DRAW_S` after the first script run has ended (or :data:`FIRST_PAGE_WAIT_S`
   after the start without one), the glue of the pages that run models: torch, the analyses,
   the run manager, about 2 s.

Home and the sidebar import no torch, so the first page is drawn without waiting for step 2, and
step 2 leaves the CPU to the browser while it draws that page; the next page finds torch loaded
(measured in ``benchmarks/bench_app.py``). A page that needs torch sooner imports it itself. The
server answers its health check at once either way, and a session that needs a module still
loading waits on Python's import lock.
"""

import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import streamlit as st

FIRST_PAGE_WAIT_S = 10.0
"""How long step 2 waits for the first script run to end before it imports anyway."""
PAGE_DRAW_S = 3.0
"""How long step 2 waits after the first script run: the browser is still drawing that page
(fonts, formulas, the figure: 1 to 2 s on a 2-core machine), and importing torch beside it
delayed the drawn page by 0.8 s (benchmarks/bench_app.py, 3 runs each: home drawn 3.4-4.4 s
after healthy without this wait, 2.6-3.1 s with it)."""


def import_app_modules(wait_s: float = FIRST_PAGE_WAIT_S, draw_s: float = PAGE_DRAW_S) -> None:
    """Import what the first page imports, then, ``draw_s`` seconds after a script run has ended
    (``wait_s`` seconds at most without one), what the pages that run models import (nothing is
    run)."""
    import app_pages._shared as shared
    import kd_core.figures.margin  # noqa: F401

    if shared.FIRST_RUN_ENDED.wait(wait_s):
        time.sleep(draw_s)
    import app_pages._models  # noqa: F401


@asynccontextmanager
async def warm_up(_app: st.App) -> AsyncIterator[None]:
    """Start :func:`import_app_modules` in a daemon thread and serve at once."""
    threading.Thread(target=import_app_modules, name="import-app-modules", daemon=True).start()
    yield


app = st.App("app.py", lifespan=warm_up)
