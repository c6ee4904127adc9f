"""The only Streamlit glue shared by the pages: the sidebar (versions and compute device).

Files whose name starts with ``_`` are never shown as pages; the page list is ``st.navigation``
in ``app.py``.
"""

from __future__ import annotations

import streamlit as st
import torch

import kd_core


@st.cache_resource(show_spinner=False)
def compute_device() -> str:
    """The best device torch can use here: ``cuda`` (with the GPU's name), ``mps`` or ``cpu``."""
    if torch.cuda.is_available():
        return f"cuda ({torch.cuda.get_device_name(0)})"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def render_sidebar() -> None:
    """Versions of kd_core and torch, and the compute device, at the bottom of the sidebar."""
    with st.sidebar:
        st.caption("**AMD workbench**: angular knowledge distillation")
        st.markdown(
            f"- kd_core `{kd_core.__version__}`\n"
            f"- torch `{torch.__version__}`\n"
            f"- compute device: `{compute_device()}`"
        )
