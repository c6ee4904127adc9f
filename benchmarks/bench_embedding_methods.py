"""t-SNE backends side by side: time and quality of openTSNE and scikit-learn (prints figures).

Input: the pooled 64-d features of the bundled teacher (resnet20) on the first 5,000 ``shapes``
training images (no augmentation), the features the embedding page shows. Both backends run
through :func:`kd_core.analysis.embedding.embed` (PCA initialisation, perplexity 30, seed 0;
2 threads each, and openTSNE also on 1), round-robin, so that load on the machine affects all
alike. Quality:

* trustworthiness (sklearn.manifold.trustworthiness, 10 neighbours) on a fixed random
  subsample of 2,000 points: 1 when every 2-D neighbour is also a neighbour in 64-d;
* label accuracy of a 10-nearest-neighbour classifier in 2-D (5-fold cross-validation),
  next to the same classifier on the 64-d features (the ceiling) and on PCA to 2-D.

The default backend (``DEFAULT_TSNE_BACKEND``) is the faster one at equal quality.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.manifold import trustworthiness
from sklearn.model_selection import cross_val_score
from sklearn.neighbors import KNeighborsClassifier

from kd_core.analysis.embedding import DEFAULT_TSNE_BACKEND, DEFAULT_TSNE_THREADS, embed
from kd_core.checkpoints import load_checkpoint
from kd_core.data import create_dataset
from kd_core.models import extract_features

TEACHER = Path(__file__).resolve().parents[1] / "assets/checkpoints/teacher_resnet20.pt"
SUBSAMPLE = 2_000
CASES = [("opentsne", 2), ("sklearn", 2), ("opentsne", 1)]
"""(backend, threads): both backends on 2 threads, and openTSNE on one (busy machines)."""
NEIGHBOURS = 10


def teacher_features(count: int) -> tuple[np.ndarray, np.ndarray]:
    """Pooled teacher features (``count x 64``) and labels of the first ``count`` images."""
    dataset = create_dataset("shapes", split="train", augment=False, limit=count)
    images = torch.stack([dataset[i][0] for i in range(len(dataset))])
    model = load_checkpoint(TEACHER).model
    with torch.no_grad():
        pooled = torch.cat([extract_features(model, batch).pooled for batch in images.split(500)])
    return pooled.numpy(), dataset.labels.numpy()


def knn_accuracy(points: np.ndarray, labels: np.ndarray) -> float:
    classifier = KNeighborsClassifier(n_neighbors=NEIGHBOURS)
    return float(cross_val_score(classifier, points, labels, cv=5).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=5_000, help="number of images")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per backend")
    args = parser.parse_args()
    features, labels = teacher_features(args.samples)
    print(
        f"{len(features)} x {features.shape[1]} pooled features of the teacher (resnet20), "
        f"{os.cpu_count()} CPU cores, median of {args.repeats} runs\n"
    )
    subsample = np.random.default_rng(0).choice(len(features), SUBSAMPLE, replace=False)
    times: dict[tuple[str, int], list[float]] = {case: [] for case in CASES}
    points: dict[tuple[str, int], np.ndarray] = {}
    for _ in range(args.repeats):
        for backend, threads in CASES:
            start = time.perf_counter()
            result = embed(features, method="tsne", tsne_backend=backend, n_jobs=threads)
            times[backend, threads].append(time.perf_counter() - start)
            points[backend, threads] = result.points

    header = f"{'backend':<10} {'threads':>7} {'time (s)':>9} {'trustworthiness':>16}"
    print(f"{header} {'2-D kNN accuracy':>17}")
    for case in CASES:
        trust = trustworthiness(
            features[subsample], points[case][subsample], n_neighbors=NEIGHBOURS
        )
        accuracy = knn_accuracy(points[case], labels)
        median = statistics.median(times[case])
        print(f"{case[0]:<10} {case[1]:>7} {median:>9.1f} {trust:>16.3f} {accuracy:>17.3f}")
    pca_points = embed(features, method="pca").points
    width = features.shape[1]
    print(f"\nkNN accuracy on the {width}-d features: {knn_accuracy(features, labels):.3f}")
    print(f"kNN accuracy on PCA to 2-D: {knn_accuracy(pca_points, labels):.3f}")
    ratio = statistics.median(times["sklearn", 2]) / statistics.median(times["opentsne", 2])
    print(
        f"sklearn / openTSNE time (2 threads): {ratio:.2f}x; default: {DEFAULT_TSNE_BACKEND}, "
        f"{DEFAULT_TSNE_THREADS or 'the idle cores'} thread(s)"
    )


if __name__ == "__main__":
    main()
