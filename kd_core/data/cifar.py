"""``cifar10`` and ``cifar100``: torchvision's CIFAR datasets, read from local files.

Nothing is downloaded unless ``download=True`` is passed. The files are looked for under
``root`` (default ``$KD_CORE_DATA`` or ``~/.cache/kd_core/datasets``), in the folder the
official archives extract to: ``<root>/cifar-10-batches-py`` and ``<root>/cifar-100-python``
(``root`` may also name that folder itself). Files are checked for presence, not checksums,
and anything unreadable in them is reported as a ``ValueError`` that says what to do.
"""

from __future__ import annotations

import os
import pickle
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from kd_core.data.cache import default_data_root
from kd_core.data.catalog import CIFAR10_INFO, CIFAR100_INFO, DatasetInfo
from kd_core.data.registry import register_dataset
from kd_core.data.transforms import cifar_transform
from kd_core.pickle_scan import pickle_globals

if TYPE_CHECKING:
    from torchvision.datasets import CIFAR10, CIFAR100


class _LocalFiles:
    """Mixin over torchvision's CIFAR classes: files must be present (no checksum: a copy from
    elsewhere or a re-packed archive is fine); reading errors surface as they happen."""

    base_folder: str
    train_list: list
    test_list: list
    meta: dict
    root: str

    def _check_integrity(self) -> bool:
        folder = Path(self.root) / self.base_folder
        names = [name for name, _ in self.train_list + self.test_list] + [self.meta["filename"]]
        return all((folder / name).is_file() for name in names)

    def _load_meta(self) -> None:
        path = os.path.join(self.root, self.base_folder, self.meta["filename"])
        with open(path, "rb") as file:
            data = pickle.load(file, encoding="latin1")
        self.classes = data[self.meta["key"]]
        self.class_to_idx = {name: i for i, name in enumerate(self.classes)}


# The subclasses of torchvision's classes are created on first use: importing torchvision takes
# seconds (it pulls torch._dynamo), and the class names and infos above need none of it.
#: subclass name -> (torchvision base class name, the dataset's info)
_LOCAL_CLASSES = {
    "LocalCIFAR10": ("CIFAR10", CIFAR10_INFO),
    "LocalCIFAR100": ("CIFAR100", CIFAR100_INFO),
}


@cache
def _local_class(name: str) -> type[CIFAR10]:
    """``LocalCIFAR10`` or ``LocalCIFAR100``: torchvision's class with :class:`_LocalFiles`
    mixed in, created once."""
    from torchvision import datasets

    base, info = _LOCAL_CLASSES[name]
    namespace = {
        "__module__": __name__,
        "__doc__": f"torchvision's {info.title} reading local files without checksums.",
    }
    return type(name, (_LocalFiles, getattr(datasets, base)), namespace)


def __getattr__(name: str) -> type:
    """``cifar.LocalCIFAR10`` / ``cifar.LocalCIFAR100`` (module attributes, so that the datasets
    pickle by reference, e.g. into spawned DataLoader workers)."""
    if name in _LOCAL_CLASSES:
        return _local_class(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# What batch files import when unpickled: numpy's array reconstruction, and (protocol 2 from
# Python 3) the bytes codec; nothing that can run code.
CIFAR_PICKLE_GLOBALS = frozenset(
    {"_codecs.encode"}
    | {
        f"numpy{core}.{name}"
        for core in ("", ".core.multiarray", "._core.multiarray", ".core.numeric", "._core.numeric")
        for name in ("_reconstruct", "ndarray", "dtype", "_frombuffer")
    }
)


def _refuse_code(folder: Path, batches: list, meta: dict) -> None:
    """Scan the files torchvision is about to unpickle: a file that would import anything but
    numpy's array reconstruction could run code when read, so it is refused unread."""
    for name in [name for name, _ in batches] + [meta["filename"]]:
        path = folder / name
        imports = [g for g in pickle_globals(path.read_bytes()) if g not in CIFAR_PICKLE_GLOBALS]
        if imports:
            raise ValueError(
                f"{path} is not a genuine CIFAR batch: reading it would import "
                f"{', '.join(imports[:3])}, which could run code, so it was not read. Replace "
                "the folder with the files extracted from the official archive."
            )


def _expected_files(cls) -> list[str]:
    return [name for name, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]


def _load(
    class_name: str,
    info: DatasetInfo,
    split: str,
    root: Path | None,
    augment: bool,
    limit,
    download: bool,
):
    cls = _local_class(class_name)
    root = default_data_root() if root is None else root
    if root.name == cls.base_folder:  # the user pointed at the extracted folder itself
        root = root.parent
    folder = root / cls.base_folder
    archive = cls.url.rsplit("/", 1)[-1]
    missing = [name for name in _expected_files(cls) if not (folder / name).is_file()]
    if missing and not download:
        raise ValueError(
            f"{info.title} files not found: expected the folder {folder} holding "
            f"{', '.join(_expected_files(cls))} (what {archive} extracts to; missing: "
            f"{', '.join(missing)}). Put the files there, pass root= the folder that contains "
            f"{cls.base_folder}, or pass download=True (an explicit opt-in) to fetch them when "
            "online."
        )
    if not missing:
        _refuse_code(folder, cls.train_list if split == "train" else cls.test_list, cls.meta)
    transform = cifar_transform(info.mean, info.std, augment)
    try:
        dataset = cls(str(root), train=split == "train", transform=transform, download=download)
    except (OSError, RuntimeError) as error:
        if download and missing:
            raise ValueError(
                f"Could not download {info.title} into {folder} ({error}). Check the internet "
                f"connection, or copy the extracted {archive} there by hand."
            ) from error
        raise ValueError(
            f"Could not read the {info.title} files in {folder} ({error}); they may be "
            f"corrupt: delete the folder and extract {archive} there again."
        ) from error
    except (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError) as error:
        raise ValueError(
            f"The {info.title} files in {folder} are not in the expected format "
            f"({type(error).__name__}: {error}); delete the folder and extract {archive} there "
            "again."
        ) from error
    if limit is not None:
        dataset.data = dataset.data[:limit]
        dataset.targets = dataset.targets[:limit]
    dataset.targets = [int(t) for t in dataset.targets]
    if len(dataset.classes) != info.num_classes or np.asarray(dataset.data).shape[1:] != (
        32,
        32,
        3,
    ):
        raise ValueError(
            f"The files in {folder} hold {len(dataset.classes)} classes of images shaped "
            f"{np.asarray(dataset.data).shape[1:]}, not {info.title}'s {info.num_classes} "
            "classes of 32 x 32 x 3."
        )
    dataset.info = info
    dataset.class_names = tuple(dataset.classes)
    return dataset


@register_dataset(CIFAR10_INFO)
def build_cifar10(
    *, split: str, root: Path | None, augment: bool, seed: int, limit: int | None, download: bool
) -> CIFAR10:
    del seed  # the data is fixed
    return _load("LocalCIFAR10", CIFAR10_INFO, split, root, augment, limit, download)


@register_dataset(CIFAR100_INFO)
def build_cifar100(
    *, split: str, root: Path | None, augment: bool, seed: int, limit: int | None, download: bool
) -> CIFAR100:
    del seed
    return _load("LocalCIFAR100", CIFAR100_INFO, split, root, augment, limit, download)
