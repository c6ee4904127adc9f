"""Real-browser harness: a live ``streamlit run app.py`` server and headless Debian Chromium.

Fixtures:
    streamlit_server: base URL of a server started once per session (always terminated).
    browser: one headless Chromium per session (Playwright, ``/usr/bin/chromium``).
    app_page: a fresh :class:`AppPage` per test; ``app_page.goto("/", expect_text=...)`` loads a
        page, waits until Streamlit has finished rendering and checks it shows no exception.

Mark every test that uses them ``@pytest.mark.browser`` (or ``pytestmark``), so that
``-m "not browser"`` skips them.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
SERVER_START_TIMEOUT_S = 60.0
RENDER_TIMEOUT_MS = 30_000
# The app root carries the script-run and connection state (Streamlit's own e2e tests use these).
APP_IDLE = (
    '[data-testid="stApp"][data-test-connection-state="CONNECTED"]'
    '[data-test-script-state="notRunning"]'
)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200 and response.read().decode().strip() == "ok"
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


@pytest.fixture(scope="session")
def streamlit_server() -> Iterator[str]:
    """Start ``python -m streamlit run app.py`` on a free loopback port; yield its base URL."""
    port = _free_port()
    command = [
        sys.executable, "-m", "streamlit", "run", "app.py",
        "--server.port", str(port),
        "--server.address", "127.0.0.1",
        "--server.headless", "true",
        "--browser.gatherUsageStats", "false",
        "--server.fileWatcherType", "none",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:

        def captured() -> str:
            err.seek(0)
            out.seek(0)
            return (
                f"stderr:\n{err.read().decode(errors='replace')[-4000:]}\n"
                f"stdout:\n{out.read().decode(errors='replace')[-2000:]}"
            )

        proc = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=err, env=env)
        try:
            base_url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + SERVER_START_TIMEOUT_S
            while not _healthy(f"{base_url}/_stcore/health"):
                if proc.poll() is not None:
                    pytest.fail(f"streamlit exited with code {proc.returncode}\n{captured()}")
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"streamlit did not answer /_stcore/health within "
                        f"{SERVER_START_TIMEOUT_S:.0f} s\n{captured()}"
                    )
                time.sleep(0.2)
            yield base_url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


@pytest.fixture(scope="session")
def browser():
    """One headless Debian Chromium for the session (never ``playwright install``)."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (make chromium).")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            chromium.close()


@dataclass
class AppPage:
    """A Playwright page on the live app, with the console and page errors it collected."""

    page: object  # playwright.sync_api.Page
    base_url: str
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)

    def goto(self, path: str = "/", *, expect_text: str) -> None:
        """Load ``path`` and wait until Streamlit has rendered it and shows ``expect_text``."""
        self.page.goto(f"{self.base_url}{path}", wait_until="domcontentloaded")
        self.page.wait_for_selector('[data-testid="stApp"]', timeout=RENDER_TIMEOUT_MS)
        self.page.get_by_text(expect_text).first.wait_for(timeout=RENDER_TIMEOUT_MS)
        self.wait_idle()

    def wait_idle(self) -> None:
        """Wait for the script run to finish, then check for exceptions and page errors."""
        self.page.wait_for_selector(APP_IDLE, timeout=RENDER_TIMEOUT_MS)
        self.page.wait_for_selector(
            '[data-testid="stStatusWidget"]', state="hidden", timeout=RENDER_TIMEOUT_MS
        )
        self.assert_healthy()

    def assert_healthy(self) -> None:
        exceptions = self.page.locator('[data-testid="stException"]')
        assert exceptions.count() == 0, exceptions.all_inner_texts()
        assert not self.page_errors, self.page_errors


@pytest.fixture
def app_page(browser, streamlit_server) -> Iterator[AppPage]:
    """A fresh browser context and page on the app; closed after the test."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    app = AppPage(page=page, base_url=streamlit_server)
    page.on(
        "console", lambda msg: app.console_errors.append(msg.text) if msg.type == "error" else None
    )
    page.on("pageerror", lambda exc: app.page_errors.append(str(exc)))
    try:
        yield app
    finally:
        context.close()
