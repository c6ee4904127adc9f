"""Finding the weights inside what a PyTorch file holds: the registered weights layouts.

Tried in this order (the first that recognises the object wins): kd_core's own format, a bare
state dict, torchdistill's and RepDistiller's training files (weights under ``"model"``), then any
dict with the weights under ``"model"``, ``"state_dict"``, ``"net"``, ``"student"`` or ``"ema"``
(also one level deeper). Afterwards, and for safetensors files too, ``module.``/``_orig_mod.``
prefixes are removed and the refining layout ``mdistiller`` keeps a distiller's ``student.*``.
Entries beside the weights become metadata, or are listed as skipped (optimizer state, more
weights).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor

from kd_core.checkpoints.errors import FORMAT_VERSION, CheckpointError, _describe_keys
from kd_core.checkpoints.metadata import _jsonable
from kd_core.checkpoints.registry import _Found, _layouts, register_layout

_WEIGHT_KEYS = ("model", "state_dict", "net", "student", "ema")
_PREFIXES = ("module.", "_orig_mod.")
_REPDISTILLER_KEYS = {"model", "epoch", "best_acc", "accuracy", "optimizer", "opt"}
_TRAINING_STATE_KEYS = {"optimizer", "lr_scheduler", "scheduler", "scaler", "amp"}


def _is_tensor_dict(obj: object) -> bool:
    return (
        isinstance(obj, Mapping)
        and len(obj) > 0
        and all(isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items())
    )


def _contains_tensors(obj: object, depth: int = 0) -> bool:
    if isinstance(obj, Tensor):
        return True
    if depth > 4:
        return False
    if isinstance(obj, Mapping):
        return any(_contains_tensors(v, depth + 1) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return any(_contains_tensors(v, depth + 1) for v in obj)
    return False


def _strip_prefixes(state_dict: dict[str, Tensor]) -> tuple[dict[str, Tensor], str]:
    """Remove the ``module.``/``_orig_mod.`` prefixes every key has; the weights and the
    prefixes removed."""
    removed = ""
    while True:
        for prefix in _PREFIXES:
            if all(key.startswith(prefix) for key in state_dict):
                state_dict = {key[len(prefix) :]: v for key, v in state_dict.items()}
                removed += prefix
                break
        else:
            return state_dict, removed


def _find_weights(obj: object, name: str) -> _Found:
    """The weights in ``obj`` (what a PyTorch file holds), by the first registered layout that
    recognises it; a :class:`CheckpointError` when none does."""
    if isinstance(obj, Tensor):
        raise CheckpointError(
            f"{name} holds a single tensor ({'x'.join(map(str, obj.shape))}), not a network's "
            "weights; save model.state_dict() instead."
        )
    if not isinstance(obj, Mapping):
        raise CheckpointError(
            f"{name} holds a {type(obj).__name__}, not a network's weights; save "
            "model.state_dict() (or a dict with it under 'model')."
        )
    if not obj:
        raise CheckpointError(f"{name} holds an empty dict: there are no weights in it.")
    for layout in _layouts(refines=False):
        found = layout.find(obj, name)
        if found is not None:
            return found
    raise CheckpointError(
        f"{name} holds a dict with keys {_describe_keys([str(k) for k in obj])} but no "
        f"weights: no tensor state dict at the top or under {', '.join(_WEIGHT_KEYS)}; "
        "save model.state_dict()."
    )


def _refine(found: _Found) -> None:
    """Let every refining layout look at the weights found (prefixes already removed)."""
    for layout in _layouts(refines=True):
        layout.find(found)


def _keep(found: _Found, key: str, value: object) -> None:
    """Record a stored entry as metadata, or as skipped when it is training state or weights."""
    if key in _TRAINING_STATE_KEYS:
        found.skipped.append(f"{key} (training state)")
    elif _contains_tensors(value) and not isinstance(value, Tensor):
        found.skipped.append(f"{key} (more weights, not loaded)")
    elif isinstance(value, Tensor) and value.numel() > 16:
        found.skipped.append(f"{key} (tensor {'x'.join(map(str, value.shape))})")
    else:
        found.metadata[key] = _jsonable(value)


def _weights_location(top: Mapping[Any, Any]) -> tuple[str, ...] | None:
    """The keys leading to the weights: one of ``_WEIGHT_KEYS``, else two of them nested."""
    for key in _WEIGHT_KEYS:
        if _is_tensor_dict(top.get(key)):
            return (key,)
    for key in _WEIGHT_KEYS:
        inner = top.get(key)
        if isinstance(inner, Mapping):
            nested = next((k for k in _WEIGHT_KEYS if _is_tensor_dict(inner.get(k))), None)
            if nested is not None:
                return (key, nested)
    return None


def _wrapped_weights(top: dict[Any, Any], location: tuple[str, ...], layout: str) -> _Found:
    """The weights at ``location`` in ``top``; every other entry is kept as metadata or
    listed as skipped."""
    weights = top[location[0]] if len(location) == 1 else top[location[0]][location[1]]
    found = _Found(dict(weights), layout, location="/".join(location))
    for key, value in top.items():
        key = str(key)
        if key == location[0]:
            if len(location) == 2:
                for inner_key, inner_value in value.items():
                    if inner_key != location[1]:
                        _keep(found, f"{key}/{inner_key}", inner_value)
            continue
        _keep(found, key, value)
    return found


# --------------------------------------------------------------------------------------------
# The layouts, in the order they are tried.


@register_layout(
    "kd_core",
    "kd_core's own files (save_checkpoint): {'format': 'kd_core', 'format_version', 'arch', "
    "'num_classes', 'state_dict', 'metadata'}; the architecture comes from the file.",
)
def _kd_core_weights(obj: Mapping[Any, Any], name: str) -> _Found | None:
    if obj.get("format") != "kd_core":
        return None
    version = obj.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise CheckpointError(f"{name}: kd_core checkpoint without a valid format_version.")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{name} was written by a newer kd_core (format_version {version}, this one reads "
            f"up to {FORMAT_VERSION}); upgrade kd_core to read it."
        )
    arch, num_classes, weights = obj.get("arch"), obj.get("num_classes"), obj.get("state_dict")
    if (
        not isinstance(arch, str)
        or not isinstance(num_classes, int)
        or not _is_tensor_dict(weights)
    ):
        raise CheckpointError(
            f"{name}: kd_core checkpoint is missing its arch, num_classes or state_dict; "
            "it is damaged, save it again."
        )
    metadata = obj.get("metadata")
    return _Found(
        dict(weights),
        "kd_core",
        location="state_dict",
        metadata=_jsonable(metadata) if isinstance(metadata, Mapping) else {},
        skipped=["training_state (training state)"] if "training_state" in obj else [],
        arch=arch,
        num_classes=num_classes,
    )


@register_layout("state_dict", "A bare model.state_dict(): parameter names to tensors.")
def _bare_state_dict(obj: Mapping[Any, Any], name: str) -> _Found | None:
    return _Found(dict(obj), "state_dict") if _is_tensor_dict(obj) else None


@register_layout(
    "torchdistill",
    "torchdistill's save_ckpt: {'model', 'optimizer', 'lr_scheduler', 'best_value', "
    "'args': Namespace}.",
)
def _torchdistill(obj: Mapping[Any, Any], name: str) -> _Found | None:
    top = dict(obj)
    if not ("best_value" in top or ("args" in top and "lr_scheduler" in top)):
        return None
    if _weights_location(top) != ("model",):
        return None
    return _wrapped_weights(top, ("model",), "torchdistill")


@register_layout(
    "repdistiller",
    "RepDistiller/CRD and mdistiller's teacher downloads: {'model': state_dict} with only "
    "'epoch', 'best_acc' or 'accuracy', 'optimizer', 'opt': Namespace beside it.",
)
def _repdistiller(obj: Mapping[Any, Any], name: str) -> _Found | None:
    top = dict(obj)
    if not set(top) <= _REPDISTILLER_KEYS or _weights_location(top) != ("model",):
        return None
    return _wrapped_weights(top, ("model",), "repdistiller")


@register_layout(
    "checkpoint",
    "Any dict with the weights under 'model', 'state_dict', 'net', 'student' or 'ema', also "
    "one level deeper ({'model': {'state_dict': ...}}).",
)
def _wrapped(obj: Mapping[Any, Any], name: str) -> _Found | None:
    top = dict(obj)
    location = _weights_location(top)
    return None if location is None else _wrapped_weights(top, location, "checkpoint")


@register_layout(
    "mdistiller",
    "mdistiller's training states (DataParallel(distiller).state_dict()): the student is read "
    "from student.*; the teacher and the distiller's extra modules are skipped.",
    refines=True,
)
def _split_distiller(found: _Found) -> None:
    """mdistiller's ``DataParallel(distiller).state_dict()``: keep ``student.*``, skip the rest."""
    if not any(key.startswith("student.") for key in found.state_dict):
        return
    parts: dict[str, int] = {}
    for key in found.state_dict:
        part = key.split(".", 1)[0]
        parts[part] = parts.get(part, 0) + 1
    found.state_dict = {
        key.removeprefix("student."): value
        for key, value in found.state_dict.items()
        if key.startswith("student.")
    }
    found.source_format = "mdistiller"
    found.prefix += "student."
    for part, count in parts.items():
        if part != "student":
            found.skipped.append(f"{part}.* ({count} tensors of the distiller)")
