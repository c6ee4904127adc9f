"""Feature sets cached by content: :func:`feature_set_for` is
:func:`~kd_core.analysis.extraction.extract_feature_set` run at most once per model weights,
data and sample selection.

The key (:func:`feature_key`) is the model's weights (:func:`model_fingerprint`), the dataset
(a key string naming dataset, split and source), the sample indices and whether raw stages are
kept. A :class:`FeatureCache` holds feature sets in memory (an LRU) and, one file per key, on
disk. A Streamlit page calls one function::

    features = feature_set_for(model, dataset, "shapes/test", name="teacher (resnet20)",
                               arch="resnet20", samples=500)
    features.attention["layer3"].shape        # 500 x 8 x 8, unit L2 norm per sample
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from kd_core.analysis.errors import AnalysisError
from kd_core.analysis.extraction import Progress, extract_feature_set, select_indices
from kd_core.analysis.feature_set import FeatureSet
from kd_core.data.cache import CACHE_ENV, cache_dir
from kd_core.data.model_inputs import input_recipe
from kd_core.files import atomic_write

CACHE_FORMAT = 1
"""Version of the cached content; part of every key, so a change invalidates old files."""
DEFAULT_MAX_ITEMS = 12
"""Feature sets kept in memory by default: a teacher and five students, with and without raw
stage features."""
_FINGERPRINT_CHARS = 16
_READ_CHUNK = 1 << 20


# --------------------------------------------------------------------------------------------
# Fingerprints: the same content gives the same key, whatever object holds it.


def model_fingerprint(model: nn.Module) -> str:
    """A short hex digest (16 characters of sha256) of a model's class and state dict: every
    entry's name, dtype, shape and bytes, in order. Identical weights in two different objects
    give the same fingerprint; changing any weight or buffer changes it.

    >>> model = create_model("resnet8", num_classes=10)
    >>> model_fingerprint(model) == model_fingerprint(copy.deepcopy(model))
    True
    """
    digest = hashlib.sha256(type(model).__name__.encode())
    for name, tensor in model.state_dict().items():
        flat = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"{name}|{flat.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:_FINGERPRINT_CHARS]


def file_fingerprint(path: str | os.PathLike) -> str:
    """The sha256 hex digest of a file's bytes, read in 1 MiB chunks (as ``sha256sum``)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as file:
        while chunk := file.read(_READ_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------
# The cache.


def feature_key(
    fingerprint: str, dataset_key: str, dataset_size: int, indices: Tensor, *, keep_stages: bool
) -> str:
    """The cache key (32 hex characters) of one extraction: a sha256 of the model fingerprint,
    the dataset key and size, a hash of the sample indices, ``keep_stages`` and
    :data:`CACHE_FORMAT`."""
    indices_hash = hashlib.sha256(indices.to(torch.int64).numpy().tobytes()).hexdigest()
    parts = {
        "format": CACHE_FORMAT,
        "model": fingerprint,
        "dataset": dataset_key,
        "size": dataset_size,
        "indices": indices_hash,
        "keep_stages": keep_stages,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]


class FeatureCache:
    """Feature sets by key: an in-memory LRU of ``max_items`` entries, backed by one file per
    key in ``root`` (default ``<cache folder>/features``, the cache folder being
    ``$KD_CORE_CACHE`` or ``~/.cache/kd_core``) when ``persist`` is true.

    Files hold only plain dicts of tensors, strings and numbers (read back with
    ``torch.load(weights_only=True)``) and are written atomically; a file that cannot be read
    or does not hold what its key promises is ignored and recomputed. Returned feature sets
    are shared between callers: treat them as read-only. Thread-safe.

    >>> cache = FeatureCache()
    >>> features = cache.get_or_compute(key, lambda: extract_feature_set(...))
    """

    def __init__(
        self, root: Path | None = None, *, max_items: int = DEFAULT_MAX_ITEMS, persist: bool = True
    ) -> None:
        if isinstance(max_items, bool) or not isinstance(max_items, int) or max_items < 0:
            raise AnalysisError(f"max_items must be an integer >= 0, got {max_items!r}.")
        self._root = None if root is None else Path(root)
        self.max_items = max_items
        self.persist = persist
        self._memory: OrderedDict[str, FeatureSet] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def root(self) -> Path:
        """The folder of the cache files (read at each use: follows ``$KD_CORE_CACHE``)."""
        return self._root if self._root is not None else cache_dir() / "features"

    def path(self, key: str) -> Path:
        """The file that holds ``key``."""
        return self.root / f"{key}.pt"

    def __len__(self) -> int:
        return len(self._memory)

    def get(self, key: str) -> FeatureSet | None:
        """The feature set stored under ``key`` (memory, then disk), or ``None``."""
        with self._lock:
            if key in self._memory:
                self._memory.move_to_end(key)
                return self._memory[key]
        features = self._read(key) if self.persist else None
        if features is not None:
            self._remember(key, features)
        return features

    def put(self, key: str, features: FeatureSet) -> None:
        """Store ``features`` under ``key`` (memory, and disk when ``persist``)."""
        self._remember(key, features)
        if self.persist:
            self._write(key, features)

    def get_or_compute(self, key: str, compute: Callable[[], FeatureSet]) -> FeatureSet:
        """The stored feature set, or ``compute()`` (then stored)."""
        features = self.get(key)
        if features is None:
            features = compute()
            self.put(key, features)
        return features

    def _remember(self, key: str, features: FeatureSet) -> None:
        with self._lock:
            self._memory[key] = features
            self._memory.move_to_end(key)
            while len(self._memory) > self.max_items:
                self._memory.popitem(last=False)

    def _read(self, key: str) -> FeatureSet | None:
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
            return _from_payload(payload, key)
        except Exception:  # any unreadable or foreign file means "recompute"
            return None

    def _write(self, key: str, features: FeatureSet) -> None:
        path = self.path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            payload = _to_payload(features, key)
            atomic_write(path, lambda file: torch.save(payload, file))
        except OSError as error:
            warnings.warn(
                f"Could not write the feature cache file {path} ({error}); the features will "
                f"be computed again next time. Set {CACHE_ENV} to a writable folder.",
                RuntimeWarning,
                stacklevel=3,
            )


def _to_payload(features: FeatureSet, key: str) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "format": CACHE_FORMAT,
        "key": key,
        "name": features.name,
        "arch": features.arch,
        "class_names": list(features.class_names),
        **{field: getattr(features, field) for field in _TENSOR_FIELDS},
        "attention": dict(features.attention),
        "stages": dict(features.stages),
    }
    if features.masks is not None:
        payload["masks"] = features.masks
    return payload


_TENSOR_FIELDS = {
    "indices": (torch.int64, 1),
    "labels": (torch.int64, 1),
    "logits": (torch.float32, 2),
    "pooled": (torch.float32, 2),
}


def _from_payload(payload: dict[str, Any], key: str) -> FeatureSet | None:
    """The feature set in a loaded file, or ``None`` unless everything is as written."""
    if payload.get("format") != CACHE_FORMAT or payload.get("key") != key:
        return None
    count = len(payload["indices"])

    def fits(tensor: object, dtype: torch.dtype, ndim: int) -> bool:
        return (
            isinstance(tensor, Tensor)
            and tensor.dtype == dtype
            and tensor.dim() == ndim
            and len(tensor) == count
        )

    tensors_ok = all(fits(payload[f], *spec) for f, spec in _TENSOR_FIELDS.items())
    attention, stages = payload["attention"], payload["stages"]
    maps_ok = isinstance(attention, dict) and all(
        fits(q, torch.float32, 3) for q in attention.values()
    )
    stages_ok = isinstance(stages, dict) and all(fits(f, torch.float16, 4) for f in stages.values())
    masks = payload.get("masks")
    masks_ok = masks is None or fits(masks, torch.bool, 3)
    names = payload["class_names"]
    names_ok = isinstance(names, list) and all(isinstance(n, str) for n in names)
    if not (tensors_ok and maps_ok and stages_ok and masks_ok and names_ok):
        return None
    return FeatureSet(
        name=str(payload["name"]),
        arch=str(payload["arch"]),
        **{f: payload[f] for f in _TENSOR_FIELDS},
        attention=attention,
        stages=stages,
        masks=masks,
        class_names=tuple(names),
    )


_default_cache: FeatureCache | None = None
_default_cache_lock = threading.Lock()


def default_feature_cache() -> FeatureCache:
    """The process-wide cache :func:`feature_set_for` uses when given none (on disk under
    ``<cache folder>/features``)."""
    global _default_cache
    with _default_cache_lock:
        if _default_cache is None:
            _default_cache = FeatureCache()
        return _default_cache


def feature_set_for(
    model: nn.Module,
    dataset: Any,
    dataset_key: str,
    *,
    name: str,
    arch: str,
    samples: int | None = None,
    keep_stages: bool = False,
    indices: Sequence[int] | None = None,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    cache: FeatureCache | None = None,
    progress: Progress | None = None,
) -> FeatureSet:
    """:func:`extract_feature_set`, cached by content: the one call a page makes.

    ``dataset_key`` must identify the data the dataset holds (e.g. ``"shapes/test/seed0"``,
    or a folder path for ``imagefolder``; the model's input recipe is added to it where the
    model sees its own inputs); the model is identified by its weights
    (:func:`model_fingerprint`), so a reloaded checkpoint hits the cache and a retrained one
    does not. On a hit, ``name`` and ``arch`` are those of this call and ``progress`` is not
    called. ``cache`` defaults to :func:`default_feature_cache`.
    """
    selected = select_indices(len(dataset), samples=samples, indices=indices)
    recipe = input_recipe(dataset, model)
    if recipe is not None:  # the model sees its own inputs (model_inputs): part of the data
        dataset_key = f"{dataset_key}|{json.dumps(recipe, sort_keys=True)}"
    key = feature_key(
        model_fingerprint(model), dataset_key, len(dataset), selected, keep_stages=keep_stages
    )
    cache = cache if cache is not None else default_feature_cache()
    features = cache.get_or_compute(
        key,
        lambda: extract_feature_set(
            model,
            dataset,
            name=name,
            arch=arch,
            indices=selected,
            batch_size=batch_size,
            keep_stages=keep_stages,
            device=device,
            progress=progress,
        ),
    )
    return dataclasses.replace(features, name=name, arch=arch)
