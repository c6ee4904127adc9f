"""Weights for a registered network: read a state dict from a file or mapping, load it."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from kd_core.models.features import feature_spec

#: a path to a ``torch.save``-d file, or the (possibly wrapped) state dict itself
WeightsSource = str | os.PathLike | Mapping[str, Any]


def read_state_dict(source: WeightsSource) -> dict[str, Tensor]:
    """The state dict in ``source``: a plain one, or one under ``"state_dict"`` or ``"model"``
    (RepDistiller checkpoints); a ``module.`` prefix (DataParallel) is removed. Files are read
    with ``torch.load(weights_only=True)`` onto the CPU."""
    if isinstance(source, Mapping):
        state: Any = source
    else:
        path = Path(source)
        if not path.is_file():
            raise ValueError(f"Weights file {str(path)!r} does not exist.")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:
            raise ValueError(f"Could not read weights from {str(path)!r}: {error}") from error
    if isinstance(state, Mapping):
        for key in ("state_dict", "model"):
            if isinstance(state.get(key), Mapping):
                state = state[key]
                break
    if (
        not isinstance(state, Mapping)
        or not state
        or not all(isinstance(v, Tensor) for v in state.values())
    ):
        raise ValueError(
            "Weights must be a state dict (parameter name -> tensor), plain or under "
            "'state_dict' or 'model'."
        )
    if all(key.startswith("module.") for key in state):
        state = {key.removeprefix("module."): value for key, value in state.items()}
    return dict(state)


def load_weights(model: nn.Module, state: Mapping[str, Tensor], name: str) -> None:
    """Load ``state`` into ``model`` strictly, except for the classifier head: when its shape
    differs (another class count, e.g. ImageNet's 1000), the backbone is loaded and the model's
    own freshly initialised head is kept. Any other mismatch is a ``ValueError``."""
    head = feature_spec(model).head + "."
    own = model.state_dict()
    new_head = any(
        key.startswith(head) and key in state and state[key].shape != own[key].shape for key in own
    )
    if new_head:
        state = {key: value for key, value in state.items() if not key.startswith(head)}
    missing = [key for key in own if key not in state and not (new_head and key.startswith(head))]
    unexpected = [key for key in state if key not in own]
    wrong = [
        f"{key} {tuple(state[key].shape)} != {tuple(own[key].shape)}"
        for key in own
        if key in state and state[key].shape != own[key].shape
    ]
    if missing or unexpected or wrong:
        problems = {"missing": missing, "unexpected": unexpected, "wrong shape": wrong}
        details = "; ".join(
            f"{label}: {', '.join(keys[:5])}{' ...' if len(keys) > 5 else ''}"
            for label, keys in problems.items()
            if keys
        )
        raise ValueError(f"These weights do not fit {name}: {details}.")
    model.load_state_dict(state, strict=not new_head)
