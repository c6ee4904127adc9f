r"""The logic behind the "Attention maps" page: pick one image, explain it with every model, and
say how much the students' maps agree with the teacher's and with the object.

Browsing a dataset (predictions from :class:`~kd_core.analysis.feature_set.FeatureSet`):

* :func:`sample_filters` lists the filters a page offers (all, teacher correct or wrong, each
  student wrong, teacher and each student disagree) and :func:`filter_samples` applies one,
  optionally restricted to one true class;
* :func:`paginate` cuts the matching samples into pages, :func:`thumbnails` turns images into
  small ``uint8`` pictures (enlarged without blurring their pixels).

Explaining one image:

* :func:`distinct_names` keeps every model under its own name (maps are keyed by name);
* :func:`paired_stage_rows` pairs the stages of the teacher and the students by depth from the
  deepest one, as :func:`~kd_core.analysis.feature_set.paired_stages` does for two models;
* :func:`image_predictions` gives each model's predicted class and confidence,
  :func:`target_classes` the class whose logit each model's map explains;
* :func:`agreement_rows` tabulates :func:`~kd_core.analysis.agreement.compare_maps` (each
  student against the teacher) and :func:`~kd_core.analysis.agreement.compare_with_mask`
  (every model against the object mask) for one image, :func:`agreement_formats` how to
  print its numbers.

Example::

    filters = sample_filters("teacher", ["student"])
    positions = filter_samples(labels, {"teacher": t_pred, "student": s_pred}, filters[2])
    page = paginate(positions, page=1, per_page=12)       # page.items: positions to show
    rows = agreement_rows({"teacher": t_map, "student": s_map}, mask=mask)
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from kd_core.analysis.agreement import DEFAULT_TOP_FRACTION, compare_maps, compare_with_mask
from kd_core.analysis.errors import AnalysisError

THUMBNAIL_SIDE = 64
"""Smallest side, in pixels, of a thumbnail (a 32 x 32 image is enlarged twice)."""

FILTER_KINDS = ("all", "correct", "wrong", "disagree")
"""What a :class:`SampleFilter` keeps: every sample, those one model gets right or wrong, or
those where two models predict different classes."""

TARGET_MODES = {
    "own": "Each model's prediction",
    "teacher": "The teacher's prediction",
    "chosen": "A chosen class",
}
"""Which class a map explains (:func:`target_classes`): key -> label for the page."""


# ---------------------------------------------------------------- browsing a dataset


@dataclass(frozen=True)
class SampleFilter:
    """One choice of the sample filter.

    Attributes:
        label: what the page shows, e.g. ``"teacher wrong"``.
        kind: one of :data:`FILTER_KINDS`.
        models: model names the filter reads: none for ``all``, one for ``correct`` and
            ``wrong``, two (teacher, student) for ``disagree``.
    """

    label: str
    kind: str
    models: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        needed = {"all": 0, "correct": 1, "wrong": 1, "disagree": 2}.get(self.kind)
        if needed is None or len(self.models) != needed:
            raise AnalysisError(
                f"A sample filter of kind {self.kind!r} with models {self.models} is not "
                f"valid: kinds are {list(FILTER_KINDS)}, reading 0, 1, 1 and 2 models."
            )


def sample_filters(teacher: str, students: Sequence[str]) -> list[SampleFilter]:
    """The filters of a teacher and its students: all, teacher correct, teacher wrong, then for
    each student "<student> wrong" and "teacher and <student> disagree".

    >>> [f.label for f in sample_filters("T", ["S"])]
    ['all samples', 'teacher correct', 'teacher wrong', 'S wrong', 'teacher and S disagree']
    """
    filters = [
        SampleFilter("all samples", "all"),
        SampleFilter("teacher correct", "correct", (teacher,)),
        SampleFilter("teacher wrong", "wrong", (teacher,)),
    ]
    for student in students:
        filters.append(SampleFilter(f"{student} wrong", "wrong", (student,)))
        filters.append(
            SampleFilter(f"teacher and {student} disagree", "disagree", (teacher, student))
        )
    return filters


def _class_vector(name: str, values: object, count: int | None) -> Tensor:
    if not isinstance(values, Tensor) or values.dim() != 1 or values.is_floating_point():
        shape = tuple(values.shape) if isinstance(values, Tensor) else type(values).__name__
        raise AnalysisError(f"{name} must be a 1-D integer tensor of classes, got {shape}.")
    if count is not None and len(values) != count:
        raise AnalysisError(
            f"{name} holds {len(values)} samples but the labels hold {count}; pass predictions "
            "of the same samples (FeatureSet.predictions of one extraction)."
        )
    return values.long().cpu()


def filter_samples(
    labels: Tensor,
    predictions: Mapping[str, Tensor],
    sample_filter: SampleFilter,
    *,
    class_index: int | None = None,
) -> Tensor:
    """Positions (int64, ascending) of the samples that pass ``sample_filter`` and, when
    ``class_index`` is given, whose true class is ``class_index``.

    ``correct``/``wrong`` keep ``predictions[model] == labels`` / ``!=``; ``disagree`` keeps
    ``predictions[teacher] != predictions[student]`` (whoever is right).

    >>> labels = torch.tensor([0, 1, 1, 2])
    >>> filter_samples(labels, {"T": torch.tensor([0, 1, 2, 0])},
    ...                SampleFilter("teacher wrong", "wrong", ("T",))).tolist()
    [2, 3]

    Raises:
        AnalysisError: labels or predictions not 1-D integer tensors of one length, a model of
            the filter missing from ``predictions``, a negative class index.
    """
    labels = _class_vector("labels", labels, None)
    missing = [name for name in sample_filter.models if name not in predictions]
    if missing:
        raise AnalysisError(
            f"The filter {sample_filter.label!r} needs the predictions of {missing}; "
            f"got predictions of {list(predictions)}."
        )
    read = {
        name: _class_vector(f"predictions of {name!r}", predictions[name], len(labels))
        for name in sample_filter.models
    }
    if sample_filter.kind == "all":
        keep = torch.ones(len(labels), dtype=torch.bool)
    elif sample_filter.kind == "disagree":
        first, second = sample_filter.models
        keep = read[first] != read[second]
    else:
        right = read[sample_filter.models[0]] == labels
        keep = right if sample_filter.kind == "correct" else ~right
    if class_index is not None:
        if isinstance(class_index, bool) or not isinstance(class_index, numbers.Integral):
            raise AnalysisError(f"class_index must be an integer or None, got {class_index!r}.")
        if class_index < 0:
            raise AnalysisError(f"class_index must be >= 0, got {class_index}.")
        keep &= labels == int(class_index)
    return torch.nonzero(keep).flatten()


@dataclass(frozen=True)
class PageOfItems:
    """One page of a paginated list.

    Attributes:
        items: the items on the page (at most ``per_page``; empty when the list is).
        number: the page's number, from 1.
        count: how many pages there are (at least 1, so a page control always has a range).
        first: position of the page's first item in the whole list.
        total: how many items the whole list holds.
    """

    items: Tensor | Sequence
    number: int
    count: int
    first: int
    total: int


def paginate(items: Tensor | Sequence, page: int, per_page: int) -> PageOfItems:
    """Page ``page`` (from 1) of ``items`` cut into pages of ``per_page``: items
    ``[(page - 1) * per_page, page * per_page)``. There are ``max(1, ceil(n / per_page))``
    pages; a ``page`` outside ``1..count`` is moved to the nearest end (a filter that shrinks
    the list never leaves the browser on a page that no longer exists).

    >>> p = paginate(list(range(10)), page=4, per_page=4)
    >>> p.items, p.number, p.count, p.first
    ([8, 9], 3, 3, 8)

    Raises:
        AnalysisError: ``per_page`` or ``page`` not an integer, ``per_page < 1``.
    """
    for name, value in (("per_page", per_page), ("page", page)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise AnalysisError(f"{name} must be an integer, got {value!r}.")
    if per_page < 1:
        raise AnalysisError(f"per_page must be at least 1, got {per_page}.")
    total = len(items)
    count = max(1, math.ceil(total / per_page))
    number = min(max(int(page), 1), count)
    first = (number - 1) * per_page
    return PageOfItems(items[first : first + per_page], number, count, first, total)


def thumbnails(images: Tensor, min_side: int = THUMBNAIL_SIDE) -> list[np.ndarray]:
    """``B`` RGB ``uint8`` arrays (``H' x W' x 3``) of ``B x 3 x H x W`` images in ``[0, 1]``
    (:func:`kd_core.data.denormalize` of dataset items). Images whose smaller side is below
    ``min_side`` are enlarged by the integer factor ``ceil(min_side / min(H, W))``, each pixel
    repeated (nearest neighbour: no blur on 32-px images); larger images are kept as they are.

    >>> thumbnails(torch.ones(1, 3, 32, 32))[0].shape
    (64, 64, 3)

    Raises:
        AnalysisError: not a ``B x 3 x H x W`` tensor with finite values in ``[0, 1]``.
    """
    if not isinstance(images, Tensor) or images.dim() != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise AnalysisError(
            f"Thumbnails need a B x 3 x H x W tensor of images, got {shape}; use image[None] "
            "for one image."
        )
    values = images.detach().float().cpu()
    if values.numel() and not (
        bool(torch.isfinite(values).all()) and values.min() >= 0 and values.max() <= 1
    ):
        raise AnalysisError(
            "Thumbnails need RGB values in [0, 1]; undo the normalisation first with "
            "kd_core.data.denormalize."
        )
    factor = max(1, math.ceil(min_side / min(values.shape[-2:]))) if values.numel() else 1
    pixels = (values * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return [picture.repeat(factor, axis=0).repeat(factor, axis=1) for picture in pixels]


# ---------------------------------------------------------------- models and stages


def distinct_names(names: Sequence[str]) -> list[str]:
    """``names`` with repeats numbered, so every model keeps its own map.

    >>> distinct_names(["resnet8", "resnet20", "resnet8"])
    ['resnet8', 'resnet20', 'resnet8 (2)']
    """
    taken: set[str] = set()
    distinct = []
    for name in names:
        candidate, number = name, 1
        while candidate in taken:
            number += 1
            candidate = f"{name} ({number})"
        taken.add(candidate)
        distinct.append(candidate)
    return distinct


@dataclass(frozen=True)
class StageRow:
    """Stages of the same depth, one per model.

    Attributes:
        stages: model name -> that model's stage name, the teacher first.
    """

    stages: dict[str, str]

    @property
    def label(self) -> str:
        """The distinct stage names joined with " / ", e.g. ``"layer3"`` or
        ``"layer3 / block3"``."""
        return " / ".join(dict.fromkeys(self.stages.values()))


def paired_stage_rows(stages: Mapping[str, Sequence[str]]) -> list[StageRow]:
    """Rows of stages at the same depth, shallow to deep: with ``k`` the fewest stages of any
    model, row ``j`` holds each model's ``j``-th of its deepest ``k`` stages (so a 4-stage
    teacher's ``layer2..layer4`` pair with a 3-stage student's ``layer1..layer3``).

    >>> [r.label for r in paired_stage_rows({"T": ["l1", "l2", "l3", "l4"], "S": ["b1", "b2"]})]
    ['l3 / b1', 'l4 / b2']

    Raises:
        AnalysisError: no models, or a model without stages.
    """
    if not stages:
        raise AnalysisError("No models to pair stages of: pass {model name: stage names}.")
    empty = [name for name, names in stages.items() if not names]
    if empty:
        raise AnalysisError(
            f"{empty} declare no stages; activation and Grad-CAM need stages: choose "
            "saliency, integrated gradients or occlusion."
        )
    depth = min(len(names) for names in stages.values())
    return [
        StageRow({model: list(names)[len(names) - depth + row] for model, names in stages.items()})
        for row in range(depth)
    ]


@dataclass(frozen=True)
class Prediction:
    """One model's prediction on one image."""

    class_index: int
    class_name: str
    confidence: float
    """Softmax probability of the predicted class, in ``[0, 1]``."""


def class_labels(class_names: Sequence[str], count: int) -> tuple[str, ...]:
    """The names of ``count`` classes: ``class_names`` when there are ``count`` of them,
    otherwise ``"class 0"``, ``"class 1"``, ...

    >>> class_labels((), 2)
    ('class 0', 'class 1')
    """
    if len(class_names) == count:
        return tuple(str(name) for name in class_names)
    return tuple(f"class {index}" for index in range(count))


def image_predictions(
    models: Mapping[str, nn.Module],
    image: Tensor | Mapping[str, Tensor],
    class_names: Sequence[str] = (),
) -> dict[str, Prediction]:
    """Each model's predicted class (argmax of the logits) and its softmax probability on one
    normalised ``3 x H x W`` image: the same for every model, or each model's own preparation
    of it by name (:func:`kd_core.data.model_inputs.model_inputs`). Models run in eval mode
    without gradients; their train/eval modes are restored afterwards.

    Raises:
        AnalysisError: an image not a finite ``3 x H x W`` float tensor; a model that does not
            return ``1 x K`` logits.
    """
    predictions = {}
    for name, model in models.items():
        image_of = image[name] if isinstance(image, Mapping) else image
        _check_image(image_of)
        modes = [(module, module.training) for module in model.modules()]
        device = next(model.parameters(), image_of).device
        try:
            model.eval()
            with torch.inference_mode():
                logits = model(image_of[None].to(device))
        finally:
            for module, training in modes:
                module.training = training
        if not isinstance(logits, Tensor) or logits.dim() != 2 or len(logits) != 1:
            raise AnalysisError(f"{name} must return 1 x K logits for one image.")
        probabilities = logits[0].float().softmax(dim=0).cpu()
        index = int(probabilities.argmax())
        labels = class_labels(class_names, len(probabilities))
        predictions[name] = Prediction(index, labels[index], float(probabilities[index]))
    return predictions


def _check_image(image: object) -> None:
    valid = isinstance(image, Tensor) and image.dim() == 3 and image.shape[0] == 3
    if not valid or not image.is_floating_point() or not bool(torch.isfinite(image).all()):
        shape = tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__
        raise AnalysisError(
            f"The image must be one finite 3 x H x W float tensor (a dataset item), got {shape}."
        )


def target_classes(
    mode: str, predicted: Mapping[str, int], *, teacher: str, chosen: int | None = None
) -> dict[str, int]:
    """The class each model's map explains (:data:`TARGET_MODES`): ``"own"``, each model's
    predicted class (where *it* sees evidence for *its* answer); ``"teacher"``, the teacher's
    predicted class for every model (all maps answer the same question, so they compare
    directly); ``"chosen"``, ``chosen`` for every model.

    >>> target_classes("teacher", {"T": 3, "S": 5}, teacher="T")
    {'T': 3, 'S': 3}

    Raises:
        AnalysisError: unknown mode, teacher not among the models, ``"chosen"`` without a
            class index >= 0.
    """
    if mode not in TARGET_MODES:
        raise AnalysisError(f"Unknown target mode {mode!r}; choose one of {list(TARGET_MODES)}.")
    if teacher not in predicted:
        raise AnalysisError(f"The teacher {teacher!r} is not among the models {list(predicted)}.")
    if mode == "own":
        return {name: int(index) for name, index in predicted.items()}
    if mode == "teacher":
        return dict.fromkeys(predicted, int(predicted[teacher]))
    if isinstance(chosen, bool) or not isinstance(chosen, numbers.Integral) or chosen < 0:
        raise AnalysisError(f"Choose a class (an index >= 0) to explain, got {chosen!r}.")
    return dict.fromkeys(predicted, int(chosen))


# ---------------------------------------------------------------- agreement


def _percent_label(fraction: float) -> str:
    return f"{100 * fraction:g}%"


def agreement_rows(
    maps: Mapping[str, Tensor],
    *,
    mask: Tensor | None = None,
    top_fraction: float = DEFAULT_TOP_FRACTION,
) -> list[dict[str, object]]:
    """One row per model of one image's maps (``H x W`` each, the teacher first).

    Columns: ``model``; against the teacher (``None`` on the teacher's row): ``cosine vs
    teacher``, ``rank correlation vs teacher`` and ``top-20% IoU vs teacher`` (for the
    default ``top_fraction``); with a ``mask`` (``H' x W'`` bool): ``attention inside object
    (%)`` (share of the map's mass inside the mask), ``top-20% IoU with object`` and
    ``object area (%)``, the share a uniform map would have inside (chance level). The
    measures are those of :mod:`kd_core.analysis.agreement`.

    Raises:
        AnalysisError: no maps, maps malformed (not ``H x W``, negative, non-finite), a mask
            that is not ``H' x W'``.
    """
    if not maps:
        raise AnalysisError("No maps to compare: pass at least the teacher's map.")
    for name, values in maps.items():
        if not isinstance(values, Tensor) or values.dim() != 2:
            shape = tuple(values.shape) if isinstance(values, Tensor) else type(values).__name__
            raise AnalysisError(f"The map of {name!r} must be an H x W tensor, got {shape}.")
    if mask is not None and (not isinstance(mask, Tensor) or mask.dim() != 2):
        shape = tuple(mask.shape) if isinstance(mask, Tensor) else type(mask).__name__
        raise AnalysisError(f"The object mask must be an H x W tensor, got {shape}.")
    top = _percent_label(top_fraction)
    teacher_name, teacher_map = next(iter(maps.items()))
    rows = []
    for name, values in maps.items():
        row: dict[str, object] = {"model": name}
        if name == teacher_name:
            versus = dict.fromkeys(("cosine", "rank_correlation", "top_iou"))
        else:
            agreement = compare_maps(teacher_map[None], values[None], top_fraction=top_fraction)
            versus = agreement.mean()
        row["cosine vs teacher"] = versus["cosine"]
        row["rank correlation vs teacher"] = versus["rank_correlation"]
        row[f"top-{top} IoU vs teacher"] = versus["top_iou"]
        if mask is not None:
            inside = compare_with_mask(values[None], mask[None], top_fraction=top_fraction).mean()
            row["attention inside object (%)"] = 100 * inside["mass_inside"]
            row[f"top-{top} IoU with object"] = inside["top_iou"]
            row["object area (%)"] = 100 * inside["mask_fraction"]
        rows.append(row)
    return rows


def agreement_formats(columns: Sequence[str]) -> dict[str, str]:
    """Column -> printf format of the measured columns of :func:`agreement_rows` (every column
    but ``model``): one decimal for percentages (a name with ``(%)``), three otherwise.

    >>> agreement_formats(["model", "cosine vs teacher", "object area (%)"])
    {'cosine vs teacher': '%.3f', 'object area (%)': '%.1f'}
    """
    return {
        column: "%.1f" if "(%)" in column else "%.3f" for column in columns if column != "model"
    }
