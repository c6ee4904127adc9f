"""timm models through the registry: ``timm:<name>`` builds timm's own model with a
FeatureSpec from its feature_info, and a ViT's stages are its patch tokens laid out as grids,
equal to what timm's own ``forward_intermediates`` returns."""

from __future__ import annotations

import pytest
import timm
import torch

from kd_core.models import create_model, data_config, extract_features
from kd_core.models.features import tokens_to_grid

VIT_ARGS = {"img_size": 32, "patch_size": 8}


def test_vit_stages_are_timm_forward_intermediates_grids():
    torch.manual_seed(0)
    model = create_model("timm:vit_tiny_patch16_224", num_classes=5, model_args=VIT_ARGS).eval()
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        outputs = extract_features(model, images)
        final, grids = model.forward_intermediates(images, indices=[2, 5, 8, 11])
    assert list(outputs.stages) == ["blocks.2", "blocks.5", "blocks.8", "blocks.11"]
    for ours, theirs in zip(outputs.stage_list, grids, strict=True):
        assert ours.shape == (2, 192, 4, 4)
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
    torch.testing.assert_close(outputs.logits, model.forward_head(final))
    torch.testing.assert_close(outputs.pooled, model.forward_head(final, pre_logits=True))


def test_tokens_to_grid_drops_prefix_tokens_and_keeps_row_order():
    tokens = torch.arange(2 * (1 + 6) * 3, dtype=torch.float32).view(2, 7, 3)
    grid = tokens_to_grid(tokens, prefix_tokens=1, image_size=(16, 24))  # 2 x 3 patches
    assert grid.shape == (2, 3, 2, 3)
    assert torch.equal(grid[1, :, 1, 0], tokens[1, 1 + 3])  # row 1, column 0 = patch 3
    with pytest.raises(ValueError, match="do not tile"):
        tokens_to_grid(tokens[:, :6], prefix_tokens=1, image_size=(16, 16))  # 5 patches


@pytest.mark.parametrize(
    ("name", "stages"),
    [
        ("timm:resnet18d", ("layer1", "layer2", "layer3", "layer4")),
        ("timm:efficientnet_b0", ("blocks.1", "blocks.2", "blocks.4", "blocks.6")),
        ("timm:convnext_atto", ("stages.0", "stages.1", "stages.2", "stages.3")),
    ],
)
def test_cnn_stages_are_the_deepest_module_of_each_stride(name, stages):
    with torch.device("meta"):
        model = create_model(name, num_classes=3)
    assert model.feature_spec.stages == stages
    assert model.feature_spec.prefix_tokens is None


def test_data_config_is_the_models_own_recipe():
    vit = create_model(
        "timm:vit_tiny_patch16_224",
        num_classes=2,
        model_args=VIT_ARGS,
        pretrained_cfg={"input_size": [3, 32, 32], "url": "https://example.invalid/w.pth"},
    )
    assert data_config(vit)["input_size"] == (3, 32, 32)
    assert data_config(vit)["mean"] == (0.5, 0.5, 0.5)  # ViT's, not ImageNet's
    assert vit.pretrained_cfg["url"] != "https://example.invalid/w.pth"  # never a download source
    assert data_config(create_model("resnet8", num_classes=2)) is None


def test_unknown_timm_name_is_one_sentence():
    with pytest.raises(ValueError, match=r"installed timm \(.*\) has no model 'vit_nope'"):
        create_model("timm:vit_nope")
    assert timm.is_model("vit_tiny_patch16_224")
