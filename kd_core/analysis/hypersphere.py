r"""Pooled features on the unit hypersphere: how tightly each class gathers around its mean
direction, and how far apart the classes are, measured in angles.

Each sample's pooled feature ``z`` is L2-normalised, :math:`u = z / \lVert z \rVert`, so only its
direction counts (as for the angular losses). The angle between two unit vectors is computed
as :math:`2 \operatorname{atan2}(\lVert u - v \rVert, \lVert u + v \rVert)`, which equals
:math:`\arccos(u \cdot v)` but stays accurate near 0° and 180°.

* :func:`class_angles`: each sample's angle to its class's mean direction
  :math:`\mu_c = \sum_{i \in c} u_i / \lVert \sum_{i \in c} u_i \rVert`;
* :func:`pair_angles`: angles between pairs of samples of the same class (intra) and of
  different classes (inter). With ``N`` samples there are ``N (N - 1) / 2`` pairs; above
  ``max_pairs`` (default :data:`MAX_PAIRS`) a uniform random subset of that many pairs is
  drawn without replacement with a fixed seed, so the result is reproducible; the subset is
  then split into intra and inter pairs (about ``1 / K`` of them intra for ``K`` balanced
  classes);
* :func:`sphere_projection`: a 3-D *view* of the unit vectors on :math:`S^2`: centred, projected
  on their first three principal components, then re-normalised to unit length. It is not an
  isometry: angles on the view differ from the angles above, which are always computed in the
  full feature space.

Samples whose pooled feature is all zero have no direction: every function raises an
:class:`~kd_core.analysis.errors.AnalysisError` naming them (by dataset index), rather than
silently dropping them, so that every output stays aligned with the selected samples.

Example::

    hypersphere_summary(teacher)     # mean intra / inter angle and their separation
    points = sphere_projection(teacher)   # N x 3, unit rows, for hypersphere_figure
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from kd_core.analysis.angular import separation
from kd_core.analysis.errors import AnalysisError
from kd_core.analysis.feature_set import FeatureSet

MAX_PAIRS = 20_000
"""Most pairs compared by :func:`pair_angles` (a seeded uniform subset beyond that)."""
MIN_SAMPLES = 3
"""Fewest samples the hypersphere views accept."""
_CHUNK = 2048
"""Pairs per batch when computing angles (bounds memory for wide features)."""
_ZERO = 1e-12
"""Norms at or below this count as zero."""


@dataclass(frozen=True)
class ClassAngles:
    """Each sample's angle to its class's mean direction, for one model.

    Attributes:
        model: the model's display name.
        labels: ``N`` int64 true classes.
        angles_deg: ``N`` float64 angles in degrees, in ``[0, 180]``.
        class_names: names of the classes, or ``()``.
    """

    model: str
    labels: Tensor
    angles_deg: np.ndarray
    class_names: tuple[str, ...] = ()


@dataclass(frozen=True)
class PairAngles:
    """Angles (degrees) between pairs of samples of one model.

    Attributes:
        model: the model's display name.
        intra_deg: angles between samples of the same class.
        inter_deg: angles between samples of different classes.
        pairs_total: ``N (N - 1) / 2``, the number of pairs before subsampling.
    """

    model: str
    intra_deg: np.ndarray
    inter_deg: np.ndarray
    pairs_total: int


@dataclass(frozen=True)
class HypersphereSummary:
    """One table row: a model's class geometry on the hypersphere.

    Attributes:
        model: the model's display name.
        samples: how many samples.
        mean_class_angle_deg: mean angle of a sample to its class's mean direction.
        mean_intra_deg, mean_inter_deg: mean intra- and inter-class pair angles.
        separation: ``(mean_inter - mean_intra) / pooled std``
            (:func:`~kd_core.analysis.angular.separation`); larger means better separated
            classes.
        intra_pairs, inter_pairs: how many pairs each mean is over.
    """

    model: str
    samples: int
    mean_class_angle_deg: float
    mean_intra_deg: float
    mean_inter_deg: float
    separation: float
    intra_pairs: int
    inter_pairs: int


def unit_features(features: FeatureSet) -> Tensor:
    """``N x D`` float64 L2-normalised pooled features.

    Raises:
        AnalysisError: with fewer than :data:`MIN_SAMPLES` samples, NaN or infinite values, or
            all-zero features (named by dataset index).
    """
    pooled = features.pooled.to(torch.float64)
    if pooled.shape[0] < MIN_SAMPLES:
        raise AnalysisError(
            f"The hypersphere views need at least {MIN_SAMPLES} samples, got "
            f"{pooled.shape[0]}; select more samples."
        )
    if not bool(torch.isfinite(pooled).all()):
        raise AnalysisError(
            f"The pooled features of {features.name} contain NaN or infinite values; "
            "re-extract the features (a diverged model gives such values)."
        )
    norms = torch.linalg.vector_norm(pooled, dim=1)
    zero = norms <= _ZERO
    if bool(zero.any()):
        indices = features.indices[zero].tolist()
        shown = ", ".join(str(i) for i in indices[:10]) + (", ..." if len(indices) > 10 else "")
        raise AnalysisError(
            f"{len(indices)} sample(s) of {features.name} have an all-zero pooled feature, "
            f"which has no direction (dataset indices {shown}); deselect them."
        )
    return pooled / norms[:, None]


def _angles_deg(u: Tensor, v: Tensor) -> np.ndarray:
    """Row-wise angles (degrees) between unit vectors: ``2 atan2(|u - v|, |u + v|)``."""
    apart = torch.linalg.vector_norm(u - v, dim=1)
    along = torch.linalg.vector_norm(u + v, dim=1)
    return torch.rad2deg(2.0 * torch.atan2(apart, along)).numpy()


def class_angles(features: FeatureSet) -> ClassAngles:
    """Each sample's angle (degrees) to the mean direction of its true class.

    Raises:
        AnalysisError: see :func:`unit_features`; also when a class's unit vectors sum to
            zero (no mean direction).
    """
    u = unit_features(features)
    labels = features.labels
    sums = torch.zeros(int(labels.max()) + 1, u.shape[1], dtype=u.dtype).index_add_(0, labels, u)
    norms = torch.linalg.vector_norm(sums, dim=1)
    cancelled = [c for c in torch.unique(labels).tolist() if float(norms[c]) <= _ZERO]
    if cancelled:
        raise AnalysisError(
            f"The unit features of class(es) {cancelled} of {features.name} cancel out, so "
            "they have no mean direction; select more samples of those classes."
        )
    means = sums / norms.clamp_min(_ZERO)[:, None]
    return ClassAngles(
        model=features.name,
        labels=labels,
        angles_deg=_angles_deg(u, means[labels]),
        class_names=features.class_names,
    )


def _pairs(count: int, max_pairs: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Pairs ``i < j``: all of them in row-major order, or a sorted seeded uniform subset of
    ``max_pairs`` (linear index ``k`` of the upper triangle mapped back to ``(i, j)``)."""
    total = count * (count - 1) // 2
    if total <= max_pairs:
        linear = np.arange(total)
    else:
        linear = np.sort(np.random.default_rng(seed).choice(total, size=max_pairs, replace=False))
    rows = np.arange(count)
    starts = rows * (2 * count - rows - 1) // 2  # linear index of the pair (i, i + 1)
    i = np.searchsorted(starts, linear, side="right") - 1
    return i, linear - starts[i] + i + 1


def pair_angles(features: FeatureSet, *, max_pairs: int = MAX_PAIRS, seed: int = 0) -> PairAngles:
    """Intra- and inter-class pair angles (degrees), over at most ``max_pairs`` pairs.

    Raises:
        AnalysisError: see :func:`unit_features`; also for fewer than two classes, or when no
            compared pair shares a class.
    """
    u = unit_features(features)
    labels = features.labels
    present = torch.unique(labels).tolist()
    if len(present) < 2:
        names = features.class_names
        name = names[present[0]] if present[0] < len(names) else str(present[0])
        raise AnalysisError(
            f"Intra- vs inter-class angles compare pairs within a class with pairs across "
            f"classes, and the selection has only class {name!r}; select samples of at "
            "least two classes."
        )
    if isinstance(max_pairs, bool) or not isinstance(max_pairs, int) or max_pairs < 1:
        raise AnalysisError(f"max_pairs must be a positive integer, got {max_pairs!r}.")
    i, j = _pairs(len(u), max_pairs, seed)
    angles = np.concatenate(
        [
            _angles_deg(u[i[start : start + _CHUNK]], u[j[start : start + _CHUNK]])
            for start in range(0, len(i), _CHUNK)
        ]
    )
    same = (labels[i] == labels[j]).numpy()
    if not same.any():
        raise AnalysisError(
            f"No two compared samples of {features.name} share a class ({len(i)} pairs); "
            "select several samples per class (or raise max_pairs)."
        )
    return PairAngles(
        model=features.name,
        intra_deg=angles[same],
        inter_deg=angles[~same],
        pairs_total=len(u) * (len(u) - 1) // 2,
    )


def hypersphere_summary(
    features: FeatureSet, *, max_pairs: int = MAX_PAIRS, seed: int = 0
) -> HypersphereSummary:
    """Mean angle to the class mean, mean intra/inter pair angles and their separation."""
    pairs = pair_angles(features, max_pairs=max_pairs, seed=seed)
    return HypersphereSummary(
        model=features.name,
        samples=len(features),
        mean_class_angle_deg=float(class_angles(features).angles_deg.mean()),
        mean_intra_deg=float(pairs.intra_deg.mean()),
        mean_inter_deg=float(pairs.inter_deg.mean()),
        separation=separation(pairs.intra_deg, pairs.inter_deg),
        intra_pairs=int(pairs.intra_deg.size),
        inter_pairs=int(pairs.inter_deg.size),
    )


def sphere_projection(features: FeatureSet) -> np.ndarray:
    """``N x 3`` points on the unit sphere :math:`S^2`: a view of the unit features.

    The unit vectors are centred, projected on their first three principal components (signs
    fixed so each component's largest loading is positive; zero-padded when fewer than three
    exist) and re-normalised to unit length. A view, not an isometry.

    Raises:
        AnalysisError: see :func:`unit_features`; also when a sample projects onto the centre
            (it has no direction on the view).
    """
    u = unit_features(features).numpy()
    centred = u - u.mean(axis=0)
    _, _, components = np.linalg.svd(centred, full_matrices=False)
    components = components[:3]
    largest = np.argmax(np.abs(components), axis=1)
    components *= np.sign(components[np.arange(len(components)), largest])[:, None]
    points = np.zeros((len(u), 3))
    points[:, : len(components)] = centred @ components.T
    norms = np.linalg.norm(points, axis=1)
    at_centre = norms <= _ZERO
    if at_centre.any():
        indices = features.indices[torch.from_numpy(at_centre)].tolist()
        raise AnalysisError(
            f"Sample(s) {indices[:10]} of {features.name} project onto the centre of the "
            "3-D view (they equal the mean direction), so they have no point on the sphere; "
            "deselect them or select more varied samples."
        )
    return points / norms[:, None]
