"""``shapes``: the embedded default dataset. Ten classes of shapes on cluttered backgrounds,
32 x 32 RGB, generated on the fly (no download), each image with the mask of its object.

Splits are fixed: ``train`` has 50,000 images and ``test`` 10,000 (CIFAR's sizes), rendered from
different seeds (see :mod:`kd_core.data.shapes_render` for what is drawn). The first call
renders a split (about 15 s for ``train``, 3 s for ``test`` on 2 cores) and caches it as
``shapes-v<version>-<split>-seed<seed>.npz`` in the cache folder (``$KD_CORE_CACHE`` or
``~/.cache/kd_core``); later calls read that file. A file that cannot be read back is
regenerated; a generator change bumps the version, hence the name.

Masks are only defined for un-augmented images: ``dataset.masks`` (N x 32 x 32 bool) and
:meth:`ShapesDataset.item_with_mask` refuse to work on a dataset created with augmentation,
because a random crop or flip would no longer line up with them. Create the dataset with
``augment=False`` (the default for the test split) to use masks.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from kd_core.data.cache import cache_dir, load_npz, save_npz
from kd_core.data.catalog import SHAPES_INFO, SHAPES_MEAN, SHAPES_STD
from kd_core.data.registry import register_dataset
from kd_core.data.shapes_render import (
    CLASS_NAMES,
    GENERATOR_VERSION,
    SIZE,
    ShapesArrays,
    render_shapes,
)
from kd_core.data.transforms import RandomCropFlip, normalize

SPLIT_SIZES = {"train": 50_000, "test": 10_000}
"""Images per split: enough that a resnet20 teacher reaches 95% and the table's test error bars
are narrow (see docs/results.md, "How the teacher was trained"); chunks are seeded by index, so
the first 10,000 training images are those of the earlier 10,000-image split."""

_DTYPES = {
    "images": np.uint8,
    "masks": np.bool_,
    "labels": np.int64,
    "centers": np.float32,
    "sizes": np.float32,
    "angles": np.float32,
}


def cache_path(split: str, seed: int, folder: Path | None = None) -> Path:
    """The cache file of one split and seed."""
    folder = cache_dir() if folder is None else folder
    return folder / f"shapes-v{GENERATOR_VERSION}-{split}-seed{seed}.npz"


def _valid(arrays: dict[str, np.ndarray], count: int) -> bool:
    shapes = {
        "images": (count, SIZE, SIZE, 3),
        "masks": (count, SIZE, SIZE),
        "labels": (count,),
        "centers": (count, 2),
        "sizes": (count,),
        "angles": (count,),
    }
    if any(arrays[key].shape != shape for key, shape in shapes.items()):
        return False
    labels = arrays["labels"]
    return bool(labels.size == 0 or (labels.min() >= 0 and labels.max() < len(CLASS_NAMES)))


def load_shapes(
    split: str = "train", seed: int = 0, *, folder: Path | None = None, use_cache: bool = True
) -> ShapesArrays:
    """The whole ``split`` for ``seed`` as numpy arrays: read from the cache, or rendered (and
    then cached, unless ``use_cache`` is false)."""
    if split not in SPLIT_SIZES:
        raise ValueError(f"Unknown split {split!r}; accepted splits: {', '.join(SPLIT_SIZES)}.")
    count = SPLIT_SIZES[split]
    path = cache_path(split, seed, folder)
    if use_cache:
        arrays = load_npz(path, _DTYPES)
        if arrays is not None and _valid(arrays, count):
            return ShapesArrays(**arrays)
    rendered = render_shapes(count, seed, split)
    if use_cache:
        save_npz(path, {f.name: getattr(rendered, f.name) for f in fields(rendered)})
    return rendered


class ShapesDataset(Dataset):
    """``(image, label)`` pairs: ``image`` a normalised float32 tensor 3 x 32 x 32.

    Attributes:
        images: the raw images, uint8 N x 32 x 32 x 3 (not augmented, not normalised).
        labels: int64 N.
        arrays: everything rendered (:class:`~kd_core.data.shapes_render.ShapesArrays`:
            also each object's centre, size and angle).
        info: the dataset's :class:`DatasetInfo`.
        class_names, classes: the class names (a tuple; a list, as torchvision datasets have).
        augment: whether items are randomly cropped and flipped.
    """

    def __init__(self, arrays: ShapesArrays, *, augment: bool, split: str, seed: int) -> None:
        self.arrays = arrays
        self.images = torch.from_numpy(arrays.images)
        self.labels = torch.from_numpy(arrays.labels)
        self.info = SHAPES_INFO
        self.class_names = CLASS_NAMES
        self.classes = list(CLASS_NAMES)  # torchvision's name for it, as on CIFAR/ImageFolder
        self.augment = augment
        self.split = split
        self.seed = seed
        self._augmentation = RandomCropFlip(padding=4)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        image = self.images[index].permute(2, 0, 1).float().div_(255.0)
        if self.augment:
            image = self._augmentation(image)
        return normalize(image, SHAPES_MEAN, SHAPES_STD), int(self.labels[index])

    def _require_plain(self) -> None:
        if self.augment:
            raise ValueError(
                "Masks line up with un-augmented images only; create the dataset with "
                "augment=False to use them."
            )

    @property
    def masks(self) -> Tensor:
        """The object masks, bool N x 32 x 32, aligned with :attr:`images` and the items
        (only for a dataset without augmentation: a ``ValueError`` otherwise)."""
        self._require_plain()
        return torch.from_numpy(self.arrays.masks)

    def item_with_mask(self, index: int) -> tuple[Tensor, int, Tensor]:
        """``(image, label, mask)`` for one item (without augmentation only)."""
        self._require_plain()
        image, label = self[index]
        return image, label, torch.from_numpy(self.arrays.masks[index])

    def __repr__(self) -> str:
        return (
            f"ShapesDataset(split={self.split!r}, seed={self.seed}, size={len(self)}, "
            f"augment={self.augment})"
        )


@register_dataset(SHAPES_INFO)
def build_shapes(
    *, split: str, root: Path | None, augment: bool, seed: int, limit: int | None, download: bool
) -> ShapesDataset:
    del download  # nothing to download
    arrays = load_shapes(split, seed, folder=root)
    if limit is not None and limit < len(arrays):
        arrays = ShapesArrays(*(getattr(arrays, f.name)[:limit] for f in fields(arrays)))
    return ShapesDataset(arrays, augment=augment, split=split, seed=seed)
