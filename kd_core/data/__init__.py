"""Datasets by name, and single images turned into model inputs.

>>> from kd_core.data import create_dataset, dataset_info, list_datasets, denormalize
>>> list_datasets()
['shapes', 'cifar10', 'cifar100', 'imagefolder']
>>> train = create_dataset("shapes", split="train")      # generated here, cached on disk
>>> image, label = train[0]                               # 3 x 32 x 32 normalised, int
>>> create_dataset("shapes", split="test").masks.shape    # the object masks (no augmentation)
torch.Size([2000, 32, 32])

One file per concept: :mod:`~kd_core.data.catalog` (what each dataset is, without torch),
:mod:`~kd_core.data.registry` (names, argument checks), :mod:`~kd_core.data.shapes` and
:mod:`~kd_core.data.shapes_render` (the embedded dataset and its renderer),
:mod:`~kd_core.data.cache` (where generated data is kept), :mod:`~kd_core.data.cifar`,
:mod:`~kd_core.data.imagefolder`, :mod:`~kd_core.data.transforms` (augmentation,
:func:`denormalize`), :mod:`~kd_core.data.images` (uploads: :func:`load_image`,
:func:`prepare_image`) and :mod:`~kd_core.data.model_inputs` (each model sees an image folder
through its own input recipe: :func:`model_inputs`).
"""

from kd_core.data.model_inputs import model_inputs  # a submodule's name: bound here, not lazily
from kd_core.lazy import lazy_attributes

# Imported on first use (:mod:`kd_core.lazy`): the registry names the built-in datasets from
# :mod:`~kd_core.data.catalog` without torch, and imports a dataset's module when it is built.
__getattr__, __dir__ = lazy_attributes(
    __name__,
    {
        "MAX_PIXELS": ".images",
        "ImageError": ".images",
        "load_image": ".images",
        "prepare_image": ".images",
        "DatasetInfo": ".registry",
        "create_dataset": ".registry",
        "dataset_info": ".registry",
        "list_datasets": ".registry",
        "denormalize": ".transforms",
    },
)

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
