"""Normalisation constants, the standard augmentations, and :func:`denormalize`.

- CIFAR-10/100: ``RandomCrop(32, padding=4)`` + ``RandomHorizontalFlip`` for training, as in
  RepDistiller (CRD) and mdistiller; CIFAR-100 statistics as in RepDistiller, CIFAR-10 the
  per-pixel training-set statistics (not the widespread ``(0.2023, 0.1994, 0.2010)`` std, which
  is the std of per-image means).
- ``imagefolder``: the ImageNet recipe: ``RandomResizedCrop(224)`` + flip for training,
  ``Resize(256)`` + ``CenterCrop(224)`` for testing, ImageNet statistics.
- ``shapes``: the same crop-and-flip as CIFAR, done on tensors (:class:`RandomCropFlip`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from kd_core.data.catalog import IMAGENET_MEAN, IMAGENET_STD
from kd_core.data.registry import DatasetInfo, dataset_info

if TYPE_CHECKING:
    from torchvision.transforms import Compose

# torchvision is imported inside the functions that build its transforms: importing it takes
# seconds (it pulls torch._dynamo), and the statistics and tensor transforms here need none of it.


def cifar_transform(mean, std, augment: bool) -> Compose:
    """PIL image -> normalised tensor, with RepDistiller's training augmentation if asked."""
    from torchvision import transforms

    steps = [transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip()]
    return transforms.Compose(
        [*(steps if augment else []), transforms.ToTensor(), transforms.Normalize(mean, std)]
    )


def imagenet_transform(augment: bool, size: int = 224, resize: int = 256) -> Compose:
    """PIL image -> normalised tensor, the ImageNet training or evaluation recipe."""
    from torchvision import transforms

    if augment:
        steps = [transforms.RandomResizedCrop(size), transforms.RandomHorizontalFlip()]
    else:
        steps = [transforms.Resize(resize), transforms.CenterCrop(size)]
    return transforms.Compose(
        [*steps, transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    )


class RandomCropFlip:
    """On a C x H x W tensor: zero-pad by ``padding``, crop back to H x W at a random offset,
    flip horizontally with probability 1/2 (``RandomCrop(padding=...)`` + flip, on tensors).
    Draws from torch's global generator, so DataLoader workers get their own streams."""

    def __init__(self, padding: int = 4) -> None:
        self.padding = padding

    def __call__(self, image: Tensor) -> Tensor:
        p = self.padding
        height, width = image.shape[-2:]
        top, left = (int(v) for v in torch.randint(0, 2 * p + 1, (2,)))
        image = F.pad(image, (p, p, p, p))[..., top : top + height, left : left + width]
        if torch.rand(()) < 0.5:
            image = image.flip(-1)
        return image

    def __repr__(self) -> str:
        return f"RandomCropFlip(padding={self.padding})"


def normalize(images: Tensor, mean, std) -> Tensor:
    """``(images - mean) / std`` per channel, for C x H x W or B x C x H x W."""
    mean_t = torch.as_tensor(mean, dtype=images.dtype, device=images.device).view(-1, 1, 1)
    std_t = torch.as_tensor(std, dtype=images.dtype, device=images.device).view(-1, 1, 1)
    return (images - mean_t) / std_t


def denormalize(images: Tensor, dataset="shapes") -> Tensor:
    """Undo a dataset's normalisation: ``images`` (C x H x W or B x C x H x W, as returned by
    the dataset or :func:`~kd_core.data.images.prepare_image`) back to RGB in ``[0, 1]``
    (clamped), ready to display (``(x.permute(1, 2, 0) * 255).byte()``).

    ``dataset`` is a registry name or a :class:`~kd_core.data.registry.DatasetInfo`.
    """
    info = dataset if isinstance(dataset, DatasetInfo) else dataset_info(dataset)
    if not isinstance(images, Tensor) or images.dim() not in (3, 4) or images.shape[-3] != 3:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(
            f"denormalize: images must be a 3 x H x W or B x 3 x H x W tensor, got {shape}."
        )
    images = images if images.is_floating_point() else images.float()
    mean = torch.as_tensor(info.mean, dtype=images.dtype, device=images.device).view(-1, 1, 1)
    std = torch.as_tensor(info.std, dtype=images.dtype, device=images.device).view(-1, 1, 1)
    return (images * std + mean).clamp(0.0, 1.0)
