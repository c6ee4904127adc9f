"""The dataset registry: names, infos, argument checks and their messages, denormalize."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from kd_core.data import DatasetInfo, create_dataset, dataset_info, denormalize, list_datasets
from kd_core.data.catalog import CIFAR10_CLASSES, CIFAR100_CLASSES
from kd_core.data.registry import register_dataset
from kd_core.data.shapes_render import CLASS_NAMES
from tests.fresh_python import run_fresh_python


def test_names_in_order():
    assert list_datasets() == ["shapes", "cifar10", "cifar100", "imagefolder"]


def test_infos():
    shapes = dataset_info("shapes")
    assert shapes.num_classes == 10 and shapes.class_names == CLASS_NAMES
    assert CLASS_NAMES == (
        "circle",
        "square",
        "triangle",
        "star",
        "cross",
        "ring",
        "ellipse",
        "hexagon",
        "heart",
        "arrow",
    )
    assert shapes.has_masks and not shapes.needs_files and shapes.image_size == 32

    cifar10, cifar100 = dataset_info("cifar10"), dataset_info("cifar100")
    assert cifar10.class_names == CIFAR10_CLASSES and len(CIFAR10_CLASSES) == 10
    assert cifar100.num_classes == len(CIFAR100_CLASSES) == 100
    assert list(CIFAR100_CLASSES) == sorted(CIFAR100_CLASSES)
    assert CIFAR100_CLASSES[:3] == ("apple", "aquarium_fish", "baby")
    assert CIFAR100_CLASSES[-1] == "worm"
    # RepDistiller's CIFAR-100 statistics; CIFAR-10's per-pixel training statistics.
    assert cifar100.mean == (0.5071, 0.4867, 0.4408) and cifar100.std == (0.2675, 0.2565, 0.2761)
    assert cifar10.mean == (0.4914, 0.4822, 0.4465) and cifar10.std == (0.2470, 0.2435, 0.2616)
    assert not cifar10.has_masks and cifar10.image_size == 32 and cifar10.crop_fraction == 1.0

    folder = dataset_info("imagefolder")
    assert folder.num_classes is None and folder.class_names is None
    assert folder.mean == (0.485, 0.456, 0.406) and folder.std == (0.229, 0.224, 0.225)
    assert folder.image_size == 224 and folder.crop_fraction == 224 / 256

    with pytest.raises(dataclasses.FrozenInstanceError):
        shapes.num_classes = 3


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "mnist"}, "Unknown dataset 'mnist'; accepted names: shapes, cifar10, cifar100, "),
        ({"name": 3}, "Unknown dataset 3"),
        ({"split": "val"}, "Unknown split 'val'; accepted splits: train, test."),
        ({"limit": -1}, "limit must be a non-negative integer or None, got -1."),
        ({"limit": 2.5}, "limit must be a non-negative integer or None, got 2.5."),
        ({"limit": True}, "limit must be a non-negative integer or None, got True."),
        ({"seed": -3}, "seed must be a non-negative integer, got -3."),
        ({"seed": None}, "seed must be a non-negative integer, got None."),
        ({"augment": "yes"}, "augment must be True, False or None"),
        ({"download": 1}, "download must be True or False, got 1."),
        ({"root": 5}, "root must be a folder path or None, got int."),
    ],
)
def test_bad_arguments_name_what_is_accepted(kwargs, message):
    arguments = {"name": "shapes", **kwargs}
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(".", r"\.")):
        create_dataset(**arguments)


def test_dataset_info_rejects_unknown_names():
    with pytest.raises(ValueError, match="accepted names: shapes, cifar10, cifar100, imagefolder"):
        dataset_info("imagenet")


def test_names_cannot_be_registered_twice():
    with pytest.raises(ValueError, match="already registered"):
        register_dataset(dataset_info("shapes"))(lambda **_: None)


def test_a_built_in_name_is_refused_before_its_module_is_imported_and_a_new_one_builds():
    """The built-in datasets are named by the catalog before their modules load: another
    builder cannot take a built-in name in that window either, and the built-in module still
    registers its own builder afterwards."""
    run_fresh_python(
        """
        import dataclasses, sys
        from kd_core.data.registry import create_dataset, dataset_info, register_dataset

        assert "kd_core.data.shapes" not in sys.modules
        try:
            register_dataset(dataset_info("shapes"))(lambda **_: None)
        except ValueError as error:
            assert "already registered" in str(error)
        else:
            raise AssertionError("a second 'shapes' was accepted")
        mine = dataclasses.replace(dataset_info("cifar10"), name="mine", title="Mine")
        register_dataset(mine)(lambda **kwargs: ("built", kwargs["split"]))
        assert create_dataset("mine", "test") == ("built", "test")
        assert len(create_dataset("shapes", "test", limit=3)) == 3
        """
    )


def test_augment_defaults_to_the_split():
    assert create_dataset("shapes", "train", limit=2).augment
    assert not create_dataset("shapes", "test", limit=2).augment
    assert not create_dataset("shapes", "train", augment=False, limit=2).augment


def test_denormalize_inverts_each_datasets_normalisation():
    pixels = torch.rand(2, 3, 5, 5)
    for name in list_datasets():
        info = dataset_info(name)
        mean, std = torch.tensor(info.mean).view(3, 1, 1), torch.tensor(info.std).view(3, 1, 1)
        assert torch.allclose(denormalize((pixels - mean) / std, name), pixels, atol=1e-6)
        assert torch.allclose(denormalize((pixels[0] - mean) / std, info), pixels[0], atol=1e-6)
    assert denormalize(torch.full((3, 2, 2), 50.0)).max() == 1.0  # clamped for display


def test_denormalize_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"3 x H x W or B x 3 x H x W tensor, got \(1, 4, 4\)"):
        denormalize(torch.zeros(1, 4, 4))
    with pytest.raises(ValueError, match="got list"):
        denormalize([1, 2, 3])
    with pytest.raises(ValueError, match="Unknown dataset"):
        denormalize(torch.zeros(3, 4, 4), "nope")


def test_info_is_a_plain_dataclass():
    assert isinstance(dataset_info("cifar10"), DatasetInfo)
