"""One way to read, in a single forward pass, what distillation uses from any network: the
named stage outputs, the pooled (penultimate) feature and the logits.

It works by forward hooks, so it needs nothing from the model but module names: our models
carry a :class:`FeatureSpec` as ``model.feature_spec``; for any other network pass one
(``FeatureSpec(stages=("layer1", "layer2"), head="fc")``). Hooks are always removed, also when
the forward pass fails, and the model's train/eval mode is never changed. A vision
transformer's stages are token sequences; a spec with ``prefix_tokens`` turns each into the
``B x C x h x w`` grid of its patch tokens (:func:`tokens_to_grid`), so every stage reads as a
CNN's does.

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
        prefix_tokens: ``None`` when the stages output ``B x C x H x W`` maps; for a vision
            transformer, how many tokens (class, register, distillation) precede the patch
            tokens in its ``B x N x C`` stage outputs: they are dropped and the patch tokens
            laid out as a grid (:func:`tokens_to_grid`).
    """

    stages: tuple[str, ...]
    head: str
    prefix_tokens: int | None = None


def tokens_to_grid(tokens: Tensor, prefix_tokens: int, image_size: tuple[int, int]) -> Tensor:
    """``B x (P + h*w) x C`` tokens -> ``B x C x h x w``: the ``P`` prefix tokens dropped, the
    patch tokens laid out row by row on the grid of the image's aspect (``h / w = H / W``,
    ``h = round(sqrt(n H / W))`` for ``n`` patch tokens)."""
    patches = tokens[:, prefix_tokens:]
    count = patches.shape[1]
    height, width = image_size
    rows = max(1, round((count * height / width) ** 0.5))
    if rows * (count // rows) != count:
        raise ValueError(
            f"{count} patch tokens do not tile a grid of the input's {height} x {width} aspect; "
            "pass a FeatureSpec whose prefix_tokens is the number of class/register tokens."
        )
    return patches.transpose(1, 2).reshape(len(patches), patches.shape[2], rows, count // rows)


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

    image_size: list[tuple[int, int]] = [(0, 0)]  # the input's H x W, set by the model's pre-hook

    def keep_output(name: str):
        def hook(_module: nn.Module, _inputs: tuple, output: Tensor) -> None:
            if spec.prefix_tokens is not None:
                output = tokens_to_grid(output, spec.prefix_tokens, image_size[0])
            captured[name] = output

        return hook

    def keep_image_size(_module: nn.Module, inputs: tuple) -> None:
        image_size[0] = tuple(inputs[0].shape[-2:])

    def keep_pooled(_module: nn.Module, inputs: tuple) -> None:
        captured["pooled"] = torch.flatten(inputs[0], 1)

    handles = [modules[name].register_forward_hook(keep_output(name)) for name in spec.stages]
    handles.append(modules[spec.head].register_forward_pre_hook(keep_pooled))
    if spec.prefix_tokens is not None:
        handles.append(model.register_forward_pre_hook(keep_image_size))
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


class FeatureExtractor(nn.Module):
    """``model`` with the hooks of :func:`extract_features` registered once, for this object's
    lifetime (``close()`` removes them): ``forward(x)`` returns ``(logits, pooled, *stages)``,
    and :meth:`outputs` turns that into :class:`ModelOutputs`. What ``torch.compile`` traces:
    hooks added at every call, as :func:`extract_features` does, would make it recompile."""

    def __init__(self, model: nn.Module, spec: FeatureSpec | None = None) -> None:
        super().__init__()
        self.model = model
        self.spec = feature_spec(model, spec)
        self._capture = capture_features(model, self.spec)
        self._captured = self._capture.__enter__()

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        logits = self.model(x)
        captured = self._captured
        return (logits, captured["pooled"], *(captured[name] for name in self.spec.stages))

    def outputs(self, values: tuple[Tensor, ...]) -> ModelOutputs:
        """``forward``'s tuple as :class:`ModelOutputs`."""
        logits, pooled, *stages = values
        return ModelOutputs(logits, dict(zip(self.spec.stages, stages, strict=True)), pooled)

    def close(self) -> None:
        """Remove the hooks."""
        self._capture.__exit__(None, None, None)
