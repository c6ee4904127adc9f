"""A split held on the device: the batched crop, flip and normalisation equal the loader path's
transforms for the same offsets and flips, the draws are uniform, and iteration follows the
order it is given."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from kd_core.data.catalog import CIFAR100_MEAN, CIFAR100_STD, SHAPES_MEAN, SHAPES_STD
from kd_core.data.device_split import (
    PADDING,
    DeviceSplit,
    crop_flip_normalize,
    draw_crops_and_flips,
    held_arrays,
    held_bytes,
)
from kd_core.data.transforms import cifar_transform
from tests.data.tiny_shapes import tiny_shapes


def test_shapes_batch_equals_the_loader_path_for_the_same_offsets_and_flips():
    dataset = tiny_shapes(12, augment=True)
    torch.manual_seed(5)  # RandomCropFlip's draws per item: offsets (2,), then one flip
    draws = [(torch.randint(0, 2 * PADDING + 1, (2,)), torch.rand(()) < 0.5) for _ in range(12)]
    torch.manual_seed(5)
    expected = torch.stack([dataset[i][0] for i in range(12)])
    tops, lefts = torch.stack([offsets for offsets, _ in draws]).unbind(1)
    flips = torch.stack([flip for _, flip in draws])
    assert 0 < int(flips.sum()) < 12  # both branches are exercised
    batch = crop_flip_normalize(dataset.images, tops, lefts, flips, SHAPES_MEAN, SHAPES_STD)
    assert batch.dtype == torch.float32 and batch.shape == (12, 3, 32, 32)
    assert torch.equal(batch, expected)


def test_cifar_batch_equals_torchvisions_transforms_for_the_same_offsets_and_flips():
    images = np.random.default_rng(1).integers(0, 256, (10, 32, 32, 3), dtype=np.uint8)
    transform = cifar_transform(CIFAR100_MEAN, CIFAR100_STD, augment=True)
    torch.manual_seed(7)  # RandomCrop draws top, then left; RandomHorizontalFlip one number
    draws = [
        (torch.randint(0, 9, (1,)).item(), torch.randint(0, 9, (1,)).item(), torch.rand(1) < 0.5)
        for _ in range(10)
    ]
    torch.manual_seed(7)
    expected = torch.stack([transform(Image.fromarray(image)) for image in images])
    tops, lefts, flips = (torch.tensor([d[k] for d in draws]) for k in (0, 1, 2))
    batch = crop_flip_normalize(
        torch.from_numpy(images), tops, lefts, flips.flatten(), CIFAR100_MEAN, CIFAR100_STD
    )
    assert torch.equal(batch, expected)


def test_offsets_and_flips_are_uniform():
    generator = torch.Generator().manual_seed(0)
    offsets, flips = draw_crops_and_flips(90_000, generator, torch.device("cpu"))
    for column in offsets.unbind(1):
        counts = torch.bincount(column, minlength=2 * PADDING + 1)
        assert len(counts) == 2 * PADDING + 1
        assert (counts - 10_000).abs().max() < 500  # 5 standard deviations
    assert abs(int(flips.sum()) - 45_000) < 750  # 5 standard deviations
    top_left = torch.bincount(offsets[:, 0] * 9 + offsets[:, 1], minlength=81)
    assert (top_left - 90_000 / 81).abs().max() < 170  # independent: 5 sd of each pair


def test_batches_follow_the_order_and_a_plain_split_is_only_normalised():
    dataset = tiny_shapes(10, augment=False)
    split = DeviceSplit(dataset, SHAPES_MEAN, SHAPES_STD, torch.device("cpu"))
    batches = split.batches([3, 1, 4, 0, 9, 2, 6], batch_size=3)
    assert len(batches) == 3
    labels = torch.cat([labels for _, labels in batches])
    assert labels.tolist() == [3, 1, 4, 0, 9, 2, 6]
    images, _ = next(iter(batches))
    assert images.is_contiguous()
    assert torch.equal(images, torch.stack([dataset[i][0] for i in (3, 1, 4)]))
    augmented = split.batches(range(10), batch_size=4, generator=torch.Generator())
    assert [len(labels) for _, labels in augmented] == [4, 4, 2]


def test_held_arrays_of_shapes_cifar_and_a_file_backed_data_set():
    dataset = tiny_shapes(4, augment=False)
    images, labels = held_arrays(dataset)
    assert images.data_ptr() == dataset.images.data_ptr()  # shared, not copied
    cifar = SimpleNamespace(data=np.zeros((5, 32, 32, 3), np.uint8), targets=[1, 2, 3, 4, 5])
    images, labels = held_arrays(cifar)
    assert images.shape == (5, 32, 32, 3) and labels.tolist() == [1, 2, 3, 4, 5]
    assert held_bytes(cifar) == 5 * 32 * 32 * 3 + 5 * 8
    files = SimpleNamespace(samples=[("a.jpg", 0)])
    assert held_arrays(files) is None and held_bytes(files) is None
    with pytest.raises(ValueError, match="cannot be held on the device"):
        DeviceSplit(files, SHAPES_MEAN, SHAPES_STD, torch.device("cpu"))
