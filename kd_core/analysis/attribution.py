r"""Where a classifier looks: one ``H x W`` map per image, at input resolution, in ``[0, 1]``.

Five methods (:data:`METHODS`), all returning non-negative maps divided by their maximum:

* ``activation``: the AMD attention map :math:`q = a / \lVert a \rVert_2`, :math:`a = \sum_c
  F_c^2` of one stage (:func:`kd_core.losses.amd.attention_map`): what the loss compares.
  Class-agnostic.
* ``gradcam``: Grad-CAM (Selvaraju et al. 2017) of one stage,
  :math:`\mathrm{ReLU}(\sum_c \alpha_c F_c)` with :math:`\alpha_c = \mathrm{mean}_{ij}\,
  \partial y_t / \partial F_{c,ij}` (Captum ``LayerGradCam``, ``relu_attributions=True``).
* ``integrated_gradients``: :math:`(x - x_0) \odot \int_0^1 \nabla_x y_t(x_0 + \alpha (x -
  x_0))\,d\alpha` with the all-zero baseline :math:`x_0` (the dataset's mean colour, since
  inputs are normalised), summed over colour channels, then the **absolute value**.
* ``saliency``: :math:`\max_c |\partial y_t / \partial x_c|` (Simonyan et al. 2014).
* ``occlusion``: the drop of :math:`y_t` when a window (a quarter of the image side, stride
  half a window: 8 x 8, stride 4 on 32 x 32) is set to 0 (the mean colour), averaged over the
  windows covering each pixel, then the **absolute value**.

Signed methods (integrated gradients, occlusion) keep the absolute value: a pixel counts as
attended whether it raises or lowers the score. Grad-CAM keeps the positive part (its
definition); saliency, activation are non-negative already. Stage maps (activation, Grad-CAM)
are upsampled bilinearly to the input size with Captum's ``LayerAttribution.interpolate``.
Each map is then divided by its maximum, so its peak is 1 and 0 still means "no attribution";
an all-zero map (e.g. Grad-CAM with no positive evidence) stays all zero.

``y_t`` is the logit of the target class: by default the predicted one.

While the maps are computed the model is in eval mode (batch-norm statistics are used, never
updated) with ``requires_grad`` off on its parameters; its modes, flags and hooks are restored
afterwards, also when a method fails. Inplace ReLU (MobileNetV2, VGG) is safe here: none of
these methods hooks the backward pass of a module (Captum's DeepLift, Guided Backprop and LRP
do, and are not offered), and ``LayerGradCam`` clones the hooked output before the next
inplace operation can modify it.

Example::

    maps = attribution_maps(teacher, images, method="gradcam")          # B x 32 x 32
    maps = attribution_maps(student, images, method="activation", stage="layer2")
    METHODS["occlusion"].cost                                          # for the page
"""

from __future__ import annotations

import contextlib
import math
import numbers
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from kd_core.analysis.errors import AnalysisError
from kd_core.losses.amd import attention_map
from kd_core.models.features import extract_features

DEFAULT_STEPS = 32
"""Integration steps of integrated gradients (Gauss-Legendre, Captum's default rule)."""
DEFAULT_BATCH_SIZE = 64
"""Most images per forward pass for integrated gradients and occlusion."""


def _occlusion_window(
    height: int, width: int, window: int | None, stride: int | None
) -> tuple[int, int]:
    """Occlusion window side and stride: a quarter of the image side, stride half a window."""
    side = min(height, width)
    hint = f"the smaller image side is {side}"
    window = max(1, round(side / 4)) if window is None else _count("window", window, side, hint)
    stride = max(1, window // 2) if stride is None else _count("stride", stride, window, "window")
    return window, stride


def _occlusion_passes(height: int, width: int, window: int | None, stride: int | None) -> int:
    """Window positions, as Captum slides them, plus the unoccluded pass."""
    window, stride = _occlusion_window(height, width, window, stride)
    return math.prod(math.ceil((side - window) / stride) + 1 for side in (height, width)) + 1


@dataclass(frozen=True)
class AttributionMethod:
    """One entry of :data:`METHODS`: what the page shows about a method.

    Attributes:
        name: the key passed as ``method=``.
        label: display name.
        description: what the map shows and how it was made non-negative.
        cost: relative cost in words (:func:`forward_passes` gives the number).
        uses_stage: whether ``stage=`` applies (activation, Grad-CAM).
    """

    name: str
    label: str
    description: str
    cost: str
    uses_stage: bool


METHODS: dict[str, AttributionMethod] = {
    method.name: method
    for method in (
        AttributionMethod(
            "activation",
            "Activation (AMD attention q)",
            "Channel energy sum_c F_c^2 of a stage, L2-normalised as the AMD loss sees it; "
            "the same for every class.",
            "1 forward pass per image (the cheapest).",
            uses_stage=True,
        ),
        AttributionMethod(
            "gradcam",
            "Grad-CAM",
            "Stage channels weighted by their mean gradient of the target logit; positive "
            "part (evidence for the class).",
            "1 forward + 1 backward pass per image (cheap).",
            uses_stage=True,
        ),
        AttributionMethod(
            "integrated_gradients",
            "Integrated gradients",
            "Input times the gradient averaged on the path from a mean-colour image; summed "
            "over colour channels, absolute value.",
            f"steps forward + backward passes per image ({DEFAULT_STEPS} by default: costly).",
            uses_stage=False,
        ),
        AttributionMethod(
            "saliency",
            "Saliency (gradient magnitude)",
            "Largest absolute gradient of the target logit over the colour channels.",
            "1 forward + 1 backward pass per image (cheap).",
            uses_stage=False,
        ),
        AttributionMethod(
            "occlusion",
            "Occlusion",
            "Drop of the target logit when a window is painted with the mean colour; "
            "absolute value.",
            "1 forward pass per window position + 1 "
            f"({_occlusion_passes(32, 32, None, None)} per 32 x 32 image: the most costly).",
            uses_stage=False,
        ),
    )
}


def forward_passes(
    method: str,
    height: int = 32,
    width: int = 32,
    *,
    steps: int = DEFAULT_STEPS,
    window: int | None = None,
    stride: int | None = None,
) -> int:
    """Forward passes per image of ``method`` on ``height x width`` images (gradient methods
    add as many backward passes): activation, gradcam and saliency 1, integrated gradients
    ``steps``, occlusion one per window position plus the unoccluded pass,
    ``(ceil((H - k) / s) + 1) * (ceil((W - k) / s) + 1) + 1`` for window ``k``, stride ``s``.

    >>> forward_passes("occlusion"), forward_passes("occlusion", 224, 224)
    (50, 50)
    """
    _check_method(method)
    if method == "integrated_gradients":
        return _count("steps", steps)
    if method == "occlusion":
        return _occlusion_passes(height, width, window, stride)
    return 1


# ---------------------------------------------------------------- model state


def _hook_dicts(module: nn.Module) -> list[dict]:
    names = (
        "_forward_hooks",
        "_forward_hooks_with_kwargs",
        "_forward_hooks_always_called",
        "_forward_pre_hooks",
        "_forward_pre_hooks_with_kwargs",
        "_backward_hooks",
        "_backward_pre_hooks",
    )
    return [getattr(module, name) for name in names if hasattr(module, name)]


@contextlib.contextmanager
def _inspection_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode and frozen parameters inside; on exit every module's mode and every
    parameter's ``requires_grad`` are restored and hooks added inside removed, also after an
    exception."""
    modes = [(module, module.training) for module in model.modules()]
    flags = [(parameter, parameter.requires_grad) for parameter in model.parameters()]
    hooks = [(hooks, set(hooks)) for module in model.modules() for hooks in _hook_dicts(module)]
    try:
        model.eval()
        for parameter, _ in flags:
            parameter.requires_grad_(False)
        yield
    finally:
        for module, training in modes:
            module.training = training
        for parameter, requires_grad in flags:
            parameter.requires_grad_(requires_grad)
        for current, before in hooks:
            for key in set(current) - before:
                del current[key]


# ---------------------------------------------------------------- checks


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise AnalysisError(
            f"Unknown attribution method {method!r}; choose one of {list(METHODS)}."
        )


def _count(name: str, value: object, high: int | None = None, hint: str = "") -> int:
    """``value`` if it is an integer in ``[1, high]``, otherwise an :class:`AnalysisError`."""
    valid = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if not valid or value < 1 or (high is not None and value > high):
        bounds = "at least 1" if high is None else f"from 1 to {high} ({hint})"
        raise AnalysisError(f"{name} must be an integer {bounds}, got {value!r}.")
    return int(value)


def _check_images(images: object) -> None:
    if not isinstance(images, Tensor) or images.dim() != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise AnalysisError(
            f"Images must be a B x 3 x H x W tensor, got {shape}; add a batch dimension "
            "with image[None] for a single image."
        )
    if images.shape[0] == 0 or not images.is_floating_point():
        raise AnalysisError(
            f"Images must be a non-empty floating-point batch, got {images.shape[0]} images "
            f"of dtype {images.dtype}; pass normalised float images as the dataset returns."
        )
    if not bool(torch.isfinite(images).all()):
        raise AnalysisError("Images contain NaN or infinite values; pass finite images.")


def _stage(model: nn.Module, stage: str | None) -> str:
    spec = getattr(model, "feature_spec", None)
    if spec is None:
        raise AnalysisError(
            f"{type(model).__name__} declares no stages (feature_spec), which activation and "
            "gradcam need; use saliency, integrated_gradients or occlusion instead."
        )
    if stage is None:
        return spec.stages[-1]
    if stage not in spec.stages:
        raise AnalysisError(
            f"Unknown stage {stage!r}; the stages of {type(model).__name__} are "
            f"{list(spec.stages)}."
        )
    return stage


def _logits(model: nn.Module, images: Tensor) -> Tensor:
    with torch.no_grad():
        logits = model(images)
    if not isinstance(logits, Tensor) or logits.dim() != 2 or logits.shape[0] != len(images):
        shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise AnalysisError(
            f"The model must return B x K logits for B images, got {shape}; attributions "
            "need a classifier."
        )
    return logits


def _targets(target: int | Tensor | None, logits: Tensor) -> Tensor:
    """``B`` int64 target classes on the logits' device (the predicted ones for ``None``)."""
    count, classes = logits.shape
    if target is None:
        return logits.argmax(dim=1)
    if isinstance(target, Tensor) and target.dim() == 0:
        target = target.item()
    if isinstance(target, numbers.Integral) and not isinstance(target, bool):
        targets = torch.full((count,), int(target), dtype=torch.int64, device=logits.device)
    elif (
        isinstance(target, Tensor)
        and target.shape == (count,)
        and not target.is_floating_point()
        and target.dtype != torch.bool
    ):
        targets = target.to(device=logits.device, dtype=torch.int64)
    else:
        shape = tuple(target.shape) if isinstance(target, Tensor) else repr(target)
        raise AnalysisError(
            f"target must be None (the predicted class), a class index or {count} integer "
            f"class indices (one per image), got {shape}."
        )
    if bool(((targets < 0) | (targets >= classes)).any()):
        raise AnalysisError(
            f"target classes must be in 0..{classes - 1} (the model has {classes} classes), "
            f"got {sorted(set(targets.tolist()))}."
        )
    return targets


def _check_stage_output(stage: str, output: Tensor) -> None:
    if output.dim() != 4:
        raise AnalysisError(
            f"Stage {stage!r} outputs shape {tuple(output.shape)}, not a B x C x H x W map; "
            "pick a convolutional stage."
        )


# ---------------------------------------------------------------- the methods


@dataclass(frozen=True)
class _Options:
    stage: str | None
    steps: int
    window: int
    stride: int
    batch_size: int


def _captum_attr():
    """``captum.attr``, imported when a map is first computed: the library imports without
    captum (an extra of the app), and a missing install is a sentence, not a traceback."""
    try:
        import captum.attr
    except ImportError:
        raise AnalysisError(
            "Attribution maps other than activation need Captum: pip install captum "
            "(or pip install 'kd-core[app]')."
        ) from None
    return captum.attr


RawMap = Callable[[nn.Module, Tensor, Tensor, _Options], Tensor]
"""``(model, images, targets, options) -> B x h x w`` non-negative map at any resolution."""


def _activation(model: nn.Module, images: Tensor, targets: Tensor, options: _Options) -> Tensor:
    with torch.no_grad():
        feature = extract_features(model, images).stages[options.stage]
    _check_stage_output(options.stage, feature)
    return attention_map(feature.double())  # squares of float32 activations over 1e19 overflow


def _gradcam(model: nn.Module, images: Tensor, targets: Tensor, options: _Options) -> Tensor:
    layer = dict(model.named_modules())[options.stage]
    cam = (
        _captum_attr()
        .LayerGradCam(model, layer)
        .attribute(images, target=targets, relu_attributions=True)
    )
    _check_stage_output(options.stage, cam)
    return cam[:, 0]


def _integrated_gradients(
    model: nn.Module, images: Tensor, targets: Tensor, options: _Options
) -> Tensor:
    attributions = (
        _captum_attr()
        .IntegratedGradients(model)
        .attribute(
            images,
            baselines=torch.zeros_like(images),
            target=targets,
            n_steps=options.steps,
            internal_batch_size=max(options.batch_size, len(images)),
        )
    )
    return attributions.sum(dim=1).abs()


def _saliency(model: nn.Module, images: Tensor, targets: Tensor, options: _Options) -> Tensor:
    return _captum_attr().Saliency(model).attribute(images, target=targets, abs=True).amax(dim=1)


def _occlusion(model: nn.Module, images: Tensor, targets: Tensor, options: _Options) -> Tensor:
    with torch.no_grad():
        attributions = (
            _captum_attr()
            .Occlusion(model)
            .attribute(
                images,
                sliding_window_shapes=(3, options.window, options.window),
                strides=(3, options.stride, options.stride),
                baselines=0.0,
                target=targets,
                perturbations_per_eval=max(1, options.batch_size // len(images)),
            )
        )
    return attributions.mean(dim=1).abs()  # equal over channels: the window spans all three


_RAW_MAPS: dict[str, RawMap] = {
    "activation": _activation,
    "gradcam": _gradcam,
    "integrated_gradients": _integrated_gradients,
    "saliency": _saliency,
    "occlusion": _occlusion,
}


def normalize_maps(maps: Tensor) -> Tensor:
    """Each non-negative map of ``B x H x W`` divided by its maximum, so its peak is 1; an
    all-zero map stays zero.

    >>> normalize_maps(torch.tensor([[[1.0, 4.0]], [[0.0, 0.0]]])).tolist()
    [[[0.25, 1.0]], [[0.0, 0.0]]]
    """
    peak = maps.flatten(1).amax(dim=1).clamp_min(torch.finfo(maps.dtype).tiny)
    return maps / peak[:, None, None]


def attribution_maps(
    model: nn.Module,
    images: Tensor,
    *,
    method: str,
    target: int | Tensor | None = None,
    stage: str | None = None,
    steps: int = DEFAULT_STEPS,
    window: int | None = None,
    stride: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> Tensor:
    """``B x H x W`` float32 CPU maps in ``[0, 1]`` (peak 1), one per image of ``images``.

    Args:
        model: a classifier returning ``B x K`` logits (its mode and flags are left as found).
        images: ``B x 3 x H x W`` normalised images, as the dataset returns them.
        method: a key of :data:`METHODS`.
        target: class whose logit is explained: ``None`` (each image's predicted class), one
            index for all images, or ``B`` indices. Ignored by ``activation``.
        stage: stage of ``model.feature_spec`` for activation and Grad-CAM (default: the
            deepest); ignored by the other methods.
        steps: integration steps of integrated gradients.
        window, stride: occlusion window side and stride in pixels (default: a quarter of
            the smaller image side, stride half a window).
        batch_size: most images per forward pass (integrated gradients and occlusion).

    Raises:
        AnalysisError: unknown method or stage, target out of range, images not
            ``B x 3 x H x W``, bad steps, window, stride or batch size.
    """
    _check_method(method)
    _check_images(images)
    size = tuple(images.shape[-2:])
    options = _Options(
        _stage(model, stage) if METHODS[method].uses_stage else None,
        _count("steps", steps),
        *_occlusion_window(*size, window, stride),
        _count("batch_size", batch_size),
    )
    device = next(model.parameters(), images).device
    images = images.detach().to(device).requires_grad_(True)
    with _inspection_mode(model):
        targets = _targets(target, _logits(model, images))
        with torch.enable_grad():
            raw = _RAW_MAPS[method](model, images, targets, options).detach()
    if not bool(torch.isfinite(raw).all()):
        raise AnalysisError(
            f"The {METHODS[method].label} maps are not finite: the model's outputs on these "
            "images overflow or are NaN; check the images' values and the checkpoint."
        )
    if raw.shape[-2:] != size:
        raw = (
            _captum_attr()
            .LayerAttribution.interpolate(raw.unsqueeze(1), size, "bilinear")
            .squeeze(1)
        )
    return normalize_maps(raw.float().clamp_min(0.0).cpu())


def predicted_classes(model: nn.Module, images: Tensor) -> Tensor:
    """``B`` int64 predicted classes (argmax of the logits), computed in eval mode; the
    model's mode and flags are left as found."""
    _check_images(images)
    device = next(model.parameters(), images).device
    with _inspection_mode(model):
        return _logits(model, images.detach().to(device)).argmax(dim=1).cpu()
