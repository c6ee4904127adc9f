"""The HTML report in a real headless Chromium with the network cut off: every figure is
drawn, no request to http(s) is attempted and no Content-Security-Policy rule is broken."""

from __future__ import annotations

import pytest

from kd_core.report.html import write_report
from tests.report.tiny import shared_tiny_report

pytestmark = pytest.mark.browser
DRAWN = (
    "[...document.querySelectorAll('.js-plotly-plot')].filter(d => d.querySelector('.main-svg'))"
)


def test_the_report_draws_every_figure_offline(browser, tmp_path):
    _, report = shared_tiny_report()
    path = write_report(tmp_path / "report.html", report)
    figures = len(report.figures)
    context = browser.new_context(viewport={"width": 1300, "height": 900})
    page = context.new_page()
    attempted, problems = [], []

    def cut_off(route) -> None:
        url = route.request.url
        if url.startswith(("file:", "data:", "blob:")):
            route.continue_()
        else:
            attempted.append(url)
            route.abort()

    page.route("**/*", cut_off)

    def request(sent) -> None:
        if sent.url.startswith("http"):
            attempted.append(sent.url)

    page.on("request", request)
    page.on("pageerror", lambda error: problems.append(str(error)))

    def console(message) -> None:
        if message.type == "error" or "Content Security Policy" in message.text:
            problems.append(message.text)

    page.on("console", console)
    try:
        page.goto(path.as_uri())
        page.wait_for_function(f"{DRAWN}.length >= {figures}", timeout=60_000)
        assert page.evaluate(f"{DRAWN}.length") == figures
        assert page.locator(".js-plotly-plot").count() == figures
        assert page.locator("table").count() >= 5  # workspace, 3 stages, agreement
    finally:
        context.close()
    assert attempted == []
    assert problems == []
