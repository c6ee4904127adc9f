"""Real-browser fixtures: a live ``streamlit run serve.py`` server and headless Debian Chromium
(the plumbing is in :mod:`tests.browser.harness`).

Fixtures:
    streamlit_server: base URL of a server started once per session (always terminated), with
        its runs and uploads in a temporary folder.
    browser: (in ``tests/conftest.py``) one headless Chromium per session.
    app_page: a fresh :class:`AppPage` per test; ``app_page.goto("/", expect_text=...)`` loads a
        page, waits until Streamlit has finished rendering and checks it shows no exception.
    screenshot_dir: where page screenshots go: ``$KD_CORE_SCREENSHOTS`` (``make screenshots``
        sets ``docs/screenshots``) or a temporary folder.

Mark every test that uses them ``@pytest.mark.browser`` (or ``pytestmark``), so that
``-m "not browser"`` skips them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser.harness import AppPage, ServerError, streamlit_server

__all__ = ["AppPage"]


@pytest.fixture(scope="session")
def server_folders(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("app_folders")


@pytest.fixture(scope="session")
def streamlit_server_url(server_folders: Path) -> Iterator[str]:
    env = {
        "KD_CORE_RUNS": str(server_folders / "runs"),
        "KD_CORE_UPLOADS": str(server_folders / "uploads"),
    }
    try:
        with streamlit_server(env) as server:
            yield server.base_url
    except ServerError as exc:
        pytest.fail(str(exc))


@pytest.fixture
def app_page(browser, streamlit_server_url) -> Iterator[AppPage]:
    """A fresh browser context and page on the app; closed after the test."""
    app = AppPage.open(browser, streamlit_server_url)
    try:
        yield app
    finally:
        app.close()


@pytest.fixture(scope="session")
def screenshot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    configured = os.environ.get("KD_CORE_SCREENSHOTS", "").strip()
    folder = Path(configured) if configured else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder
