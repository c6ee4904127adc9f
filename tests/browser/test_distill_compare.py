"""The Distill page's compare mode in a real browser: a classroom group (vanilla, KD, AT, AMD
from the bundled teacher) launched, followed live to its end, and put into the workspace."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from kd_core.training.methods import METHOD_SETS, METHODS
from kd_core.workspace import DEFAULT_STUDENTS

pytestmark = pytest.mark.browser

GROUP_TIMEOUT_MS = 240_000  # four tiny students on a 2-core machine, worker start included
OPEN_GROUP = "Put the group's students in the workspace"


def test_a_classroom_group_trains_to_the_end_and_joins_the_workspace(app_page):
    app_page.goto("/distill", expect_text="Distill a student")
    page = app_page.page
    page.get_by_text("Compare methods", exact=True).click()
    app_page.wait_idle()
    classroom = [METHODS[name].label for name in METHOD_SETS["classroom"]]
    methods = page.get_by_test_id("stMultiSelect").filter(has_text="Methods")
    for label in classroom:  # the classroom set is the default choice
        expect(methods.get_by_text(label, exact=True)).to_be_visible()
    for label, value in (("Epochs", 2), ("Limit training images", 256),
                         ("Limit test images", 64)):  # fmt: skip
        app_page.set_number(label, value)
    page.get_by_role("button", name="Launch the group").click()

    # The live view follows the group until every student has finished, then offers the
    # workspace button (the fragment reruns the whole page once the group ends).
    page.get_by_role("button", name=OPEN_GROUP).wait_for(timeout=GROUP_TIMEOUT_MS)
    app_page.wait_idle()
    expect(page.get_by_text(f"Group of {len(classroom)} students")).to_be_visible()
    group_table = page.get_by_test_id("stDataFrame").last
    expect(group_table).to_contain_text("finished")
    # Two overlaid charts: test top-1 and attention cosine, one trace per student each.
    charts = page.get_by_test_id("stPlotlyChart")
    assert app_page.wait_for_figures(2) >= 2
    for metric in ("Test top-1", "Attention cosine"):
        chart = charts.filter(has_text=metric)
        expect(chart.locator(".scatterlayer .trace")).to_have_count(len(classroom))

    sidebar = page.get_by_test_id("stSidebarUserContent")
    students = sidebar.get_by_test_id("stMultiSelect").filter(has_text="Students")
    tags = students.get_by_test_id("stMultiSelectTagsContainer").locator("[data-tag]")
    expect(tags).to_have_count(len(DEFAULT_STUDENTS))
    page.get_by_role("button", name=OPEN_GROUP).click()
    app_page.wait_idle()
    expect(tags).to_have_count(len(DEFAULT_STUDENTS) + len(classroom))
    app_page.assert_healthy()
