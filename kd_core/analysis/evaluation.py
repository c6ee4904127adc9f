"""How well a model classifies: confusion matrix, top-1/top-5 and per-class accuracy.

Accuracies are percentages, as in the trainer's metrics. The confusion matrix ``C`` is
``K x K`` with rows the true class and columns the predicted one: ``C[i, j]`` counts samples of
class ``i`` predicted as ``j``, so ``trace(C) / sum(C)`` is the top-1 accuracy and
``C[i, i] / sum_j C[i, j]`` the accuracy on class ``i``.

>>> confusion_matrix(torch.tensor([0, 1, 1]), torch.tensor([0, 0, 1]), num_classes=2)
tensor([[1, 1],
        [0, 1]])
>>> # class 2 has no samples: it is absent, not NaN
>>> per_class_accuracy(torch.tensor([0, 1, 1]), torch.tensor([0, 0, 1]), num_classes=3)
{0: 50.0, 1: 100.0}
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from kd_core.analysis.errors import AnalysisError
from kd_core.analysis.extraction import (
    Progress,
    dataset_class_names,
    select_indices,
    stream_outputs,
)
from kd_core.analysis.feature_set import FeatureSet
from kd_core.outputs import ModelOutputs

TOP_K = 5


@dataclass(frozen=True)
class EvaluationSummary:
    """Accuracy of one model on ``count`` samples.

    Attributes:
        top1: percentage of samples whose highest logit is the true class.
        top5: percentage whose true class is among the ``top_k`` highest logits.
        top_k: ``min(5, K)``: with five classes or fewer, ``top5`` is 100.
        per_class_accuracy: class index -> percentage correct among that class's samples, for
            the classes that have samples (a class without samples is absent: no NaN).
        confusion: ``K x K`` int64 counts, rows true class, columns predicted class.
        count: number of samples.
        class_names: the ``K`` class names when known.
    """

    top1: float
    top5: float
    top_k: int
    per_class_accuracy: dict[int, float]
    confusion: Tensor
    count: int
    class_names: tuple[str, ...] = ()


def _checked_classes(predictions: Any, labels: Any, num_classes: int) -> tuple[Tensor, Tensor]:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise AnalysisError(f"num_classes must be a positive integer, got {num_classes!r}.")
    checked = []
    for what, values in (("predictions", predictions), ("labels", labels)):
        tensor = torch.as_tensor(values)
        if tensor.dim() != 1 or tensor.is_floating_point() or tensor.dtype == torch.bool:
            raise AnalysisError(
                f"{what} must be a flat integer tensor of class indices, got {tensor.dtype} "
                f"of shape {tuple(tensor.shape)}."
            )
        outside = tensor[(tensor < 0) | (tensor >= num_classes)]
        if outside.numel():
            raise AnalysisError(
                f"{what} holds class {int(outside[0])}, outside 0 to {num_classes - 1}: pass "
                "the class count of the model's output."
            )
        checked.append(tensor.to(torch.int64))
    if len(checked[0]) != len(checked[1]):
        raise AnalysisError(
            f"There are {len(checked[0])} predictions for {len(checked[1])} labels; pass one "
            "prediction per sample."
        )
    return checked[0], checked[1]


def confusion_matrix(predictions: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """``K x K`` int64 counts: ``C[i, j]`` = samples of true class ``i`` predicted as ``j``."""
    predictions, labels = _checked_classes(predictions, labels, num_classes)
    return _confusion(predictions, labels, num_classes)


def _confusion(predictions: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    flat = torch.bincount(labels * num_classes + predictions, minlength=num_classes**2)
    return flat.reshape(num_classes, num_classes)


def _per_class_from_confusion(confusion: Tensor) -> dict[int, float]:
    totals = confusion.sum(dim=1)
    return {
        int(k): 100.0 * int(confusion[k, k]) / int(totals[k]) for k in torch.nonzero(totals)[:, 0]
    }


def per_class_accuracy(predictions: Tensor, labels: Tensor, num_classes: int) -> dict[int, float]:
    """Class index -> percentage of that class's samples predicted correctly, for each class
    with at least one sample; classes without samples are left out (never NaN)."""
    return _per_class_from_confusion(confusion_matrix(predictions, labels, num_classes))


class _Tally:
    """Running confusion matrix and top-k hits over batches of logits."""

    def __init__(self) -> None:
        self.confusion: Tensor | None = None
        self.top_k_hits = 0

    def add(self, logits: Tensor, labels: Tensor) -> None:
        logits, labels = logits.float().cpu(), labels.cpu()
        num_classes = logits.shape[1]
        predictions, labels = _checked_classes(logits.argmax(dim=1), labels, num_classes)
        batch = _confusion(predictions, labels, num_classes)
        self.confusion = batch if self.confusion is None else self.confusion + batch
        top = logits.topk(min(TOP_K, num_classes), dim=1).indices
        self.top_k_hits += int(top.eq(labels[:, None]).any(dim=1).sum())

    def summary(self, class_names: Sequence[str]) -> EvaluationSummary:
        count = 0 if self.confusion is None else int(self.confusion.sum())
        if self.confusion is None or count == 0:
            raise AnalysisError("No samples were evaluated; select at least one sample.")
        return EvaluationSummary(
            top1=100.0 * int(self.confusion.trace()) / count,
            top5=100.0 * self.top_k_hits / count,
            top_k=min(TOP_K, self.confusion.shape[0]),
            per_class_accuracy=_per_class_from_confusion(self.confusion),
            confusion=self.confusion,
            count=count,
            class_names=tuple(class_names),
        )


def evaluation_summary(feature_set: FeatureSet) -> EvaluationSummary:
    """Top-1, top-5, per-class accuracy and confusion matrix from a feature set's logits."""
    tally = _Tally()
    if len(feature_set):
        tally.add(feature_set.logits, feature_set.labels)
    return tally.summary(feature_set.class_names)


def evaluate_model(
    model: nn.Module,
    dataset: Any,
    *,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    progress: Progress | None = None,
) -> EvaluationSummary:
    """The :class:`EvaluationSummary` of ``model`` on every sample of ``dataset``, streamed:
    only running counts are kept, never the logits or features (any dataset size).

    The model runs in eval mode without gradients and is left as it was. Raises
    :class:`AnalysisError` for an empty dataset, a class-count mismatch or a model that fails
    on the images.
    """
    tally = _Tally()

    def count(outputs: ModelOutputs, labels: Tensor) -> None:
        tally.add(outputs.logits, labels)

    stream_outputs(
        model,
        dataset,
        select_indices(len(dataset)),
        count,
        name=f"The model ({type(model).__name__})",
        with_stages=False,
        batch_size=batch_size,
        device=device,
        progress=progress,
    )
    return tally.summary(dataset_class_names(dataset))
