"""The script of the AMD workbench, run by every session (the server is ``serve.py``: `streamlit
run serve.py` from the project root; `streamlit run app.py` works too, without its warm-up).

Pages only lay out widgets and call kd_core; the computations live (and are tested) there.
They are in ``app_pages/``, not ``pages/``: Streamlit treats a ``pages/`` folder next to the
entry point as a version-1 multipage app and runs those files directly, bypassing this file
(and with it the sidebar and ``st.navigation``).
"""

from pathlib import Path

import streamlit as st

from app_pages._shared import PAGES, end_script_run, render_sidebar

FOLDER = Path(__file__).resolve().parent / "app_pages"

st.set_page_config(page_title="AMD workbench", page_icon="📐", layout="wide")
page = st.navigation(
    [
        st.Page(str(FOLDER / spec.file), title=spec.title, icon=spec.icon, default=index == 0)
        for index, spec in enumerate(PAGES)
    ]
)
render_sidebar()
try:
    page.run()
finally:  # also after st.stop() or st.rerun()
    end_script_run()
