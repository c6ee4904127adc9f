"""The model registry: every network builds, exposes its features and head; weights from local
files and state dicts; the ImageNet download is opt-in and fails clearly offline."""

from __future__ import annotations

import socket
import time

import pytest
import torch

from kd_core.models import create_model, extract_features, list_models, model_info
from kd_core.models.features import feature_spec

TORCHVISION = ["tv_resnet18", "tv_resnet34", "tv_resnet50", "tv_mobilenet_v2", "tv_efficientnet_b0"]


def _input(name: str, batch: int = 2) -> torch.Tensor:
    # torchvision's ImageNet models run on a small 64x64 input to keep the tests fast.
    side = 64 if model_info(name).input_size == 224 else 32
    return torch.randn(batch, 3, side, side)


def test_list_models_has_the_zoo_and_torchvision():
    names = list_models()
    assert len(names) == len(set(names)) == 22 + len(TORCHVISION)
    assert names[-len(TORCHVISION) :] == TORCHVISION
    assert {"resnet8", "resnet110", "ResNet50", "wrn_40_2", "vgg19", "MobileNetV2"} < set(names)
    assert {"ShuffleV1", "ShuffleV2"} < set(names)


def test_model_info():
    assert model_info("resnet20").input_size == 32
    assert not model_info("resnet20").imagenet_weights
    info = model_info("tv_resnet50")
    assert (info.family, info.input_size, info.imagenet_weights) == ("torchvision", 224, True)


@pytest.mark.parametrize("name", list_models())
def test_every_model_extracts_features_and_its_head_gives_the_logits(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=10).eval()
    x = _input(name, batch=1 if name.startswith("tv_") else 2)
    spec = feature_spec(model)
    with torch.no_grad():
        outputs = extract_features(model, x)
        plain = model(x)
        head_logits = dict(model.named_modules())[spec.head](outputs.pooled)
    assert outputs.logits.shape == plain.shape == (x.shape[0], 10)
    torch.testing.assert_close(outputs.logits, plain)
    assert list(outputs.stages) == list(spec.stages)
    assert all(stage.dim() == 4 and stage.shape[0] == x.shape[0] for stage in outputs.stage_list)
    # Stages go shallow to deep: the resolution never grows.
    sides = [stage.shape[-1] for stage in outputs.stage_list]
    assert sides == sorted(sides, reverse=True)
    assert outputs.pooled.dim() == 2
    # The pooled feature is exactly what the classifier head reads (dropout is off in eval).
    torch.testing.assert_close(head_logits, outputs.logits)


def test_unknown_model_lists_accepted_names_and_bad_class_count():
    with pytest.raises(ValueError, match=r"accepted names: resnet8, resnet14, .*, tv_resnet18"):
        create_model("resnet9000")
    with pytest.raises(ValueError, match="accepted names"):
        model_info("resnet9000")
    with pytest.raises(ValueError, match="positive integer"):
        create_model("resnet8", num_classes=0)


@pytest.mark.parametrize("wrap", [None, "state_dict", "model"])
def test_torchvision_weights_round_trip_through_a_local_file(tmp_path, wrap):
    torch.manual_seed(1)
    source = create_model("tv_resnet18", num_classes=10).eval()
    state = source.state_dict()
    torch.save(state if wrap is None else {wrap: state, "epoch": 3}, tmp_path / "w.pth")
    torch.manual_seed(2)
    loaded = create_model("tv_resnet18", num_classes=10, weights=tmp_path / "w.pth").eval()
    x = _input("tv_resnet18", batch=1)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), source(x), atol=0, rtol=0)
    assert loaded.feature_spec == source.feature_spec


def test_state_dict_weights_and_dataparallel_prefix(tmp_path):
    source = create_model("resnet8", num_classes=10).eval()
    wrapped = {f"module.{key}": value for key, value in source.state_dict().items()}
    loaded = create_model("resnet8", num_classes=10, weights={"state_dict": wrapped}).eval()
    x = _input("resnet8")
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), source(x), atol=0, rtol=0)


def test_imagenet_sized_weights_load_the_backbone_and_replace_the_head(tmp_path):
    imagenet = create_model("tv_mobilenet_v2", num_classes=1000)
    torch.save(imagenet.state_dict(), tmp_path / "imagenet.pth")
    model = create_model("tv_mobilenet_v2", num_classes=10, weights=tmp_path / "imagenet.pth")
    assert model.classifier[1].out_features == 10
    torch.testing.assert_close(model.features[0][0].weight, imagenet.features[0][0].weight)


def test_weights_that_do_not_fit_are_value_errors(tmp_path):
    torch.save(create_model("resnet20").state_dict(), tmp_path / "resnet20.pth")
    with pytest.raises(ValueError, match=r"do not fit resnet8: unexpected: layer1\.1"):
        create_model("resnet8", weights=tmp_path / "resnet20.pth")
    with pytest.raises(ValueError, match=r"wrong shape: conv1\.weight"):
        create_model("resnet8x4", weights=tmp_path / "resnet20.pth")
    with pytest.raises(ValueError, match="does not exist"):
        create_model("resnet8", weights=tmp_path / "missing.pth")
    (tmp_path / "junk.pth").write_text("not a checkpoint")
    with pytest.raises(ValueError, match="Could not read weights"):
        create_model("resnet8", weights=tmp_path / "junk.pth")
    with pytest.raises(ValueError, match="must be a state dict"):
        create_model("resnet8", weights={"epoch": 3})


def test_imagenet_weights_need_the_download_opt_in_and_a_torchvision_model():
    with pytest.raises(ValueError, match=r"downloading is off.*weights='/path/to/file.pth'"):
        create_model("tv_resnet18", weights="imagenet")
    with pytest.raises(ValueError, match="only for the torchvision models"):
        create_model("resnet20", weights="imagenet", allow_download=True)


def test_imagenet_download_failure_is_a_clear_value_error(tmp_path, monkeypatch):
    # Offline everywhere: no cached file, and name resolution fails as without a network.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", offline)
    previous_timeout = socket.getdefaulttimeout()
    start = time.monotonic()
    with pytest.raises(
        ValueError, match=r"Could not download the ImageNet weights for tv_resnet18"
    ):
        create_model("tv_resnet18", weights="imagenet", allow_download=True)
    assert time.monotonic() - start < 10
    assert socket.getdefaulttimeout() == previous_timeout
