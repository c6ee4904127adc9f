"""What one model produced on a set of samples: the common input of every analysis.

A :class:`FeatureSet` holds CPU tensors for ``N`` samples of one dataset split, in the same
order for the teacher and each student, so sample ``i`` of one model is sample ``i`` of the
other. Stages are listed shallow to deep under the model's own names; models with different
stage names (``layer1`` vs ``block1``) are paired by depth with :func:`paired_stages`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor

from kd_core.analysis.errors import AnalysisError


@dataclass(frozen=True)
class FeatureSet:
    """Outputs of one model on ``N`` samples (CPU tensors).

    Attributes:
        name: display name, e.g. ``"teacher (resnet20)"``.
        arch: registry name of the architecture.
        indices: ``N`` int64, the samples' indices in the dataset split.
        labels: ``N`` int64 true classes.
        logits: ``N x K`` float32.
        pooled: ``N x D`` float32, the penultimate (pooled) feature.
        attention: stage name -> ``N x H x W`` float32 attention map ``q`` of AMD (unit L2
            norm per sample), shallow to deep.
        stages: stage name -> raw ``N x C x H x W`` features (float16), only when asked for
            (CKA); empty otherwise.
        masks: ``N x H0 x W0`` bool object masks at input resolution (``shapes``), or None.
        class_names: names of the ``K`` classes when the dataset has them.
    """

    name: str
    arch: str
    indices: Tensor
    labels: Tensor
    logits: Tensor
    pooled: Tensor
    attention: dict[str, Tensor]
    stages: dict[str, Tensor] = field(default_factory=dict)
    masks: Tensor | None = None
    class_names: tuple[str, ...] = ()

    @property
    def predictions(self) -> Tensor:
        """``N`` int64 predicted classes (argmax of the logits)."""
        return self.logits.argmax(dim=1)

    @property
    def correct(self) -> Tensor:
        """``N`` bool, whether each prediction is right."""
        return self.predictions == self.labels

    @property
    def stage_names(self) -> list[str]:
        """Stage names, shallow to deep."""
        return list(self.attention)

    def __len__(self) -> int:
        return int(self.labels.numel())


def paired_stages(teacher: FeatureSet, student: FeatureSet) -> list[tuple[str, str]]:
    """``(teacher stage, student stage)`` pairs, matched by depth from the deepest stage.

    With equal stage counts this pairs them in order; otherwise the deepest ``k`` stages of
    the model with more stages pair with all ``k`` of the other (the usual choice in
    distillation code, where the last stages carry the class information).
    """
    t_names, s_names = teacher.stage_names, student.stage_names
    if not t_names or not s_names:
        raise AnalysisError(
            f"{teacher.name if not t_names else student.name} has no stage features; "
            "extract features with at least one stage."
        )
    k = min(len(t_names), len(s_names))
    return list(zip(t_names[-k:], s_names[-k:], strict=True))


def check_same_samples(teacher: FeatureSet, student: FeatureSet) -> None:
    """Raise :class:`AnalysisError` unless both sets hold the same samples in the same order."""
    if len(teacher) != len(student) or not bool((teacher.indices == student.indices).all()):
        raise AnalysisError(
            f"{teacher.name} and {student.name} were computed on different samples; extract "
            "both from the same dataset split and sample selection."
        )
