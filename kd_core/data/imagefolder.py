"""``imagefolder``: any one-folder-per-class tree, as torchvision's ``ImageFolder``.

``root`` is required. If it holds a ``train`` folder, the splits are ``<root>/train`` and
``<root>/test`` (or ``<root>/val``); otherwise ``root`` itself is the tree and both splits read
it (the split then only chooses the transform). Class names are the sub-folder names, sorted;
hidden folders (``.name``) are ignored. Images are read with
:func:`kd_core.data.images.load_image` (transparency on white, 16-bit, first frame, size
limit), so a broken file raises an :class:`~kd_core.data.images.ImageError` naming it when that
item is loaded; the other items stay usable.

Transforms: the ImageNet recipe at 224 (``RandomResizedCrop`` + flip for training,
``Resize(256)`` + ``CenterCrop(224)`` for testing) with ImageNet statistics; a timm model sees
the images prepared with its own pretrained recipe instead
(:func:`~kd_core.data.model_inputs.model_inputs`).
"""

from __future__ import annotations

import dataclasses
import os
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from kd_core.data.catalog import IMAGEFOLDER_INFO
from kd_core.data.images import ImageError, load_image
from kd_core.data.registry import register_dataset
from kd_core.data.transforms import imagenet_transform

if TYPE_CHECKING:
    from torchvision.datasets import ImageFolder

# torchvision is imported when a dataset is first built (see _checked_image_folder): importing it
# takes seconds (it pulls torch._dynamo), and the info and tree checks here need none of it.

#: the file types read: torchvision's ``IMG_EXTENSIONS`` and ``.gif``, sorted
EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".pgm", ".png", ".ppm", ".tif", ".tiff", ".webp")
TEST_FOLDERS = ("test", "val")


def _visible_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _is_image_name(path: str) -> bool:
    name = os.path.basename(path)
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in EXTENSIONS


def _has_image(folder: Path) -> bool:
    """Whether any file under ``folder`` (recursively) has an image extension."""
    return any(
        any(_is_image_name(name) for name in files)
        for _dirpath, _dirs, files in os.walk(folder, followlinks=True)
    )


def split_folder(root: Path, split: str) -> Path:
    """The folder that holds ``split``'s class folders (see the module docstring)."""
    if not (root / "train").is_dir():
        return root
    if split == "train":
        return root / "train"
    for name in TEST_FOLDERS:
        if (root / name).is_dir():
            return root / name
    raise ValueError(
        f"{root} has a train/ folder but no test/ or val/ folder for the test split; add one "
        "(with the same class sub-folders), or point root at a single class tree."
    )


def check_tree(folder: Path) -> list[str]:
    """The class names of a one-folder-per-class tree; a ``ValueError`` saying what is wrong
    (missing path, empty folder, no class sub-folders, class folders without images)."""
    accepted = ", ".join(EXTENSIONS)
    example = folder / "cat" / "001.png"
    if not folder.exists():
        raise ValueError(
            f"No folder at {folder}; pass root= a folder with one sub-folder of images per class "
            f"(e.g. {example})."
        )
    if not folder.is_dir():
        raise ValueError(
            f"{folder} is a file, not a folder; pass the folder that holds the class sub-folders."
        )
    entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
    if not entries:
        raise ValueError(
            f"{folder} is empty; put one sub-folder of images per class in it (e.g. {example})."
        )
    classes = _visible_dirs(folder)
    if not classes:
        raise ValueError(
            f"{folder} has no class sub-folders (it holds {len(entries)} file(s)); put the "
            f"images of each class in their own sub-folder (e.g. {example})."
        )
    empty = [c.name for c in classes if not _has_image(c)]
    if len(empty) == len(classes):
        raise ValueError(
            f"No images found in the class folders of {folder} ({', '.join(empty)}); accepted "
            f"file types: {accepted}."
        )
    if empty:
        raise ValueError(
            f"The class folder(s) {', '.join(empty)} in {folder} hold no images (accepted file "
            f"types: {accepted}); add images or remove those folders."
        )
    return [c.name for c in classes]


def _load(path: str):
    try:
        return load_image(path)
    except ImageError:
        raise
    except Exception as error:  # anything else a decoder may throw: name the file
        raise ImageError(f"The file {path} cannot be read as an image ({error}).") from error


@cache
def _checked_image_folder() -> type[ImageFolder]:
    """``CheckedImageFolder``, subclass of torchvision's ``ImageFolder``, created once."""
    from torchvision.datasets import ImageFolder

    class CheckedImageFolder(ImageFolder):
        """``ImageFolder`` that ignores hidden folders and reads images with
        :func:`~kd_core.data.images.load_image`."""

        def find_classes(self, directory):
            classes = [p.name for p in _visible_dirs(Path(directory))]
            return classes, {name: i for i, name in enumerate(classes)}

    CheckedImageFolder.__qualname__ = "CheckedImageFolder"  # what pickle looks up, see below
    return CheckedImageFolder


def __getattr__(name: str) -> type:
    """``imagefolder.CheckedImageFolder`` (a module attribute, so that the datasets pickle by
    reference, e.g. into spawned DataLoader workers)."""
    if name == "CheckedImageFolder":
        return _checked_image_folder()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@register_dataset(IMAGEFOLDER_INFO)
def build_imagefolder(
    *, split: str, root: Path | None, augment: bool, seed: int, limit: int | None, download: bool
) -> ImageFolder:
    del seed
    if download:
        raise ValueError("imagefolder reads your own files; there is nothing to download.")
    if root is None:
        raise ValueError(
            "imagefolder needs root=: a folder with one sub-folder of images per class "
            "(e.g. root/cat/001.png, root/dog/002.jpg)."
        )
    folder = split_folder(root, split)
    check_tree(folder)
    dataset = _checked_image_folder()(
        str(folder),
        transform=imagenet_transform(augment),
        loader=_load,
        is_valid_file=_is_image_name,
    )
    if limit is not None:
        dataset.samples = dataset.samples[:limit]
        dataset.imgs = dataset.samples
        dataset.targets = dataset.targets[:limit]
    dataset.class_names = tuple(dataset.classes)
    dataset.info = dataclasses.replace(
        IMAGEFOLDER_INFO, num_classes=len(dataset.classes), class_names=dataset.class_names
    )
    return dataset
