"""Datasets by name: what each one is (:class:`DatasetInfo`) and how to build it.

Each dataset module registers itself with :func:`register_dataset`; :func:`create_dataset`
checks the arguments every dataset shares and hands them to the dataset's builder.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from torch.utils.data import Dataset

SPLITS = ("train", "test")


@dataclass(frozen=True)
class DatasetInfo:
    """What a model trained on a dataset expects.

    Attributes:
        name: the registry name.
        title: a short human-readable name.
        description: one or two sentences for people choosing a dataset.
        num_classes: number of classes; ``None`` until loaded (``imagefolder``).
        class_names: class names by label index; ``None`` until loaded (``imagefolder``).
        mean, std: per-channel normalisation of ``[0, 1]`` RGB values.
        image_size: side of the square images the models see.
        crop_fraction: share of an image's shorter side kept by the test-time centre crop
            (1.0 for 32-px datasets; 224/256 for ``imagefolder``: resize 256, crop 224).
        has_masks: whether each image comes with a boolean object mask.
        needs_files: whether the images must be on disk (``root``) rather than generated.
        per_model_inputs: whether a model with its own input recipe (a timm model's pretrained
            config) sees the images prepared its own way (:mod:`~kd_core.data.model_inputs`)
            rather than by the dataset's transform (``imagefolder``).
    """

    name: str
    title: str
    description: str
    num_classes: int | None
    class_names: tuple[str, ...] | None
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    image_size: int
    crop_fraction: float = 1.0
    has_masks: bool = False
    needs_files: bool = True
    per_model_inputs: bool = False


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


_DATASETS: dict[str, tuple[DatasetInfo, DatasetBuilder]] = {}


def register_dataset(info: DatasetInfo) -> Callable[[DatasetBuilder], DatasetBuilder]:
    """Decorator: make the decorated builder available as ``info.name``."""

    def register(builder: DatasetBuilder) -> DatasetBuilder:
        if info.name in _DATASETS:
            raise ValueError(f"A dataset named {info.name!r} is already registered.")
        _DATASETS[info.name] = (info, builder)
        return builder

    return register


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
    builder = _DATASETS[info.name][1]
    return builder(
        split=split,
        root=None if root is None else Path(root).expanduser(),
        augment=split == "train" if augment is None else augment,
        seed=seed,
        limit=limit,
        download=download,
    )
