"""The CIFAR zoo against the community's: state_dict keys/shapes, parameter counts, stage
shapes and golden logits/pooled features computed by the community code (from checkpoints
for three models, from :func:`deterministic_state_dict` weights for all the others)."""

from __future__ import annotations

import json
import math
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from kd_core.models import create_model, extract_features, list_models, model_info

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
ZOO = json.loads((FIXTURES / "repdistiller_cifar_zoo.json").read_text())
ZOO_NAMES = [name for name in list_models() if model_info(name).family != "torchvision"]
GOLDEN = FIXTURES / "repdistiller_golden"
# Logits and pooled features of the community models (RepDistiller's code, num_classes=100, eval)
# under deterministic_state_dict(model, gain) on one fixed input: every zoo model without a
# checkpoint-based golden above.
ZOO_GOLDEN = torch.load(FIXTURES / "zoo_golden.pt")


def deterministic_state_dict(model: nn.Module, gain: float = 1.0) -> dict[str, torch.Tensor]:
    """``model.state_dict()`` with every floating tensor refilled from its key and shape alone.

    Two modules with the same keys and shapes (ours and the community's) get the same weights,
    so golden outputs need only this function, not a weight file. Each tensor draws from numpy's
    legacy ``RandomState`` (its streams are frozen across numpy versions) seeded with the CRC-32
    of its key: weights with two or more dims ``gain * N(0, 1/fan_in)``, 1-d weights (the norm
    layers) ``1 + N(0, 0.1^2)``, biases and running means ``N(0, 0.1^2)``, running variances
    ``U(0.5, 1.5)``. Integer buffers (``num_batches_tracked``) are kept as they are.

    With eval-mode BatchNorm on made-up statistics nothing renormalises the activations: deep
    residual nets grow with ``gain`` (resnet110's logits reach 1e4 at 1.0) while deep plain
    nets (vgg19, ShuffleV2) fade into their biases below about 1.2, so each golden records its
    own ``gain``.
    """
    filled = {}
    for key, value in model.state_dict().items():
        if not value.is_floating_point():
            filled[key] = value.clone()
            continue
        rng = np.random.RandomState(zlib.crc32(key.encode()))
        shape, leaf = tuple(value.shape), key.rsplit(".", 1)[-1]
        if leaf == "running_var":
            array = rng.uniform(0.5, 1.5, shape)
        elif value.dim() >= 2:
            array = gain * rng.standard_normal(shape) / math.sqrt(value[0].numel())
        elif leaf == "weight":
            array = 1.0 + 0.1 * rng.standard_normal(shape)
        else:  # biases and running means
            array = 0.1 * rng.standard_normal(shape)
        filled[key] = torch.from_numpy(np.asarray(array, dtype=np.float32)).to(value.dtype)
    return filled


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


@pytest.mark.parametrize("name", sorted(ZOO_GOLDEN["models"]))
def test_reproduces_community_logits_under_deterministic_weights(name):
    golden = ZOO_GOLDEN["models"][name]
    model = create_model(name, num_classes=golden["logits"].shape[1])
    model.load_state_dict(deterministic_state_dict(model, golden["gain"]))
    model.eval()
    with torch.no_grad():
        outputs = extract_features(model, ZOO_GOLDEN["input"])
    torch.testing.assert_close(outputs.logits, golden["logits"], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(outputs.pooled, golden["pooled"], atol=1e-4, rtol=1e-4)


def test_every_zoo_model_has_a_community_golden():
    with_checkpoint = {"resnet20", "wrn_16_2", "MobileNetV2"}
    assert sorted(with_checkpoint | set(ZOO_GOLDEN["models"])) == sorted(ZOO_NAMES)
    assert not with_checkpoint & set(ZOO_GOLDEN["models"])


def test_deterministic_state_dict_depends_on_key_and_shape_only():
    first, second = create_model("resnet8", 10), create_model("resnet8", 10)
    torch.nn.init.normal_(second.conv1.weight)  # different starting values: same fill
    one, two = deterministic_state_dict(first), deterministic_state_dict(second)
    assert list(one) == list(first.state_dict())
    assert all(torch.equal(one[key], two[key]) for key in one)
    assert all(one[key].dtype == value.dtype for key, value in first.state_dict().items())
    assert torch.all(one["bn1.running_var"] >= 0.5) and torch.all(one["bn1.running_var"] <= 1.5)
    assert torch.equal(
        one["bn1.num_batches_tracked"], first.state_dict()["bn1.num_batches_tracked"]
    )
    assert not torch.equal(one["conv1.weight"], one["layer1.0.conv1.weight"][:, :3])
    scaled = deterministic_state_dict(first, gain=2.0)
    torch.testing.assert_close(scaled["conv1.weight"], 2 * one["conv1.weight"])
    assert torch.equal(scaled["bn1.weight"], one["bn1.weight"])


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
