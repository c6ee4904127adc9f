"""A network's layers as a table: name, type, output shape, parameters (the inspector's view).

Output shapes come from one forward pass of a zero image with forward hooks on the leaf
modules; the hooks are always removed and the model's train/eval mode restored.

Example::

    rows = layer_table(create_model("resnet8", num_classes=10), input_size=32)
    rows[0]  # LayerRow(name='conv1', kind='Conv2d', output_shape=(16, 32, 32), ...)
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class LayerRow:
    """One leaf module.

    Attributes:
        name: its name in ``model.named_modules()``.
        kind: its class name (``Conv2d``, ``BatchNorm2d``...).
        output_shape: output shape for one image (without the batch dimension), or ``None``
            when the module did not run in the forward pass (or returned a non-tensor).
        parameters: number of parameters it owns directly.
        trainable: number of those with ``requires_grad``.
    """

    name: str
    kind: str
    output_shape: tuple[int, ...] | None
    parameters: int
    trainable: int


def _leaves(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(name, m) for name, m in model.named_modules() if name and not list(m.children())]


def layer_table(model: nn.Module, input_size: int = 32, channels: int = 3) -> list[LayerRow]:
    """Every leaf module of ``model`` with its output shape on a ``channels x input_size x
    input_size`` image and its parameter counts, in registration order."""
    shapes: dict[str, tuple[int, ...]] = {}

    def keep_shape(name: str):
        def hook(_module: nn.Module, _inputs: tuple, output: object) -> None:
            if isinstance(output, Tensor) and name not in shapes:
                shapes[name] = tuple(output.shape[1:])

        return hook

    leaves = _leaves(model)
    device = next(iter(model.parameters()), torch.empty(0)).device
    was_training = model.training
    with contextlib.ExitStack() as stack:
        for name, module in leaves:
            stack.callback(module.register_forward_hook(keep_shape(name)).remove)
        stack.callback(model.train, was_training)
        model.eval()
        with torch.inference_mode():
            model(torch.zeros(1, channels, input_size, input_size, device=device))
    return [
        LayerRow(
            name=name,
            kind=type(module).__name__,
            output_shape=shapes.get(name),
            parameters=sum(p.numel() for p in module.parameters(recurse=False)),
            trainable=sum(p.numel() for p in module.parameters(recurse=False) if p.requires_grad),
        )
        for name, module in leaves
    ]
