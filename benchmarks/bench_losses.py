"""Loss speed, measured side by side in one run (prints figures; run with `make bench`).

1. AMD forward+backward, ours vs a literal transcription of the reference form (exp/log, three
   separate passes), on CIFAR stage shapes at batch 64. Target: ours <= 0.7x.
2. A whole distillation step (teacher forward without grad, student forward+backward, SGD step),
   resnet56 -> resnet20 on random data: CE only, CE+AT, CE+AMD. Target: CE+AMD <= 1.05x CE+AT.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from kd_core.losses import ModelOutputs, Objective
from kd_core.losses.amd import amd_layer_loss
from kd_core.models import create_model, extract_features

BATCH = 64
STAGE_SHAPES = {
    "resnet20": [(16, 32, 32), (32, 16, 16), (64, 8, 8)],
    "resnet8x4": [(64, 32, 32), (128, 16, 16), (256, 8, 8)],
}


def reference_amd_layer_loss(f_s, f_t, margin=1.35, scale=64.0):
    """The reference form, transcribed literally: ``|F|^2`` summed over channels and divided by
    its norm over (H, W); ``exp`` of both features and ``log`` of their sum; and each of the
    three normalised terms (amd, ``log(exp(pos))``, ``log(exp(neg))``) in its own pass."""

    def terms(f):
        a = torch.pow(torch.abs(f), 2).sum(dim=1, keepdim=True)
        q = torch.div(a, torch.norm(a, dim=(2, 3), keepdim=True) + 1e-6).view(f.shape[0], -1)
        pos = scale * torch.cos(margin * torch.acos(torch.clamp(q, -1 + 1e-7, 1 - 1e-7)))
        exp_pos, exp_neg = torch.exp(pos), torch.exp(scale * (1 - q))
        amd = pos - torch.log(exp_pos + exp_neg)
        return amd, torch.log(exp_pos), torch.log(exp_neg)

    per_term = [
        F.mse_loss(F.normalize(s, p=2, dim=1), F.normalize(t, p=2, dim=1))
        for s, t in zip(terms(f_s), terms(f_t), strict=True)
    ]
    return sum(per_term) / 3.0


def median_seconds(cases: dict[str, Callable[[], None]], repeats: int, warmup: int = 3) -> dict:
    """Median wall time of each case; cases run round-robin so that load on the machine
    affects all of them alike."""
    for step in cases.values():
        for _ in range(warmup):
            step()
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, step in cases.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def bench_amd_loss(repeats: int) -> None:
    print(f"AMD loss forward+backward, batch {BATCH}, median of {repeats} (ms)")
    print(f"{'shapes':<10} {'ours':>8} {'reference':>10} {'ratio':>7}")
    for name, shapes in STAGE_SHAPES.items():
        torch.manual_seed(0)
        student = [torch.randn(BATCH, *s, requires_grad=True) for s in shapes]
        teacher = [torch.randn(BATCH, *s) for s in shapes]

        def run(layer_loss, student=student, teacher=teacher):
            for f_s in student:
                f_s.grad = None  # as in training, where stage outputs are not leaves
            total = sum(layer_loss(f_s, f_t) for f_s, f_t in zip(student, teacher, strict=True))
            total.backward()

        medians = median_seconds(
            {
                "ours": lambda: run(amd_layer_loss),
                "reference": lambda: run(reference_amd_layer_loss),
            },
            repeats,
        )
        ours, reference = medians["ours"], medians["reference"]
        print(f"{name:<10} {ours * 1e3:>8.2f} {reference * 1e3:>10.2f} {ours / reference:>6.2f}x")


def bench_distillation_step(repeats: int) -> None:
    print(f"\nDistillation step resnet56 -> resnet20, batch {BATCH}, median of {repeats} (ms)")
    torch.manual_seed(0)
    teacher = create_model("resnet56").eval()
    images = torch.randn(BATCH, 3, 32, 32)
    labels = torch.randint(0, 100, (BATCH,))
    objectives = {
        "CE": Objective({"ce": 1}),
        "CE+AT": Objective({"ce": 1, "at": 1000}),
        "CE+AMD": Objective({"ce": 1, "amd": 1000}),
    }
    steps = {}
    for label, objective in objectives.items():
        student = create_model("resnet20").train()
        optimizer = torch.optim.SGD(student.parameters(), lr=0.05, momentum=0.9)

        def step(objective=objective, student=student, optimizer=optimizer):
            with torch.no_grad():
                teacher_out: ModelOutputs = extract_features(teacher, images)
            total, _ = objective(extract_features(student, images), teacher_out, labels)
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            optimizer.step()

        steps[label] = step
    results = median_seconds(steps, repeats)
    for label, seconds in results.items():
        ratio = seconds / results["CE+AT"]
        print(f"{label:<8} {seconds * 1e3:>8.1f}  ({ratio:.3f}x CE+AT)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20, help="timed repetitions per case")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device cpu\n")
    bench_amd_loss(args.repeats)
    bench_distillation_step(max(5, args.repeats // 2))


if __name__ == "__main__":
    main()
