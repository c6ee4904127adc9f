"""In Chromium, a timm ViT teacher read from the hub cache the server sees: chosen in the
sidebar, the Angular page draws its θ histograms (the ViT's patch tokens as stage grids)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from playwright.sync_api import expect

from tests.browser.harness import AppPage, ServerError, streamlit_server
from tests.pages.test_timm_pages import save_timm_hub_cache

pytestmark = pytest.mark.browser

VIT_LABEL = "timm:vit_tiny_patch16_224 local/vit-tiny · hub"


@pytest.fixture(scope="module")
def timm_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server of its own (the shared cache folder, as the session's server) whose hub cache
    holds a ViT-tiny (32 px) and a MobileNetV3."""
    folders = tmp_path_factory.mktemp("timm_app")
    torch.manual_seed(0)  # the same weights every time: one entry in the feature cache
    save_timm_hub_cache(folders / "hub")
    env = {
        "KD_CORE_RUNS": str(folders / "runs"),
        "KD_CORE_UPLOADS": str(folders / "uploads"),
        "HF_HUB_CACHE": str(folders / "hub"),
        "HF_HUB_OFFLINE": "1",
    }
    try:
        with streamlit_server(env) as server:
            yield server.base_url
    except ServerError as exc:
        pytest.fail(str(exc))


def test_the_angular_page_draws_histograms_for_a_vit_teacher(browser, timm_server_url):
    app = AppPage.open(browser, timm_server_url)
    try:
        app.goto("/", expect_text="Workspace")
        page = app.page
        sidebar = page.get_by_test_id("stSidebarUserContent")
        sidebar.get_by_test_id("stSelectbox").filter(has_text="Teacher").click()
        page.get_by_role("option", name=VIT_LABEL).click()
        app.wait_idle()
        page.get_by_test_id("stSidebarNav").get_by_text("Angular distributions").click()
        page.locator("h1").filter(has_text="Angular distributions").wait_for()
        app.wait_idle()
        expect(sidebar.get_by_role("combobox", name="Teacher")).to_have_value(VIT_LABEL)
        assert app.wait_for_figures(1) >= 1
        expect(page.get_by_text("blocks.11").first).to_be_visible()  # a ViT block's θ
        app.assert_healthy()
    finally:
        app.close()
