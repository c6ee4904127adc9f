"""Train the bundled checkpoints (`make assets`): the resnet20 teacher and six resnet8 students
on ``shapes`` (vanilla, KD, AT, AMD, AMD global+local, AMD+KD), stored in fp16 with a manifest.

The recipe is :mod:`shapes_recipe` (the same as the results table's): about 80 minutes for the
teacher and 20 for the students on a quiet 2-core CPU. The students learn from the shipped fp16
teacher file, exactly what users get, and are the seed-0 runs of ``make table``, which reuses
them. Finished runs with an identical configuration are reused, so an interrupted ``make
assets`` resumes. Run folders go to ``runs/`` (not committed); the compact checkpoints and
``manifest.json`` to ``assets/checkpoints/``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
from shapes_recipe import (
    CHECKPOINTS,
    ROOT,
    ROWS,
    TEACHER_CONFIG,
    TEACHER_RUN,
    file_hash,
    student_config,
    student_run_dir,
    train_or_reuse,
)

from kd_core.checkpoints import load_checkpoint, save_checkpoint
from kd_core.data import create_dataset, dataset_info
from kd_core.training.config import TrainConfig
from kd_core.training.device import resolve_device, resolve_precision
from kd_core.training.evaluation import evaluate


def compact(run_dir: Path, name: str, role: str, config: TrainConfig, record: dict) -> dict:
    """The run's last checkpoint in fp16 under ``assets/checkpoints``, and its manifest entry;
    ``top1`` is the shipped file's own accuracy on the whole test split."""
    last = load_checkpoint(run_dir / "last.pt")
    path = CHECKPOINTS / f"{name}.pt"
    metadata = {**last.metadata, "role": role, "name": name}
    save_checkpoint(path, last.model.half(), last.arch, last.num_classes, metadata=metadata)
    entry_config = config.to_dict()
    if entry_config["teacher"]:
        entry_config["teacher"] = "teacher_resnet20"
    return {
        "name": name,
        "role": role,
        "file": path.relative_to(ROOT).as_posix(),
        "sha256": file_hash(path),
        "arch": last.arch,
        "dataset": config.dataset,
        "data_seed": config.data_seed,
        "objective": config.objective,
        "loss_params": config.loss_params,
        "epochs": config.epochs,
        "top1": evaluate_shipped(path),
        "run_top1": round(record["last_top1"], 2),
        "training_seconds": record["seconds"],
        "seconds_per_epoch": record["seconds_per_epoch"],
        "load_average": record["load_average"],
        "config": entry_config,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit-train", type=int, default=None, help="fewer images (a test)")
    parser.add_argument("--teacher-epochs", type=int, default=TEACHER_CONFIG.epochs)
    args = parser.parse_args()
    os.chdir(ROOT)  # configurations name the teacher file relative to the project root
    CHECKPOINTS.mkdir(parents=True, exist_ok=True)
    teacher_config = TEACHER_CONFIG.with_overrides(
        {"limit_train": args.limit_train, "epochs": args.teacher_epochs}
    )
    [record] = train_or_reuse([teacher_config], [TEACHER_RUN])
    entries = [compact(TEACHER_RUN, "teacher_resnet20", "teacher", teacher_config, record)]
    print(f"shipped teacher (fp16): top-1 {entries[0]['top1']:.2f}%", flush=True)
    bundled = [row for row in ROWS if row.bundled]
    configs = [student_config(row, seed=0, limit_train=args.limit_train) for row in bundled]
    run_dirs = [student_run_dir(row, 0) for row in bundled]
    records = train_or_reuse(configs, run_dirs)
    for row, config, run_dir, record in zip(bundled, configs, run_dirs, records, strict=True):
        name = f"student_resnet8_{row.slug}"
        entries.append(compact(run_dir, name, "student", config, record))
    manifest = {
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        "torch": torch.__version__,
        "dataset": dataset_info("shapes").name,
        "checkpoints": entries,
    }
    (CHECKPOINTS / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"wrote {len(entries)} checkpoints and manifest.json to {CHECKPOINTS}")


def evaluate_shipped(path: Path) -> float:
    """Top-1 (percent) of the shipped file itself (fp16 weights, computed in fp32) on the whole
    ``shapes`` test split."""
    device = resolve_device("auto")
    model = load_checkpoint(path).model.float().to(device)
    test = create_dataset("shapes", split="test", augment=False, seed=0)
    loader = torch.utils.data.DataLoader(test, batch_size=256)
    return round(evaluate(model, loader, device, resolve_precision("fp32", device))["top1"], 2)


if __name__ == "__main__":
    main()
