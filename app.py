"""Entry point of the AMD workbench: `streamlit run app.py` from the project root.

Pages only lay out widgets and call kd_core; the computations live (and are tested) there.
"""

import streamlit as st

from pages._shared import render_sidebar

st.set_page_config(page_title="AMD workbench", page_icon="📐", layout="wide")

page = st.navigation(
    [st.Page("pages/home.py", title="Home", icon=":material/home:", default=True)],
)
render_sidebar()
page.run()
