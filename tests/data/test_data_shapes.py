"""The embedded ``shapes`` dataset: determinism, splits, balance, masks that mark the drawn
object, normalisation constants, augmentation and the dataset object."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from kd_core.data import create_dataset, dataset_info, denormalize
from kd_core.data.catalog import SHAPES_MEAN, SHAPES_STD
from kd_core.data.shapes import SPLIT_SIZES
from kd_core.data.shapes_render import CLASS_NAMES, object_mask, render_shapes

FIELDS = ("images", "masks", "labels", "centers", "sizes", "angles")


def _same_bytes(a, b) -> bool:
    return all(getattr(a, f).tobytes() == getattr(b, f).tobytes() for f in FIELDS)


def test_same_seed_gives_identical_bytes():
    first, second = (
        render_shapes(600, seed=7, split="test"),
        render_shapes(600, seed=7, split="test"),
    )
    assert _same_bytes(first, second)


def test_different_seed_or_split_gives_different_images():
    base = render_shapes(500, seed=1, split="train")
    for other in (render_shapes(500, seed=2, split="train"), render_shapes(500, 1, "test")):
        assert base.images.tobytes() != other.images.tobytes()
        assert (base.images != other.images).mean() > 0.9


def test_a_prefix_is_the_start_of_the_whole_split():
    whole, prefix = render_shapes(1000, seed=0, split="test"), render_shapes(620, 0, "test")
    assert all(np.array_equal(getattr(whole, f)[:620], getattr(prefix, f)) for f in FIELDS)


def test_arrays_have_the_documented_types_and_shapes(shapes_test):
    a = shapes_test
    assert a.images.shape == (10_000, 32, 32, 3) and a.images.dtype == np.uint8
    assert a.masks.shape == (10_000, 32, 32) and a.masks.dtype == np.bool_
    assert a.labels.shape == (10_000,) and a.labels.dtype == np.int64
    assert a.centers.shape == (10_000, 2) and a.sizes.shape == a.angles.shape == (10_000,)


def test_split_sizes_and_exact_class_balance(shapes_train, shapes_test):
    assert SPLIT_SIZES == {"train": 50_000, "test": 10_000}
    assert len(shapes_train) == 50_000 and len(shapes_test) == 10_000
    assert np.bincount(shapes_train.labels, minlength=10).tolist() == [5000] * 10
    assert np.bincount(shapes_test.labels, minlength=10).tolist() == [1000] * 10
    # Any prefix is close to balanced too (balanced per chunk of 500, shuffled).
    counts = np.bincount(shapes_train.labels[:300], minlength=10)
    assert counts.min() >= 15 and counts.max() <= 45


def test_objects_span_the_documented_sizes_and_stay_inside(shapes_train):
    sizes, centers = shapes_train.sizes, shapes_train.centers
    assert sizes.min() >= 8 and sizes.max() <= 22
    assert sizes.min() < 8.5 and sizes.max() > 21.5
    radius = sizes / 2
    assert np.all(centers - radius[:, None] >= 0) and np.all(centers + radius[:, None] <= 32)


def test_every_image_has_a_non_empty_mask_of_plausible_size(shapes_train, shapes_test):
    for arrays in (shapes_train, shapes_test):
        area = arrays.masks.sum(axis=(1, 2))
        assert area.min() >= 5
        assert np.all(area <= np.pi * (arrays.sizes / 2 + 1) ** 2)


def test_the_mask_is_the_rerendered_object_minus_thin_occluders(shapes_test):
    a = shapes_test
    covered, exact = [], 0
    for i in range(len(a)):
        full = object_mask(int(a.labels[i]), tuple(a.centers[i]), a.sizes[i], a.angles[i])
        assert not np.any(a.masks[i] & ~full), f"image {i}: mask pixels outside the object"
        covered.append(a.masks[i].sum() / full.sum())
        exact += np.array_equal(a.masks[i], full)
    assert 0.55 < exact / len(a) < 0.9  # occluding strokes in front of some objects
    assert np.mean(covered) > 0.93 and np.min(covered) > 0.4


def _band(mask: np.ndarray, width: int) -> np.ndarray:
    """The pixels within ``width`` of the mask but outside it."""
    grown = F.max_pool2d(torch.from_numpy(mask).float()[:, None], 2 * width + 1, 1, width)
    return grown[:, 0].numpy().astype(bool) & ~mask


def _eroded(mask: np.ndarray) -> np.ndarray:
    shrunk = -F.max_pool2d(-torch.from_numpy(mask).float()[:, None], 3, 1, 1)
    return shrunk[:, 0].numpy().astype(bool)


def test_masked_pixels_are_a_flat_colour_that_differs_from_the_surroundings(shapes_test):
    a = shapes_test
    images = a.images.astype(np.float64) / 255
    inner, band = _eroded(a.masks), _band(a.masks, 2)
    shifted = np.roll(a.masks, 16, axis=2)  # a same-shaped region elsewhere in the image
    shifted_inner, shifted_band = _eroded(shifted), _band(shifted, 2)
    contrast, control, inner_std = [], [], []
    for i in range(len(a)):
        if inner[i].sum() < 4 or shifted_inner[i].sum() < 4:
            continue
        inside, around = images[i][inner[i]], images[i][band[i]]
        contrast.append(np.linalg.norm(inside.mean(0) - around.mean(0)))
        inner_std.append(inside.std(0).mean())
        control.append(
            np.linalg.norm(images[i][shifted_inner[i]].mean(0) - images[i][shifted_band[i]].mean(0))
        )
    contrast, control = np.array(contrast), np.array(control)
    assert len(contrast) > 1500
    assert np.median(inner_std) < 0.06  # one flat colour plus pixel noise
    assert np.median(contrast) > 2.5 * np.median(control)
    # Honest contrast: a good share of objects are close in colour to what surrounds them.
    assert 0.1 < np.mean(contrast < 0.2) < 0.6


def test_shape_areas_are_ordered_as_drawn():
    def area(name: str) -> int:
        return int(object_mask(CLASS_NAMES.index(name), (16.0, 16.0), 20.0, 0.3).sum())

    circle = area("circle")
    assert abs(circle - math.pi * 100) / (math.pi * 100) < 0.03
    assert area("ring") < 0.8 * circle
    assert area("ellipse") < 0.6 * circle
    assert area("star") < area("hexagon") < circle
    assert area("triangle") < area("square") < circle
    for name in CLASS_NAMES:
        assert area(name) > 40, name


def test_rotation_moves_the_mask_but_keeps_its_area():
    label = CLASS_NAMES.index("arrow")
    upright = object_mask(label, (16.0, 16.0), 20.0, 0.0)
    turned = object_mask(label, (16.0, 16.0), 20.0, math.pi)
    assert np.array_equal(turned, upright[::-1, ::-1])  # half a turn about a pixel corner
    assert abs(int(object_mask(label, (16.0, 16.0), 20.0, 1.0).sum()) - upright.sum()) < 8


def test_normalisation_constants_are_the_train_statistics(shapes_train):
    pixels = shapes_train.images.reshape(-1, 3).astype(np.float64) / 255
    assert np.allclose(pixels.mean(0), SHAPES_MEAN, atol=1e-3)
    assert np.allclose(pixels.std(0), SHAPES_STD, atol=1e-3)
    assert dataset_info("shapes").mean == SHAPES_MEAN and dataset_info("shapes").std == SHAPES_STD


def test_dataset_items_are_normalised_tensors_and_denormalise_back():
    data = create_dataset("shapes", split="test", limit=50)
    assert len(data) == 50 and not data.augment
    image, label = data[3]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32
    assert isinstance(label, int) and 0 <= label < 10
    assert torch.equal(data[3][0], image)  # no augmentation on the test split
    restored = denormalize(image, "shapes") * 255
    assert torch.allclose(restored, data.images[3].permute(2, 0, 1).float(), atol=0.01)
    assert data.class_names == CLASS_NAMES and data.info.has_masks
    assert data.classes == list(CLASS_NAMES)  # as torchvision datasets have


def test_masks_come_with_unaugmented_datasets_only():
    plain = create_dataset("shapes", split="test", limit=20)
    assert plain.masks.shape == (20, 32, 32) and plain.masks.dtype == torch.bool
    image, label, mask = plain.item_with_mask(5)
    assert torch.equal(mask, plain.masks[5]) and label == int(plain.labels[5])
    assert torch.equal(image, plain[5][0])
    augmented = create_dataset("shapes", split="test", augment=True, limit=20)
    for access in (lambda: augmented.masks, lambda: augmented.item_with_mask(0)):
        with pytest.raises(ValueError, match="augment=False"):
            access()


def test_training_augmentation_is_a_padded_crop_with_optional_flip():
    data = create_dataset("shapes", split="train", limit=30)
    assert data.augment
    torch.manual_seed(0)
    raw = data.images.permute(0, 3, 1, 2).float() / 255
    padded = F.pad(raw, (4, 4, 4, 4))
    seen_flip = seen_shift = False
    for index in range(30):
        image, _ = data[index]
        assert image.shape == (3, 32, 32)
        x = denormalize(image, "shapes")
        matches = [
            (top, left, flip)
            for top in range(9)
            for left in range(9)
            for flip in (False, True)
            if torch.allclose(
                x,
                (lambda c: c.flip(-1) if flip else c)(
                    padded[index, :, top : top + 32, left : left + 32]
                ).clamp(0, 1),
                atol=1e-5,
            )
        ]
        assert matches, f"item {index} is not a padded crop of its image"
        seen_flip |= any(flip for _, _, flip in matches)
        seen_shift |= any((top, left) != (4, 4) for top, left, _ in matches)
    assert seen_flip and seen_shift


def test_limit_and_seed():
    assert len(create_dataset("shapes", split="test", limit=0)) == 0
    assert len(create_dataset("shapes", split="test", limit=20_000)) == 10_000
    one = create_dataset("shapes", split="test", seed=1, limit=5)
    zero = create_dataset("shapes", split="test", seed=0, limit=5)
    assert not torch.equal(one.images, zero.images)
    assert repr(one) == "ShapesDataset(split='test', seed=1, size=5, augment=False)"
