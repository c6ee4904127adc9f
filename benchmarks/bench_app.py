"""App speed in a real browser (prints figures; run with `make bench`).

1. Server start to home page rendered: ``streamlit run serve.py`` launched (as ``make run``),
   then the home page loaded in headless Chromium until Streamlit is idle and its figure
   (an SVG image) drawn. Target <= 3 s
   (from the server answering its health check to the page rendered; the launch itself is
   printed too).
2. Every page, cold (first visit after the server started: models loaded, features computed)
   and warm (second visit: served from the caches), reached as a user does, by the sidebar's
   page links in one browser session. Time from the click to the page idle with all its
   figures drawn. Targets: cold <= 8 s, warm <= 1 s. A new browser session is timed on the
   home page as well: in a new browser profile (nothing cached: the frontend's 10 MB of
   JavaScript are fetched and compiled) and in a second tab of it (cached).
3. Server resident memory (the Streamlit process and its children) after visiting every page.
   Target <= 1.5 GB.

Runs and uploads go to a temporary folder; the workspace is the default one (bundled teacher,
vanilla and AMD students, 1,000 ``shapes`` test images). The feature cache on disk is a
temporary folder too, so "cold" really computes. ``--beside-group`` first starts the Distill
page's classroom group (vanilla, KD, AT, AMD from the bundled teacher, preset
``shapes-classroom``) in the runs folder, so every figure is taken while it trains, as in a
lecture; the server's memory then excludes the group's own process.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import psutil
from playwright.sync_api import sync_playwright

from app_pages._shared import PAGES
from tests.browser.harness import AppPage, launch_chromium, streamlit_server

HEADINGS = {"home": "Angular margin-based distillation (AMD)"}
MIN_FIGURES = {"angular": 1, "attention": 1, "embedding": 1}
"""Plotly figures each page draws at least (Home's margin figure is an SVG image instead)."""
MIN_IMAGES = {"home": 1}


MINIMAL_SCRIPT = """import streamlit as st

st.title("A minimal page")
st.write("A title and a line of text: no sidebar, no figure, no torch.")
"""
"""The reference script of :func:`streamlit_floor`."""


def timed_visit(app: AppPage, url_path: str, heading: str) -> float:
    """Seconds from navigation to the page idle with its figures drawn (a new session)."""
    start = time.perf_counter()
    app.goto(f"/{url_path}" if url_path != "home" else "/", expect_text=heading)
    app.wait_for_figures(MIN_FIGURES.get(url_path, 0))
    app.wait_for_images(MIN_IMAGES.get(url_path, 0))
    return time.perf_counter() - start


def visit(browser, base_url: str, url_path: str, heading: str) -> tuple[float, float]:
    """A new session's seconds to ``url_path`` in a new browser profile (nothing cached), then in
    a new tab of that browser once the first is closed (the frontend's files cached, as for a
    returning user; the first tab is closed so that what it does once drawn, such as Home's
    preload of plotly.js, is not timed as part of the second)."""
    app = AppPage.open(browser, base_url)
    try:
        first = timed_visit(app, url_path, heading)
        context = app.page.context
        app.page.close()
        tab = AppPage(page=context.new_page(), base_url=base_url)
        return first, timed_visit(tab, url_path, heading)
    finally:
        app.close()


def streamlit_floor(browser, folder: Path) -> tuple[float, float, float]:
    """The first three measures on :data:`MINIMAL_SCRIPT` instead of the app: seconds from
    healthy to its page drawn, then a new session in a new browser profile and in a second
    tab. What Streamlit's server and frontend cost on this machine before any page of ours."""
    script = folder / "minimal_app.py"
    script.write_text(MINIMAL_SCRIPT)
    heading = "A minimal page"
    with streamlit_server(script=str(script)) as server:
        app = AppPage.open(browser, server.base_url)
        first = timed_visit(app, "", heading)  # "/": the script's one page, nothing to wait for
        app.close()
        return (first, *visit(browser, server.base_url, "", heading))


def navigate(app: AppPage, spec, heading: str) -> float:
    """Seconds from clicking ``spec``'s sidebar link to the page idle with its figures drawn."""
    page = app.page
    start = time.perf_counter()
    page.get_by_test_id("stSidebarNav").get_by_role("link", name=spec.title).click()
    page.locator("h1").filter(has_text=heading).first.wait_for()
    app.wait_idle()
    app.wait_for_figures(MIN_FIGURES.get(spec.url_path, 0))
    app.wait_for_images(MIN_IMAGES.get(spec.url_path, 0))
    return time.perf_counter() - start


def server_memory_mb(pid: int) -> float:
    process = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [process, *process.children(recursive=True)]) / 2**20


def start_classroom_group(runs: Path) -> list[str]:
    """Start the classroom group in ``runs`` as the Distill page does; its run ids."""
    from kd_core.training.runs import RunManager
    from kd_core.views.distill import CLASSROOM_PRESET, group_configs, preset_form
    from kd_core.workspace import ASSETS_DIR

    form = preset_form(CLASSROOM_PRESET)
    form.teacher = str(ASSETS_DIR / "teacher_resnet20.pt")
    configs = group_configs(form, ["vanilla", "kd", "at", "amd"], CLASSROOM_PRESET)
    return [info.run_id for info in RunManager(runs).start_group(configs, [None] * len(configs))]


def group_states(runs: Path, run_ids: list[str]) -> str:
    from kd_core.training.runs import RunManager

    manager = RunManager(runs)
    return ", ".join(sorted({manager.read(run_id).state for run_id in run_ids}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--beside-group", action="store_true", help="measure while a classroom group trains"
    )
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench_app_"))
    env = {
        "KD_CORE_RUNS": str(folder / "runs"),
        "KD_CORE_UPLOADS": str(folder / "uploads"),
        "KD_CORE_CACHE": str(folder / "cache"),
    }
    group = start_classroom_group(folder / "runs") if args.beside_group else []
    if group:
        print(f"a classroom group of {len(group)} students trains beside the measurements")
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        launched = time.perf_counter()
        with streamlit_server(env) as server:
            app = AppPage.open(browser, server.base_url)
            home = timed_visit(app, "home", HEADINGS["home"])
            app.close()
            print(
                f"server launch to healthy: {server.started_s:.2f} s; home page rendered "
                f"{home:.2f} s later ({time.perf_counter() - launched:.2f} s from launch); "
                "target <= 3 s"
            )
            session, tab = visit(browser, server.base_url, "home", HEADINGS["home"])
            print(
                f"new browser session on the home page, warm server: {session:.2f} s in a new "
                f"browser profile, {tab:.2f} s in a second tab (frontend cached); target <= 1 s"
            )
            app = AppPage.open(browser, server.base_url)
            app.goto("/", expect_text=HEADINGS["home"])
            times = {}
            for visit_kind in ("cold", "warm"):
                for spec in [*PAGES[1:], PAGES[0]]:
                    heading = HEADINGS.get(spec.url_path, spec.title)
                    times[spec.url_path, visit_kind] = navigate(app, spec, heading)
            app.close()
            print(f"{'page':<12} {'cold (s)':>9} {'warm (s)':>9}   targets: cold <= 8, warm <= 1")
            for spec in PAGES:
                cold, warm = times[spec.url_path, "cold"], times[spec.url_path, "warm"]
                print(f"{spec.url_path:<12} {cold:>9.2f} {warm:>9.2f}")
            print(
                f"server resident memory after every page: "
                f"{server_memory_mb(server.process.pid):,.0f} MB; target <= 1,536 MB"
            )
            if group:
                print(f"the group's students at the end: {group_states(folder / 'runs', group)}")
        first, session, tab = streamlit_floor(browser, folder)
        print(
            f"reference, a minimal Streamlit page (a title and a line; no sidebar, figure or "
            f"torch): {first:.2f} s after healthy; a new session {session:.2f} s in a new "
            f"profile, {tab:.2f} s in a second tab"
        )
        browser.close()


if __name__ == "__main__":
    main()
