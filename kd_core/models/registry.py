"""One registry of networks: the community CIFAR zoo under its own names, torchvision's
ImageNet classifiers under ``tv_*``, and every timm model under ``timm:<model name>``
(:mod:`~kd_core.models.timm_models`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from torch import nn

from kd_core.models.mobilenetv2 import MobileNetV2
from kd_core.models.resnet_bottleneck import BottleneckResNet
from kd_core.models.resnet_cifar import CifarResNet
from kd_core.models.shufflenet_v1 import ShuffleNetV1
from kd_core.models.shufflenet_v2 import ShuffleNetV2
from kd_core.models.timm_models import PREFIX as TIMM_PREFIX
from kd_core.models.timm_models import build_timm, is_timm_name, timm_name_problem
from kd_core.models.torchvision_models import (
    TORCHVISION_MODELS,
    build_torchvision,
    imagenet_state_dict,
)
from kd_core.models.vgg import VGG
from kd_core.models.weights import WeightsSource, load_weights, read_state_dict
from kd_core.models.wrn import WideResNet


@dataclass(frozen=True)
class ModelInfo:
    """What to know about a network before building it.

    Attributes:
        name: the registry name.
        family: the architecture family (one module of ``kd_core.models`` each).
        input_size: the side of the images it is made for: 32 (CIFAR zoo) or 224 (ImageNet;
            a timm model's default pretrained config).
        imagenet_weights: whether ``weights="imagenet"`` is available.
    """

    name: str
    family: str
    input_size: int
    imagenet_weights: bool = False


_SMALL = (16, 16, 32, 64)
_WIDE = (32, 64, 128, 256)
_BUILDERS: dict[str, tuple[str, Callable[..., nn.Module]]] = {
    **{
        f"resnet{d}": ("resnet_cifar", partial(CifarResNet, d, _SMALL))
        for d in (8, 14, 20, 32, 44, 56, 110)
    },
    "resnet8x4": ("resnet_cifar", partial(CifarResNet, 8, _WIDE)),
    "resnet32x4": ("resnet_cifar", partial(CifarResNet, 32, _WIDE)),
    "ResNet50": ("resnet_bottleneck", partial(BottleneckResNet, (3, 4, 6, 3))),
    **{
        f"wrn_{d}_{k}": ("wrn", partial(WideResNet, d, k))
        for d, k in ((16, 1), (16, 2), (40, 1), (40, 2))
    },
    **{f"vgg{d}": ("vgg", partial(VGG, d)) for d in (8, 11, 13, 16, 19)},
    "MobileNetV2": ("mobilenetv2", partial(MobileNetV2, 6, 0.5)),
    "ShuffleV1": ("shufflenet_v1", ShuffleNetV1),
    "ShuffleV2": ("shufflenet_v2", ShuffleNetV2),
    **{name: ("torchvision", partial(build_torchvision, name)) for name in TORCHVISION_MODELS},
}
_INFO = {
    name: ModelInfo(
        name,
        family,
        input_size=224 if family == "torchvision" else 32,
        imagenet_weights=family == "torchvision",
    )
    for name, (family, _) in _BUILDERS.items()
}


def list_models() -> list[str]:
    """The names :func:`create_model` accepts besides ``timm:<model name>`` (any model of
    ``timm.list_models()``): the CIFAR zoo, then ``tv_*``."""
    return list(_BUILDERS)


def model_info(name: str) -> ModelInfo:
    """Family, input size and ImageNet-weight availability of network ``name``."""
    _check_name(name)
    if is_timm_name(name):
        import timm

        size = timm.get_pretrained_cfg(name.removeprefix(TIMM_PREFIX)).input_size[-1]
        return ModelInfo(name, "timm", input_size=size)
    return _INFO[name]


def create_model(
    name: str,
    num_classes: int = 100,
    weights: WeightsSource | None = None,
    allow_download: bool = False,
    *,
    model_args: Mapping[str, Any] | None = None,
    pretrained_cfg: Mapping[str, Any] | None = None,
) -> nn.Module:
    """Build network ``name`` with ``num_classes`` outputs; ``model(x)`` returns logits and
    :func:`~kd_core.models.features.extract_features` the stage outputs, pooled feature and
    logits in the same pass.

    Args:
        name: one of :func:`list_models`.
        num_classes: size of the classifier.
        weights: ``None`` (random initialisation); a path to a ``torch.save``-d state dict, or
            a state dict, plain or under ``"state_dict"``/``"model"`` (so RepDistiller
            checkpoints load as they are); or ``"imagenet"`` for torchvision's ImageNet
            weights (``tv_*`` models only). Files are read with ``torch.load(weights_only=True)``.
            When the weights' classifier has another class count than ``num_classes`` (ImageNet
            weights with ``num_classes != 1000``), the backbone is loaded and the head is
            replaced by a freshly initialised one with ``num_classes`` outputs.
        allow_download: let ``weights="imagenet"`` download through torchvision (or use
            torch.hub's cache); off by default, so nothing reaches the network unasked.
        model_args, pretrained_cfg: ``timm:`` names only: timm's ``create_model`` keywords
            (``img_size``, ``patch_size``...) and the pretrained config (input size, mean/std)
            a hub folder's ``config.json`` records.

    Raises:
        ValueError: an unknown name, a bad class count, weights that cannot be read, do not
            fit, or would need a download that is off or failed.
    """
    _check_name(name)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}.")
    if is_timm_name(name):
        build: Callable[..., nn.Module] = partial(
            build_timm, name, model_args=model_args, pretrained_cfg=pretrained_cfg
        )
        family = "timm"
    elif model_args or pretrained_cfg:
        raise ValueError(f"model_args and pretrained_cfg are for timm: models, not {name}.")
    else:
        family, build = _BUILDERS[name]
    if weights is None:
        return build(num_classes=num_classes)
    if isinstance(weights, str) and weights == "imagenet":
        if family != "torchvision":
            raise ValueError(
                f"ImageNet weights exist only for the torchvision models "
                f"({', '.join(TORCHVISION_MODELS)}); for {name} pass a state dict or its path."
            )
        if not allow_download:
            raise ValueError(
                f"weights='imagenet' for {name} needs a download, and downloading is off. "
                "Pass allow_download=True, or pass a local torchvision weights file as "
                "weights='/path/to/file.pth'."
            )
        state = imagenet_state_dict(name)
    else:
        state = read_state_dict(weights)
    model = build(num_classes=num_classes)
    load_weights(model, state, name)
    return model


def _check_name(name: str) -> None:
    if is_timm_name(name):
        problem = timm_name_problem(name)
        if problem:
            raise ValueError(problem)
    elif name not in _BUILDERS:
        raise ValueError(
            f"Unknown model {name!r}; accepted names: {', '.join(_BUILDERS)}, or "
            f"{TIMM_PREFIX}<name> for a model of timm.list_models()."
        )
