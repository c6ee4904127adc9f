"""Each model sees its own inputs: the one adapter between a dataset's raw images and a model
with an input recipe of its own.

A dataset whose :class:`~kd_core.data.registry.DatasetInfo` has ``per_model_inputs``
(``imagefolder``: photographs decoded, then transformed) is seen by a model that carries an
input recipe (a timm model: :func:`kd_core.models.timm_models.data_config`, its pretrained
input size, mean/std, interpolation and crop) through that recipe, instead of the dataset's
one ImageNet transform. So a timm ViT teacher at 224 with mean/std 0.5 and a timm ConvNeXt
student at 288 with ImageNet statistics each get the same images prepared their own way.
Every other pair (the CIFAR zoo, torchvision models, ``shapes`` and CIFAR) sees the dataset
exactly as before: :func:`model_inputs` returns the dataset itself.

* :func:`input_recipe` is the rule: the recipe a model prepares a dataset's images with, or
  ``None`` for the dataset's own transform;
* :func:`model_inputs` is the dataset as one model sees it (a shallow copy with the model's
  transform and an ``info`` of its size and statistics, so ``denormalize(image, view.info)``
  works); feature extraction and evaluation
  (:func:`kd_core.analysis.extraction.stream_outputs`) run every model through it;
* :func:`~kd_core.data.images.prepare_image` with ``model=`` prepares one uploaded image the
  same way;
* :func:`shared_inputs` is the training batches of a group: models trained on the same batches
  need one recipe, the students'; the teacher sees the students' inputs (AMD and AT align
  their stage sizes) and is refused, with a sentence, only when it accepts no other size.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from kd_core.data.registry import DatasetInfo, dataset_info
from kd_core.models.timm_models import data_config, fixed_input_size, input_transform

if TYPE_CHECKING:
    from torch import nn
    from torch.utils.data import Dataset


def input_recipe(dataset: str | DatasetInfo | Dataset, model: nn.Module) -> dict[str, Any] | None:
    """The input recipe (timm's data config) ``model`` sees the images of ``dataset`` (a
    registry name, its info, or a dataset with an ``info``) through; ``None`` when the
    dataset's own transform serves it."""
    if isinstance(dataset, str):
        info = dataset_info(dataset)
    else:
        info = dataset if isinstance(dataset, DatasetInfo) else getattr(dataset, "info", None)
    if not isinstance(info, DatasetInfo) or not info.per_model_inputs:
        return None
    return data_config(model)


def model_inputs(dataset: Dataset, model: nn.Module, *, augment: bool = False) -> Dataset:
    """``dataset`` as ``model`` sees it: the dataset itself, or, under :func:`input_recipe`, a
    shallow copy whose images go through the model's transform (its training augmentation with
    ``augment``) and whose ``info`` holds the model's size and statistics."""
    recipe = input_recipe(dataset, model)
    if recipe is None:
        return dataset
    view = copy.copy(dataset)
    view.transform = input_transform(recipe, augment)
    view.info = dataclasses.replace(
        dataset.info,
        mean=tuple(recipe["mean"]),
        std=tuple(recipe["std"]),
        image_size=recipe["input_size"][-1],
        crop_fraction=recipe["crop_pct"],
    )
    return view


def shared_inputs(
    dataset: Dataset,
    students: Sequence[nn.Module],
    teacher: nn.Module | None = None,
    *,
    augment: bool = False,
) -> Dataset:
    """``dataset`` as ``students`` (one or more, trained on the same batches) see it, and their
    teacher with them; a ``ValueError`` saying what to do when the students' recipes differ or
    the teacher accepts only another image size."""
    recipes = [input_recipe(dataset, student) for student in students]
    if any(recipe != recipes[0] for recipe in recipes):
        differ = next(i for i, recipe in enumerate(recipes) if recipe != recipes[0])
        raise ValueError(
            f"The students of a group train on the same batches, so they need one input recipe:"
            f" student 1 sees {_described(recipes[0])}, student {differ + 1} "
            f"{_described(recipes[differ])}. Train them separately."
        )
    size = tuple(recipes[0]["input_size"][-2:]) if recipes[0] else None
    accepted = fixed_input_size(teacher) if teacher is not None and size else None
    if accepted is not None and accepted != size:
        raise ValueError(
            f"The teacher accepts only {accepted[0]} x {accepted[1]} images, but the students' "
            f"input recipe prepares {size[0]} x {size[1]}: choose a student of the teacher's "
            "input size, or a teacher that takes any size."
        )
    return model_inputs(dataset, students[0], augment=augment)


def _described(recipe: dict[str, Any] | None) -> str:
    if recipe is None:
        return "the dataset's own transform"
    return f"{recipe['input_size'][-1]} px images with mean {tuple(recipe['mean'])}"
