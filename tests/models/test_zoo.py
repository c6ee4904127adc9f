"""The CIFAR zoo against the community's: state_dict keys/shapes, parameter counts, stage
shapes and golden logits/pooled features computed by the community code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from kd_core.models import create_model, extract_features, list_models, model_info

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
ZOO = json.loads((FIXTURES / "repdistiller_cifar_zoo.json").read_text())
ZOO_NAMES = [name for name in list_models() if model_info(name).family != "torchvision"]
GOLDEN = FIXTURES / "repdistiller_golden"


def test_registry_has_exactly_the_community_zoo():
    assert sorted(ZOO_NAMES) == sorted(ZOO)


@pytest.mark.parametrize("name", ZOO_NAMES)
def test_matches_community_zoo(name):
    expected = ZOO[name]
    model = create_model(name, num_classes=expected["num_classes"]).eval()
    shapes = {key: list(value.shape) for key, value in model.state_dict().items()}
    assert shapes == expected["state_dict"]
    assert list(shapes) == list(expected["state_dict"])  # same order too
    assert sum(p.numel() for p in model.parameters()) == expected["params"]
    with torch.no_grad():
        outputs = extract_features(model, torch.randn(2, 3, 32, 32))
    # The zoo lists the stem output, the stages and the pooled feature; distillation uses the
    # stages and the pooled feature.
    got = [list(t.shape) for t in outputs.stage_list] + [list(outputs.pooled.shape)]
    assert got == expected["stage_feature_shapes_for_2x3x32x32"][1:]
    assert outputs.logits.shape == (2, expected["num_classes"])


@pytest.mark.parametrize("name", ["resnet20", "wrn_16_2", "MobileNetV2"])
def test_reproduces_community_golden_logits(name):
    golden = torch.load(GOLDEN / f"{name}_golden.pt")
    # A RepDistiller checkpoint ({"epoch", "model", "best_acc"}) loads as it is.
    model = create_model(
        name,
        num_classes=golden["logits"].shape[1],
        weights=GOLDEN / f"{name}_random_ckpt.pth",
    ).eval()
    with torch.no_grad():
        outputs = extract_features(model, golden["input"])
    torch.testing.assert_close(outputs.logits, golden["logits"], atol=1e-4, rtol=0)
    torch.testing.assert_close(outputs.pooled, golden["pooled"], atol=1e-4, rtol=0)


def test_vgg_pools_after_block3_only_for_64x64_inputs():
    model = create_model("vgg8", num_classes=10).eval()
    with torch.no_grad():
        small = extract_features(model, torch.randn(1, 3, 32, 32))
        large = extract_features(model, torch.randn(1, 3, 64, 64))
    assert small.stages["block3"].shape[-1] == small.stages["block4"].shape[-1] == 4
    assert large.stages["block3"].shape[-1] == 8 and large.stages["block4"].shape[-1] == 4


def test_vgg_stage_features_are_after_the_relu():
    # The community's stage features are ReLU(block output); ours are the block outputs.
    model = create_model("vgg8", num_classes=10).eval()
    with torch.no_grad():
        outputs = extract_features(model, torch.randn(2, 3, 32, 32))
    assert all(stage.min() >= 0 for stage in outputs.stage_list)
