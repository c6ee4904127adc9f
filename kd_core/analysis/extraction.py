"""Run a model over a dataset once and keep what every analysis reads: a :class:`FeatureSet`.

For each selected sample the model's logits, pooled feature and, per stage, the AMD attention
map ``q = a / (||a||_2 + 1e-6)`` with ``a = sum_c f_c^2`` are stored; the map comes from
:func:`kd_core.losses.amd.attention_map`, the function the loss itself uses. Raw stage features
are kept (as float16) only when asked for.

Which samples: all of them, or ``samples`` of them picked by :func:`select_indices` - a fixed,
seeded random subset that depends only on the dataset size and ``samples``, so the teacher and
every student see the same images.

Results are cached by content (:class:`FeatureCache`): the key is the model's weights
(:func:`model_fingerprint`), the dataset (a key string naming dataset, split and source), the
sample indices and whether raw stages are kept. A Streamlit page calls one function::

    features = feature_set_for(model, dataset, "shapes/test", name="teacher (resnet20)",
                               arch="resnet20", samples=500)
    features.attention["layer3"].shape        # 500 x 8 x 8, unit L2 norm per sample
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import itertools
import json
import os
import tempfile
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from kd_core.analysis.errors import AnalysisError
from kd_core.analysis.feature_set import FeatureSet
from kd_core.data.cache import CACHE_ENV, cache_dir
from kd_core.losses.amd import attention_map
from kd_core.models import extract_features
from kd_core.outputs import ModelOutputs

Progress = Callable[[int, int], None]
"""``progress(done, total)``: samples processed so far and samples in all, after each batch."""

SAMPLE_SEED = 0
"""Seed of the random subset chosen by :func:`select_indices`."""
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
# Which samples, and how they reach the model.


def select_indices(
    dataset_size: int, *, samples: int | None = None, indices: Sequence[int] | None = None
) -> Tensor:
    """The int64 indices to run: ``indices`` (default: every sample), cut to ``samples``.

    The cut keeps a seeded random subset (numpy PCG64, seed :data:`SAMPLE_SEED`) in the
    candidates' order: positions ``sorted(permutation(n)[:samples])``. It depends only on the
    candidate count and ``samples``, so every model gets the same samples, and a larger
    ``samples`` keeps all the samples of a smaller one. Unlike "the first N", it does not
    inherit any ordering of the files (a split stored class by class).

    >>> select_indices(10, samples=3)
    tensor([2, 4, 6])
    """
    if indices is None:
        candidates = torch.arange(dataset_size, dtype=torch.int64)
    else:
        candidates = _checked_indices(indices, dataset_size)
    if samples is not None:
        if isinstance(samples, bool) or not isinstance(samples, int) or samples <= 0:
            raise AnalysisError(
                f"The number of samples must be a positive integer, got {samples!r}: "
                "choose at least one sample, or None for all of them."
            )
        if samples < len(candidates):
            order = np.random.default_rng(SAMPLE_SEED).permutation(len(candidates))
            positions = torch.from_numpy(np.sort(order[:samples]))
            candidates = candidates[positions]
    if len(candidates) == 0:
        raise AnalysisError(
            "No samples are selected: the dataset or the index list is empty; select at "
            "least one sample."
        )
    return candidates


def _checked_indices(indices: Sequence[int], dataset_size: int) -> Tensor:
    values = torch.as_tensor(np.asarray(indices))
    integral = not (values.is_floating_point() or values.is_complex() or values.dtype == torch.bool)
    if values.dim() != 1 or (values.numel() > 0 and not integral):
        raise AnalysisError(
            f"Sample indices must be a flat sequence of integers, got {values.dtype} values of "
            f"shape {tuple(values.shape)}."
        )
    values = values.to(torch.int64)
    outside = values[(values < 0) | (values >= dataset_size)]
    if outside.numel():
        raise AnalysisError(
            f"Sample index {int(outside[0])} is outside the dataset, which has {dataset_size} "
            f"samples: use indices from 0 to {dataset_size - 1}."
        )
    return values


def dataset_class_names(dataset: object) -> tuple[str, ...]:
    """The dataset's class names by label (``.class_names``, ``.info.class_names`` or
    torchvision's ``.classes``); ``()`` when it has none."""
    for names in (
        getattr(dataset, "class_names", None),
        getattr(getattr(dataset, "info", None), "class_names", None),
        getattr(dataset, "classes", None),
    ):
        if names:
            return tuple(str(name) for name in names)
    return ()


def dataset_num_classes(dataset: object) -> int | None:
    """The dataset's class count (``.info.num_classes``, else the number of class names);
    ``None`` when it does not say."""
    count = getattr(getattr(dataset, "info", None), "num_classes", None)
    return count if isinstance(count, int) else (len(dataset_class_names(dataset)) or None)


def _item(dataset: Any, index: int) -> tuple[Tensor, int]:
    """``dataset[index]``; an unreadable file (an image folder's corrupt image) becomes an
    :class:`AnalysisError` that names it."""
    try:
        return dataset[index]
    except (ValueError, OSError) as error:
        raise AnalysisError(
            f"Sample {index} of the dataset cannot be read: {error} Remove or replace that "
            "file, or choose another dataset."
        ) from None


def _batches(dataset: Any, indices: Tensor, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
    for start in range(0, len(indices), batch_size):
        items = [_item(dataset, int(i)) for i in indices[start : start + batch_size]]
        images = torch.stack([image for image, _ in items])
        labels = torch.as_tensor([int(label) for _, label in items], dtype=torch.int64)
        yield images, labels


def _parameter_device(model: nn.Module) -> torch.device | None:
    tensor = next(itertools.chain(model.parameters(), model.buffers()), None)
    return None if tensor is None else tensor.device


@contextlib.contextmanager
def _inference_on(model: nn.Module, device: str | torch.device) -> Iterator[torch.device]:
    """Eval mode, ``torch.inference_mode`` and ``device`` for the block; afterwards every
    submodule's train/eval flag and the model's device are as before."""
    try:
        target = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise AnalysisError(f"Unknown device {device!r} ({error}); use 'cpu' or 'cuda'.") from None
    modes = [(module, module.training) for module in model.modules()]
    original = _parameter_device(model)
    try:
        if original is not None and original != target:
            try:
                model.to(target)
            except (RuntimeError, AssertionError) as error:
                raise AnalysisError(
                    f"The model cannot be moved to {target} ({error}); choose another device."
                ) from None
        model.eval()
        with torch.inference_mode():
            yield target
    finally:
        for module, training in modes:
            module.training = training
        if original is not None and original != target:
            model.to(original)


def stream_outputs(
    model: nn.Module,
    dataset: Any,
    indices: Tensor,
    consume: Callable[[ModelOutputs, Tensor], None],
    *,
    name: str,
    with_stages: bool,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    progress: Progress | None = None,
) -> None:
    """Feed ``dataset[indices]`` to ``model`` in batches and call ``consume(outputs, labels)``
    per batch (``outputs`` on ``device``; ``labels`` int64 on the CPU).

    The model runs in eval mode under ``torch.inference_mode`` and is left as it was (modes
    and device). ``with_stages`` reads the stage outputs and pooled feature too
    (:func:`~kd_core.models.extract_features`); otherwise only the logits. Raises
    :class:`AnalysisError` when the model fails on the images or its class count differs from
    the dataset's.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise AnalysisError(f"batch_size must be a positive integer, got {batch_size!r}.")
    expected_classes = dataset_num_classes(dataset)
    done, total = 0, len(indices)
    with _inference_on(model, device) as target:
        for images, labels in _batches(dataset, indices, batch_size):
            try:
                outputs = (
                    extract_features(model, images.to(target))
                    if with_stages
                    else ModelOutputs(logits=model(images.to(target)))
                )
            except RuntimeError as error:
                raise AnalysisError(
                    f"{name} failed on images of shape {tuple(images.shape[1:])} ({error}); "
                    "use a model built for this dataset's image size and channels."
                ) from None
            except ValueError as error:  # no FeatureSpec: the model does not name its stages
                raise AnalysisError(f"{name}: {error}") from None
            _check_logits(outputs.logits, labels, expected_classes, name)
            consume(outputs, labels)
            done += len(labels)
            if progress is not None:
                progress(done, total)


def _check_logits(logits: object, labels: Tensor, expected: int | None, name: str) -> None:
    if not isinstance(logits, Tensor) or logits.dim() != 2:
        shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise AnalysisError(
            f"{name} returned {shape} instead of a batch x classes tensor of logits; use a "
            "classifier whose forward returns the logits."
        )
    outputs = logits.shape[1]
    if expected is not None and outputs != expected:
        raise AnalysisError(
            f"{name} outputs {outputs} classes but the dataset has {expected}: use a model "
            "trained on this dataset."
        )
    if int(labels.max()) >= outputs:
        raise AnalysisError(
            f"The dataset has label {int(labels.max())} but {name} outputs only {outputs} "
            "classes: use a model trained on this dataset."
        )


# --------------------------------------------------------------------------------------------
# Extraction.


def extract_feature_set(
    model: nn.Module,
    dataset: Any,
    *,
    name: str,
    arch: str,
    indices: Sequence[int] | None = None,
    samples: int | None = None,
    batch_size: int = 256,
    keep_stages: bool = False,
    device: str | torch.device = "cpu",
    progress: Progress | None = None,
) -> FeatureSet:
    """Run ``model`` on the selected samples of ``dataset`` (``(image, label)`` items) and
    collect a :class:`FeatureSet` on the CPU.

    Per stage ``attention[stage] = attention_map(f)`` (``N x H x W`` float32, unit L2 norm per
    sample); ``logits`` and ``pooled`` in float32; raw ``stages`` in float16 only with
    ``keep_stages``. Masks come from ``dataset.masks`` when the dataset has usable ones (not
    augmented), class names from the dataset. Samples: see :func:`select_indices`.

    Raises:
        AnalysisError: no sample selected, ``samples <= 0``, an index outside the dataset, a
            model whose class count differs from the dataset's, or one that fails on the images.
    """
    selected = select_indices(len(dataset), samples=samples, indices=indices)
    collected: dict[str, list[Tensor]] = {"labels": [], "logits": [], "pooled": []}
    attention: dict[str, list[Tensor]] = {}
    stages: dict[str, list[Tensor]] = {}

    def keep(outputs: ModelOutputs, labels: Tensor) -> None:
        collected["labels"].append(labels)
        collected["logits"].append(outputs.logits.float().cpu())
        collected["pooled"].append(outputs.pooled.float().cpu())
        for stage, feature in outputs.stages.items():
            attention.setdefault(stage, []).append(attention_map(feature).float().cpu())
            if keep_stages:
                stages.setdefault(stage, []).append(feature.half().cpu())

    stream_outputs(
        model,
        dataset,
        selected,
        keep,
        name=name,
        with_stages=True,
        batch_size=batch_size,
        device=device,
        progress=progress,
    )
    return FeatureSet(
        name=name,
        arch=arch,
        indices=selected,
        labels=torch.cat(collected["labels"]),
        logits=torch.cat(collected["logits"]),
        pooled=torch.cat(collected["pooled"]),
        attention={stage: torch.cat(maps) for stage, maps in attention.items()},
        stages={stage: torch.cat(features) for stage, features in stages.items()},
        masks=_masks(dataset, selected),
        class_names=dataset_class_names(dataset),
    )


def _masks(dataset: Any, indices: Tensor) -> Tensor | None:
    try:
        masks = dataset.masks  # a property that refuses (ValueError) on augmented data
    except (AttributeError, ValueError):
        return None
    return torch.as_tensor(masks)[indices].to(torch.bool)


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
            handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=key, suffix=".tmp")
            try:
                with os.fdopen(handle, "wb") as file:
                    torch.save(_to_payload(features, key), file)
                os.replace(temporary, path)
            finally:
                if os.path.exists(temporary):
                    os.unlink(temporary)
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
    or a folder path for ``imagefolder``); the model is identified by its weights
    (:func:`model_fingerprint`), so a reloaded checkpoint hits the cache and a retrained one
    does not. On a hit, ``name`` and ``arch`` are those of this call and ``progress`` is not
    called. ``cache`` defaults to :func:`default_feature_cache`.
    """
    selected = select_indices(len(dataset), samples=samples, indices=indices)
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
