"""timm's models (CNNs and vision transformers) under the registry names ``timm:<model name>``.

Any name of ``timm.list_models()`` works, prefixed with ``timm:`` (``timm:efficientnet_b0``,
``timm:vit_tiny_patch16_224``); the model is built with ``pretrained=False`` (weights come from
a file, never from a download) and gets a :class:`~kd_core.models.features.FeatureSpec` read
from timm's own ``feature_info``:

* CNNs: the deepest module of each reduction (stride) timm lists, the last four of them;
* vision transformers (models with ``num_prefix_tokens``): four blocks evenly spaced over the
  depth (blocks 2, 5, 8, 11 of a 12-block ViT), whose token outputs
  :func:`~kd_core.models.features.extract_features` lays out as ``B x C x h x w`` grids with the
  class and register tokens dropped (``prefix_tokens`` of the spec).

The head is timm's ``get_classifier()``, so the pooled feature is what timm's classifier reads.

:data:`CURATED_FAMILIES` lists the families whose architecture a bare weights file is matched
against (ResNet, ResNet-D, MobileNetV2, MobileNetV3, EfficientNet, RegNet, ConvNeXt, ViT, DeiT);
each family names the key every one of its state dicts holds, so a file is only compared with
the families it can belong to. timm is imported inside the functions: ``import kd_core`` does
not pay its import time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported when a model is built, not to read the names here
    from torch import nn

    from kd_core.models.features import FeatureSpec

PREFIX = "timm:"
"""Registry names of timm models: ``PREFIX + timm_model_name``."""

STAGE_COUNT = 4
"""How many stages a timm model's spec names."""

#: family -> (a key every state dict of the family holds, the timm models matched by shape)
CURATED_FAMILIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "ResNet": ("conv1.weight", ("resnet18", "resnet26", "resnet34", "resnet50", "resnet101")),
    "ResNet-D": ("conv1.0.weight", ("resnet18d", "resnet26d", "resnet34d", "resnet50d")),
    "MobileNetV2": (
        "conv_stem.weight",
        ("mobilenetv2_050", "mobilenetv2_100", "mobilenetv2_110d", "mobilenetv2_140"),
    ),
    "MobileNetV3": (
        "conv_stem.weight",
        ("mobilenetv3_small_050", "mobilenetv3_small_100", "mobilenetv3_large_100"),
    ),
    "EfficientNet": (
        "conv_stem.weight",
        ("efficientnet_b0", "efficientnet_b1", "efficientnet_b2", "efficientnet_b3"),
    ),
    "RegNet": (
        "stem.conv.weight",
        ("regnetx_002", "regnetx_004", "regnetx_008", "regnety_002", "regnety_004", "regnety_008"),
    ),
    "ConvNeXt": (
        "stem.0.weight",
        ("convnext_atto", "convnext_femto", "convnext_pico", "convnext_nano", "convnext_tiny"),
    ),
    "ViT": (
        "cls_token",
        ("vit_tiny_patch16_224", "vit_small_patch16_224", "vit_base_patch16_224"),
    ),
    "DeiT": (
        "cls_token",
        ("deit_tiny_patch16_224", "deit_small_patch16_224", "deit_base_patch16_224"),
    ),
}


def is_timm_name(name: object) -> bool:
    """Whether ``name`` is written as a timm registry name (``timm:...``)."""
    return isinstance(name, str) and name.startswith(PREFIX)


def timm_name_problem(name: str) -> str | None:
    """``None`` when the installed timm has the model of registry name ``name``, else why not
    and what to do, as a sentence."""
    import timm

    model_name = name.removeprefix(PREFIX)
    if timm.is_model(model_name):
        return None
    return (
        f"The installed timm ({timm.__version__}) has no model {model_name!r}; check the name "
        f"with timm.list_models('{model_name.split('_')[0]}*'), or upgrade timm."
    )


def timm_model_names() -> list[str]:
    """Every timm model, as registry names (``timm:`` + each of ``timm.list_models()``)."""
    import timm

    return [PREFIX + name for name in timm.list_models()]


def curated_candidates(keys: set[str] | frozenset[str]) -> list[str]:
    """The curated timm registry names whose family's marker key is among ``keys``."""
    return [
        PREFIX + name
        for marker, names in CURATED_FAMILIES.values()
        if marker in keys
        for name in names
    ]


def build_timm(
    name: str,
    num_classes: int = 1000,
    model_args: Mapping[str, Any] | None = None,
    pretrained_cfg: Mapping[str, Any] | None = None,
) -> nn.Module:
    """timm's model ``name`` (``timm:<model name>``) with random weights and ``num_classes``
    outputs, built with ``model_args`` (timm's ``create_model`` keywords a hub folder's
    ``config.json`` records, e.g. ``img_size``) and ``pretrained_cfg`` (its input size,
    mean/std, interpolation), with its ``feature_spec`` attached. Never downloads."""
    import dataclasses

    import timm
    from timm.models import PretrainedCfg

    problem = timm_name_problem(name)
    if problem:
        raise ValueError(problem)
    args = {key: value for key, value in (model_args or {}).items() if key != "num_classes"}
    fields = {field.name for field in dataclasses.fields(PretrainedCfg)}
    recipe = {  # the input recipe only: a file's URLs and hub ids must never lead to a download
        key: tuple(value) if isinstance(value, list) else value
        for key, value in (pretrained_cfg or {}).items()
        if key in fields and key not in ("url", "file", "hf_hub_id", "hf_hub_filename")
    }
    overlay = {"pretrained_cfg_overlay": recipe} if recipe else {}
    model = timm.create_model(
        name.removeprefix(PREFIX), pretrained=False, num_classes=num_classes, **overlay, **args
    )
    model.feature_spec = timm_feature_spec(model)
    return model


def timm_feature_spec(model: nn.Module) -> FeatureSpec:
    """The stages (from ``model.feature_info``) and head (``get_classifier()``) of a timm model;
    a ``ValueError`` for a model that lists no features."""
    info = getattr(model, "feature_info", None)
    if not info:
        raise ValueError(
            f"timm's {type(model).__name__} lists no feature stages (feature_info); use a model "
            "of the curated families for stage features."
        )
    modules = [entry["module"] for entry in info]
    prefix_tokens = getattr(model, "num_prefix_tokens", None)
    if prefix_tokens is not None:  # a transformer: every block at the same stride
        count = min(STAGE_COUNT, len(modules))
        stages = [modules[round((i + 1) * len(modules) / count) - 1] for i in range(count)]
    else:  # the deepest module of each stride
        deepest = {entry["reduction"]: entry["module"] for entry in info}
        stages = list(deepest.values())[-STAGE_COUNT:]
    classifier = model.get_classifier()
    head = next(name for name, module in model.named_modules() if module is classifier)
    from kd_core.models.features import FeatureSpec

    return FeatureSpec(stages=tuple(stages), head=head, prefix_tokens=prefix_tokens)


def data_config(model: nn.Module) -> dict[str, Any] | None:
    """timm's input recipe of ``model`` (``input_size``, ``mean``, ``std``, ``interpolation``,
    ``crop_pct``, ``crop_mode``) from its pretrained config; ``None`` for a non-timm model. A
    transformer built for a fixed image size other than its config's (``img_size`` in
    ``model_args``) gets that size: it accepts no other."""
    if not isinstance(getattr(model, "pretrained_cfg", None), Mapping):
        return None
    from timm.data import resolve_model_data_config

    config = dict(resolve_model_data_config(model))
    size = fixed_input_size(model)
    if size is not None:
        config["input_size"] = (config["input_size"][0], *size)
    return config


def fixed_input_size(model: nn.Module) -> tuple[int, int] | None:
    """The only ``H x W`` a timm transformer accepts (its patch embedding's strict image size);
    ``None`` for a model that takes any size."""
    embed = getattr(model, "patch_embed", None)
    if not getattr(embed, "strict_img_size", False) or getattr(model, "dynamic_img_size", False):
        return None
    return tuple(embed.img_size)


def input_transform(config: Mapping[str, Any], augment: bool = False):
    """PIL image -> tensor as timm's input recipe ``config`` (:func:`data_config` of a model)
    prepares it: resize, centre crop, its mean/std (timm's ``create_transform``); its training
    augmentation with ``augment``."""
    from timm.data import create_transform

    return create_transform(**config, is_training=augment)
