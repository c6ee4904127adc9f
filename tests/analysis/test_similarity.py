"""Linear CKA (kd_core.analysis.similarity) against a direct float64 transcription and its
defining properties, in both computational forms (centred features and Gram matrices)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from kd_core.analysis.errors import AnalysisError
from kd_core.analysis.similarity import CKAMatrix, cka_matrix, linear_cka

# (N, P, Q): features form on both sides, Gram form on both, and one of each.
SHAPES = [(60, 8, 12), (20, 100, 60), (30, 10, 80)]


def _reference_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Kornblith et al. (2019), eq. for linear CKA, written directly in float64."""
    x = x.reshape(len(x), -1).astype(np.float64)
    y = y.reshape(len(y), -1).astype(np.float64)
    x = x - x.mean(axis=0)
    y = y - y.mean(axis=0)
    cross = np.linalg.norm(y.T @ x, "fro") ** 2
    return cross / (np.linalg.norm(x.T @ x, "fro") * np.linalg.norm(y.T @ y, "fro"))


def _related(n: int, p: int, q: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two feature sets that share a 3-d latent signal plus independent noise."""
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n, 3))
    x = latent @ rng.normal(size=(3, p)) + 0.5 * rng.normal(size=(n, p))
    y = latent @ rng.normal(size=(3, q)) + 0.5 * rng.normal(size=(n, q)) + 4.0
    return x, y


def _rotation(size: int, seed: int) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(size, size)))
    return q * np.sign(np.diag(r))


@pytest.mark.parametrize(("n", "p", "q"), SHAPES)
def test_matches_direct_transcription(n, p, q):
    x, y = _related(n, p, q)
    expected = _reference_cka(x, y)
    assert 0.05 < expected < 0.999  # a non-trivial value
    assert linear_cka(x, y) == pytest.approx(expected, rel=1e-12)
    assert linear_cka(y, x) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(("n", "p"), [(50, 7), (10, 40)])
def test_identical_features_give_one(n, p):
    x, _ = _related(n, p, 1)
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)
    assert linear_cka(x, x) <= 1.0


@pytest.mark.parametrize(("n", "p", "q"), SHAPES)
def test_invariant_to_rotation_and_isotropic_scaling(n, p, q):
    x, y = _related(n, p, q, seed=1)
    base = linear_cka(x, y)
    transformed_x = 3.7 * x @ _rotation(p, seed=2)
    transformed_y = 0.01 * y @ _rotation(q, seed=3) - 9.0
    assert linear_cka(transformed_x, transformed_y) == pytest.approx(base, rel=1e-10)


def test_not_invariant_to_anisotropic_scaling():
    """A property CKA does not have (so the invariance test above can fail)."""
    x, y = _related(80, 6, 6, seed=4)
    stretched = x * np.array([100.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    assert abs(linear_cka(stretched, y) - linear_cka(x, y)) > 0.01


def test_near_zero_for_independent_features():
    rng = np.random.default_rng(5)
    n, p, q = 5000, 10, 10
    value = linear_cka(rng.normal(size=(n, p)), rng.normal(size=(n, q)))
    # E[CKA] is about sqrt(P Q) / N = 0.002 for independent Gaussian features.
    assert 0.0 <= value < 0.01


def test_constant_features_give_zero_not_nan():
    _, y = _related(40, 3, 5)
    constant = np.full((40, 6), 0.1)  # 0.1 is inexact: the mean of 40 copies is not 0.1
    assert linear_cka(constant, y) == 0.0
    assert linear_cka(y, constant) == 0.0
    assert linear_cka(constant, constant) == 0.0
    wide_constant = np.full((10, 50), 7.3)  # Gram form
    assert linear_cka(wide_constant, np.random.default_rng(0).normal(size=(10, 3))) == 0.0


def test_a_constant_column_changes_nothing():
    x, y = _related(40, 4, 5)
    padded = np.concatenate([x, np.full((40, 1), 0.3)], axis=1)
    assert linear_cka(padded, y) == pytest.approx(linear_cka(x, y), rel=1e-12)


def test_accepts_torch_float16_and_flattens_maps():
    x, y = _related(30, 2 * 4 * 4, 12)
    x16 = torch.from_numpy(x.reshape(30, 2, 4, 4)).half()
    expected = _reference_cka(x16.float().numpy(), y)
    assert linear_cka(x16, torch.from_numpy(y)) == pytest.approx(expected, rel=1e-6)


def test_errors():
    x, y = _related(20, 4, 4)
    with pytest.raises(AnalysisError, match="x has 20 samples and y 19"):
        linear_cka(x, y[:19])
    bad = x.copy()
    bad[2, 0] = math.nan
    with pytest.raises(AnalysisError, match="NaN or infinite values in 1 of 20 samples"):
        linear_cka(bad, y)
    with pytest.raises(AnalysisError, match="needs at least 2"):
        linear_cka(x[:1], y[:1])
    with pytest.raises(AnalysisError, match="one row of features per sample"):
        linear_cka(np.zeros(5), np.zeros(5))
    with pytest.raises(AnalysisError, match="one row of features per sample"):
        linear_cka(np.zeros((0, 3)), np.zeros((0, 3)))


def test_cka_matrix_entries_names_and_order():
    rng = np.random.default_rng(7)
    n = 24
    latent = rng.normal(size=(n, 4))
    teacher = {
        "layer1": torch.from_numpy(rng.normal(size=(n, 4, 8, 8))).half(),
        "layer2": torch.from_numpy(latent @ rng.normal(size=(4, 4 * 4 * 4))).reshape(n, 4, 4, 4),
        "layer3": torch.from_numpy(latent @ rng.normal(size=(4, 8))),  # N x D
    }
    student = {
        "block2": torch.from_numpy(latent @ rng.normal(size=(4, 2 * 4 * 4))).reshape(n, 2, 4, 4),
        "block3": torch.from_numpy(rng.normal(size=(n, 16))),
    }
    result = cka_matrix(teacher, student)
    assert isinstance(result, CKAMatrix)
    values, teacher_names, student_names = result
    assert teacher_names == ["layer1", "layer2", "layer3"]
    assert student_names == ["block2", "block3"]
    assert values.shape == (3, 2)
    for i, t in enumerate(teacher.values()):
        for j, s in enumerate(student.values()):
            expected = _reference_cka(t.double().numpy(), s.double().numpy())
            assert values[i, j] == pytest.approx(expected, rel=1e-10), (i, j)
    assert values[1, 0] > 0.9 and values[2, 0] > 0.9  # the stages that share the latent


def test_cka_matrix_of_a_model_with_itself_has_a_unit_diagonal():
    rng = np.random.default_rng(8)
    stages = {name: rng.normal(size=(15, 3, 4, 4)) for name in ("a", "b", "c")}
    values, _, _ = cka_matrix(stages, stages)
    np.testing.assert_allclose(np.diag(values), 1.0, atol=1e-12)
    assert np.all((values >= 0.0) & (values <= 1.0))


def test_cka_matrix_errors():
    stages = {"layer1": np.zeros((10, 2, 2, 2)) + np.arange(10.0)[:, None, None, None]}
    with pytest.raises(AnalysisError, match="No student stages"):
        cka_matrix(stages, {})
    with pytest.raises(AnalysisError, match="No teacher stages"):
        cka_matrix({}, stages)
    with pytest.raises(
        AnalysisError, match=r"teacher stage 'layer1' has 10 samples and student stage 'b' 9"
    ):
        cka_matrix(stages, {"b": np.ones((9, 4))})
