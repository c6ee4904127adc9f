r"""What a student took from its teacher, in four numbers: the measures that test AMD's claim
(Jeon et al. 2023, arXiv 2302.14130) that it transfers the teacher's discrimination of object
and background, computed by the same functions the pages call.

For one stage pair (the deepest by default) and the same samples:

* ``attention_cosine``: mean over samples of :math:`\cos(q_s, q_t)`, the cosine of the
  student's and the teacher's AMD attention maps (:func:`~kd_core.analysis.agreement.compare_maps`,
  as on the Attention page);
* ``mass_inside``: mean share of the student's attention map inside the object mask
  (:func:`~kd_core.analysis.agreement.compare_with_mask`); the object's area share is the
  chance level;
* ``separation``: how far apart the student's angles :math:`\theta` of object and background
  positions lie, :math:`(\bar\theta_{neg} - \bar\theta_{pos}) / \sigma_{pooled}`, with positions
  split by the object mask (:func:`~kd_core.analysis.angular.angular_report`, ``split="mask"``);
* ``theta_distance_deg``: the Wasserstein-1 distance, in degrees, between the student's and the
  teacher's :math:`\theta` distributions on those positions.

Datasets without masks get ``None`` for the two mask measures and use the teacher's top 20% as
positives for the angular ones. Example::

    teacher_fs = extract_feature_set(teacher, test_set, name="teacher", arch="resnet20")
    student_fs = extract_feature_set(student, test_set, name="AMD", arch="resnet8")
    transfer_measures(teacher_fs, student_fs).as_dict()
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from kd_core.analysis.agreement import compare_maps, compare_with_mask
from kd_core.analysis.angular import ALL_CLASSES, angular_report
from kd_core.analysis.errors import AnalysisError
from kd_core.analysis.feature_set import FeatureSet, paired_stages


@dataclass(frozen=True)
class TransferMeasures:
    """The four measures of one student against its teacher at one stage pair (see the module
    docstring); ``mass_inside`` and ``teacher_mass_inside`` are ``None`` without masks."""

    stage: str
    teacher_stage: str
    attention_cosine: float
    mass_inside: float | None
    teacher_mass_inside: float | None
    separation: float
    teacher_separation: float
    theta_distance_deg: float
    split: str

    def as_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


def transfer_measures(
    teacher: FeatureSet, student: FeatureSet, *, stage: str | None = None
) -> TransferMeasures:
    """The measures for the student's ``stage`` (its deepest paired stage by default) and the
    teacher stage it pairs with.

    Raises:
        AnalysisError: no stage pairs, an unknown ``stage``, or feature sets of different
            samples (see :func:`~kd_core.analysis.angular.stage_angles`).
    """
    pairs = {s: t for t, s in paired_stages(teacher, student)}
    if not pairs:
        raise AnalysisError(f"{student.name} and {teacher.name} have no stage to compare.")
    stage = list(pairs)[-1] if stage is None else stage
    if stage not in pairs:
        raise AnalysisError(
            f"{student.name} has no stage {stage!r} paired with the teacher; choose one of "
            f"{', '.join(pairs)}."
        )
    teacher_stage = pairs[stage]
    has_masks = teacher.masks is not None and student.masks is not None
    split = "mask" if has_masks else "teacher_topk"
    rows = angular_report(teacher, [student], split=split, per_class=False)
    # The report lists the teacher's row of a stage first, then the student's.
    teacher_row, student_row = (
        row for row in rows if row.teacher_stage == teacher_stage and row.class_name == ALL_CLASSES
    )
    cosine = compare_maps(teacher.attention[teacher_stage], student.attention[stage]).cosine
    mass = teacher_mass = None
    if has_masks:
        mass = float(compare_with_mask(student.attention[stage], student.masks).mass_inside.mean())
        teacher_mass = float(
            compare_with_mask(teacher.attention[teacher_stage], teacher.masks).mass_inside.mean()
        )
    return TransferMeasures(
        stage=stage,
        teacher_stage=teacher_stage,
        attention_cosine=float(cosine.mean()),
        mass_inside=mass,
        teacher_mass_inside=teacher_mass,
        separation=student_row.separation,
        teacher_separation=teacher_row.separation,
        theta_distance_deg=student_row.wasserstein_deg,
        split=split,
    )
