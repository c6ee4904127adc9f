"""Why AT can fall below training alone on a short budget: the gradient norm of each weighted
term on a freshly initialised student's weights, per stage, against cross-entropy's.

For resnet8 (seed 0) and the bundled teacher (or ``--teacher``), on the first 8 batches of 64
un-augmented ``shapes`` training images: ``||grad(beta * L_stage)||`` for AT and AMD at each
stage and summed over stages, beside ``||grad(CE)||`` and ``||grad(0.9 KD)||``. Prints a
markdown table (``docs/results.md`` quotes it). Seconds on a CPU.
"""

from __future__ import annotations

import argparse
import math
import statistics

import torch

from kd_core.checkpoints import load_checkpoint
from kd_core.data import create_dataset
from kd_core.losses import Objective
from kd_core.models import create_model
from kd_core.models.features import extract_features

BATCHES, BATCH = 8, 64


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", default="assets/checkpoints/teacher_resnet20.pt")
    parser.add_argument("--beta", type=float, default=1000.0)
    args = parser.parse_args()
    teacher = load_checkpoint(args.teacher).model.float().eval()
    data = create_dataset("shapes", split="train", augment=False, seed=0, limit=BATCHES * BATCH)
    torch.manual_seed(0)
    student = create_model("resnet8", num_classes=10)
    params = list(student.parameters())
    terms = {"CE": Objective({"ce": 1.0}), "0.9 KD": Objective({"kd": 0.9}, params={"kd": {}})}
    for loss in ("at", "amd"):
        for stage in range(3):
            terms[f"{args.beta:g} {loss.upper()}, stage {stage + 1}"] = Objective(
                {loss: args.beta}, params={loss: {"layers": [stage]}}
            )
        terms[f"{args.beta:g} {loss.upper()}, all stages"] = Objective({loss: args.beta})
    rows: dict[str, list[tuple[float, float]]] = {name: [] for name in terms}
    for batch in range(BATCHES):
        items = [data[i] for i in range(batch * BATCH, (batch + 1) * BATCH)]
        images = torch.stack([image for image, _ in items])
        labels = torch.tensor([label for _, label in items])
        with torch.no_grad():
            teacher_outputs = extract_features(teacher, images)
        student_outputs = extract_features(student, images)
        for name, objective in terms.items():
            total, _ = objective(student_outputs, teacher_outputs, labels)
            grads = torch.autograd.grad(total, params, retain_graph=True, allow_unused=True)
            norm = math.sqrt(sum(float(g.double().pow(2).sum()) for g in grads if g is not None))
            rows[name].append((float(total.detach()), norm))
    ce_norm = statistics.mean(norm for _, norm in rows["CE"])
    print("| term | loss | gradient norm | / CE's |")
    print("| --- | --- | --- | --- |")
    for name, values in rows.items():
        loss = statistics.mean(v for v, _ in values)
        norm = statistics.mean(n for _, n in values)
        print(f"| {name} | {loss:.4f} | {norm:.3f} | {norm / ce_norm:.2f} |")


if __name__ == "__main__":
    main()
