"""The Attention and Angular pages with a timm ViT teacher and a timm CNN student, both read
from the workspace's hub cache (timm hub folders), on 100 shapes test images: the ViT's patch
tokens are analysed as a CNN's stages are."""

from __future__ import annotations

from pathlib import Path

import timm
from streamlit.testing.v1 import AppTest
from timm.models import save_for_hf

APP = Path(__file__).resolve().parents[2] / "app.py"
SHAPES_CLASSES = 10


def save_timm_hub_cache(cache: Path) -> tuple[str, str]:
    """A hub cache with a ViT-tiny (32 px, patch 8) and a MobileNetV3-small, random weights,
    as huggingface_hub lays them out; their workspace keys."""
    models = {
        "local/vit-tiny": timm.create_model(
            "vit_tiny_patch16_224", num_classes=SHAPES_CLASSES, img_size=32, patch_size=8
        ),
        "local/mnv3-small": timm.create_model("mobilenetv3_small_050", num_classes=SHAPES_CLASSES),
    }
    for repo, model in models.items():
        folder = cache / f"models--{repo.replace('/', '--')}"
        save_for_hf(model, folder / "snapshots" / "0", safe_serialization=True)
    return "hub:local/vit-tiny", "hub:local/mnv3-small"


def _ok(at: AppTest) -> AppTest:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def test_pages_render_a_vit_teacher_and_a_cnn_student(app_folders: Path):
    teacher, student = save_timm_hub_cache(app_folders / "hub")
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.session_state["ws_samples"] = 100
    at.session_state["ws_teacher"] = teacher
    at.session_state["ws_students"] = [student]
    for page in ("angular.py", "attention.py"):  # one session: the features are computed once
        at = _ok(at.switch_page(f"app_pages/{page}").run())
        [stage] = [widget for widget in at.selectbox if widget.label == "Stage"]
        # teacher ViT blocks paired with the student MobileNetV3's stride stages
        assert list(stage.options) == [
            "blocks.2 / blocks.0",
            "blocks.5 / blocks.1",
            "blocks.8 / blocks.3",
            "blocks.11 / blocks.5",
        ], page
        assert at.get("plotly_chart"), f"{page}: no figure drawn"


def test_distill_page_offers_the_hub_cache_folder_chosen_in_the_inspector(app_folders: Path):
    teacher, _ = save_timm_hub_cache(app_folders / "chosen")  # not $HF_HUB_CACHE
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.session_state["ws_hub_cache"] = str(app_folders / "chosen")  # the inspector's choice
    at.session_state["ws_teacher"] = teacher
    at = _ok(at.switch_page("app_pages/distill.py").run())
    [choice] = [widget for widget in at.selectbox if widget.key == "distill_teacher"]
    assert choice.value == teacher
