"""Analysis speed on the bundled pair (prints figures; run with `make bench`).

1. Features + angular statistics: stage features, pooled features and logits of the bundled
   teacher (resnet20) and AMD student (resnet8) on 2,000 ``shapes`` test images (no cache),
   then the angular report over every stage (mask split, per class). Target <= 3 s.
2. 2-D embedding of 5,000 pooled teacher features (``shapes`` train images): PCA and t-SNE
   (openTSNE, the default backend). Target <= 10 s.
3. Grad-CAM (deepest stage) for teacher and student on 16 images. Target <= 2 s.

Medians of ``--repeats`` runs after one warm-up, 2 threads. The feature cache is not used.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from benchmarks.timing import median_seconds
from kd_core.analysis.angular import angular_report
from kd_core.analysis.attribution import attribution_maps
from kd_core.analysis.embedding import embed
from kd_core.analysis.extraction import extract_feature_set
from kd_core.checkpoints import load_checkpoint
from kd_core.data import create_dataset

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "checkpoints"


def bench_features_and_angles(teacher, student, repeats: int) -> None:
    dataset = create_dataset("shapes", split="test", augment=False)
    timings: dict[str, list[float]] = {"features": [], "angles": []}

    def step() -> None:
        start = time.perf_counter()
        sets = [
            extract_feature_set(m.model, dataset, name=m.arch, arch=m.arch, samples=2000)
            for m in (teacher, student)
        ]
        middle = time.perf_counter()
        angular_report(sets[0], sets[1:], split="mask", per_class=True)
        timings["features"].append(middle - start)
        timings["angles"].append(time.perf_counter() - middle)

    total = median_seconds(step, repeats)
    print(
        f"features + angular statistics, 2,000 images, teacher + student: {total:.2f} s "
        f"(features {statistics.median(timings['features'][1:]):.2f} s, angular report "
        f"{statistics.median(timings['angles'][1:]):.2f} s); target <= 3 s"
    )


def bench_embedding(teacher, repeats: int) -> None:
    dataset = create_dataset("shapes", split="train", augment=False)
    pooled = extract_feature_set(
        teacher.model, dataset, name="teacher", arch=teacher.arch, samples=5000
    ).pooled
    for method in ("pca", "tsne"):
        seconds = median_seconds(lambda m=method: embed(pooled, method=m), repeats, warmup=0)
        print(f"2-D embedding of 5,000 pooled features, {method}: {seconds:.2f} s; target <= 10 s")


def bench_gradcam(teacher, student, repeats: int) -> None:
    dataset = create_dataset("shapes", split="test", augment=False)
    images = torch.stack([dataset[i][0] for i in range(16)])

    def step() -> None:
        for m in (teacher, student):
            attribution_maps(m.model, images, method="gradcam")

    seconds = median_seconds(step, repeats)
    print(f"Grad-CAM, teacher + student, 16 images: {seconds:.3f} s; target <= 2 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(2)
    teacher = load_checkpoint(ASSETS / "teacher_resnet20.pt")
    student = load_checkpoint(ASSETS / "student_resnet8_amd.pt")
    bench_features_and_angles(teacher, student, args.repeats)
    bench_gradcam(teacher, student, args.repeats)
    bench_embedding(teacher, args.repeats)


if __name__ == "__main__":
    main()
