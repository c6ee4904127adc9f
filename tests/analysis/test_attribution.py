"""Attribution maps (kd_core.analysis.attribution): a model whose class-0 logit sees only the
top-left quadrant, closed forms on a linear model, hand-written Grad-CAM / activation
references, the model state left as found, and the input checks."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from kd_core.analysis.attribution import (
    METHODS,
    _inspection_mode,
    attribution_maps,
    forward_passes,
    normalize_maps,
    predicted_classes,
)
from kd_core.analysis.errors import AnalysisError
from kd_core.checkpoints import load_checkpoint
from kd_core.data import create_dataset
from kd_core.models import create_model
from kd_core.models.features import FeatureSpec

GRADIENT_METHODS = ["gradcam", "integrated_gradients", "saliency", "occlusion"]
FAST = {"steps": 4}  # few integration steps where the exact IG value does not matter


# ---------------------------------------------------------------- models


class _QuadrantGate(nn.Module):
    """Keeps channel 0 only in the top-left 16 x 16 quadrant; channel 1 everywhere."""

    def __init__(self) -> None:
        super().__init__()
        gate = torch.ones(2, 32, 32)
        gate[0] = 0.0
        gate[0, :16, :16] = 1.0
        self.register_buffer("gate", gate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate


class QuadrantNet(nn.Module):
    """Conv (all weights 1/27) -> ReLU -> quadrant gate -> global mean -> identity head:
    logit 0 = mean of channel 0 over the top-left quadrant, logit 1 = mean over the image."""

    feature_spec = FeatureSpec(stages=("features",), head="head")

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 2, 3, padding=1), nn.ReLU(), _QuadrantGate())
        self.head = nn.Linear(2, 2, bias=False)
        with torch.no_grad():
            self.features[0].weight.fill_(1.0 / 27.0)
            self.features[0].bias.zero_()
            self.head.weight.copy_(torch.eye(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))


class LinearNet(nn.Module):
    """``logits = W vec(x)`` on 3 x 8 x 8 images: every method has a closed form."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3 * 8 * 8, 3, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


@pytest.fixture(scope="module")
def teacher() -> nn.Module:
    return load_checkpoint("assets/checkpoints/teacher_resnet20.pt").model


@pytest.fixture(scope="module")
def student() -> nn.Module:
    return load_checkpoint("assets/checkpoints/student_resnet8_amd.pt").model


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    dataset = create_dataset("shapes", split="test", augment=False, limit=3)
    return torch.stack([dataset[i][0] for i in range(3)])


def _quadrant() -> torch.Tensor:
    region = torch.zeros(32, 32, dtype=torch.bool)
    region[:16, :16] = True
    return region


# ---------------------------------------------------------------- the sanity test


@pytest.mark.parametrize("method", GRADIENT_METHODS)
def test_only_the_region_the_logit_sees_is_highlighted(method):
    torch.manual_seed(0)
    images = torch.rand(2, 3, 32, 32) + 0.5  # positive: the ReLU passes everything
    region = _quadrant()
    maps = attribution_maps(QuadrantNet(), images, method=method, target=0)
    inside, outside = maps[:, region], maps[:, ~region]
    assert bool((inside.sum(1) / maps.flatten(1).sum(1) > 0.8).all())  # area fraction 0.25
    assert bool((inside.mean(1) > 10 * outside.mean(1)).all())
    # Control: logit 1 sees the whole image, so the quadrant gets about its area fraction.
    control = attribution_maps(QuadrantNet(), images, method=method, target=1)
    share = control[:, region].sum(1) / control.flatten(1).sum(1)
    assert torch.allclose(share, torch.full_like(share, 0.25), atol=0.03)


# ---------------------------------------------------------------- closed forms


def _linear_case() -> tuple[LinearNet, torch.Tensor, np.ndarray, np.ndarray]:
    torch.manual_seed(1)
    model = LinearNet()
    images = torch.randn(2, 3, 8, 8)
    weights = model.fc.weight.detach().double().numpy().reshape(3, 3, 8, 8)
    return model, images, images.double().numpy(), weights


def _peak_one(maps: np.ndarray) -> np.ndarray:
    return maps / maps.reshape(len(maps), -1).max(axis=1)[:, None, None]


def test_integrated_gradients_of_a_linear_model_is_input_times_weight():
    model, images, x, w = _linear_case()
    maps = attribution_maps(model, images, method="integrated_gradients", target=2, steps=3)
    expected = _peak_one(np.abs((x * w[2]).sum(axis=1)))
    np.testing.assert_allclose(maps.numpy(), expected, atol=1e-5)


def test_saliency_of_a_linear_model_is_the_largest_weight_magnitude():
    model, images, _, w = _linear_case()
    maps = attribution_maps(model, images, method="saliency", target=1)
    expected = _peak_one(np.broadcast_to(np.abs(w[1]).max(axis=0), (2, 8, 8)))
    np.testing.assert_allclose(maps.numpy(), expected, atol=1e-6)


def test_occlusion_of_a_linear_model_averages_the_window_drops():
    """The drop when window ``P`` is zeroed is ``sum_P x w``; each pixel averages the drops of
    the windows covering it (here window 4, stride 2 on 8 x 8: 3 x 3 positions)."""
    model, images, x, w = _linear_case()
    maps = attribution_maps(model, images, method="occlusion", target=0, window=4, stride=2)
    contribution = (x * w[0]).sum(axis=1)  # B x 8 x 8
    total = np.zeros_like(contribution)
    covering = np.zeros((8, 8))
    for top in (0, 2, 4):
        for left in (0, 2, 4):
            drop = contribution[:, top : top + 4, left : left + 4].sum(axis=(1, 2))
            total[:, top : top + 4, left : left + 4] += drop[:, None, None]
            covering[top : top + 4, left : left + 4] += 1
    expected = _peak_one(np.abs(total / covering))
    np.testing.assert_allclose(maps.numpy(), expected, atol=1e-5)


def _stage_output(model: nn.Module, images: torch.Tensor, stage: str) -> torch.Tensor:
    captured = {}
    module = dict(model.named_modules())[stage]
    handle = module.register_forward_hook(lambda _m, _i, out: captured.setdefault("f", out))
    try:
        logits = model(images)
    finally:
        handle.remove()
    return logits, captured["f"]


def _upsampled(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    up = F.interpolate(maps[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
    return up / up.flatten(1).amax(1)[:, None, None]


@pytest.mark.parametrize("stage", ["layer1", "layer2", "layer3"])
def test_activation_is_the_upsampled_amd_attention_map(student, images, stage):
    with torch.no_grad():
        _, feature = _stage_output(copy.deepcopy(student).eval().double(), images.double(), stage)
    energy = feature.pow(2).sum(dim=1)
    q = energy / energy.flatten(1).norm(dim=1)[:, None, None]
    maps = attribution_maps(student, images, method="activation", stage=stage)
    torch.testing.assert_close(maps.double(), _upsampled(q, (32, 32)), atol=1e-5, rtol=0)


def test_gradcam_matches_a_hand_written_grad_cam(teacher, images):
    """ReLU(sum_c mean_ij(dy/dF_c) F_c) at the deepest stage, upsampled bilinearly."""
    reference = copy.deepcopy(teacher).eval().double()
    targets = torch.tensor([0, 4, 9])
    logits, feature = _stage_output(reference, images.double(), "layer3")
    score = logits[torch.arange(3), targets].sum()
    (gradient,) = torch.autograd.grad(score, feature)
    cam = torch.relu((gradient.mean(dim=(2, 3), keepdim=True) * feature).sum(dim=1))
    maps = attribution_maps(teacher, images, method="gradcam", target=targets)
    torch.testing.assert_close(maps.double(), _upsampled(cam.detach(), (32, 32)), atol=1e-4, rtol=0)


# ---------------------------------------------------------------- contract


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("which", ["teacher", "student"])
def test_maps_are_float32_input_sized_and_peak_at_one(method, which, request, images):
    model = request.getfixturevalue(which)
    maps = attribution_maps(model, images, method=method, **FAST)
    assert maps.shape == (3, 32, 32) and maps.dtype == torch.float32 and maps.device.type == "cpu"
    assert bool(torch.isfinite(maps).all()) and float(maps.min()) >= 0.0
    torch.testing.assert_close(maps.flatten(1).amax(1), torch.ones(3))


def test_default_target_is_the_predicted_class_and_targets_are_per_image(student, images):
    predicted = predicted_classes(student, images)
    by_default = attribution_maps(student, images, method="saliency")
    explicit = attribution_maps(student, images, method="saliency", target=predicted)
    torch.testing.assert_close(by_default, explicit)
    targets = torch.tensor([1, 5, 7])
    together = attribution_maps(student, images, method="gradcam", target=targets)
    for i, target in enumerate(targets.tolist()):
        alone = attribution_maps(student, images[i : i + 1], method="gradcam", target=target)
        torch.testing.assert_close(together[i], alone[0], atol=1e-5, rtol=0)
    other_class = attribution_maps(student, images[:1], method="gradcam", target=2)
    assert not torch.allclose(together[0], other_class[0])


def test_predicted_classes_are_the_eval_mode_argmax(student, images):
    model = copy.deepcopy(student).train()
    predicted = predicted_classes(model, images)
    assert model.training
    with torch.no_grad():
        expected = copy.deepcopy(student).eval()(images).argmax(1)
    assert predicted.dtype == torch.int64 and torch.equal(predicted, expected)


def test_default_stage_is_the_deepest(student, images):
    for method in ("activation", "gradcam"):
        torch.testing.assert_close(
            attribution_maps(student, images, method=method),
            attribution_maps(student, images, method=method, stage="layer3"),
        )


def test_normalize_maps_divides_by_the_peak_and_keeps_zero_maps():
    maps = torch.tensor([[[0.0, 2.0], [1.0, 4.0]], [[0.0, 0.0], [0.0, 0.0]]])
    expected = torch.tensor([[[0.0, 0.5], [0.25, 1.0]], [[0.0, 0.0], [0.0, 0.0]]])
    torch.testing.assert_close(normalize_maps(maps), expected)


def test_forward_passes_formula():
    assert forward_passes("activation") == forward_passes("gradcam") == 1
    assert forward_passes("saliency") == 1
    assert forward_passes("integrated_gradients", steps=17) == 17
    assert forward_passes("occlusion") == 7 * 7 + 1  # window 8, stride 4 on 32 x 32
    assert forward_passes("occlusion", window=8, stride=8) == 4 * 4 + 1
    assert forward_passes("occlusion", 32, 20, window=8, stride=5) == 6 * 4 + 1  # ceil(12/5)+1
    assert forward_passes("occlusion", 224, 224) == 7 * 7 + 1  # window 56, stride 28
    assert str(forward_passes("occlusion")) in METHODS["occlusion"].cost


@pytest.mark.parametrize(
    ("method", "options"),
    [
        ("occlusion", {}),
        ("occlusion", {"window": 6, "stride": 5}),
        ("integrated_gradients", {"steps": 5}),
        ("saliency", {}),
    ],
)
def test_forward_passes_counts_the_images_the_model_really_sees(method, options):
    """Rows through the model = B (the logits pass) + B x forward_passes."""
    model = QuadrantNet()
    rows = []
    model.register_forward_pre_hook(lambda _m, inputs: rows.append(len(inputs[0])))
    images = torch.rand(2, 3, 32, 32)
    attribution_maps(model, images, method=method, target=0, batch_size=7, **options)
    assert sum(rows) == 2 + 2 * forward_passes(method, **options)


def test_registry_entries():
    assert list(METHODS) == [
        "activation",
        "gradcam",
        "integrated_gradients",
        "saliency",
        "occlusion",
    ]
    assert [m for m in METHODS.values() if m.uses_stage] == [
        METHODS["activation"],
        METHODS["gradcam"],
    ]
    assert all(m.name == key and m.description and m.cost for key, m in METHODS.items())


# ---------------------------------------------------------------- model state


def _hooks(model: nn.Module) -> dict[str, tuple]:
    kinds = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
    return {
        name: tuple(tuple(getattr(module, kind)) for kind in kinds)
        for name, module in model.named_modules()
    }


def _state(model: nn.Module) -> tuple:
    return (
        [module.training for module in model.modules()],
        [parameter.requires_grad for parameter in model.parameters()],
        _hooks(model),
        [buffer.clone() for buffer in model.buffers()],
    )


def _prepared_resnet8() -> nn.Module:
    """Train mode with one stage in eval mode, one frozen parameter and a user hook."""
    torch.manual_seed(0)
    model = create_model("resnet8", num_classes=10).train()
    model.layer1.eval()
    model.conv1.weight.requires_grad_(False)
    model.layer2.register_forward_hook(lambda *_: None)
    return model


def _assert_same_state(before: tuple, after: tuple) -> None:
    assert before[0] == after[0]  # every module's train/eval mode
    assert before[1] == after[1]  # requires_grad flags
    assert before[2] == after[2]  # hooks on every module
    for old, new in zip(before[3], after[3], strict=True):  # batch-norm statistics untouched
        assert torch.equal(old, new)


@pytest.mark.parametrize("method", list(METHODS))
def test_model_state_is_restored(method):
    model = _prepared_resnet8()
    before = _state(model)
    attribution_maps(model, torch.randn(2, 3, 32, 32), method=method, **FAST)
    _assert_same_state(before, _state(model))
    assert len(model.layer2._forward_hooks) == 1  # the user's hook is kept


@pytest.mark.parametrize("method", list(METHODS))
def test_model_state_is_restored_after_an_exception(method):
    """The model fails in its second forward pass, after the method registered its hooks."""
    model = _prepared_resnet8()
    calls = []

    def fail_on_second_pass(*_):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("forced failure")

    model.layer3.register_forward_hook(fail_on_second_pass)
    before = _state(model)
    with pytest.raises(RuntimeError, match="forced failure"):
        attribution_maps(model, torch.randn(2, 3, 32, 32), method=method, **FAST)
    _assert_same_state(before, _state(model))


def test_hooks_leaked_inside_the_inspection_mode_are_removed_also_on_an_exception():
    """The guarantee does not rely on Captum cleaning up after itself."""
    model = _prepared_resnet8()
    before = _state(model)
    with pytest.raises(RuntimeError, match="leak"), _inspection_mode(model):
        model.layer3.register_forward_hook(lambda *_: None)
        model.layer3.register_forward_pre_hook(lambda *_: None)
        model.fc.register_full_backward_hook(lambda *_: None)
        model.conv1.weight.requires_grad_(True)
        model.layer1.train()
        raise RuntimeError("leak")
    _assert_same_state(before, _state(model))


def test_inplace_relu_model_gives_the_maps_of_its_out_of_place_twin():
    """MobileNetV2 uses nn.ReLU(inplace=True): every method works, with the same maps as the
    same network without inplace operations, and the inplace flags are left as they were."""
    torch.manual_seed(0)
    model = create_model("MobileNetV2", num_classes=10).eval()
    twin = copy.deepcopy(model)
    for module in twin.modules():
        if isinstance(module, nn.ReLU):
            module.inplace = False
    images = torch.randn(2, 3, 32, 32)
    for method in METHODS:
        stages = model.feature_spec.stages if METHODS[method].uses_stage else (None,)
        for stage in stages:
            options = {"method": method, "stage": stage, "target": 3, **FAST}
            maps = attribution_maps(model, images, **options)
            twin_maps = attribution_maps(twin, images, **options)
            assert maps.shape == (2, 32, 32) and bool(torch.isfinite(maps).all())
            torch.testing.assert_close(maps, twin_maps, atol=1e-5, rtol=0)
    assert all(m.inplace for m in model.modules() if isinstance(m, nn.ReLU))


def test_other_registry_model_wrn_16_1():
    torch.manual_seed(0)
    model = create_model("wrn_16_1", num_classes=10)
    images = torch.randn(2, 3, 32, 32)
    for method in METHODS:
        maps = attribution_maps(model, images, method=method, **FAST)
        assert maps.shape == (2, 32, 32) and float(maps.max()) == pytest.approx(1.0)


# ---------------------------------------------------------------- errors


def _raises(match: str, *args, **kwargs) -> None:
    with pytest.raises(AnalysisError, match=match):
        attribution_maps(*args, **kwargs)


def test_bad_method_and_stage_list_the_valid_ones(student, images):
    _raises(r"choose one of \['activation', 'gradcam'", student, images, method="lime")
    _raises(
        r"stages of CifarResNet are \['layer1', 'layer2', 'layer3'\]",
        student,
        images,
        method="gradcam",
        stage="layer4",
    )
    _raises("declares no stages", LinearNet(), torch.randn(1, 3, 8, 8), method="activation")


def test_bad_targets(student, images):
    for target in (10, -1, torch.tensor([0, 1, 10])):
        _raises(r"must be in 0\.\.9", student, images, method="saliency", target=target)
    for target in (torch.tensor([0, 1]), torch.tensor([0.0, 1.0, 2.0]), "cat", 1.5, True):
        _raises("one per image", student, images, method="saliency", target=target)


def test_bad_images(student):
    for images in (torch.randn(3, 32, 32), torch.randn(1, 4, 32, 32), np.zeros((1, 3, 32, 32))):
        _raises("B x 3 x H x W", student, images, method="saliency")
    _raises("non-empty", student, torch.randn(0, 3, 32, 32), method="saliency")
    _raises(
        "non-empty floating",
        student,
        torch.zeros(1, 3, 32, 32, dtype=torch.uint8),
        method="saliency",
    )
    _raises("NaN", student, torch.full((1, 3, 32, 32), math.nan), method="saliency")


def test_bad_options(student, images):
    _raises("steps must be", student, images, method="integrated_gradients", steps=0)
    _raises("batch_size must be", student, images, method="occlusion", batch_size=0)
    _raises(
        r"window must be an integer from 1 to 32", student, images, method="occlusion", window=33
    )
    _raises(
        r"stride must be an integer from 1 to 8",
        student,
        images,
        method="occlusion",
        window=8,
        stride=9,
    )
    assert issubclass(AnalysisError, ValueError)
