"""What the inspector shows about a loaded checkpoint: :func:`summarize` runs one blank image
through the network for the stage, pooled and logits shapes, beside the file's facts and, for a
timm model, its input recipe (timm's pretrained config: input size, mean/std, interpolation)."""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from kd_core import models
from kd_core.checkpoints.loading import LoadedCheckpoint
from kd_core.checkpoints.metadata import _jsonable


def _input_size(arch: str) -> int:
    """The image side ``arch`` is made for: the registry's hint, else 224 for ``tv_*``, else 32."""
    info = getattr(models, "model_info", None)
    if callable(info):
        with contextlib.suppress(Exception):
            size = info(arch).input_size
            if isinstance(size, int) and size > 0:
                return size
    return 224 if arch.startswith("tv_") else 32


def summarize(loaded: LoadedCheckpoint) -> dict[str, Any]:
    """What to show about a loaded checkpoint, JSON-friendly.

    Keys: ``architecture``, ``num_classes``, ``parameters``, ``source``, ``source_format``
    (the layout), ``file_format``, ``weights_key``, ``input_shape``, ``stages`` (name -> output
    shape for one image of ``input_shape``; empty when the network declares no stages),
    ``pooled_shape``, ``logits_shape``, ``input_config`` (timm's ``input_size``, ``mean``,
    ``std``, ``interpolation``, ``crop_pct``, ``crop_mode``; ``None`` for other models),
    ``metadata``, ``skipped``, ``also_matches``.
    """
    model = loaded.model
    input_config = models.data_config(model)
    if input_config is not None:
        input_shape = [1, *input_config["input_size"]]
    else:
        side = _input_size(loaded.arch)
        input_shape = [1, 3, side, side]
    stages: dict[str, list[int]] = {}
    pooled_shape = logits_shape = None
    device = next(iter(model.parameters()), torch.empty(0)).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            x = torch.zeros(*input_shape, device=device)
            try:
                outputs = models.extract_features(model, x)
            except ValueError:  # the network declares no stages: logits only
                logits_shape = list(model(x).shape)
            else:
                stages = {k: list(v.shape) for k, v in outputs.stages.items()}
                pooled_shape = list(outputs.pooled.shape) if outputs.pooled is not None else None
                logits_shape = list(outputs.logits.shape)
    finally:
        model.train(was_training)
    return {
        "architecture": loaded.arch,
        "num_classes": loaded.num_classes,
        "parameters": sum(p.numel() for p in model.parameters()),
        "source": loaded.source,
        "source_format": loaded.source_format,
        "file_format": loaded.file_format,
        "weights_key": loaded.weights_key,
        "input_shape": input_shape,
        "stages": stages,
        "pooled_shape": pooled_shape,
        "logits_shape": logits_shape,
        "input_config": _jsonable(input_config),
        "metadata": _jsonable(loaded.metadata),
        "skipped": list(loaded.skipped),
        "also_matches": list(loaded.also_matches),
    }
