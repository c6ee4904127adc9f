"""A group of students against the same students trained one after another (prints figures).

The paper's set of five distilled resnet8 students (KD, AT, AMD, AMD global+local, AMD+KD) from
the bundled resnet20 teacher, on the same ``shapes`` images and batches: once as one group
(:func:`train_group`, the teacher's forward pass computed once per batch), once as five runs in
turn (:func:`train`). Each variant runs in a child process of its own, so its peak memory
(maximum resident set) is its own; the variants alternate over ``--repeats`` so that load on the
machine affects both alike. Target: the group takes at most 0.75x the sequential time.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEACHER = ROOT / "assets" / "checkpoints" / "teacher_resnet20.pt"


def configs(images: int, epochs: int):
    from kd_core.training.config import TrainConfig
    from kd_core.training.methods import METHOD_SETS, METHODS

    base = TrainConfig(
        student="resnet8", teacher=str(TEACHER), dataset="shapes", epochs=epochs,
        batch_size=64, limit_train=images, limit_test=512, log_every=10_000, device="cpu",
    )  # fmt: skip
    return [base.with_overrides(METHODS[name].overrides()) for name in METHOD_SETS["paper"]]


def child(mode: str, images: int, epochs: int) -> None:
    """One variant, timed in this process; prints its seconds and peak memory as JSON."""
    from kd_core.training.trainer import train, train_group

    members = configs(images, epochs)
    with tempfile.TemporaryDirectory() as folder:
        dirs = [Path(folder) / str(index) for index in range(len(members))]
        started = time.perf_counter()
        if mode == "group":
            train_group(members, dirs)
        else:
            for config, run_dir in zip(members, dirs, strict=True):
                train(config, run_dir)
        seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_mb": peak_mb}))


def run(mode: str, images: int, epochs: int) -> dict:
    command = [sys.executable, __file__, "--child", mode, "--images", str(images),
               "--epochs", str(epochs)]  # fmt: skip
    out = subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=3200, help="training images per epoch")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--child", choices=["group", "sequential"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.images, args.epochs)
        return
    results: dict[str, list[dict]] = {"sequential": [], "group": []}
    for _ in range(args.repeats):
        for mode in results:
            results[mode].append(run(mode, args.images, args.epochs))
    seconds = {mode: statistics.median(r["seconds"] for r in rs) for mode, rs in results.items()}
    peak = {mode: max(r["peak_mb"] for r in rs) for mode, rs in results.items()}
    print(f"5 distilled resnet8 students (KD, AT, AMD, AMD global+local, AMD+KD) from resnet20, "
          f"{args.images:,} images x {args.epochs} epoch(s), batch 64, CPU, median of "
          f"{args.repeats}:")  # fmt: skip
    for mode in results:
        print(f"  {mode:>10}: {seconds[mode]:7.1f} s, peak memory {peak[mode]:,.0f} MB")
    ratio = seconds["group"] / seconds["sequential"]
    print(f"  group / sequential: {ratio:.2f}x (target <= 0.75x)")


if __name__ == "__main__":
    main()
