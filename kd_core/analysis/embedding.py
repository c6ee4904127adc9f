r"""2-D maps of feature vectors (PCA, t-SNE, optional UMAP), and layouts of a teacher and its
students that can be compared side by side.

Each row of ``features`` (``N x D``, or ``N x ...`` flattened, e.g. attention maps
``N x H x W``) is one sample; :func:`embed` places it at a point in the plane.

* **PCA** projects the centred rows on the two directions of largest variance (exact, float64
  SVD): :math:`X_c = U S V^\top`, points :math:`= X_c V_{:, :2}`. Distances are in feature
  units; the share of variance each axis keeps is ``explained_variance_ratio``. Each axis is
  signed so that its largest-magnitude loading is positive (deterministic output).
* **t-SNE** (van der Maaten & Hinton 2008) keeps each sample's neighbours (about
  ``3 x perplexity`` of them) close; distances between clusters and cluster sizes carry no
  meaning. It needs ``N > 3 x perplexity``.
* **UMAP** (McInnes et al. 2018) is similar in spirit to t-SNE; used only when ``umap-learn``
  is installed.

t-SNE backend: openTSNE (default) or scikit-learn, measured with
``benchmarks/bench_embedding_methods.py`` on the pooled 64-d features of the bundled teacher
(resnet20) on 5,000 ``shapes`` training images, PCA initialisation, perplexity 30, seed 0,
on 2 CPU cores shared with a training job (median of 2 runs, round-robin)::

    backend                                 threads   time    trustworthiness   2-D kNN acc.
    openTSNE (Barnes-Hut, 250 + 500 it.)    2         67 s    0.995             0.898
    sklearn  (Barnes-Hut, 250 + 750 it.)    2         95 s    0.996             0.896
    openTSNE                                1         25 s    0.996             0.896
    (kNN accuracy on the 64-d features themselves: 0.894; on PCA to 2-D: 0.707)

Trustworthiness (k = 10) is computed on a 2,000-point subsample; kNN accuracy is that of a
10-nearest-neighbour classifier, 5-fold. Quality is equal and openTSNE is faster (1.4x here,
2.2x in an earlier run under the same conditions), so it is the default. Threads: when the
cores are busy, two threads wait on each other at every step; one thread was 2.7x faster
here (and 20x on 150 points), while on idle cores two threads halve the time (5,000 points:
6.5 s vs 12.1 s). So by default t-SNE uses the cores that are idle right now
(:func:`idle_cores`: at least 1).

Teacher and students: :func:`joint_embedding` embeds every model's rows in one run, so that
all layouts share one coordinate system. That is meaningful only when the features live in one
space: logits (classes are the axes), or attention maps at the same resolution (positions are
the axes). Pooled features of two networks have the same length only by coincidence and their
channels are not aligned, so a joint map mostly shows two separate clouds; for those embed each
model separately and rotate the student's map onto the teacher's with
:func:`procrustes_align`. Feature lengths that differ raise an :class:`AnalysisError` saying
this (per-model PCA to a common length would not align the axes either).

Example::

    teacher = embed(teacher_set.pooled, method="tsne", indices=teacher_set.indices)
    student = embed(student_set.pooled, method="tsne", indices=student_set.indices)
    aligned = procrustes_align(student.points, teacher.points)   # same samples, same order
"""

from __future__ import annotations

import importlib.util
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from kd_core.analysis.errors import AnalysisError

METHODS = ("pca", "tsne", "umap")
TSNE_BACKENDS = ("opentsne", "sklearn")
DEFAULT_TSNE_BACKEND = "opentsne"
"""openTSNE: as good as scikit-learn's t-SNE and faster (module docstring)."""
DEFAULT_TSNE_THREADS = None
"""``None``: as many threads as there are idle cores when t-SNE starts (:func:`idle_cores`)."""
OPENTSNE_ITERATIONS = 250
"""openTSNE's iterations after its 250 early-exaggeration ones (its default is 500). On the
5,000-image benchmark below, 250 kept the layout's quality (trustworthiness 0.996 both, 2-D kNN
accuracy 0.896 vs 0.895) in 44% of the time (43 s vs 100 s, FFT gradients, machine loaded)."""
"""One thread: robust when the app shares its cores with training (module docstring)."""
DEFAULT_PERPLEXITY = 30.0
DEFAULT_NEIGHBORS = 15
"""UMAP's ``n_neighbors``."""

ArrayLike = np.ndarray | torch.Tensor


@dataclass(frozen=True)
class Embedding:
    """Samples placed in the plane.

    Attributes:
        points: ``N x 2`` float64 coordinates, row ``i`` for sample ``indices[i]``.
        indices: ``N`` int64 sample indices (in the dataset split), to map a point or a
            selection back to its image.
        method: ``"pca"``, ``"tsne"`` or ``"umap"``.
        explained_variance_ratio: PCA only: the share of the total variance along each axis
            (two numbers, summing to at most 1); ``None`` otherwise.
        parameters: what produced the layout (``normalize``, ``seed``, ``perplexity`` and
            ``backend`` for t-SNE, ``n_neighbors`` for UMAP), for captions and caching.
    """

    points: np.ndarray
    indices: np.ndarray
    method: str
    explained_variance_ratio: np.ndarray | None = None
    parameters: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.points)


def available_methods() -> tuple[str, ...]:
    """The methods :func:`embed` can run here: PCA and t-SNE always, UMAP when ``umap-learn``
    is installed."""
    umap_installed = importlib.util.find_spec("umap") is not None
    return tuple(m for m in METHODS if m != "umap" or umap_installed)


def _as_matrix(what: str, values: ArrayLike) -> np.ndarray:
    """``values`` as an ``N x F`` float64 array (trailing dims flattened), checked finite."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    array = np.asarray(values)
    if array.ndim < 2:
        raise AnalysisError(
            f"{what} must have one row per sample (N x D), got shape {array.shape}."
        )
    if array.shape[0] == 0:
        raise AnalysisError(f"{what} has no samples: select at least one sample.")
    matrix = array.reshape(array.shape[0], -1).astype(np.float64)
    if matrix.shape[1] < 2:
        raise AnalysisError(
            f"{what} has {matrix.shape[1]} value(s) per sample; a 2-D map needs at least 2."
        )
    bad_rows = int((~np.isfinite(matrix)).any(axis=1).sum())
    if bad_rows:
        raise AnalysisError(
            f"{what} has NaN or infinite values in {bad_rows} of {len(matrix)} rows: "
            "check the model's outputs (e.g. a diverged checkpoint) or drop those samples."
        )
    return matrix


def _as_indices(indices: ArrayLike | None, n: int) -> np.ndarray:
    if indices is None:
        return np.arange(n, dtype=np.int64)
    if isinstance(indices, torch.Tensor):
        indices = indices.detach().cpu().numpy()
    result = np.asarray(indices).astype(np.int64).reshape(-1)
    if len(result) != n:
        raise AnalysisError(
            f"Got {len(result)} sample indices for {n} rows of features: pass one index per row."
        )
    return result


def _l2_normalize_rows(matrix: np.ndarray) -> np.ndarray:
    """Rows divided by their L2 norm (all-zero rows stay zero)."""
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.maximum(norms, np.finfo(np.float64).tiny)


def _pca(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Points on the top two principal axes and the share of variance each keeps."""
    if len(matrix) < 2:
        raise AnalysisError(
            f"PCA needs at least 2 samples, got {len(matrix)}: select more samples."
        )
    centred = matrix - matrix.mean(axis=0)
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    axes = vt[:2]
    largest = np.argmax(np.abs(axes), axis=1)
    axes = axes * np.sign(axes[np.arange(len(axes)), largest])[:, None]
    total = float(np.sum(singular**2))
    ratio = singular[:2] ** 2 / total if total > 0 else np.zeros(2)
    return centred @ axes.T, ratio


def _check_tsne(n: int, perplexity: float) -> None:
    is_number = isinstance(perplexity, (int, float)) and not isinstance(perplexity, bool)
    if not is_number or not math.isfinite(perplexity) or perplexity <= 0:
        raise AnalysisError(
            f"perplexity must be a number > 0 (typically 5 to 50), got {perplexity!r}."
        )
    if n <= 3 * perplexity:
        raise AnalysisError(
            f"t-SNE needs more samples than 3 x perplexity ({perplexity:g}), got {n}: select "
            f"at least {math.floor(3 * perplexity) + 1} samples or lower the perplexity "
            f"(below {n / 3:g})."
        )


def idle_cores() -> int:
    """CPU cores not busy with other work right now: the core count minus the 1-minute load
    average, not counting one unit of load (the caller's own), at least 1 (1 where the load is
    unknown)."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return 1
    cores = os.cpu_count() or 1
    return max(1, min(cores, cores - round(load) + 1))


def _tsne(
    matrix: np.ndarray, perplexity: float, seed: int, backend: str, n_jobs: int | None
) -> np.ndarray:
    _check_tsne(len(matrix), perplexity)
    n_jobs = idle_cores() if n_jobs is None else n_jobs
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs < 1:
        raise AnalysisError(f"n_jobs (t-SNE threads) must be an integer >= 1, got {n_jobs!r}.")
    if backend == "opentsne":
        from openTSNE import TSNE as OpenTSNE

        model = OpenTSNE(
            perplexity=perplexity,
            initialization="pca",
            n_iter=OPENTSNE_ITERATIONS,
            n_jobs=n_jobs,
            random_state=seed,
        )
        return np.asarray(model.fit(matrix), dtype=np.float64)
    from sklearn.manifold import TSNE as SklearnTSNE
    from threadpoolctl import threadpool_limits

    model = SklearnTSNE(perplexity=perplexity, init="pca", random_state=seed, n_jobs=n_jobs)
    with threadpool_limits(limits=n_jobs, user_api="openmp"):  # its gradient's threads
        return np.asarray(model.fit_transform(matrix), dtype=np.float64)


def _umap(matrix: np.ndarray, n_neighbors: int, seed: int) -> np.ndarray:
    if importlib.util.find_spec("umap") is None:
        raise AnalysisError(
            "UMAP is not installed: run `pip install umap-learn`, or choose PCA or t-SNE."
        )
    if len(matrix) <= n_neighbors:
        raise AnalysisError(
            f"UMAP needs more samples than n_neighbors ({n_neighbors}), got {len(matrix)}: "
            "select more samples or lower n_neighbors."
        )
    import umap

    model = umap.UMAP(n_components=2, n_neighbors=n_neighbors, random_state=seed)
    return np.asarray(model.fit_transform(matrix), dtype=np.float64)


def _subsample(n: int, max_samples: int | None, seed: int) -> np.ndarray:
    """Row positions kept: all of them, or ``max_samples`` drawn at random (seeded), in order."""
    if max_samples is None or max_samples >= n:
        return np.arange(n)
    if isinstance(max_samples, bool) or not isinstance(max_samples, int) or max_samples < 1:
        raise AnalysisError(f"max_samples must be a positive integer or None, got {max_samples!r}.")
    return np.sort(np.random.default_rng(seed).choice(n, size=max_samples, replace=False))


def _check_method(method: str, tsne_backend: str) -> None:
    if method not in METHODS:
        raise AnalysisError(
            f"Unknown embedding method {method!r}; choose one of {', '.join(METHODS)}."
        )
    if tsne_backend not in TSNE_BACKENDS:
        raise AnalysisError(
            f"Unknown t-SNE backend {tsne_backend!r}; choose one of {', '.join(TSNE_BACKENDS)}."
        )


def _embed_matrix(
    matrix: np.ndarray,
    indices: np.ndarray,
    *,
    method: str,
    normalize: bool,
    perplexity: float,
    seed: int,
    tsne_backend: str,
    n_jobs: int | None,
    n_neighbors: int,
) -> Embedding:
    """The shared core of :func:`embed` and :func:`joint_embedding` (checked inputs)."""
    if normalize:
        matrix = _l2_normalize_rows(matrix)
    parameters: dict[str, Any] = {"normalize": normalize, "seed": seed}
    ratio = None
    if method == "pca":
        points, ratio = _pca(matrix)
    elif method == "tsne":
        points = _tsne(matrix, perplexity, seed, tsne_backend, n_jobs)
        parameters |= {"perplexity": perplexity, "backend": tsne_backend}
    else:
        points = _umap(matrix, n_neighbors, seed)
        parameters["n_neighbors"] = n_neighbors
    return Embedding(points, indices, method, ratio, parameters)


def embed(
    features: ArrayLike,
    *,
    method: str = "pca",
    normalize: bool = False,
    perplexity: float = DEFAULT_PERPLEXITY,
    seed: int = 0,
    indices: ArrayLike | None = None,
    max_samples: int | None = None,
    tsne_backend: str = DEFAULT_TSNE_BACKEND,
    n_jobs: int | None = DEFAULT_TSNE_THREADS,
    n_neighbors: int = DEFAULT_NEIGHBORS,
) -> Embedding:
    """Place each row of ``features`` in the plane.

    Args:
        features: ``N x D`` (or ``N x ...``, flattened), numpy or torch.
        method: ``"pca"``, ``"tsne"`` or ``"umap"`` (see :func:`available_methods`).
        normalize: divide each row by its L2 norm first, so that only directions count
            (zero rows stay zero).
        perplexity: t-SNE's effective number of neighbours; needs ``N > 3 x perplexity``.
        seed: seeds t-SNE/UMAP and the choice of ``max_samples`` rows.
        indices: the rows' sample indices (default ``0..N-1``), carried into the result.
        max_samples: embed only this many rows, drawn at random (their indices are returned).
        tsne_backend: ``"opentsne"`` (default, faster) or ``"sklearn"``.
        n_jobs: t-SNE's threads; ``None`` (default): the idle cores (:func:`idle_cores`).
            More help only on idle cores: on busy ones (training alongside) 1 was 2.7x faster
            than 2, as threads wait on each other every step.
        n_neighbors: UMAP's neighbourhood size.

    Raises:
        AnalysisError: for empty input, NaN/inf rows, too few samples (PCA: 2; t-SNE:
            ``3 x perplexity + 1``; UMAP: ``n_neighbors + 1``), an unknown method, or UMAP
            when ``umap-learn`` is not installed.
    """
    _check_method(method, tsne_backend)
    matrix = _as_matrix("features", features)
    row_indices = _as_indices(indices, len(matrix))
    kept = _subsample(len(matrix), max_samples, seed)
    return _embed_matrix(
        matrix[kept],
        row_indices[kept],
        method=method,
        normalize=normalize,
        perplexity=perplexity,
        seed=seed,
        tsne_backend=tsne_backend,
        n_jobs=n_jobs,
        n_neighbors=n_neighbors,
    )


def joint_embedding(
    features: Mapping[str, ArrayLike],
    *,
    method: str = "pca",
    normalize: bool = False,
    perplexity: float = DEFAULT_PERPLEXITY,
    seed: int = 0,
    indices: Mapping[str, ArrayLike] | None = None,
    max_samples: int | None = None,
    tsne_backend: str = DEFAULT_TSNE_BACKEND,
    n_jobs: int | None = DEFAULT_TSNE_THREADS,
    n_neighbors: int = DEFAULT_NEIGHBORS,
) -> dict[str, Embedding]:
    """Embed every model's rows in one run, so that all maps share one coordinate system.

    The rows of all models are stacked (in the order of ``features``), embedded once, and
    split back: ``result[name].points[i]`` is row ``i`` (of the kept rows) of
    ``features[name]``. Models may hold different numbers of samples but must have the same
    feature length, and that length must mean the same thing in every model (see the module
    docstring: logits or same-size attention maps, not pooled features of different networks).
    ``max_samples`` applies per model, with the same rows drawn for models of equal size.
    Other arguments as in :func:`embed`.

    Raises:
        AnalysisError: as :func:`embed`, and when no model is given or feature lengths differ.
    """
    _check_method(method, tsne_backend)
    if not features:
        raise AnalysisError("No model features were given: pass at least one model's features.")
    matrices = {
        name: _as_matrix(f"features of {name}", values) for name, values in features.items()
    }
    widths = {name: m.shape[1] for name, m in matrices.items()}
    if len(set(widths.values())) > 1:
        listed = ", ".join(f"{name}: {width}" for name, width in widths.items())
        raise AnalysisError(
            f"A joint map needs features of one length and meaning, got {listed}. Embed each "
            "model separately and align the students' maps to the teacher's with "
            "procrustes_align, or use features that share one space (logits, attention maps "
            "at one resolution)."
        )
    kept = {name: _subsample(len(m), max_samples, seed) for name, m in matrices.items()}
    row_indices = {
        name: _as_indices(None if indices is None else indices.get(name), len(m))[kept[name]]
        for name, m in matrices.items()
    }
    stacked = np.concatenate([m[kept[name]] for name, m in matrices.items()])
    joint = _embed_matrix(
        stacked,
        np.concatenate(list(row_indices.values())),
        method=method,
        normalize=normalize,
        perplexity=perplexity,
        seed=seed,
        tsne_backend=tsne_backend,
        n_jobs=n_jobs,
        n_neighbors=n_neighbors,
    )
    result: dict[str, Embedding] = {}
    start = 0
    for name, model_indices in row_indices.items():
        stop = start + len(model_indices)
        result[name] = Embedding(
            joint.points[start:stop],
            model_indices,
            method,
            joint.explained_variance_ratio,
            joint.parameters | {"joint": True},
        )
        start = stop
    return result


def procrustes_align(points: ArrayLike, reference: ArrayLike) -> np.ndarray:
    r"""``points`` rotated (or reflected), scaled and shifted to best match ``reference``.

    Orthogonal Procrustes with scaling: with both sets centred (:math:`P_c`, :math:`R_c`) and
    :math:`P_c^\top R_c = U \Sigma V^\top`, the rotation is :math:`Q = U V^\top`, the scale
    :math:`s = \operatorname{tr}\Sigma / \lVert P_c \rVert_F^2`, and the result
    :math:`s P_c Q + \bar R` minimises :math:`\lVert s P_c Q + t - R \rVert_F` over rotations,
    reflections, scales and shifts. Row ``i`` of both must be the same sample. The shape of the
    map is unchanged: only its pose, so that a student's separate embedding reads like the
    teacher's.

    Raises:
        AnalysisError: for shapes that differ or are not ``N x k``, fewer than 2 points,
            NaN/inf, or ``points`` all at one place.
    """
    moving = _as_matrix("points", points)
    target = _as_matrix("reference", reference)
    if moving.shape != target.shape:
        raise AnalysisError(
            f"points {moving.shape} and reference {target.shape} differ in shape: align two "
            "embeddings of the same samples, in the same order."
        )
    if len(moving) < 2:
        raise AnalysisError("Procrustes alignment needs at least 2 points.")
    moving_c = moving - moving.mean(axis=0)
    target_mean = target.mean(axis=0)
    norm_sq = float(np.sum(moving_c**2))
    if norm_sq == 0.0:
        raise AnalysisError("All points are at one place: there is no layout to align.")
    u, singular, vt = np.linalg.svd(moving_c.T @ (target - target_mean))
    scale = float(singular.sum()) / norm_sq
    return scale * moving_c @ (u @ vt) + target_mean
