"""Datasets by name, and single images turned into model inputs.

>>> from kd_core.data import create_dataset, dataset_info, list_datasets, denormalize
>>> list_datasets()
['shapes', 'cifar10', 'cifar100', 'imagefolder']
>>> train = create_dataset("shapes", split="train")      # generated here, cached on disk
>>> image, label = train[0]                               # 3 x 32 x 32 normalised, int
>>> create_dataset("shapes", split="test").masks.shape    # the object masks (no augmentation)
torch.Size([2000, 32, 32])

One file per concept: :mod:`~kd_core.data.registry` (names, :class:`DatasetInfo`,
argument checks), :mod:`~kd_core.data.shapes` and :mod:`~kd_core.data.shapes_render` (the
embedded dataset and its renderer), :mod:`~kd_core.data.cache` (where generated data is kept),
:mod:`~kd_core.data.cifar`, :mod:`~kd_core.data.imagefolder`,
:mod:`~kd_core.data.transforms` (statistics, augmentation, :func:`denormalize`) and
:mod:`~kd_core.data.images` (uploads: :func:`load_image`, :func:`prepare_image`) and
:mod:`~kd_core.data.model_inputs` (each model sees an image folder through its own input
recipe: :func:`model_inputs`).
"""

# isort: off
# Importing the dataset modules registers them; this order is the order of list_datasets().
from kd_core.data import shapes, cifar, imagefolder  # noqa: F401

# isort: on
from kd_core.data.images import MAX_PIXELS, ImageError, load_image, prepare_image
from kd_core.data.model_inputs import model_inputs
from kd_core.data.registry import DatasetInfo, create_dataset, dataset_info, list_datasets
from kd_core.data.transforms import denormalize

__all__ = [
    "MAX_PIXELS",
    "DatasetInfo",
    "ImageError",
    "create_dataset",
    "dataset_info",
    "denormalize",
    "list_datasets",
    "load_image",
    "model_inputs",
    "prepare_image",
]
