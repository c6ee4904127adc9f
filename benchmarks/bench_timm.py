"""Stage-feature extraction through timm models (prints figures; run with `make bench`).

For timm's efficientnet_b0, convnext_atto and vit_tiny_patch16_224 (random weights, 224 x 224,
batch 8, inference mode): the bare forward pass ``model(x)`` against
:func:`kd_core.models.extract_features` (stages by hooks on timm's ``feature_info`` modules,
the ViT's tokens laid out as grids, pooled feature, logits). Target: extraction <= 1.05x the
bare pass. Medians of ``--repeats`` runs after one warm-up, interleaved so that both see the
same machine load.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from kd_core.models import create_model, extract_features

MODELS = ("timm:efficientnet_b0", "timm:convnext_atto", "timm:vit_tiny_patch16_224")
TARGET = 1.05


def bench(name: str, batch: int, repeats: int) -> float:
    """Print the two medians of model ``name`` and return their ratio."""
    torch.manual_seed(0)
    model = create_model(name, num_classes=1000).eval()
    images = torch.randn(batch, 3, 224, 224)
    steps = {"bare": lambda: model(images), "extract": lambda: extract_features(model, images)}
    times: dict[str, list[float]] = {label: [] for label in steps}
    with torch.inference_mode():
        for step in steps.values():
            step()
        for _ in range(repeats):
            for label, step in steps.items():
                start = time.perf_counter()
                step()
                times[label].append(time.perf_counter() - start)
    bare, extract = (statistics.median(times[label]) for label in steps)
    ratio = extract / bare
    verdict = "ok" if ratio <= TARGET else f"over {TARGET}x"
    print(
        f"{name:32s} bare {bare * 1000:8.1f} ms  extract_features {extract * 1000:8.1f} ms  "
        f"ratio {ratio:.3f} ({verdict})"
    )
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    torch.set_num_threads(2)
    for name in MODELS:
        bench(name, args.batch, args.repeats)


if __name__ == "__main__":
    main()
