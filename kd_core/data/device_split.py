"""A split held on the training device as one uint8 tensor, augmented a whole batch at a time.

For the data sets that live in memory (``shapes``, ``cifar10``, ``cifar100``): the images,
uint8 N x H x W x C as loaded, are copied to the device once; a batch is then one gather and a
few element-wise ops there, with no Python per image.

For the images of a batch, crop offsets ``(top, left)`` in ``[0, 2p]`` and flips ``f``, pixel
``(i, j)`` of image ``b`` is the zero-padded source's

.. math::

    \\tilde x_b[i, j] = x^{pad}_b[\\,top_b + i,\\; left_b + (W - 1 - j \\text{ if } f_b
    \\text{ else } j)\\,], \\qquad y = (\\tilde x / 255 - \\mu) / \\sigma,

which is ``RandomCrop(W, padding=p)``, then ``RandomHorizontalFlip``, ``ToTensor`` and
``Normalize`` (CIFAR's loader path) and :class:`~kd_core.data.transforms.RandomCropFlip` (the
``shapes`` loader path) for the same offsets and flips, to the bit. Offsets and flips are drawn
uniformly from a generator the caller seeds.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from kd_core.data.transforms import normalize

PADDING = 4
"""Zero padding of the random crop, as RepDistiller's ``RandomCrop(32, padding=4)``."""


def held_arrays(dataset: object) -> tuple[Tensor, Tensor] | None:
    """``(images uint8 N x H x W x C, labels int64 N)`` of a data set held in memory (``shapes``:
    ``images``/``labels``; torchvision's CIFAR: ``data``/``targets``), sharing its memory where
    it can; ``None`` for one read from files per item (``imagefolder``)."""
    images = getattr(dataset, "images", None)
    labels = getattr(dataset, "labels", None)
    if isinstance(images, Tensor) and images.dtype == torch.uint8 and isinstance(labels, Tensor):
        return images, labels
    data = getattr(dataset, "data", None)
    targets = getattr(dataset, "targets", None)
    if isinstance(data, np.ndarray) and data.dtype == np.uint8 and targets is not None:
        return torch.from_numpy(data), torch.as_tensor(targets, dtype=torch.int64)
    return None


def held_bytes(dataset: object) -> int | None:
    """Bytes :class:`DeviceSplit` takes for ``dataset`` on the device (images and labels), or
    ``None`` when it is not held in memory."""
    arrays = held_arrays(dataset)
    if arrays is None:
        return None
    images, labels = arrays
    return images.numel() * images.element_size() + labels.numel() * labels.element_size()


def draw_crops_and_flips(
    count: int, generator: torch.Generator, device: torch.device
) -> tuple[Tensor, Tensor]:
    """``count`` crop offsets (int64 ``count x 2``: top, left), each uniform on
    ``0 .. 2 * PADDING``, and flips (bool ``count``), each true with probability 1/2, from
    ``generator`` (on ``device``)."""
    offsets = torch.randint(0, 2 * PADDING + 1, (count, 2), generator=generator, device=device)
    flips = torch.randint(0, 2, (count,), generator=generator, device=device).bool()
    return offsets, flips


def crop_flip_normalize(
    images: Tensor, tops: Tensor, lefts: Tensor, flips: Tensor, mean, std, padding: int = PADDING
) -> Tensor:
    """uint8 B x H x W x C images -> normalised float32 B x C x H x W, each zero-padded by
    ``padding``, cropped back at ``(tops[b], lefts[b])`` and flipped where ``flips[b]`` (the
    formula of the module docstring), in one gather. The result is channels-last in memory."""
    batch, height, width, _ = images.shape
    padded = F.pad(images, (0, 0, padding, padding, padding, padding))
    columns = torch.arange(width, device=images.device)
    rows = tops[:, None] + torch.arange(height, device=images.device)
    columns = lefts[:, None] + torch.where(flips[:, None], width - 1 - columns, columns)
    batch_index = torch.arange(batch, device=images.device)[:, None, None]
    cropped = padded[batch_index, rows[:, :, None], columns[:, None, :]]
    return _to_float(cropped, mean, std)


def _to_float(images: Tensor, mean, std) -> Tensor:
    """uint8 B x H x W x C -> normalised float32 B x C x H x W (channels-last in memory)."""
    return normalize(images.permute(0, 3, 1, 2).float().div_(255.0), mean, std)


class DeviceSplit:
    """A split on ``device``: ``images`` uint8 N x H x W x C, ``labels`` int64 N, and the
    normalisation ``mean``/``std``; :meth:`batches` iterates it like a ``DataLoader``."""

    def __init__(self, dataset: object, mean, std, device: torch.device) -> None:
        arrays = held_arrays(dataset)
        if arrays is None:
            raise ValueError(
                f"{type(dataset).__name__} reads its images from files one at a time, so it "
                "cannot be held on the device; train it with data_on_device off."
            )
        self.images, self.labels = (a.to(device) for a in arrays)
        # On the device once: a tuple would be copied there at every batch, a host sync.
        self.mean, self.std = (
            torch.tensor(values, dtype=torch.float32, device=device) for values in (mean, std)
        )
        self.device = device

    def __len__(self) -> int:
        return len(self.labels)

    def batches(
        self,
        order: Sequence[int],
        batch_size: int,
        generator: torch.Generator | None = None,
        memory_format: torch.memory_format = torch.contiguous_format,
    ) -> DeviceBatches:
        """The items ``order`` names, ``batch_size`` at a time; randomly cropped and flipped
        with draws from ``generator`` (on this device) when one is given, plain otherwise."""
        return DeviceBatches(self, order, batch_size, generator, memory_format)


class DeviceBatches:
    """``(images, labels)`` batches of a :class:`DeviceSplit`, in ``order``; the epoch's
    offsets and flips are drawn at once when iteration starts (one uniform draw per item)."""

    def __init__(
        self,
        split: DeviceSplit,
        order: Sequence[int],
        batch_size: int,
        generator: torch.Generator | None,
        memory_format: torch.memory_format,
    ) -> None:
        self.split, self.batch_size, self.generator = split, batch_size, generator
        self.order = torch.as_tensor(list(order), dtype=torch.int64, device=split.device)
        self.memory_format = memory_format

    def __len__(self) -> int:
        return math.ceil(len(self.order) / self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        split, count = self.split, len(self.order)
        if self.generator is not None:
            offsets, flips = draw_crops_and_flips(count, self.generator, split.device)
        for start in range(0, count, self.batch_size):
            index = self.order[start : start + self.batch_size]
            images = split.images[index]
            if self.generator is None:
                batch = _to_float(images, split.mean, split.std)
            else:
                window = slice(start, start + self.batch_size)
                tops, lefts = offsets[window].unbind(1)
                batch = crop_flip_normalize(
                    images, tops, lefts, flips[window], split.mean, split.std
                )
            yield batch.contiguous(memory_format=self.memory_format), split.labels[index]
