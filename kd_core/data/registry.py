"""Datasets by name: what each one is (:class:`DatasetInfo`) and how to build it.

The built-in datasets are known from :mod:`~kd_core.data.catalog` without importing their
modules (torch); each module registers its builder with :func:`register_dataset` when
:func:`create_dataset` first imports it. A dataset of your own registers the same way, with its
info and builder at once. :func:`create_dataset` checks the arguments every dataset shares and
hands them to the dataset's builder.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from kd_core.data.catalog import BUILTIN_DATASETS, DatasetInfo

if TYPE_CHECKING:
    from torch.utils.data import Dataset

__all__ = ["DatasetInfo", "create_dataset", "dataset_info", "list_datasets", "register_dataset"]

SPLITS = ("train", "test")


class DatasetBuilder(Protocol):
    def __call__(
        self,
        *,
        split: str,
        root: Path | None,
        augment: bool,
        seed: int,
        limit: int | None,
        download: bool,
    ) -> Dataset: ...


_DATASETS: dict[str, tuple[DatasetInfo, DatasetBuilder | str]] = {
    info.name: (info, module) for info, module in BUILTIN_DATASETS
}
"""Name -> (info, builder), the builder still the name of its module for a built-in dataset
whose module was not imported yet."""


def register_dataset(info: DatasetInfo) -> Callable[[DatasetBuilder], DatasetBuilder]:
    """Decorator: make the decorated builder available as ``info.name`` (a built-in dataset's
    module gives the builder of the info the catalog declared)."""

    def register(builder: DatasetBuilder) -> DatasetBuilder:
        known, current = _DATASETS.get(info.name, (None, None))
        own_module = known is info and current == getattr(builder, "__module__", None)
        if known is not None and not own_module:
            raise ValueError(f"A dataset named {info.name!r} is already registered.")
        _DATASETS[info.name] = (info, builder)
        return builder

    return register


def _builder(name: str) -> DatasetBuilder:
    builder = _DATASETS[name][1]
    if isinstance(builder, str):  # a built-in dataset: its module registers the builder
        importlib.import_module(builder)
        builder = _DATASETS[name][1]
    if isinstance(builder, str):
        raise LookupError(f"The module {builder} registered no builder for the dataset {name!r}.")
    return builder


def list_datasets() -> list[str]:
    """The names :func:`create_dataset` accepts, in registration order."""
    return list(_DATASETS)


def dataset_info(name: str) -> DatasetInfo:
    """The :class:`DatasetInfo` of dataset ``name``; a ``ValueError`` lists the names otherwise.
    A loaded dataset's own ``.info`` has the class names filled in where this has ``None``."""
    if not isinstance(name, str) or name not in _DATASETS:
        raise ValueError(f"Unknown dataset {name!r}; accepted names: {', '.join(_DATASETS)}.")
    return _DATASETS[name][0]


def _non_negative_int(what: str, value: object, allow_none: bool) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        accepted = "a non-negative integer" + (" or None" if allow_none else "")
        raise ValueError(f"{what} must be {accepted}, got {value!r}.")
    return value


def create_dataset(
    name: str,
    split: str = "train",
    root: str | os.PathLike | None = None,
    augment: bool | None = None,
    seed: int = 0,
    limit: int | None = None,
    download: bool = False,
) -> Dataset:
    """Dataset ``name``'s ``split`` as a ``torch.utils.data.Dataset`` of
    ``(image, label)`` pairs: ``image`` a normalised float tensor C x H x W, ``label`` an int.

    Args:
        name: one of :func:`list_datasets`.
        split: ``"train"`` or ``"test"``.
        root: where the files are (``cifar10``/``cifar100``: the folder holding
            ``cifar-10-batches-py`` / ``cifar-100-python``, default ``$KD_CORE_DATA`` or
            ``~/.cache/kd_core/datasets``; ``imagefolder``: required; ``shapes``: the cache
            folder, default ``$KD_CORE_CACHE`` or ``~/.cache/kd_core``).
        augment: training augmentation (random crop with padding and horizontal flip, or
            random resized crop for ``imagefolder``); default: on for ``"train"``, off for
            ``"test"``.
        seed: which generated data (``shapes`` only; other datasets ignore it).
        limit: keep only the first ``limit`` images.
        download: ``cifar10``/``cifar100`` only: fetch missing files from the internet. Off by
            default; nothing is ever downloaded unless you ask.

    Every dataset carries ``.info`` (:class:`DatasetInfo`, class names filled in).
    """
    info = dataset_info(name)
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}; accepted splits: {', '.join(SPLITS)}.")
    if augment is not None and not isinstance(augment, bool):
        raise ValueError(f"augment must be True, False or None (automatic), got {augment!r}.")
    if not isinstance(download, bool):
        raise ValueError(f"download must be True or False, got {download!r}.")
    seed = _non_negative_int("seed", seed, allow_none=False)
    limit = _non_negative_int("limit", limit, allow_none=True)
    if root is not None and not isinstance(root, (str, os.PathLike)):
        raise ValueError(f"root must be a folder path or None, got {type(root).__name__}.")
    return _builder(info.name)(
        split=split,
        root=None if root is None else Path(root).expanduser(),
        augment=split == "train" if augment is None else augment,
        seed=seed,
        limit=limit,
        download=download,
    )
