"""One way to read, in a single forward pass, what distillation uses from any network: the
named stage outputs, the pooled (penultimate) feature and the logits.

It works by forward hooks, so it needs nothing from the model but module names: our models
carry a :class:`FeatureSpec` as ``model.feature_spec``; for any other network pass one
(``FeatureSpec(stages=("layer1", "layer2"), head="fc")``). Hooks are always removed, also when
the forward pass fails, and the model's train/eval mode is never changed.

Example::

    model = create_model("resnet20").eval()
    outputs = extract_features(model, images)      # ModelOutputs
    outputs.stages["layer3"].shape                 # B x 64 x 8 x 8
    outputs.pooled.shape, outputs.logits.shape     # B x 64, B x 100
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from kd_core.outputs import ModelOutputs


@dataclass(frozen=True)
class FeatureSpec:
    """Where a network's distillation features are.

    Attributes:
        stages: names (as in ``model.named_modules()``) of the modules whose outputs are the
            stage features, shallow to deep.
        head: name of the classifier module; its input, flattened, is the pooled feature.
    """

    stages: tuple[str, ...]
    head: str


def feature_spec(model: nn.Module, spec: FeatureSpec | None = None) -> FeatureSpec:
    """``spec`` if given, else the model's own ``feature_spec``; a ``ValueError`` otherwise."""
    spec = spec or getattr(model, "feature_spec", None)
    if spec is None:
        raise ValueError(
            f"{type(model).__name__} does not declare its stages; pass "
            "FeatureSpec(stages=(...module names...), head='classifier module name')."
        )
    modules = dict(model.named_modules())
    missing = [name for name in (*spec.stages, spec.head) if name not in modules]
    if missing:
        raise ValueError(
            f"{type(model).__name__} has no module(s) {missing}; its top-level modules are "
            f"{[name for name, _ in model.named_children()]}."
        )
    return spec


@contextlib.contextmanager
def capture_features(
    model: nn.Module, spec: FeatureSpec | None = None
) -> Iterator[dict[str, Tensor]]:
    """Register hooks that fill the yielded dict on every forward pass: each stage's output
    under its name and the pooled feature under ``"pooled"``; remove them on exit."""
    spec = feature_spec(model, spec)
    modules = dict(model.named_modules())
    captured: dict[str, Tensor] = {}

    def keep_output(name: str):
        def hook(_module: nn.Module, _inputs: tuple, output: Tensor) -> None:
            captured[name] = output

        return hook

    def keep_pooled(_module: nn.Module, inputs: tuple) -> None:
        captured["pooled"] = torch.flatten(inputs[0], 1)

    handles = [modules[name].register_forward_hook(keep_output(name)) for name in spec.stages]
    handles.append(modules[spec.head].register_forward_pre_hook(keep_pooled))
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


def extract_features(model: nn.Module, x: Tensor, spec: FeatureSpec | None = None) -> ModelOutputs:
    """Run ``model(x)`` once and return its stage outputs, pooled feature and logits.

    Gradients flow as in ``model(x)``: wrap the call in ``torch.no_grad()`` for a frozen teacher.
    """
    spec = feature_spec(model, spec)
    with capture_features(model, spec) as captured:
        logits = model(x)
    return ModelOutputs(
        logits=logits,
        stages={name: captured[name] for name in spec.stages},
        pooled=captured["pooled"],
    )
