r"""Angular distributions of AMD attention maps: what the loss sees, split into the positions
the teacher attends (positive) and the rest (negative), and how far each student is from it.

Every entry of an attention map ``q`` (unit L2 norm per sample, see
:func:`kd_core.losses.amd.attention_map`) is the cosine of an angle :math:`\theta \in [0°, 90°]`
between the attention vector and one position axis of the hypersphere. All terms come from
:func:`kd_core.losses.amd.angular_terms`, the function the loss itself uses:

.. math::

    \theta = \arccos q, \quad \mathrm{pos} = s\cos(m\theta), \quad \mathrm{neg} = s(1 - q),
    \quad \mathrm{attentive} = -\operatorname{softplus}(\mathrm{neg} - \mathrm{pos})

(including the loss's clamp of ``q`` to ``1 - 1e-7``, so ``q = 1`` reads as 0.026°, not 0°).

Positive positions are always defined by the **teacher** (per sample), and the same positions
are used for every student, so the students are compared on the teacher's terms:

* ``"teacher_topk"``: the ``round(fraction * H * W)`` positions with the largest teacher ``q``
  (ties broken by position order);
* ``"teacher_quantile"``: positions whose teacher ``q`` is strictly above the sample's
  ``1 - fraction`` quantile (linear interpolation); ties can make the count differ from top-k,
  and a flat map has no position above its quantile;
* ``"mask"`` (datasets with object masks, e.g. ``shapes``): positions whose cell lies at least
  half inside the object: the input-resolution mask, as floats, adaptive-average-pooled to the
  stage's ``H x W`` gives each cell's object area fraction, and cells with fraction >= 0.5 are
  positive.

A student map of another size is resized to the teacher's ``H x W`` (bilinear) and
re-normalised to unit L2 norm, as the loss normalises, before its angles are taken.

Example::

    rows = angular_report(teacher, [student], split="mask")
    pandas.DataFrame([dataclasses.asdict(row) for row in rows])   # one row per model/stage/class
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from kd_core.analysis.errors import AnalysisError
from kd_core.analysis.feature_set import FeatureSet, check_same_samples, paired_stages
from kd_core.losses.amd import (
    DEFAULT_MARGIN,
    DEFAULT_SCALE,
    NORM_EPS,
    AngularMaps,
    angular_terms,
)

SPLITS = ("teacher_topk", "teacher_quantile", "mask")
"""How positive positions are chosen (see the module docstring)."""
DEFAULT_FRACTION = 0.2
"""Share of each teacher map counted positive by the ``teacher_*`` splits."""
MASK_AREA_THRESHOLD = 0.5
"""A cell is positive for the ``mask`` split when at least this share of it is object."""
THETA_BIN_EDGES = np.linspace(0.0, 90.0, 181)
"""Histogram bins of theta: 180 bins of 0.5° from 0° to 90° (the last bin includes 90°). Half
a degree, because large maps put nearly every angle between 85° and 90° (a uniform 32 x 32
map sits at arccos(1/32) = 88.2°)."""
ALL_CLASSES = "all"
"""``class_name`` of the summary rows over all selected samples."""


@dataclass(frozen=True)
class SplitAngles:
    """One model's AMD terms at one stage, on the teacher's grid, with the teacher's split.

    Attributes:
        model: the model's display name.
        stage: the model's own stage name.
        teacher_stage: the teacher stage it is compared with (its own stage for the teacher).
        maps: :class:`~kd_core.losses.amd.AngularMaps`, each ``N x H x W`` float64
            (``theta`` in radians, as the loss has it).
        positive: ``N x H x W`` bool, the teacher-defined positive positions.
        labels: ``N`` int64 true classes.
        class_names: names of the classes, or ``()``.
    """

    model: str
    stage: str
    teacher_stage: str
    maps: AngularMaps
    positive: Tensor
    labels: Tensor
    class_names: tuple[str, ...] = ()

    @cached_property
    def theta_deg(self) -> Tensor:
        """``N x H x W`` angles in degrees (computed once)."""
        return torch.rad2deg(self.maps.theta)

    @cached_property
    def _sorted_cache(self) -> dict[bytes, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        return {}

    def sorted_theta(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Angles (degrees) of the positive, the negative and all positions of the samples
        ``rows`` (int indices), each sorted; cached per selection, so the teacher's are sorted
        once for all students."""
        key = rows.tobytes()
        if key not in self._sorted_cache:
            theta = self.theta_deg.numpy().reshape(len(self.labels), -1)[rows]
            positive = self.positive.numpy().reshape(len(self.labels), -1)[rows]
            pos, neg = np.sort(theta[positive]), np.sort(theta[~positive])
            # Two sorted runs: the stable sort (timsort) merges them in linear time.
            every = np.sort(np.concatenate((pos, neg)), kind="stable")
            self._sorted_cache[key] = (pos, neg, every)
        return self._sorted_cache[key]

    def theta_pos(self) -> np.ndarray:
        """Angles (degrees) of all positive positions of all samples, flattened."""
        return self.theta_deg[self.positive].numpy()

    def theta_neg(self) -> np.ndarray:
        """Angles (degrees) of all negative positions of all samples, flattened."""
        return self.theta_deg[~self.positive].numpy()


@dataclass(frozen=True)
class AngularSummary:
    """One table row: a model at one stage pair, over all samples or one class.

    Attributes:
        model, stage, teacher_stage: which map (the teacher's rows compare it with itself).
        class_name: :data:`ALL_CLASSES` or one class.
        samples, positives, negatives: how many samples and positions the row covers.
        mean_theta_pos, mean_theta_neg: mean angle (degrees) of positive / negative positions.
        separation: ``(mean_theta_neg - mean_theta_pos) / pooled std`` (see :func:`separation`).
        overlap: overlap coefficient of the two theta histograms (see :func:`overlap`), 0 to 1.
        pos_counted_positive: share of positive positions with ``pos > neg``, i.e. that the
            loss with this margin also counts positive.
        wasserstein_deg: 1-D Wasserstein distance (degrees, the mean shift needed to turn
            one distribution into the other) between the teacher's and this model's theta over
            all positions; ``wasserstein_pos_deg`` / ``wasserstein_neg_deg``
            over positive / negative positions only.
        mean_cosine: mean over samples of the cosine between the teacher's and this model's
            ``q`` maps (1 for identical maps).
    """

    model: str
    stage: str
    teacher_stage: str
    class_name: str
    samples: int
    positives: int
    negatives: int
    mean_theta_pos: float
    mean_theta_neg: float
    separation: float
    overlap: float
    pos_counted_positive: float
    wasserstein_deg: float
    wasserstein_pos_deg: float
    wasserstein_neg_deg: float
    mean_cosine: float


def separation(low: np.ndarray, high: np.ndarray) -> float:
    r"""Standardised mean difference :math:`(\bar h - \bar l) / \sigma_p` of two samples.

    :math:`\sigma_p = \sqrt{(n_l \sigma_l^2 + n_h \sigma_h^2) / (n_l + n_h)}`, with population
    variances (ddof 0). Positive when ``high`` is larger on average; ``inf`` (with the sign of
    the difference) when both samples are constant and differ, 0 when they are constant and
    equal.

    >>> separation(np.array([0.0, 2.0]), np.array([4.0, 6.0]))
    4.0
    """
    low, high = np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)
    difference = float(high.mean() - low.mean())
    pooled_var = (low.size * low.var() + high.size * high.var()) / (low.size + high.size)
    if low.size and high.size and low.min() == low.max() and high.min() == high.max():
        # Both constant: the mean of n copies of c can round away from c (and the variance
        # away from 0), which would turn equal constants into a separation of about +-1.
        difference, pooled_var = float(high[0] - low[0]), 0.0
    pooled_std = math.sqrt(float(pooled_var))
    if pooled_std == 0.0:
        return 0.0 if difference == 0.0 else math.copysign(math.inf, difference)
    return difference / pooled_std


def theta_histogram(theta_deg: np.ndarray) -> np.ndarray:
    """Share of the angles in each bin of :data:`THETA_BIN_EDGES` (sums to 1; 180 values)."""
    theta_deg = np.asarray(theta_deg, dtype=np.float64).ravel()
    if theta_deg.size == 0:
        raise AnalysisError("A theta histogram needs at least one angle; select more samples.")
    counts, _ = np.histogram(theta_deg, bins=len(THETA_BIN_EDGES) - 1, range=(0.0, 90.0))
    return counts / theta_deg.size


def overlap(first: np.ndarray, second: np.ndarray) -> float:
    r"""Overlap coefficient :math:`\mathrm{OVL} = \sum_i \min(p_i, q_i)` of two theta
    distributions, from their 0.5° histograms on 0°-90° (:func:`theta_histogram`).

    1 for identical histograms, 0 when no bin holds angles from both.
    """
    return float(np.minimum(theta_histogram(first), theta_histogram(second)).sum())


def _wasserstein(first: np.ndarray, second: np.ndarray) -> float:
    r"""1-D Wasserstein distance of two equally sized samples, each given **sorted**:
    :math:`W_1 = \frac1n \sum_i |a_{(i)} - b_{(i)}|` (the distance between their quantile
    functions, in the values' unit). The teacher and a student always have the same number of
    positions here, so no interpolation of the CDFs is needed."""
    if first.size != second.size:
        raise ValueError(f"sizes differ: {first.size} and {second.size}")
    return float(np.abs(first - second).mean())


def _require_finite(tensor: Tensor, what: str) -> None:
    if not bool(torch.isfinite(tensor).all()):
        raise AnalysisError(
            f"{what} contains NaN or infinite values; re-extract the features (a diverged "
            "model gives such values) or deselect it."
        )


def _require_fraction(fraction: float) -> float:
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)):
        raise AnalysisError(f"fraction must be a number between 0 and 1, got {fraction!r}.")
    if not 0.0 < float(fraction) < 1.0:
        raise AnalysisError(
            f"fraction must be strictly between 0 and 1 (the share of each teacher map counted "
            f"positive), got {fraction}; the usual value is {DEFAULT_FRACTION}."
        )
    return float(fraction)


def _stage_map(features: FeatureSet, stage: str) -> Tensor:
    """The model's ``N x H x W`` attention map at ``stage``, as float64, checked."""
    if len(features) == 0:
        raise AnalysisError("No samples are selected: select at least one sample.")
    if stage not in features.attention:
        raise AnalysisError(
            f"{features.name} has no stage {stage!r}; its stages are {features.stage_names}."
        )
    q = features.attention[stage]
    _require_finite(q, f"The attention map of {features.name} at {stage}")
    return q.to(torch.float64)


def _terms(q: Tensor, margin: float, scale: float) -> AngularMaps:
    """:func:`~kd_core.losses.amd.angular_terms`, its ``ValueError`` worded as an
    :class:`AnalysisError`."""
    try:
        return angular_terms(q, margin=margin, scale=scale)
    except ValueError as exc:
        raise AnalysisError(str(exc)) from None


def _on_grid(q: Tensor, size: tuple[int, int]) -> Tensor:
    """``q`` resized to ``size`` (bilinear) and re-normalised like the loss's ``q``."""
    if tuple(q.shape[-2:]) == size:
        return q
    resized = F.interpolate(q[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
    norm = torch.linalg.vector_norm(resized.flatten(1), dim=1)
    return resized / (norm + NORM_EPS)[:, None, None]


def positive_positions(
    teacher: FeatureSet,
    stage: str,
    *,
    split: str = "teacher_topk",
    fraction: float = DEFAULT_FRACTION,
) -> Tensor:
    """``N x H x W`` bool: the teacher-defined positive positions of ``stage``.

    See the module docstring for the three splits. ``fraction`` is used by the ``teacher_*``
    splits only, but must always lie in ``(0, 1)``.

    Raises:
        AnalysisError: for an unknown split or stage, a fraction outside ``(0, 1)``, a top-k
            count of 0 or of every position, or the mask split without masks.
    """
    fraction = _require_fraction(fraction)
    q = _stage_map(teacher, stage)
    count, height, width = q.shape
    positions = height * width
    if split == "teacher_topk":
        k = round(fraction * positions)
        if not 0 < k < positions:
            raise AnalysisError(
                f"The top {fraction:.0%} of the {positions} positions of {stage} is {k} "
                f"position(s), which leaves one side empty; choose a fraction between "
                f"{1 / positions:.3g} and {1 - 1 / positions:.3g}, or a larger stage."
            )
        order = torch.argsort(q.flatten(1), dim=1, descending=True, stable=True)
        flat = torch.zeros(count, positions, dtype=torch.bool)
        flat.scatter_(1, order[:, :k], True)
        return flat.view(count, height, width)
    if split == "teacher_quantile":
        threshold = torch.quantile(q.flatten(1), 1.0 - fraction, dim=1)
        return q > threshold[:, None, None]
    if split == "mask":
        if teacher.masks is None:
            raise AnalysisError(
                f"The mask split needs object masks, and {teacher.name} has none (only "
                "datasets such as shapes provide them); choose split='teacher_topk'."
            )
        if teacher.masks.shape[0] != count:
            raise AnalysisError(
                f"{teacher.name} has {teacher.masks.shape[0]} masks for {count} samples; "
                "extract the masks with the same sample selection."
            )
        area = F.adaptive_avg_pool2d(teacher.masks.to(torch.float64)[:, None], (height, width))
        return area[:, 0] >= MASK_AREA_THRESHOLD
    raise AnalysisError(f"Unknown split {split!r}; choose one of {', '.join(SPLITS)}.")


def stage_angles(
    teacher: FeatureSet,
    students: Sequence[FeatureSet],
    teacher_stage: str,
    *,
    margin: float = DEFAULT_MARGIN,
    scale: float = DEFAULT_SCALE,
    split: str = "teacher_topk",
    fraction: float = DEFAULT_FRACTION,
) -> list[SplitAngles]:
    """The teacher at ``teacher_stage``, then each student at its paired stage
    (:func:`~kd_core.analysis.feature_set.paired_stages`; students with no stage paired to
    ``teacher_stage`` are left out), all on the teacher's grid with the teacher's positives.

    Raises:
        AnalysisError: for different samples, NaN maps, bad margin/scale or any error of
            :func:`positive_positions`.
    """
    positive = positive_positions(teacher, teacher_stage, split=split, fraction=fraction)
    size = tuple(positive.shape[-2:])
    models = [(teacher, teacher_stage)]
    for student in students:
        check_same_samples(teacher, student)
        models += [(student, s) for t, s in paired_stages(teacher, student) if t == teacher_stage]
    return [
        SplitAngles(
            model=features.name,
            stage=stage,
            teacher_stage=teacher_stage,
            maps=_terms(_on_grid(_stage_map(features, stage), size), margin, scale),
            positive=positive,
            labels=teacher.labels,
            class_names=teacher.class_names,
        )
        for features, stage in models
    ]


def _summary(
    reference: SplitAngles, angles: SplitAngles, rows: np.ndarray, name: str, cosines: Tensor
) -> AngularSummary:
    """The :class:`AngularSummary` of ``angles`` against ``reference`` on the samples ``rows``
    (``cosines``: each sample's cosine between the two ``q`` maps)."""
    pos, neg, every = angles.sorted_theta(rows)
    if pos.size == 0 or neg.size == 0:
        side = "positive" if pos.size == 0 else "negative"
        samples = "selected samples" if name == ALL_CLASSES else f"samples of class {name!r}"
        raise AnalysisError(
            f"At {angles.teacher_stage}, the {samples} have no {side} position, so positive "
            "and negative angles cannot be compared; use a larger stage, another split, a "
            "fraction nearer 0.5, or select more samples."
        )
    ref_pos, ref_neg, ref_every = reference.sorted_theta(rows)
    count = len(angles.labels)
    positive = angles.positive.numpy().reshape(count, -1)[rows]
    pos_term = angles.maps.pos.numpy().reshape(count, -1)[rows][positive]
    neg_term = angles.maps.neg.numpy().reshape(count, -1)[rows][positive]
    return AngularSummary(
        model=angles.model,
        stage=angles.stage,
        teacher_stage=angles.teacher_stage,
        class_name=name,
        samples=len(rows),
        positives=pos.size,
        negatives=neg.size,
        mean_theta_pos=float(pos.mean()),
        mean_theta_neg=float(neg.mean()),
        separation=separation(pos, neg),
        overlap=overlap(pos, neg),
        pos_counted_positive=float((pos_term > neg_term).mean()),
        wasserstein_deg=_wasserstein(every, ref_every),
        wasserstein_pos_deg=_wasserstein(pos, ref_pos),
        wasserstein_neg_deg=_wasserstein(neg, ref_neg),
        mean_cosine=float(cosines[torch.from_numpy(rows)].mean()),
    )


def summarise(
    reference: SplitAngles, angles: SplitAngles, *, per_class: bool = True
) -> list[AngularSummary]:
    """Summary rows of ``angles`` against the teacher's ``reference``: all samples, then one
    row per class present (in label order) when ``per_class``."""
    labels = angles.labels
    q, q_reference = angles.maps.q.flatten(1), reference.maps.q.flatten(1)
    # The default eps (1e-8) would bend the cosine of maps with a norm below 1e-8 (stage
    # features of about 1e-7); two all-zero maps are identical: cosine 1, as in agreement.
    cosines = F.cosine_similarity(q, q_reference, dim=1, eps=torch.finfo(q.dtype).tiny)
    cosines = torch.where(q.any(dim=1) | q_reference.any(dim=1), cosines, 1.0)
    rows = [_summary(reference, angles, np.arange(len(labels)), ALL_CLASSES, cosines)]
    if per_class:
        for label in torch.unique(labels).tolist():
            names = angles.class_names
            name = names[label] if 0 <= label < len(names) else str(label)
            members = (labels == label).nonzero().squeeze(1).numpy()
            rows.append(_summary(reference, angles, members, name, cosines))
    return rows


def angular_report(
    teacher: FeatureSet,
    students: Sequence[FeatureSet],
    *,
    margin: float = DEFAULT_MARGIN,
    scale: float = DEFAULT_SCALE,
    split: str = "teacher_topk",
    fraction: float = DEFAULT_FRACTION,
    per_class: bool = True,
) -> list[AngularSummary]:
    """Every summary, per teacher stage that any student pairs with (every teacher stage when
    there is no student), shallow to deep: the teacher's rows (compared with itself:
    Wasserstein 0, cosine 1), then each student's.

    Example::

        rows = angular_report(teacher, students, split="teacher_topk", fraction=0.2)
        [(r.model, r.stage, r.separation) for r in rows if r.class_name == ALL_CLASSES]

    Raises:
        AnalysisError: see :func:`stage_angles`; also when a class has no positive or no
            negative position (with ``per_class``).
    """
    paired = {t for student in students for t, _ in paired_stages(teacher, student)}
    stages = [s for s in teacher.stage_names if s in paired or not students]
    if not stages:
        raise AnalysisError(
            f"{teacher.name} has no stage features; extract features with at least one stage."
        )
    rows: list[AngularSummary] = []
    for teacher_stage in stages:
        angles = stage_angles(
            teacher, students, teacher_stage,
            margin=margin, scale=scale, split=split, fraction=fraction,
        )  # fmt: skip
        for model_angles in angles:
            rows += summarise(angles[0], model_angles, per_class=per_class)
    return rows
