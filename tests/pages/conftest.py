"""AppTest fixtures: the app with its writable folders (runs, uploads, caches) in a tmp dir."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

APP = Path(__file__).resolve().parents[2] / "app.py"


@pytest.fixture(scope="session")
def page_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache folder (generated data, features) for all page tests."""
    return tmp_path_factory.mktemp("kd_core_cache")


@pytest.fixture
def app_folders(tmp_path: Path, page_cache: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point runs, uploads and the hub cache at ``tmp_path`` and the cache at
    :func:`page_cache`; clear Streamlit's caches (they live in the process and would carry
    another test's folders)."""
    for variable, folder in (
        ("KD_CORE_RUNS", "runs"),
        ("KD_CORE_UPLOADS", "uploads"),
        ("HF_HUB_CACHE", "hub"),  # the workspace lists this hub cache's timm checkpoints
    ):
        monkeypatch.setenv(variable, str(tmp_path / folder))
    monkeypatch.setenv("KD_CORE_CACHE", str(page_cache))
    st.cache_resource.clear()
    st.cache_data.clear()
    return tmp_path


@pytest.fixture
def open_page(app_folders: Path) -> Callable[[str], AppTest]:
    """``open_page("inspector.py")``: the app run once on that page, checked for exceptions."""

    def run(page: str | None = None) -> AppTest:
        at = AppTest.from_file(str(APP), default_timeout=120).run()
        if page is not None:
            at.switch_page(f"app_pages/{page}").run()
        assert not at.exception, [e.value for e in at.exception]
        return at

    return run
