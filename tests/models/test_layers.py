"""The layer table: every leaf, right output shapes and parameter counts, hooks removed."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from kd_core.models import create_model
from kd_core.models.layers import layer_table


def _hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) for m in model.modules())


def test_parameter_counts_add_up_to_the_model() -> None:
    model = create_model("resnet8", num_classes=10)
    rows = layer_table(model)
    assert sum(r.parameters for r in rows) == sum(p.numel() for p in model.parameters())
    assert rows[0].name == "conv1" and rows[0].kind == "Conv2d"
    assert rows[0].output_shape == (16, 32, 32)
    assert rows[-1].name == "fc" and rows[-1].output_shape == (10,)


def test_hand_built_model() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 4 * 4, 2))  # fmt: skip
    model[3].weight.requires_grad_(False)
    rows = layer_table(model, input_size=8)
    assert [(r.name, r.kind, r.output_shape) for r in rows] == [
        ("0", "Conv2d", (4, 4, 4)),
        ("1", "ReLU", (4, 4, 4)),
        ("2", "Flatten", (64,)),
        ("3", "Linear", (2,)),
    ]
    assert [r.parameters for r in rows] == [4 * 3 * 9 + 4, 0, 0, 64 * 2 + 2]
    assert rows[3].trainable == 2  # the bias only


@pytest.mark.parametrize("training", [True, False])
def test_hooks_removed_and_mode_restored(training: bool) -> None:
    model = create_model("resnet8", num_classes=10).train(training)
    layer_table(model)
    assert _hook_count(model) == 0 and model.training is training


def test_hooks_removed_when_the_forward_fails() -> None:
    model = create_model("resnet8", num_classes=10)
    with pytest.raises(RuntimeError):
        layer_table(model, channels=1)  # the first conv expects 3 channels
    assert _hook_count(model) == 0


def test_unused_module_has_no_shape() -> None:
    class WithSpare(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.used, self.spare = nn.Linear(3 * 2 * 2, 1), nn.Linear(1, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.used(x.flatten(1))

    rows = {r.name: r for r in layer_table(WithSpare(), input_size=2)}
    assert rows["used"].output_shape == (1,) and rows["spare"].output_shape is None
