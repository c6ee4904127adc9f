"""extract_features / capture_features: one pass, hooks removed, mode untouched, clear errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from kd_core.models import FeatureSpec, capture_features, create_model, extract_features


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.block = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        return self.head(self.block(x).mean(dim=(2, 3)))


def test_extraction_matches_a_plain_forward_and_one_pass():
    model = create_model("resnet8", num_classes=10).eval()
    calls = []
    model.layer1.register_forward_hook(lambda *args: calls.append(1))
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        outputs = extract_features(model, x)
        plain = model(x)
    assert len(calls) == 2  # one extraction pass plus the plain forward
    torch.testing.assert_close(outputs.logits, plain)
    assert list(outputs.stages) == ["layer1", "layer2", "layer3"]
    # The pooled feature is what the classifier reads.
    torch.testing.assert_close(model.fc(outputs.pooled), plain)
    torch.testing.assert_close(outputs.pooled, outputs.stages["layer3"].mean(dim=(2, 3)))


def test_hooks_are_removed_even_when_the_forward_fails_and_mode_is_kept():
    model = Tiny().train()
    with pytest.raises(RuntimeError), capture_features(model, FeatureSpec(("block",), "head")):
        model(torch.randn(1, 5, 8, 8))  # wrong channel count
    assert not model.block._forward_hooks and not model.head._forward_pre_hooks
    extract_features(model, torch.randn(1, 3, 8, 8), FeatureSpec(("block",), "head"))
    assert model.training
    assert not model.block._forward_hooks and not model.head._forward_pre_hooks


def test_gradients_flow_through_extracted_features():
    model = Tiny()
    outputs = extract_features(model, torch.randn(2, 3, 8, 8), FeatureSpec(("block",), "head"))
    outputs.stages["block"].sum().backward()
    assert model.block.weight.grad is not None


def test_models_without_a_spec_and_unknown_names_are_value_errors():
    with pytest.raises(ValueError, match="does not declare its stages"):
        extract_features(Tiny(), torch.randn(1, 3, 8, 8))
    with pytest.raises(ValueError, match=r"no module\(s\) \['layer9'\]"):
        extract_features(Tiny(), torch.randn(1, 3, 8, 8), FeatureSpec(("layer9",), "head"))
