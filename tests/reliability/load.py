"""Load driver: concurrent real-browser sessions on the live app while two distillation runs
share the server's run queue.

One headless Chromium, one browser context per session (Playwright's async API: the sync API
is not thread-safe). In each round (a *wave*) every session walks every page of the app
(:data:`app_pages._shared.PAGES`, by the sidebar's links, as people do: one Streamlit session
each), all sessions at once and in the same order, so the first wave is the worst case for the
caches: 8 sessions asking for the same feature sets at the same moment on a cold server (its
cache folder starts empty). Just before the first wave, two tiny distillation runs are
started at once through :class:`~kd_core.training.runs.RunManager` on the server's runs root
(one slot: the second queues until the first is done).

Measured (:class:`LoadReport`):

- errors: exceptions drawn on a page, JavaScript page errors, failed requests, timeouts, a
  figure missing (fewer than the same page drew in another visit);
- page render time of every visit: from navigation to the app idle with every figure drawn
  (p50 and p95 over all visits, and per wave: the first wave against a warm one);
- peak resident memory of the server (its process and children) and of the runs' processes,
  sampled every 0.5 s; the CPU time of the server per wave and of the browser;
- the feature cache's files and how many times each was written (more than once means a
  feature set was computed again instead of shared);
- the runs' outcomes (state, and whether the second waited for the first).

Everything is on the loopback interface, bounded in sessions (:data:`MAX_SESSIONS`) and time
(:data:`VISIT_TIMEOUT_S` per visit, :data:`RUNS_TIMEOUT_S` for the runs after the waves).
Runs, uploads and caches go to a temporary folder.

As a script (prints the figures)::

    PYTHONPATH=. .venv/bin/python tests/reliability/load.py --sessions 8 --rounds 2
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

import numpy as np
import psutil

from app_pages._shared import PAGES, PageSpec
from kd_core.training.config import TrainConfig
from kd_core.training.run_files import FINAL_STATES
from kd_core.training.runs import RunManager
from kd_core.workspace import ASSETS_DIR
from tests.browser.harness import APP_IDLE, launch_chromium, streamlit_server

MAX_SESSIONS = 32
VISIT_TIMEOUT_S = 180.0
RUNS_TIMEOUT_S = 300.0
SAMPLE_S = 0.5
FEATURE_POLL_S = 0.1
HEADINGS = {"home": "Angular margin-based distillation (AMD)"}
"""The page's ``h1`` when it is not the page's title."""
MIN_FIGURES = {"home": 1, "angular": 1, "attention": 1, "embedding": 1}
"""Figures each page draws without any interaction, on the default workspace."""
STATUS_WIDGET = '[data-testid="stStatusWidget"]'
EXCEPTION = '[data-testid="stException"]'
CHART = '[data-testid="stPlotlyChart"]'
IMAGE = '[data-testid="stImageContainer"] img'
T = TypeVar("T")
# The number of visible figures once there are at least ``n`` and all of them are drawn
# (a falsy value, to keep waiting, before). A figure is a plotly chart (drawn once plotly has
# made its SVG) or an image (drawn once decoded: Home's margin figure is an SVG image).
# Figures in a tab not shown are not drawn by plotly until the tab is opened: they are not
# waited for, nor counted.
VISIBLE_FIGURES_DRAWN = f"""n => {{
    const charts = [...document.querySelectorAll('{CHART}')]
        .filter(chart => chart.getClientRects().length > 0);
    const images = [...document.querySelectorAll('{IMAGE}')]
        .filter(image => image.getClientRects().length > 0);
    const drawn = charts.every(chart => chart.querySelector('.js-plotly-plot .main-svg'))
        && images.every(image => image.complete && image.naturalWidth > 0);
    const count = charts.length + images.length;
    return count >= n && drawn ? {{count}} : null;
}}"""
BASE_PATH_PROBES = ("/_stcore/health", "/_stcore/host-config")
NO_SKELETON = """() => !document.querySelector('[data-testid="stSkeleton"]')"""


@dataclass(frozen=True)
class Visit:
    """One page visit of one session: its render time, figures drawn and error, if any."""

    session: int
    wave: int
    page: str
    seconds: float
    figures: int
    error: str | None = None


@dataclass
class LoadReport:
    """What a load run measured (see the module docstring)."""

    sessions: int
    rounds: int
    pages: tuple[str, ...]
    visits: list[Visit] = field(default_factory=list)
    wave_seconds: list[float] = field(default_factory=list)
    wave_server_cpu_s: list[float] = field(default_factory=list)
    browser_cpu_s: float = 0.0
    peak_server_rss: int = 0
    peak_runs_rss: int = 0
    final_server_rss: int = 0
    feature_writes: dict[str, int] = field(default_factory=dict)
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    console_errors: list[str] = field(default_factory=list)
    server_started_s: float = 0.0

    @property
    def errors(self) -> list[Visit]:
        """Visits that failed, plus visits that drew fewer figures than the same page drew
        elsewhere (a figure lost under load)."""
        most = {page: max(v.figures for v in self.visits if v.page == page) for page in self.pages}
        return [v for v in self.visits if v.error or v.figures < most[v.page]]

    def render_seconds(self, wave: int | None = None) -> list[float]:
        """Render times of the successful visits (of one wave, or all)."""
        return [v.seconds for v in self.visits if v.error is None and wave in (None, v.wave)]

    def render_seconds_of(self, page: str) -> list[float]:
        """Render times of the successful visits of one page."""
        return [v.seconds for v in self.visits if v.error is None and v.page == page]

    def percentiles(self, wave: int | None = None) -> tuple[float, float]:
        """``(p50, p95)`` of the render times, seconds (NaN without a successful visit)."""
        times = self.render_seconds(wave)
        if not times:
            return float("nan"), float("nan")
        p50, p95 = np.percentile(times, [50, 95])
        return float(p50), float(p95)

    @property
    def runs_queued_in_turn(self) -> bool:
        """Whether the later run started only once the earlier one had finished."""
        spans = sorted(
            (s.get("started_at") or 0.0, s.get("finished_at") or 0.0) for s in self.runs.values()
        )
        return all(later[0] >= earlier[1] - 1.0 for earlier, later in itertools.pairwise(spans))

    def summary(self) -> str:
        """The figures, one per line."""
        p50, p95 = self.percentiles()
        lines = [
            f"sessions x rounds: {self.sessions} x {self.rounds} over {len(self.pages)} pages "
            f"= {len(self.visits)} visits (server up in {self.server_started_s:.1f} s)",
            f"errors: {len(self.errors)} (browser console errors, not counted: "
            f"{len(self.console_errors)})",
            f"render time, all visits: p50 {p50:.2f} s, p95 {p95:.2f} s",
        ]
        waves = zip(self.wave_seconds, self.wave_server_cpu_s, strict=True)
        for wave, (seconds, cpu) in enumerate(waves):
            w50, w95 = self.percentiles(wave)
            kind = "first (cold)" if wave == 0 else "warm"
            lines.append(
                f"wave {wave + 1} {kind}: {seconds:.1f} s wall, server CPU {cpu:.1f} s, "
                f"p50 {w50:.2f} s, p95 {w95:.2f} s"
            )
        lines.append(
            "mean render per page: "
            + ", ".join(
                f"{page} {np.mean(self.render_seconds_of(page) or [np.nan]):.2f} s"
                for page in self.pages
            )
        )
        lines.append(f"CPU of the browser (Chromium, all sessions): {self.browser_cpu_s:.0f} s")
        lines.append(
            f"peak RSS: server {self.peak_server_rss / 2**20:,.0f} MiB (at the end "
            f"{self.final_server_rss / 2**20:,.0f} MiB), runs {self.peak_runs_rss / 2**20:,.0f} MiB"
        )
        writes = sorted(self.feature_writes.values())
        lines.append(
            f"feature sets cached: {len(writes)}, writes per set: {writes} "
            "(1 each: every set computed once and shared)"
        )
        for run_id, status in self.runs.items():
            took = (status.get("finished_at") or 0.0) - (status.get("started_at") or 0.0)
            lines.append(f"run {run_id}: {status.get('state')} ({took:.1f} s of training)")
        lines.append(f"runs queued in turn (one slot): {self.runs_queued_in_turn}")
        for text, count in Counter(self.console_errors).most_common(3):
            lines.append(f"console error x{count}: {text}")
        for visit in self.errors[:10]:
            lines.append(
                f"error: session {visit.session} wave {visit.wave + 1} {visit.page}: "
                f"{visit.error or f'{visit.figures} figures'}"
            )
        return "\n".join(lines)


def tiny_run_config(name: str) -> TrainConfig:
    """A distillation run of seconds: resnet8 from the bundled resnet20 with AMD, one epoch
    on 128 ``shapes`` images."""
    return TrainConfig(
        student="resnet8", teacher=str(ASSETS_DIR / "teacher_resnet20.pt"), dataset="shapes",
        objective={"ce": 1.0, "amd": 1000.0}, epochs=1, batch_size=32, limit_train=128,
        limit_test=64, log_every=1, device="cpu", name=name,
    )  # fmt: skip


def process_tree_rss(pid: int) -> int:
    """Resident bytes of process ``pid`` and all its children (0 once it is gone)."""
    try:
        process = psutil.Process(pid)
        tree = [process, *process.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for member in tree:
        try:
            total += member.memory_info().rss
        except psutil.Error:
            continue
    return total


class Sampler(threading.Thread):
    """Samples, until :meth:`stop`: the memory of the server and of the runs every
    :data:`SAMPLE_S`, the feature cache folder every :data:`FEATURE_POLL_S` (each change of a
    file's inode or modification time is one write)."""

    def __init__(self, server_pid: int, run_pids: Callable[[], list[int]], features: Path):
        super().__init__(daemon=True)
        self.server_pid, self.run_pids, self.features = server_pid, run_pids, features
        self.peak_server = self.peak_runs = 0
        self.writes: Counter[str] = Counter()
        self._versions: dict[str, tuple[int, int]] = {}
        self._stop_event = threading.Event()

    def run(self) -> None:
        next_sample = 0.0
        while not self._stop_event.is_set():
            if time.monotonic() >= next_sample:
                self.sample_memory()
                next_sample = time.monotonic() + SAMPLE_S
            self.sample_features()
            self._stop_event.wait(FEATURE_POLL_S)
        self.sample_features()

    def sample_memory(self) -> None:
        self.peak_server = max(self.peak_server, process_tree_rss(self.server_pid))
        runs = sum(process_tree_rss(pid) for pid in self.run_pids())
        self.peak_runs = max(self.peak_runs, runs)

    def sample_features(self) -> None:
        for path in self.features.glob("*.pt"):
            try:
                info = path.stat()
            except OSError:
                continue
            version = (info.st_ino, info.st_mtime_ns)
            if self._versions.get(path.stem) != version:
                self._versions[path.stem] = version
                self.writes[path.stem] += 1

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=10)


@dataclass
class _Session:
    """One browser context and page, with the errors its page reported."""

    index: int
    page: Any  # playwright.async_api.Page
    lost: bool = True
    """No app page is open in a usable state (at first, after an error): go by URL."""
    page_errors: int = 0
    console_errors: list[str] = field(default_factory=list)
    failed_responses: list[str] = field(default_factory=list)

    @classmethod
    async def open(cls, browser, index: int) -> _Session:
        context = await browser.new_context(viewport={"width": 1400, "height": 1000})
        context.set_default_timeout(VISIT_TIMEOUT_S * 1000)
        session = cls(index, await context.new_page())
        session.page.on("pageerror", session._page_error)
        session.page.on("console", session._console)
        session.page.on("response", session._response)
        return session

    def _page_error(self, _exc) -> None:
        self.page_errors += 1

    def _response(self, response) -> None:
        path = urlparse(response.url).path
        # The frontend probes for the app's base path from a page's URL (``/runs/_stcore/
        # health``): those 404s are expected; any other failed request is a broken resource.
        if response.status >= 400 and not path.endswith(BASE_PATH_PROBES):
            self.failed_responses.append(f"HTTP {response.status} {path}")

    def _console(self, message) -> None:
        if message.type == "error":
            self.console_errors.append(message.text[:200])


async def render_page(
    page, base_url: str, index: int, spec: PageSpec, *, by_link: bool = False
) -> int:
    """Open ``PAGES[index]`` (Playwright async ``page``) by its URL, or by its sidebar link in
    the session already open, and wait until Streamlit is idle and every figure is drawn (as
    :class:`tests.browser.harness.AppPage` does); returns the number of figures. Raises on an
    exception shown on the page."""
    if by_link:
        nav = page.get_by_test_id("stSidebarNav")
        await nav.get_by_role("link", name=spec.title, exact=True).click()
    else:
        path = "/" if index == 0 else f"/{spec.url_path}"
        await page.goto(f"{base_url}{path}", wait_until="domcontentloaded")
    heading = HEADINGS.get(spec.url_path, spec.title)
    await page.locator("h1").filter(has_text=heading).first.wait_for()
    await page.wait_for_selector(APP_IDLE)
    await page.wait_for_selector(STATUS_WIDGET, state="hidden")
    await page.wait_for_function(NO_SKELETON)
    minimum = MIN_FIGURES.get(spec.url_path, 0)
    figures = await page.wait_for_function(VISIBLE_FIGURES_DRAWN, arg=minimum)
    exceptions = await page.locator(EXCEPTION).all_inner_texts()
    if exceptions:
        raise RuntimeError(f"exception on the page: {exceptions[0][:300]}")
    return (await figures.json_value())["count"]


async def _walk(session: _Session, base_url: str, wave: int) -> list[Visit]:
    """One session's wave: every page in order, by the sidebar's links as people do (the first
    page of the first wave, and the page after a failed visit, by URL)."""
    visits: list[Visit] = []
    for index, spec in enumerate(PAGES):
        by_link = not session.lost
        page_errors, failed = session.page_errors, len(session.failed_responses)
        started = time.monotonic()
        try:
            figures = await asyncio.wait_for(
                render_page(session.page, base_url, index, spec, by_link=by_link),
                timeout=VISIT_TIMEOUT_S,
            )
            error = "JavaScript page error" if session.page_errors > page_errors else None
            error = error or next(iter(session.failed_responses[failed:]), None)
        except Exception as exc:  # a timeout or a failed check is one error of this visit
            figures = 0
            lines = str(exc).strip().splitlines()
            error = f"{type(exc).__name__}: {lines[0][:300] if lines else ''}"
        seconds = time.monotonic() - started
        visits.append(Visit(session.index, wave, spec.url_path, seconds, figures, error))
        session.lost = error is not None
    return visits


def _browser_cpu_s() -> float:
    """CPU seconds used so far by the Chromium processes this process started."""
    total = 0.0
    for process in psutil.Process().children(recursive=True):
        try:
            if process.name().startswith("chrom"):
                total += sum(process.cpu_times()[:2])
        except psutil.Error:
            continue
    return total


async def _drive(report: LoadReport, base_url: str, server_pid: int, on_start) -> None:
    """Open the sessions, call ``on_start``, then run the waves; fills ``report``'s visits,
    wave times, server CPU per wave, browser CPU and console errors."""
    from playwright.async_api import async_playwright

    server = psutil.Process(server_pid)
    async with async_playwright() as playwright:
        browser = await launch_chromium(playwright)
        try:
            opened = [await _Session.open(browser, index) for index in range(report.sessions)]
            on_start()
            for wave in range(report.rounds):
                cpu = sum(server.cpu_times()[:2])
                started = time.monotonic()
                results = await asyncio.gather(*(_walk(s, base_url, wave) for s in opened))
                report.wave_seconds.append(time.monotonic() - started)
                report.wave_server_cpu_s.append(sum(server.cpu_times()[:2]) - cpu)
                report.visits += [visit for session in results for visit in session]
            report.console_errors = [text for s in opened for text in s.console_errors]
            report.browser_cpu_s = _browser_cpu_s()
        finally:
            await browser.close()


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(coroutine)`` in a thread of its own: the calling thread may hold
    Playwright's sync API (the browser tests' session fixture), whose event loop forbids
    ``asyncio.run`` and a second sync Playwright there."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def _wait_for_runs(manager: RunManager, run_ids: list[str]) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + RUNS_TIMEOUT_S
    infos = [manager.read(run_id) for run_id in run_ids]
    while time.monotonic() < deadline and any(i.state not in FINAL_STATES for i in infos):
        time.sleep(0.5)
        infos = [manager.read(run_id) for run_id in run_ids]
    return {info.run_id: {**info.status, "state": info.state} for info in infos}


def run_load(sessions: int, rounds: int, folder: Path) -> LoadReport:
    """Start a server with its folders under ``folder``, two runs and ``sessions`` browser
    sessions walking every page ``rounds`` times; returns what was measured."""
    if not 1 <= sessions <= MAX_SESSIONS or rounds < 1:
        raise ValueError(f"sessions must be 1 to {MAX_SESSIONS} and rounds >= 1.")
    env = {
        "KD_CORE_RUNS": str(folder / "runs"),
        "KD_CORE_UPLOADS": str(folder / "uploads"),
        "KD_CORE_CACHE": str(folder / "cache"),
    }
    manager = RunManager(folder / "runs", max_concurrent=1)
    run_ids: list[str] = []

    def start_runs() -> None:
        run_ids.extend(manager.start(tiny_run_config(f"load-{i}")).run_id for i in range(2))

    def run_pids() -> list[int]:
        pids = []
        for run_id in list(run_ids):
            try:
                pids.append(int(manager.read(run_id).status.get("pid") or 0))
            except (ValueError, OSError):
                continue
        return [pid for pid in pids if pid]

    report = LoadReport(sessions, rounds, pages=tuple(spec.url_path for spec in PAGES))
    with streamlit_server(env) as server:
        assert urlparse(server.base_url).hostname == "127.0.0.1", server.base_url
        report.server_started_s = server.started_s
        sampler = Sampler(server.process.pid, run_pids, folder / "cache" / "features")
        sampler.start()
        try:
            run_async(_drive(report, server.base_url, server.process.pid, start_runs))
            report.runs = _wait_for_runs(manager, run_ids)
        finally:
            sampler.stop()
            for run_id in run_ids:  # never leave a detached run behind
                if manager.read(run_id).state not in FINAL_STATES:
                    manager.cancel(run_id)
        report.final_server_rss = process_tree_rss(server.process.pid)
    report.peak_server_rss, report.peak_runs_rss = sampler.peak_server, sampler.peak_runs
    report.feature_writes = dict(sampler.writes)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=8, help="concurrent browser sessions")
    parser.add_argument("--rounds", type=int, default=2, help="waves over every page")
    args = parser.parse_args()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="kd_core_load_") as folder:
        report = run_load(args.sessions, args.rounds, Path(folder))
    print(report.summary())
    print(f"total: {time.monotonic() - started:.1f} s")


if __name__ == "__main__":
    main()
