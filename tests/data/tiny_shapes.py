"""A tiny in-memory ``shapes`` data set for tests that need no rendered split."""

from __future__ import annotations

import numpy as np

from kd_core.data.shapes import ShapesDataset
from kd_core.data.shapes_render import ShapesArrays


def tiny_shapes(count: int, augment: bool) -> ShapesDataset:
    """A ``ShapesDataset`` of ``count`` random 32 x 32 images labelled by their index."""
    generator = np.random.default_rng(0)
    arrays = ShapesArrays(
        images=generator.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8),
        masks=np.zeros((count, 32, 32), dtype=bool),
        labels=np.arange(count, dtype=np.int64),
        centers=np.zeros((count, 2), dtype=np.float32),
        sizes=np.zeros(count, dtype=np.float32),
        angles=np.zeros(count, dtype=np.float32),
    )
    return ShapesDataset(arrays, augment=augment, split="train", seed=0)
