r"""How similar two layers' representations are: linear CKA (Kornblith et al. 2019).

For the same ``N`` samples, let :math:`X` (``N x P``) and :math:`Y` (``N x Q``) be two layers'
features with each column centred (mean over the samples removed). Linear centred kernel
alignment is

.. math::

    \mathrm{CKA}(X, Y) = \frac{\lVert Y^\top X \rVert_F^2}
                              {\lVert X^\top X \rVert_F \, \lVert Y^\top Y \rVert_F}
                       = \frac{\langle K, L \rangle_F}{\lVert K \rVert_F \lVert L \rVert_F},
    \qquad K = X X^\top,\; L = Y Y^\top .

It lies in ``[0, 1]``, is 1 for identical features, and does not change under rotations
(any orthogonal map) or a uniform scaling of either side, so layers of different widths and
networks of different architectures can be compared. The two forms are equal because
:math:`\lVert Y^\top X \rVert_F^2 = \operatorname{tr}(X^\top Y Y^\top X) = \langle K, L\rangle_F`
and :math:`\lVert X^\top X\rVert_F = \lVert K \rVert_F`.

Computation, in float64: each side is held in the smaller of its two forms, the centred
features (``N x P``) when ``P <= N`` (pooled features of many samples) or the Gram matrix
``K`` (``N x N``) when ``P > N`` (flattened stage features, e.g. ``16 x 32 x 32 = 16384``
values, of a few hundred samples). Mixed pairs use
:math:`\lVert Y^\top X\rVert_F^2 = \langle Y, K Y\rangle_F`. A feature that is constant over the
samples carries no information: it is centred to exactly 0. If one side has no varying feature
at all, CKA is **defined as 0** (it would be 0 / 0).

With few samples CKA is biased upwards (for ``N = 2`` it is always 1; for independent random
features it is about :math:`\sqrt{PQ} / N`), so compare layers on the same, reasonably large,
sample set.

Example::

    linear_cka(features, features @ random_rotation * 3.0)    # 1.0
    cka = cka_matrix(teacher_set.stages, student_set.stages)  # CKAMatrix(values T x S, ...)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import numpy as np
import torch

from kd_core.analysis.errors import AnalysisError

ArrayLike = np.ndarray | torch.Tensor


class CKAMatrix(NamedTuple):
    """CKA of every teacher stage (rows) with every student stage (columns)."""

    values: np.ndarray
    """``T x S`` float64 in ``[0, 1]``."""
    teacher_names: list[str]
    student_names: list[str]


class _Representation:
    """One layer's centred features in the cheaper form (see the module docstring)."""

    def __init__(self, what: str, values: ArrayLike) -> None:
        if isinstance(values, torch.Tensor):
            values = values.detach().cpu().numpy()
        array = np.asarray(values)
        if array.ndim < 2 or array.shape[0] == 0 or array[0].size == 0:
            raise AnalysisError(
                f"{what} must hold one row of features per sample (N x D or N x C x H x W), "
                f"got shape {array.shape}."
            )
        if array.shape[0] < 2:
            raise AnalysisError(f"CKA compares samples: {what} needs at least 2, got 1.")
        features = array.reshape(array.shape[0], -1).astype(np.float64)
        bad_rows = int((~np.isfinite(features)).any(axis=1).sum())
        if bad_rows:
            raise AnalysisError(
                f"{what} has NaN or infinite values in {bad_rows} of {len(features)} samples: "
                "check the model's outputs or drop those samples."
            )
        constant = (features == features[0]).all(axis=0)
        features -= features.mean(axis=0)
        features[:, constant] = 0.0
        self.what = what
        self.num_samples, self.width = features.shape
        self.uses_gram = self.width > self.num_samples
        self.features: np.ndarray | None = None if self.uses_gram else features
        self.gram: np.ndarray | None = features @ features.T if self.uses_gram else None
        self_product = self.gram if self.uses_gram else features.T @ features
        self.norm = float(np.linalg.norm(self_product))
        """``||X^T X||_F = ||K||_F``."""


def _cross_term(x: _Representation, y: _Representation) -> float:
    """``||Y^T X||_F^2 = <K, L>_F``, from whichever forms the two sides are held in."""
    if x.num_samples != y.num_samples:
        raise AnalysisError(
            f"{x.what} has {x.num_samples} samples and {y.what} {y.num_samples}: CKA needs "
            "the same samples, in the same order, for both."
        )
    if x.gram is not None and y.gram is not None:
        return float(np.vdot(x.gram, y.gram))
    if x.gram is not None:
        return float(np.vdot(y.features, x.gram @ y.features))
    if y.gram is not None:
        return float(np.vdot(x.features, y.gram @ x.features))
    return float(np.sum((y.features.T @ x.features) ** 2))


def _cka(x: _Representation, y: _Representation) -> float:
    cross = _cross_term(x, y)
    if x.norm == 0.0 or y.norm == 0.0:
        return 0.0
    return min(1.0, max(0.0, cross / (x.norm * y.norm)))


def linear_cka(x: ArrayLike, y: ArrayLike) -> float:
    """Linear CKA of two layers' features on the same ``N`` samples (``x``: ``N x P``,
    ``y``: ``N x Q``; trailing dims are flattened, numpy or torch, any float dtype).

    Returns a float in ``[0, 1]`` (clipped: rounding can push identical features to
    ``1 + 1e-16``); 0 when either side is constant.

    Raises:
        AnalysisError: for a different number of samples, fewer than 2 samples, empty or
            non-finite features.
    """
    return _cka(_Representation("x", x), _Representation("y", y))


def _representations(what: str, stages: Mapping[str, ArrayLike]) -> dict[str, _Representation]:
    if not stages:
        raise AnalysisError(f"No {what} stages were given: extract at least one stage's features.")
    return {
        name: _Representation(f"{what} stage {name!r}", values) for name, values in stages.items()
    }


def cka_matrix(
    teacher_stages: Mapping[str, ArrayLike], student_stages: Mapping[str, ArrayLike]
) -> CKAMatrix:
    """Linear CKA of every teacher stage with every student stage.

    Args:
        teacher_stages: stage name -> ``N x C x H x W`` (or ``N x D``) features, shallow to
            deep (e.g. :attr:`FeatureSet.stages <kd_core.analysis.feature_set.FeatureSet>`).
        student_stages: the same for the student, on the same ``N`` samples.

    Returns:
        ``CKAMatrix(values, teacher_names, student_names)``: ``values[i, j]`` is the CKA of
        teacher stage ``teacher_names[i]`` with student stage ``student_names[j]``. Each stage is
        centred (and its Gram matrix formed) once.

    Raises:
        AnalysisError: as :func:`linear_cka`, naming the stage; also for an empty mapping.
    """
    teacher = _representations("teacher", teacher_stages)
    student = _representations("student", student_stages)
    values = np.array([[_cka(t, s) for s in student.values()] for t in teacher.values()])
    return CKAMatrix(values, list(teacher), list(student))
