"""Run a model over a dataset once and keep what every analysis reads: a :class:`FeatureSet`.

For each selected sample the model's logits, pooled feature and, per stage, the AMD attention
map ``q = a / (||a||_2 + 1e-6)`` with ``a = sum_c f_c^2`` are stored; the map comes from
:func:`kd_core.losses.amd.attention_map`, the function the loss itself uses. Raw stage features
are kept (as float16) only when asked for.

Which samples: all of them, or ``samples`` of them picked by :func:`select_indices` - a fixed,
seeded random subset that depends only on the dataset size and ``samples``, so the teacher and
every student see the same images.

:func:`extract_feature_set` always runs the model; pages call
:func:`kd_core.analysis.feature_cache.feature_set_for`, the same cached by content.
:func:`stream_outputs` feeds the selected samples to a model batch by batch for analyses that
keep something else (:mod:`kd_core.analysis.evaluation`)::

    features = extract_feature_set(model, dataset, name="teacher", arch="resnet20", samples=500)
    features.attention["layer3"].shape        # 500 x 8 x 8, unit L2 norm per sample
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from kd_core.analysis.errors import AnalysisError
from kd_core.analysis.feature_set import FeatureSet
from kd_core.data.model_inputs import model_inputs
from kd_core.losses.amd import attention_map
from kd_core.models import extract_features
from kd_core.outputs import ModelOutputs

Progress = Callable[[int, int], None]
"""``progress(done, total)``: samples processed so far and samples in all, after each batch."""

SAMPLE_SEED = 0
"""Seed of the random subset chosen by :func:`select_indices`."""


# --------------------------------------------------------------------------------------------
# Which samples, and how they reach the model.


def select_indices(
    dataset_size: int, *, samples: int | None = None, indices: Sequence[int] | None = None
) -> Tensor:
    """The int64 indices to run: ``indices`` (default: every sample), cut to ``samples``.

    The cut keeps a seeded random subset (numpy PCG64, seed :data:`SAMPLE_SEED`) in the
    candidates' order: positions ``sorted(permutation(n)[:samples])``. It depends only on the
    candidate count and ``samples``, so every model gets the same samples, and a larger
    ``samples`` keeps all the samples of a smaller one. Unlike "the first N", it does not
    inherit any ordering of the files (a split stored class by class).

    >>> select_indices(10, samples=3)
    tensor([2, 4, 6])
    """
    if indices is None:
        candidates = torch.arange(dataset_size, dtype=torch.int64)
    else:
        candidates = _checked_indices(indices, dataset_size)
    if samples is not None:
        if isinstance(samples, bool) or not isinstance(samples, int) or samples <= 0:
            raise AnalysisError(
                f"The number of samples must be a positive integer, got {samples!r}: "
                "choose at least one sample, or None for all of them."
            )
        if samples < len(candidates):
            order = np.random.default_rng(SAMPLE_SEED).permutation(len(candidates))
            positions = torch.from_numpy(np.sort(order[:samples]))
            candidates = candidates[positions]
    if len(candidates) == 0:
        raise AnalysisError(
            "No samples are selected: the dataset or the index list is empty; select at "
            "least one sample."
        )
    return candidates


def _checked_indices(indices: Sequence[int], dataset_size: int) -> Tensor:
    values = torch.as_tensor(np.asarray(indices))
    integral = not (values.is_floating_point() or values.is_complex() or values.dtype == torch.bool)
    if values.dim() != 1 or (values.numel() > 0 and not integral):
        raise AnalysisError(
            f"Sample indices must be a flat sequence of integers, got {values.dtype} values of "
            f"shape {tuple(values.shape)}."
        )
    values = values.to(torch.int64)
    outside = values[(values < 0) | (values >= dataset_size)]
    if outside.numel():
        raise AnalysisError(
            f"Sample index {int(outside[0])} is outside the dataset, which has {dataset_size} "
            f"samples: use indices from 0 to {dataset_size - 1}."
        )
    return values


def dataset_class_names(dataset: object) -> tuple[str, ...]:
    """The dataset's class names by label (``.class_names``, ``.info.class_names`` or
    torchvision's ``.classes``); ``()`` when it has none."""
    for names in (
        getattr(dataset, "class_names", None),
        getattr(getattr(dataset, "info", None), "class_names", None),
        getattr(dataset, "classes", None),
    ):
        if names:
            return tuple(str(name) for name in names)
    return ()


def dataset_num_classes(dataset: object) -> int | None:
    """The dataset's class count (``.info.num_classes``, else the number of class names);
    ``None`` when it does not say."""
    count = getattr(getattr(dataset, "info", None), "num_classes", None)
    return count if isinstance(count, int) else (len(dataset_class_names(dataset)) or None)


def _item(dataset: Any, index: int) -> tuple[Tensor, int]:
    """``dataset[index]``; an unreadable file (an image folder's corrupt image) becomes an
    :class:`AnalysisError` that names it."""
    try:
        return dataset[index]
    except (ValueError, OSError) as error:
        raise AnalysisError(
            f"Sample {index} of the dataset cannot be read: {error} Remove or replace that "
            "file, or choose another dataset."
        ) from None


def _batches(dataset: Any, indices: Tensor, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
    for start in range(0, len(indices), batch_size):
        items = [_item(dataset, int(i)) for i in indices[start : start + batch_size]]
        images = torch.stack([image for image, _ in items])
        labels = torch.as_tensor([int(label) for _, label in items], dtype=torch.int64)
        yield images, labels


def _parameter_device(model: nn.Module) -> torch.device | None:
    tensor = next(itertools.chain(model.parameters(), model.buffers()), None)
    return None if tensor is None else tensor.device


@contextlib.contextmanager
def _inference_on(model: nn.Module, device: str | torch.device) -> Iterator[torch.device]:
    """Eval mode, ``torch.inference_mode`` and ``device`` for the block; afterwards every
    submodule's train/eval flag and the model's device are as before."""
    try:
        target = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise AnalysisError(f"Unknown device {device!r} ({error}); use 'cpu' or 'cuda'.") from None
    modes = [(module, module.training) for module in model.modules()]
    original = _parameter_device(model)
    try:
        if original is not None and original != target:
            try:
                model.to(target)
            except (RuntimeError, AssertionError) as error:
                raise AnalysisError(
                    f"The model cannot be moved to {target} ({error}); choose another device."
                ) from None
        model.eval()
        with torch.inference_mode():
            yield target
    finally:
        for module, training in modes:
            module.training = training
        if original is not None and original != target:
            model.to(original)


def stream_outputs(
    model: nn.Module,
    dataset: Any,
    indices: Tensor,
    consume: Callable[[ModelOutputs, Tensor], None],
    *,
    name: str,
    with_stages: bool,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    progress: Progress | None = None,
) -> None:
    """Feed ``dataset[indices]`` to ``model`` in batches and call ``consume(outputs, labels)``
    per batch (``outputs`` on ``device``; ``labels`` int64 on the CPU).

    The model runs in eval mode under ``torch.inference_mode`` and is left as it was (modes
    and device). ``with_stages`` reads the stage outputs and pooled feature too
    (:func:`~kd_core.models.extract_features`); otherwise only the logits. The model sees the
    images as :func:`~kd_core.data.model_inputs.model_inputs` prepares them for it (a timm
    model on an image folder: its own input recipe). Raises :class:`AnalysisError` when the
    model fails on the images or its class count differs from the dataset's.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise AnalysisError(f"batch_size must be a positive integer, got {batch_size!r}.")
    dataset = model_inputs(dataset, model)
    expected_classes = dataset_num_classes(dataset)
    done, total = 0, len(indices)
    with _inference_on(model, device) as target:
        for images, labels in _batches(dataset, indices, batch_size):
            try:
                outputs = (
                    extract_features(model, images.to(target))
                    if with_stages
                    else ModelOutputs(logits=model(images.to(target)))
                )
            except RuntimeError as error:
                raise AnalysisError(
                    f"{name} failed on images of shape {tuple(images.shape[1:])} ({error}); "
                    "use a model built for this dataset's image size and channels."
                ) from None
            except ValueError as error:  # no FeatureSpec: the model does not name its stages
                raise AnalysisError(f"{name}: {error}") from None
            _check_logits(outputs.logits, labels, expected_classes, name)
            consume(outputs, labels)
            done += len(labels)
            if progress is not None:
                progress(done, total)


def _check_logits(logits: object, labels: Tensor, expected: int | None, name: str) -> None:
    if not isinstance(logits, Tensor) or logits.dim() != 2:
        shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise AnalysisError(
            f"{name} returned {shape} instead of a batch x classes tensor of logits; use a "
            "classifier whose forward returns the logits."
        )
    outputs = logits.shape[1]
    if expected is not None and outputs != expected:
        raise AnalysisError(
            f"{name} outputs {outputs} classes but the dataset has {expected}: use a model "
            "trained on this dataset."
        )
    if int(labels.max()) >= outputs:
        raise AnalysisError(
            f"The dataset has label {int(labels.max())} but {name} outputs only {outputs} "
            "classes: use a model trained on this dataset."
        )


# --------------------------------------------------------------------------------------------
# Extraction.


def extract_feature_set(
    model: nn.Module,
    dataset: Any,
    *,
    name: str,
    arch: str,
    indices: Sequence[int] | None = None,
    samples: int | None = None,
    batch_size: int = 256,
    keep_stages: bool = False,
    device: str | torch.device = "cpu",
    progress: Progress | None = None,
) -> FeatureSet:
    """Run ``model`` on the selected samples of ``dataset`` (``(image, label)`` items) and
    collect a :class:`FeatureSet` on the CPU.

    Per stage ``attention[stage] = attention_map(f)`` (``N x H x W`` float32, unit L2 norm per
    sample); ``logits`` and ``pooled`` in float32; raw ``stages`` in float16 only with
    ``keep_stages``. Masks come from ``dataset.masks`` when the dataset has usable ones (not
    augmented), class names from the dataset. Samples: see :func:`select_indices`.

    Raises:
        AnalysisError: no sample selected, ``samples <= 0``, an index outside the dataset, a
            model whose class count differs from the dataset's, or one that fails on the images.
    """
    selected = select_indices(len(dataset), samples=samples, indices=indices)
    collected: dict[str, list[Tensor]] = {"labels": [], "logits": [], "pooled": []}
    attention: dict[str, list[Tensor]] = {}
    stages: dict[str, list[Tensor]] = {}

    def keep(outputs: ModelOutputs, labels: Tensor) -> None:
        collected["labels"].append(labels)
        collected["logits"].append(outputs.logits.float().cpu())
        collected["pooled"].append(outputs.pooled.float().cpu())
        for stage, feature in outputs.stages.items():
            attention.setdefault(stage, []).append(attention_map(feature).float().cpu())
            if keep_stages:
                stages.setdefault(stage, []).append(feature.half().cpu())

    stream_outputs(
        model,
        dataset,
        selected,
        keep,
        name=name,
        with_stages=True,
        batch_size=batch_size,
        device=device,
        progress=progress,
    )
    return FeatureSet(
        name=name,
        arch=arch,
        indices=selected,
        labels=torch.cat(collected["labels"]),
        logits=torch.cat(collected["logits"]),
        pooled=torch.cat(collected["pooled"]),
        attention={stage: torch.cat(maps) for stage, maps in attention.items()},
        stages={stage: torch.cat(features) for stage, features in stages.items()},
        masks=_masks(dataset, selected),
        class_names=dataset_class_names(dataset),
    )


def _masks(dataset: Any, indices: Tensor) -> Tensor | None:
    try:
        masks = dataset.masks  # a property that refuses (ValueError) on augmented data
    except (AttributeError, ValueError):
        return None
    return torch.as_tensor(masks)[indices].to(torch.bool)
