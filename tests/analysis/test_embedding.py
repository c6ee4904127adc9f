"""Embeddings (kd_core.analysis.embedding) against float64 numpy references and known layouts."""

from __future__ import annotations

import importlib.machinery
import math
import sys
import types

import numpy as np
import pytest
import torch
from sklearn.model_selection import cross_val_score
from sklearn.neighbors import KNeighborsClassifier

from kd_core.analysis import embedding as embedding_module
from kd_core.analysis.embedding import (
    TSNE_BACKENDS,
    available_methods,
    embed,
    joint_embedding,
    procrustes_align,
)
from kd_core.analysis.errors import AnalysisError


def _features(n: int = 40, d: int = 6, seed: int = 0) -> np.ndarray:
    """Anisotropic random features (distinct principal variances, so axes are unique)."""
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)) * np.linspace(3.0, 0.5, d) + rng.normal(size=d)


def _reference_pca(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Projection on the top-2 eigenvectors of the float64 covariance, and variance shares."""
    centred = x - x.mean(axis=0)
    eigenvalues, eigenvectors = np.linalg.eigh(centred.T @ centred)
    order = np.argsort(eigenvalues)[::-1]
    return centred @ eigenvectors[:, order[:2]], eigenvalues[order[:2]] / eigenvalues.sum()


def _two_blobs(n_per_blob: int = 75, d: int = 10) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    near = rng.normal(size=(n_per_blob, d))
    far = rng.normal(size=(n_per_blob, d)) + 20.0
    return np.concatenate([near, far]), np.repeat([0, 1], n_per_blob)


@pytest.mark.parametrize("to_input", [np.asarray, torch.from_numpy])
def test_pca_is_the_svd_projection_up_to_sign(to_input):
    x = _features()
    result = embed(to_input(x), method="pca")
    expected, ratio = _reference_pca(x)
    assert result.points.shape == (40, 2)
    assert result.points.dtype == np.float64
    for axis in range(2):
        sign = np.sign(result.points[:, axis] @ expected[:, axis])
        np.testing.assert_allclose(result.points[:, axis], sign * expected[:, axis], atol=1e-10)
    np.testing.assert_allclose(result.explained_variance_ratio, ratio, rtol=1e-10)
    assert result.method == "pca"
    np.testing.assert_array_equal(result.indices, np.arange(40))


def test_pca_flattens_trailing_dims_and_has_fixed_signs():
    maps = _features(n=30, d=12).reshape(30, 3, 4)
    flat = embed(maps.reshape(30, 12), method="pca").points
    np.testing.assert_array_equal(embed(maps, method="pca").points, flat)
    # Negated data has the same principal axes; the sign convention (largest loading positive)
    # keeps the axes fixed, so the points are exactly negated rather than flipped arbitrarily.
    np.testing.assert_allclose(embed(-maps, method="pca").points, -flat, atol=1e-10)


def test_normalize_makes_row_scale_irrelevant():
    x = _features()
    scales = np.random.default_rng(2).uniform(0.1, 10.0, size=(40, 1))
    plain = embed(x / np.linalg.norm(x, axis=1, keepdims=True), method="pca")
    normalized = embed(x * scales, method="pca", normalize=True)
    np.testing.assert_allclose(normalized.points, plain.points, atol=1e-10)
    assert normalized.parameters["normalize"] is True


@pytest.mark.parametrize("backend", TSNE_BACKENDS)
def test_tsne_separates_two_far_blobs(backend):
    x, labels = _two_blobs()
    result = embed(x, method="tsne", perplexity=30, tsne_backend=backend, seed=0, n_jobs=1)
    assert result.points.shape == (150, 2)
    assert np.isfinite(result.points).all()
    accuracy = cross_val_score(KNeighborsClassifier(5), result.points, labels, cv=5).mean()
    assert accuracy == 1.0
    assert result.parameters == {
        "normalize": False,
        "seed": 0,
        "perplexity": 30,
        "backend": backend,
    }
    assert result.explained_variance_ratio is None


def test_tsne_is_reproducible_with_a_seed():
    x, _ = _two_blobs(n_per_blob=20)
    first = embed(x, method="tsne", perplexity=5, seed=3, n_jobs=1).points
    again = embed(x, method="tsne", perplexity=5, seed=3, n_jobs=1).points
    np.testing.assert_array_equal(again, first)


def test_tsne_sample_count_boundary():
    x, _ = _two_blobs(n_per_blob=8)  # 16 samples
    assert len(embed(x, method="tsne", perplexity=5, n_jobs=1)) == 16  # 16 > 3 x 5
    with pytest.raises(AnalysisError, match=r"3 x perplexity \(5\), got 15: select at least 16"):
        embed(x[:15], method="tsne", perplexity=5)
    with pytest.raises(AnalysisError, match=r"3 x perplexity \(30\), got 90: select at least 91"):
        embed(_features(n=90), method="tsne")


@pytest.mark.parametrize("bad", [0, -1.0, math.nan, math.inf, True, "30"])
def test_bad_perplexity(bad):
    with pytest.raises(AnalysisError, match="perplexity must be a number > 0"):
        embed(_features(n=200), method="tsne", perplexity=bad)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_bad_thread_count(bad):
    with pytest.raises(AnalysisError, match="n_jobs"):
        embed(_features(n=200), method="tsne", n_jobs=bad)


def test_max_samples_keeps_and_returns_the_indices():
    x = _features(n=50)
    indices = np.arange(50) * 10 + 7
    result = embed(x, method="pca", indices=indices, max_samples=20, seed=4)
    assert len(result) == 20
    assert np.all(np.diff(result.indices) > 0)
    assert set(result.indices) <= set(indices)
    kept = (result.indices - 7) // 10
    np.testing.assert_array_equal(result.points, embed(x[kept], method="pca").points)
    everything = embed(x, method="pca", indices=torch.from_numpy(indices), max_samples=500)
    np.testing.assert_array_equal(everything.indices, indices)


def test_procrustes_recovers_rotation_scale_and_shift():
    rng = np.random.default_rng(5)
    points = rng.normal(size=(25, 2))
    angle = 0.7
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    for mirror in (np.eye(2), np.diag([1.0, -1.0])):
        reference = 2.5 * points @ (rotation @ mirror) + np.array([3.0, -4.0])
        np.testing.assert_allclose(procrustes_align(points, reference), reference, atol=1e-12)


def test_procrustes_of_unrelated_points_is_the_least_squares_pose():
    rng = np.random.default_rng(6)
    points, reference = rng.normal(size=(30, 2)), rng.normal(size=(30, 2))
    aligned = procrustes_align(points, reference)
    best = np.sum((aligned - reference) ** 2)
    centred = points - points.mean(axis=0)
    for angle in np.linspace(0, 2 * math.pi, 73):
        for scale in (0.5 * aligned.std() / points.std(), aligned.std() / points.std()):
            c, s = math.cos(angle), math.sin(angle)
            for rotation in (np.array([[c, -s], [s, c]]), np.array([[c, s], [s, -c]])):
                trial = scale * centred @ rotation + reference.mean(axis=0)
                assert np.sum((trial - reference) ** 2) >= best - 1e-9


def test_procrustes_errors():
    points = np.zeros((5, 2))
    with pytest.raises(AnalysisError, match="differ in shape"):
        procrustes_align(np.ones((5, 2)), np.ones((4, 2)))
    with pytest.raises(AnalysisError, match="one place"):
        procrustes_align(points, np.arange(10.0).reshape(5, 2))
    with pytest.raises(AnalysisError, match="at least 2 points"):
        procrustes_align(np.ones((1, 2)), np.ones((1, 2)))


def test_joint_embedding_keeps_order_and_sizes():
    teacher, student = _features(n=20, seed=1), _features(n=30, seed=2)
    indices = {"teacher": np.arange(20) + 100, "student": np.arange(30) + 500}
    joint = joint_embedding({"teacher": teacher, "student": student}, indices=indices)
    assert list(joint) == ["teacher", "student"]
    stacked = embed(np.concatenate([teacher, student]), method="pca")
    np.testing.assert_array_equal(joint["teacher"].points, stacked.points[:20])
    np.testing.assert_array_equal(joint["student"].points, stacked.points[20:])
    np.testing.assert_array_equal(joint["teacher"].indices, indices["teacher"])
    np.testing.assert_array_equal(joint["student"].indices, indices["student"])
    np.testing.assert_array_equal(
        joint["teacher"].explained_variance_ratio, stacked.explained_variance_ratio
    )
    assert joint["student"].parameters["joint"] is True


def test_joint_embedding_subsamples_the_same_rows_of_equal_sized_models():
    a, b = _features(n=40, seed=1), _features(n=40, seed=2)
    joint = joint_embedding({"a": a, "b": b}, max_samples=15, seed=9)
    np.testing.assert_array_equal(joint["a"].indices, joint["b"].indices)
    assert len(joint["a"]) == len(joint["b"]) == 15


def test_joint_embedding_refuses_different_feature_lengths():
    with pytest.raises(AnalysisError, match=r"teacher: 6, student: 4.*procrustes_align"):
        joint_embedding({"teacher": _features(d=6), "student": _features(d=4)})
    with pytest.raises(AnalysisError, match="at least one model"):
        joint_embedding({})


def test_input_errors():
    with pytest.raises(AnalysisError, match="no samples"):
        embed(np.zeros((0, 4)))
    with pytest.raises(AnalysisError, match=r"N x D"):
        embed(np.zeros(5))
    with pytest.raises(AnalysisError, match="at least 2"):
        embed(np.zeros((5, 1)))
    with pytest.raises(AnalysisError, match="PCA needs at least 2 samples, got 1"):
        embed(np.ones((1, 4)))
    bad = _features(n=10)
    bad[3, 1], bad[7, 0] = math.nan, math.inf
    with pytest.raises(AnalysisError, match="NaN or infinite values in 2 of 10 rows"):
        embed(bad)
    with pytest.raises(AnalysisError, match="Unknown embedding method 'lda'"):
        embed(_features(), method="lda")
    with pytest.raises(AnalysisError, match="Unknown t-SNE backend"):
        embed(_features(), method="tsne", tsne_backend="cuml")
    with pytest.raises(AnalysisError, match="3 sample indices for 40 rows"):
        embed(_features(), indices=[1, 2, 3])
    with pytest.raises(AnalysisError, match="max_samples must be a positive integer"):
        embed(_features(), max_samples=0)


def test_umap_missing_says_how_to_install(monkeypatch):
    monkeypatch.setattr(embedding_module.importlib.util, "find_spec", lambda name: None)
    assert available_methods() == ("pca", "tsne")
    with pytest.raises(AnalysisError, match="pip install umap-learn"):
        embed(_features(), method="umap")


def test_umap_is_called_when_installed(monkeypatch):
    calls = {}

    class FakeUMAP:
        def __init__(self, **kwargs):
            calls.update(kwargs)

        def fit_transform(self, x):
            return x[:, :2] * 2.0

    fake = types.ModuleType("umap")
    fake.__spec__ = importlib.machinery.ModuleSpec("umap", None)
    fake.UMAP = FakeUMAP
    monkeypatch.setitem(sys.modules, "umap", fake)
    assert available_methods() == ("pca", "tsne", "umap")
    x = _features()
    result = embed(x, method="umap", n_neighbors=10, seed=7)
    np.testing.assert_array_equal(result.points, x[:, :2] * 2.0)
    assert calls == {"n_components": 2, "n_neighbors": 10, "random_state": 7}
    assert result.parameters["n_neighbors"] == 10
    with pytest.raises(AnalysisError, match=r"more samples than n_neighbors \(15\), got 12"):
        embed(x[:12], method="umap")


@pytest.mark.parametrize(
    ("cores", "load", "expected"), [(2, 0.1, 2), (2, 1.2, 2), (2, 2.3, 1), (2, 9.0, 1), (8, 3.4, 6)]
)
def test_idle_cores_follow_the_load(monkeypatch, cores, load, expected):
    from kd_core.analysis import embedding

    monkeypatch.setattr(embedding.os, "cpu_count", lambda: cores)
    monkeypatch.setattr(embedding.os, "getloadavg", lambda: (load, load, load))
    assert embedding.idle_cores() == expected
