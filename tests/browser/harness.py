"""Real-browser plumbing shared by the browser tests, the app benchmark and the load test:
a live ``streamlit run serve.py`` on a loopback port and Debian's headless Chromium.

Nothing here is pytest-specific, so ``benchmarks/bench_app.py`` uses it as well (run from the
project root with ``PYTHONPATH=.``: ``from tests.browser.harness import ...``).
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
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

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
RENDER_TIMEOUT_MS = 60_000
# The app root carries the script-run and connection state (Streamlit's own e2e tests use these).
APP_IDLE = (
    '[data-testid="stApp"][data-test-connection-state="CONNECTED"]'
    '[data-test-script-state="notRunning"]'
)


class ServerError(RuntimeError):
    """The Streamlit server did not start (its output is in the message)."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200 and response.read().decode().strip() == "ok"
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


@dataclass
class Server:
    """A running app server."""

    base_url: str
    process: subprocess.Popen
    started_s: float
    """Seconds from launch to a healthy ``/_stcore/health``."""


@contextmanager
def streamlit_server(
    env: Mapping[str, str] | None = None, script: str = "serve.py"
) -> Iterator[Server]:
    """Start ``python -m streamlit run <script>`` (``serve.py``, as ``make run`` does) on a free
    loopback port (always terminated)."""
    port = free_port()
    command = [
        sys.executable, "-m", "streamlit", "run", script,
        "--server.port", str(port),
        "--server.address", "127.0.0.1",
        "--server.headless", "true",
        "--browser.gatherUsageStats", "false",
        "--server.fileWatcherType", "none",
    ]  # fmt: skip
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:

        def captured() -> str:
            err.seek(0)
            out.seek(0)
            return (
                f"stderr:\n{err.read().decode(errors='replace')[-4000:]}\n"
                f"stdout:\n{out.read().decode(errors='replace')[-2000:]}"
            )

        started = time.monotonic()
        proc = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=err, env=full_env)
        try:
            base_url = f"http://127.0.0.1:{port}"
            deadline = started + SERVER_START_TIMEOUT_S
            while not healthy(f"{base_url}/_stcore/health"):
                if proc.poll() is not None:
                    raise ServerError(f"streamlit exited with code {proc.returncode}\n{captured()}")
                if time.monotonic() > deadline:
                    raise ServerError(
                        f"streamlit did not answer /_stcore/health within "
                        f"{SERVER_START_TIMEOUT_S:.0f} s\n{captured()}"
                    )
                time.sleep(0.1)
            yield Server(base_url, proc, time.monotonic() - started)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def launch_chromium(playwright):
    """Debian's headless Chromium (never ``playwright install``)."""
    if not Path(CHROMIUM).exists():
        raise FileNotFoundError(f"{CHROMIUM} is missing: install Debian's chromium (make test).")
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)


@dataclass
class AppPage:
    """A Playwright page on the live app, with the console and page errors it collected."""

    page: object  # playwright.sync_api.Page
    base_url: str
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)

    @classmethod
    def open(cls, browser, base_url: str, width: int = 1400, height: int = 1000) -> AppPage:
        """A new browser context and page on the app (close with :meth:`close`)."""
        context = browser.new_context(viewport={"width": width, "height": height})
        page = context.new_page()
        app = cls(page=page, base_url=base_url)
        page.on(
            "console",
            lambda msg: app.console_errors.append(msg.text) if msg.type == "error" else None,
        )
        page.on("pageerror", lambda exc: app.page_errors.append(str(exc)))
        return app

    def close(self) -> None:
        self.page.context.close()

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
        # Widgets are drawn as skeletons until their lazily loaded code arrives.
        self.page.wait_for_function(
            """() => !document.querySelector('[data-testid="stSkeleton"]')""",
            timeout=RENDER_TIMEOUT_MS,
        )
        self.assert_healthy()

    def set_number(self, label: str, value: float) -> None:
        """Type ``value`` into the number input labelled ``label`` and wait for the rerun."""
        field = self.page.get_by_label(label, exact=True)
        field.fill(str(value))
        field.press("Enter")
        self.wait_idle()

    def wait_for_figures(self, minimum: int = 0) -> int:
        """Wait until at least ``minimum`` plotly charts are on the page and every visible one
        has drawn; returns how many are visible."""
        self.page.wait_for_function(
            "n => document.querySelectorAll('[data-testid=\"stPlotlyChart\"]').length >= n",
            arg=minimum,
            timeout=RENDER_TIMEOUT_MS,
        )
        # Charts in tabs that are not shown are never drawn: only the visible ones count.
        charts = self.page.locator('[data-testid="stPlotlyChart"]').filter(visible=True)
        count = charts.count()
        for index in range(count):
            charts.nth(index).locator(".js-plotly-plot .main-svg").first.wait_for(
                timeout=RENDER_TIMEOUT_MS
            )
        return count

    def wait_for_images(self, minimum: int) -> None:
        """Wait until at least ``minimum`` images (``st.image``) are on the page and every one
        has been decoded (an SVG figure such as Home's is drawn once its image is)."""
        self.page.wait_for_function(
            """n => {
                const sel = '[data-testid="stImageContainer"] img';
                const images = [...document.querySelectorAll(sel)];
                return images.length >= n && images.every(i => i.complete && i.naturalWidth > 0);
            }""",
            arg=minimum,
            timeout=RENDER_TIMEOUT_MS,
        )

    def assert_healthy(self) -> None:
        exceptions = self.page.locator('[data-testid="stException"]')
        assert exceptions.count() == 0, exceptions.all_inner_texts()
        assert not self.page_errors, self.page_errors

    def screenshot(self, path: str | os.PathLike) -> None:
        """The whole page: Streamlit scrolls inside its main block, so full_page alone shows
        only the viewport; grow the viewport to the content height for the shot."""
        page = self.page
        size = page.viewport_size
        height = page.evaluate(
            """() => document.querySelector('[data-testid="stMain"]')?.scrollHeight ?? 0"""
        )
        page.set_viewport_size({"width": size["width"], "height": max(size["height"], height)})
        page.screenshot(path=str(path))
        page.set_viewport_size(size)
