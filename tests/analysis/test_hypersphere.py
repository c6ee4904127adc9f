"""Pooled features on the hypersphere (kd_core.analysis.hypersphere): known answers and a
float64 numpy transcription."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from kd_core.analysis.errors import AnalysisError
from kd_core.analysis.feature_set import FeatureSet
from kd_core.analysis.hypersphere import (
    MAX_PAIRS,
    _pairs,
    class_angles,
    hypersphere_summary,
    pair_angles,
    sphere_projection,
    unit_features,
)


def make_set(pooled, labels, *, name="model", class_names=()):
    labels = torch.as_tensor(labels, dtype=torch.int64)
    n = len(labels)
    return FeatureSet(
        name=name,
        arch="test",
        indices=torch.arange(100, 100 + n),
        labels=labels,
        logits=torch.zeros(n, 2),
        pooled=torch.as_tensor(pooled, dtype=torch.float32),
        attention={},
        class_names=class_names,
    )


def random_set(n, d, classes, seed):
    generator = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    centres = generator.normal(size=(classes, d)) * 3
    return make_set(centres[labels] + generator.normal(size=(n, d)), labels)


def numpy_angle_deg(u, v):
    u, v = u / np.linalg.norm(u), v / np.linalg.norm(v)
    return np.degrees(np.arccos(np.clip(u @ v, -1.0, 1.0)))


def test_orthogonal_classes_of_identical_vectors():
    pooled = [[2.0, 0.0, 0.0]] * 3 + [[0.0, 5.0, 0.0]] * 2
    features = make_set(pooled, [0, 0, 0, 1, 1])
    pairs = pair_angles(features)
    assert pairs.pairs_total == 10 and len(pairs.intra_deg) == 4 and len(pairs.inter_deg) == 6
    assert np.all(pairs.intra_deg == 0.0)
    assert np.all(pairs.inter_deg == 90.0)
    assert np.all(class_angles(features).angles_deg == 0.0)
    summary = hypersphere_summary(features)
    assert (summary.mean_intra_deg, summary.mean_inter_deg) == (0.0, 90.0)
    assert summary.separation == math.inf and summary.mean_class_angle_deg == 0.0


def test_angles_match_numpy():
    features = random_set(12, 6, 3, seed=0)
    pooled, labels = features.pooled.double().numpy(), features.labels.numpy()
    means = {c: (pooled[labels == c] / np.linalg.norm(pooled[labels == c], axis=1)[:, None]).sum(0)
             for c in range(3)}  # fmt: skip
    expected = [numpy_angle_deg(pooled[i], means[labels[i]]) for i in range(12)]
    assert np.allclose(class_angles(features).angles_deg, expected, atol=1e-6)
    intra = [numpy_angle_deg(pooled[i], pooled[j])
             for i in range(12) for j in range(i + 1, 12) if labels[i] == labels[j]]  # fmt: skip
    inter = [numpy_angle_deg(pooled[i], pooled[j])
             for i in range(12) for j in range(i + 1, 12) if labels[i] != labels[j]]  # fmt: skip
    pairs = pair_angles(features)
    assert np.allclose(pairs.intra_deg, intra, atol=1e-6)
    assert np.allclose(pairs.inter_deg, inter, atol=1e-6)


def test_unit_features_have_unit_norm():
    u = unit_features(random_set(10, 5, 2, seed=1))
    assert u.dtype == torch.float64
    assert torch.allclose(u.norm(dim=1), torch.ones(10, dtype=torch.float64))


def test_all_pairs_in_row_major_order_below_the_cap():
    i, j = _pairs(7, MAX_PAIRS, seed=0)
    rows, cols = np.triu_indices(7, 1)
    assert np.array_equal(i, rows) and np.array_equal(j, cols)


def test_pairs_are_subsampled_deterministically_above_the_cap():
    i, j = _pairs(300, 1000, seed=0)  # 44,850 pairs
    assert len(i) == 1000 and np.all(i < j) and np.all(j < 300)
    assert len(set(zip(i.tolist(), j.tolist(), strict=True))) == 1000  # no repeats
    again = _pairs(300, 1000, seed=0)
    assert np.array_equal(i, again[0]) and np.array_equal(j, again[1])
    assert not np.array_equal(i, _pairs(300, 1000, seed=1)[0])
    features = random_set(300, 4, 5, seed=2)
    pairs = pair_angles(features, max_pairs=1000)
    assert len(pairs.intra_deg) + len(pairs.inter_deg) == 1000 and pairs.pairs_total == 44850
    assert np.array_equal(pairs.intra_deg, pair_angles(features, max_pairs=1000).intra_deg)


def test_sphere_projection_has_unit_rows():
    points = sphere_projection(random_set(20, 8, 4, seed=3))
    assert points.shape == (20, 3)
    assert np.allclose(np.linalg.norm(points, axis=1), 1.0)
    flat = sphere_projection(random_set(6, 2, 2, seed=4))  # 2-D features: a circle, z = 0
    assert np.allclose(np.linalg.norm(flat, axis=1), 1.0) and np.all(flat[:, 2] == 0.0)


def test_sphere_projection_follows_the_first_principal_component():
    """Two tight groups along +e0 and +e1: the first component separates them, so the
    projected groups sit at opposite ends of the first axis."""
    generator = np.random.default_rng(5)
    pooled = np.repeat(np.eye(4)[:2], 10, axis=0) + 0.01 * generator.normal(size=(20, 4))
    points = sphere_projection(make_set(pooled, [0] * 10 + [1] * 10))
    assert np.all(np.abs(points[:, 0]) > 0.9)
    assert np.all(np.sign(points[:10, 0]) == -np.sign(points[10:, 0]))


def test_errors_are_worded():
    good = random_set(6, 4, 2, seed=6)
    zero = good.pooled.clone()
    zero[2] = 0.0
    nan = good.pooled.clone()
    nan[0, 1] = math.nan
    cases = [
        (lambda: pair_angles(make_set(good.pooled[:4], [1] * 4, class_names=("a", "b"))),
         "only class 'b'"),
        (lambda: class_angles(make_set(good.pooled[:2], [0, 1])), "at least 3 samples"),
        (lambda: unit_features(make_set(zero, good.labels)), r"all-zero .*indices 102\)"),
        (lambda: sphere_projection(make_set(nan, good.labels)), "NaN"),
        (lambda: pair_angles(good, max_pairs=0), "max_pairs"),
        (lambda: pair_angles(make_set(good.pooled[:3], [0, 1, 2])), "share a class"),
        (lambda: class_angles(make_set([[1.0, 0], [-1.0, 0], [0, 1.0]], [0, 0, 1])),
         "cancel out"),
        (lambda: sphere_projection(make_set([[1.0, 2.0]] * 3, [0, 1, 0])), "centre"),
    ]  # fmt: skip
    for call, message in cases:
        with pytest.raises(AnalysisError, match=message):
            call()
