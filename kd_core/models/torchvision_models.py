"""torchvision's ImageNet classifiers, built by torchvision's own builders.

``tv_resnet18/34/50``, ``tv_mobilenet_v2`` and ``tv_efficientnet_b0`` are torchvision's
classes unchanged (224x224 inputs); since they are not ours, :func:`build_torchvision` attaches
the :class:`~kd_core.models.features.FeatureSpec` to each instance. ImageNet weights come from a
local file (see :func:`kd_core.models.create_model`) or, when the caller opts in, from
torchvision's download (:func:`imagenet_state_dict`).
"""

from __future__ import annotations

import socket

from torch import Tensor, nn

from kd_core.models.features import FeatureSpec

# torchvision is imported inside the builders: importing it takes seconds (it pulls
# torch._dynamo), and the registry's names and specs need none of it.

_RESNET_SPEC = FeatureSpec(stages=("layer1", "layer2", "layer3", "layer4"), head="fc")

#: registry name -> (torchvision builder name, feature spec)
TORCHVISION_MODELS: dict[str, tuple[str, FeatureSpec]] = {
    "tv_resnet18": ("resnet18", _RESNET_SPEC),
    "tv_resnet34": ("resnet34", _RESNET_SPEC),
    "tv_resnet50": ("resnet50", _RESNET_SPEC),
    "tv_mobilenet_v2": (
        "mobilenet_v2",
        FeatureSpec(
            stages=("features.3", "features.6", "features.13", "features.18"), head="classifier"
        ),
    ),
    "tv_efficientnet_b0": (
        "efficientnet_b0",
        FeatureSpec(
            stages=("features.2", "features.3", "features.5", "features.8"), head="classifier"
        ),
    ),
}

#: seconds a socket operation may block while downloading weights
DOWNLOAD_TIMEOUT_S = 20.0


def build_torchvision(name: str, num_classes: int = 1000) -> nn.Module:
    """torchvision's ``name`` builder with random weights and ``num_classes`` outputs, with its
    ``feature_spec`` attached."""
    import torchvision

    arch, spec = TORCHVISION_MODELS[name]
    model = torchvision.models.get_model(arch, weights=None, num_classes=num_classes)
    model.feature_spec = spec
    return model


def imagenet_state_dict(name: str) -> dict[str, Tensor]:
    """Download (or read from torch.hub's cache) torchvision's default ImageNet weights for
    ``name``; a network failure becomes a ``ValueError`` that says how to pass a local file."""
    import torchvision

    arch, _ = TORCHVISION_MODELS[name]
    weights = torchvision.models.get_model_weights(arch).DEFAULT
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)  # an unreachable host fails instead of hanging
    try:
        return weights.get_state_dict(progress=False, check_hash=True, weights_only=True)
    except OSError as error:  # URLError, HTTPError, timeouts, refused connections
        raise ValueError(
            f"Could not download the ImageNet weights for {name} ({weights.url}): {error}. "
            "Download that file where there is network access and pass its path as "
            "weights='/path/to/file.pth'."
        ) from error
    finally:
        socket.setdefaulttimeout(previous)
