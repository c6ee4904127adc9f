"""CIFAR ResNets against the community zoo: state_dict keys/shapes, stage shapes, golden logits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from kd_core.models import create_model, extract_features, list_models

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
ZOO = json.loads((FIXTURES / "repdistiller_cifar_zoo.json").read_text())


@pytest.mark.parametrize("name", list_models())
def test_state_dict_matches_community_zoo(name):
    expected = ZOO[name]
    model = create_model(name, num_classes=expected["num_classes"])
    shapes = {key: list(value.shape) for key, value in model.state_dict().items()}
    assert shapes == expected["state_dict"]
    assert sum(p.numel() for p in model.parameters()) == expected["params"]


@pytest.mark.parametrize("name", list_models())
def test_stage_and_pooled_shapes(name):
    model = create_model(name).eval()
    with torch.no_grad():
        outputs = extract_features(model, torch.randn(2, 3, 32, 32))
    # The zoo lists stem, three stages and the pooled feature; distillation uses the last four.
    expected = ZOO[name]["stage_feature_shapes_for_2x3x32x32"][1:]
    got = [list(t.shape) for t in outputs.stage_list] + [list(outputs.pooled.shape)]
    assert got == expected
    assert outputs.logits.shape == (2, 100)


def test_resnet20_reproduces_community_golden_logits():
    golden = torch.load(FIXTURES / "repdistiller_golden" / "resnet20_golden.pt")
    checkpoint = torch.load(FIXTURES / "repdistiller_golden" / "resnet20_random_ckpt.pth")
    model = create_model("resnet20", num_classes=golden["logits"].shape[1])
    model.load_state_dict(checkpoint["model"])
    model.eval()
    with torch.no_grad():
        outputs = extract_features(model, golden["input"])
    torch.testing.assert_close(outputs.logits, golden["logits"], atol=1e-4, rtol=0)
    torch.testing.assert_close(outputs.pooled, golden["pooled"], atol=1e-4, rtol=0)


def test_unknown_model_and_bad_class_count():
    with pytest.raises(ValueError, match="accepted names: resnet8"):
        create_model("resnet9000")
    with pytest.raises(ValueError, match="positive integer"):
        create_model("resnet8", num_classes=0)
