"""Trainer speed against a minimal hand-written loop doing the same work (prints figures).

Both train resnet20 from a resnet56 teacher with CE + AMD (beta 1000) on the same in-memory
``shapes`` images, batch 64, the same augmentation and SGD; the hand loop has no logging,
scheduling, metrics or checks. Runs alternate so that load on the machine affects both alike.
Target: trainer >= 0.97x the hand loop's images/s.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils.data import DataLoader, RandomSampler

from kd_core.data import create_dataset
from kd_core.losses import Objective
from kd_core.models import create_model, extract_features
from kd_core.training.config import TrainConfig
from kd_core.training.optim import OptimizerConfig
from kd_core.training.trainer import train

OBJECTIVE = {"ce": 1.0, "amd": 1000.0}


def hand_loop(teacher_path: str, images: int, batch: int, seed: int) -> float:
    """Images/s of the plainest loop over the same data, models and objective."""
    from kd_core.checkpoints import load_checkpoint

    torch.manual_seed(seed)
    teacher = load_checkpoint(teacher_path).model.eval().requires_grad_(False)
    student = create_model("resnet20", num_classes=10).train()
    objective = Objective(OBJECTIVE)
    optimizer = torch.optim.SGD(student.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    data = create_dataset("shapes", split="train", augment=True, limit=images)
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(data, batch_size=batch, sampler=RandomSampler(data, generator=generator))
    start = time.perf_counter()
    for x, y in loader:
        with torch.no_grad():
            teacher_out = extract_features(teacher, x)
        total, _ = objective(extract_features(student, x), teacher_out, y)
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
    return len(data) / (time.perf_counter() - start)


def trainer_run(teacher_path: str, images: int, batch: int, seed: int) -> float:
    """Images/s of :func:`kd_core.training.trainer.train` (training steps of one epoch)."""
    config = TrainConfig(
        student="resnet20", teacher=teacher_path, dataset="shapes", objective=OBJECTIVE,
        epochs=1, batch_size=batch, limit_train=images, limit_test=batch, seed=seed,
        device="cpu", log_every=20, optimizer=OptimizerConfig(lr=0.05),
    )  # fmt: skip
    return train(config).history[-1]["images_per_second"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1280, help="training images per run")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each, alternating")
    args = parser.parse_args()
    import tempfile
    from pathlib import Path

    from kd_core.checkpoints import save_checkpoint

    torch.manual_seed(0)
    teacher_path = str(Path(tempfile.mkdtemp()) / "resnet56.pt")
    save_checkpoint(teacher_path, create_model("resnet56", num_classes=10), "resnet56", 10)
    create_dataset("shapes", split="train")  # generate / cache once, outside the timings
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, cpu; "
          f"resnet56 -> resnet20, ce + amd, batch 64, {args.images} images per run")  # fmt: skip
    trainer, hand = [], []
    for repeat in range(args.repeats):
        trainer.append(trainer_run(teacher_path, args.images, 64, repeat))
        hand.append(hand_loop(teacher_path, args.images, 64, repeat))
    t, h = statistics.median(trainer), statistics.median(hand)
    print(f"trainer   {t:8.1f} img/s  (runs: {', '.join(f'{v:.0f}' for v in trainer)})")
    print(f"hand loop {h:8.1f} img/s  (runs: {', '.join(f'{v:.0f}' for v in hand)})")
    print(f"ratio     {t / h:8.3f}x  (target >= 0.97x)")


if __name__ == "__main__":
    main()
