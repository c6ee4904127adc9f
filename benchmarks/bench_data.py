"""Data speed (prints figures; run with `make bench`).

1. ``shapes`` generation: images/s rendering the train and test splits (12,000 images) with
   no cache. Target: well under 5 s for the 12,000, on one core.
2. ``shapes`` from the cache: images/s for ``create_dataset`` reading the cached ``.npz`` files,
   and for iterating over the test split item by item (what a DataLoader does).
3. Stage-feature extraction (``extract_features``: stages, pooled feature and logits in one
   pass) against a bare ``model(x)`` forward, resnet56 and resnet8x4 at batch 256, eval mode,
   no grad, alternating. Target: extraction >= 0.95x the bare forward's images/s.

Each part is a function taking ``repeats``; add new parts to :data:`SECTIONS`. The cache is
a temporary folder, so the user's own cache is neither used nor touched.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable

import torch

from benchmarks.timing import median_seconds
from kd_core.data import create_dataset
from kd_core.data.cache import CACHE_ENV
from kd_core.data.shapes import SPLIT_SIZES, load_shapes
from kd_core.data.shapes_render import render_shapes

TOTAL = sum(SPLIT_SIZES.values())


def bench_shapes_generation(repeats: int) -> None:
    print(f"shapes generation, no cache: {TOTAL:,} images (train + test), median of {repeats}")

    def render_all() -> None:
        for split, count in SPLIT_SIZES.items():
            render_shapes(count, seed=0, split=split)

    seconds = median_seconds(render_all, repeats)
    print(f"  {'render':<18} {seconds:6.3f} s   {TOTAL / seconds:>10,.0f} images/s")


def bench_shapes_cache(repeats: int) -> None:
    print(f"\nshapes from the cache: {TOTAL:,} images, median of {repeats}")
    for split in SPLIT_SIZES:
        load_shapes(split)  # write the cache files

    def load_all() -> None:
        for split in SPLIT_SIZES:
            create_dataset("shapes", split)

    seconds = median_seconds(load_all, repeats)
    print(f"  {'create_dataset':<18} {seconds:6.3f} s   {TOTAL / seconds:>10,.0f} images/s")

    test = create_dataset("shapes", "test")
    train = create_dataset("shapes", "train", limit=len(test))

    for label, data in (("items, test", test), ("items, train (aug)", train)):
        seconds = median_seconds(lambda data=data: [data[i] for i in range(len(data))], repeats)
        print(f"  {label:<18} {seconds:6.3f} s   {len(data) / seconds:>10,.0f} images/s")


def bench_feature_extraction(repeats: int) -> None:
    from kd_core.models import create_model, extract_features

    print("\nStage-feature extraction vs bare forward, batch 256, eval, no grad (img/s)")
    images = torch.randn(256, 3, 32, 32)
    for name in ("resnet56", "resnet8x4"):
        model = create_model(name, num_classes=10).eval()
        bare, extracted = [], []
        with torch.no_grad():
            for _ in range(1 + repeats):  # the first round warms up, untimed
                start = time.perf_counter()
                model(images)
                middle = time.perf_counter()
                extract_features(model, images)
                end = time.perf_counter()
                bare.append(middle - start)
                extracted.append(end - middle)
        b, e = statistics.median(bare[1:]), statistics.median(extracted[1:])
        print(f"{name:<10} bare {256 / b:8.0f}  extraction {256 / e:8.0f}  ratio {b / e:.3f}x")


SECTIONS: list[Callable[[int], None]] = [
    bench_shapes_generation,
    bench_shapes_cache,
    bench_feature_extraction,
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions per case")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device cpu\n")
    with tempfile.TemporaryDirectory(prefix="kd_core_bench_") as folder:
        previous = os.environ.get(CACHE_ENV)
        os.environ[CACHE_ENV] = folder
        try:
            for section in SECTIONS:
                section(args.repeats)
        finally:
            if previous is None:
                os.environ.pop(CACHE_ENV, None)
            else:
                os.environ[CACHE_ENV] = previous


if __name__ == "__main__":
    main()
