"""Every page renders in a real headless Chromium: formula, chart, no exception, interaction."""

from __future__ import annotations

import base64

import pytest
from playwright.sync_api import expect

from app_pages._shared import PAGES, plotly_chunk
from kd_core.figures.margin import boundary_angle
from tests.browser.harness import AppPage

pytestmark = pytest.mark.browser

TITLE = "Angular margin-based distillation (AMD)"
CHOSEN = "Boundary angle, chosen margin"


def _metric_value(app_page, label: str):
    metric = app_page.page.locator('[data-testid="stMetric"]').filter(has_text=label)
    return metric.locator('[data-testid="stMetricValue"]')


def _figure_svg(page) -> str:
    """The SVG text of Home's margin figure, from its image's data URI."""
    source = page.locator('[data-testid="stImageContainer"] img').get_attribute("src")
    prefix = "data:image/svg+xml;base64,"
    assert source.startswith(prefix), source[:80]
    return base64.b64decode(source[len(prefix) :]).decode()


def test_home_renders_and_the_margin_slider_works(app_page, screenshot_dir):
    app_page.goto("/", expect_text=TITLE)
    page = app_page.page

    expect(page.locator("h1").filter(has_text=TITLE)).to_be_visible()
    # st.latex blocks (KaTeX is loaded lazily, hence the auto-waiting expect).
    formulas = page.locator('[data-testid="stMarkdownContainer"] .katex-display .katex')
    expect(formulas.first).to_be_visible()
    expect(formulas).to_have_count(4)
    app_page.wait_for_images(1)  # the margin figure, an SVG image
    assert _figure_svg(page).count("<polyline") == 5
    assert page.locator('[data-testid="stPlotlyChart"]').count() == 0
    expect(page.get_by_text("compute device")).to_be_visible()
    value = _metric_value(app_page, CHOSEN)
    expect(value).to_have_text(f"{boundary_angle(1.35):.1f}°")
    app_page.screenshot(screenshot_dir / "home.png")

    # Keyboard: 7 steps of 0.05 take the margin from 1.35 to 1.00. The role (an ARIA slider or
    # an <input type="range">, depending on the Streamlit version) is found by accessible name.
    slider = page.locator('[data-testid="stSlider"]').filter(has_text="Angular margin m")
    thumb = slider.get_by_role("slider", name="Angular margin m")
    thumb.focus()
    for _ in range(7):
        thumb.press("ArrowLeft")
    page.wait_for_function(
        "([sel, text]) => [...document.querySelectorAll(sel)].some("
        "  m => m.innerText.includes('chosen margin') && m.innerText.includes(text))",
        arg=['[data-testid="stMetric"]', "60.0°"],
        timeout=30_000,
    )
    app_page.wait_idle()
    expect(slider.locator('[data-testid="stSliderThumbValue"]')).to_have_text("1.00")
    expect(value).to_have_text("60.0°")
    app_page.wait_for_images(1)
    svg = _figure_svg(page)
    assert "boundary m = 1: 60.0°" in svg and "boundary m = 1.35" not in svg
    assert not app_page.console_errors, app_page.console_errors


def test_home_loads_plotly_in_the_background(app_page):
    """Home has no plotly figure; once it is drawn, the browser fetches the plotly chunk
    anyway (when idle), so the first analysis page does not wait for it."""
    app_page.goto("/", expect_text=TITLE)
    page = app_page.page
    assert page.locator('[data-testid="stPlotlyChart"]').count() == 0
    page.wait_for_function(
        "chunk => performance.getEntriesByType('resource').some(e => e.name.endsWith(chunk))",
        arg=f"/{plotly_chunk()}",
        timeout=30_000,
    )
    assert not app_page.console_errors and not app_page.page_errors


# Figures each page draws without any interaction (at least), on the bundled workspace.
MIN_FIGURES = {"angular": 1, "attention": 1, "embedding": 1}


@pytest.mark.parametrize("spec", PAGES[1:], ids=lambda spec: spec.url_path)
def test_every_page_renders(app_page, screenshot_dir, spec):
    app_page.goto(f"/{spec.url_path}", expect_text=spec.title)
    page = app_page.page
    expect(page.locator("h1").filter(has_text=spec.title)).to_be_visible()
    sidebar = page.get_by_test_id("stSidebarUserContent")
    expect(sidebar.get_by_text("Workspace", exact=True)).to_be_visible()  # the shared sidebar
    minimum = MIN_FIGURES.get(spec.url_path, 0)
    assert app_page.wait_for_figures(minimum) >= minimum
    app_page.assert_healthy()
    app_page.screenshot(screenshot_dir / f"{spec.url_path}.png")


@pytest.mark.parametrize("url_path", ["angular", "attention"])
def test_pages_fit_a_laptop_screen(browser, streamlit_server_url, url_path):
    """At 1280 x 800 (a laptop, sidebar open) nothing makes the page scroll sideways."""
    app = AppPage.open(browser, streamlit_server_url, width=1280, height=800)
    try:
        spec = next(spec for spec in PAGES if spec.url_path == url_path)
        app.goto(f"/{url_path}", expect_text=spec.title)
        app.wait_for_figures(1)
        overflow = app.page.evaluate(
            """() => {
                const main = document.querySelector('[data-testid="stMain"]');
                return [document.documentElement.scrollWidth - window.innerWidth,
                        main.scrollWidth - main.clientWidth];
            }"""
        )
        assert overflow == [0, 0], overflow
    finally:
        app.close()
