"""Train the bundled checkpoints (`make assets`): a resnet20 teacher and five resnet8 students
on ``shapes`` (vanilla, KD, AT, AMD, AMD global+local), stored in fp16 with a manifest.

Reproducible: fixed seeds, the configurations are in this file and in the manifest. About an
hour on a 2-core CPU. Run folders go to ``runs/assets/`` (not committed); the compact
checkpoints and ``manifest.json`` go to ``assets/checkpoints/``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import torch

from kd_core.checkpoints import load_checkpoint, save_checkpoint
from kd_core.data import dataset_info
from kd_core.training.config import TrainConfig
from kd_core.training.optim import OptimizerConfig
from kd_core.training.trainer import train

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "assets" / "checkpoints"
RUNS = ROOT / "runs" / "assets"
SEED = 0
TEACHER_EPOCHS = 30
STUDENT_EPOCHS = 20
OPTIMIZER = OptimizerConfig(lr=0.05, schedule="cosine", warmup_epochs=1)
STUDENTS = {
    "vanilla": ({"ce": 1.0}, {}),
    "kd": ({"ce": 0.1, "kd": 0.9}, {"kd": {"temperature": 4.0}}),
    "at": ({"ce": 1.0, "at": 1000.0}, {}),
    "amd": ({"ce": 1.0, "amd": 1000.0}, {}),
    "amd_local": ({"ce": 1.0, "amd": 1000.0}, {"amd": {"local": True}}),
}


def _compact(run_dir: Path, name: str, role: str, config: TrainConfig, seconds: float) -> dict:
    """The run's best checkpoint in fp16 under ``assets/checkpoints``, and its manifest entry."""
    best = load_checkpoint(run_dir / "best.pt")
    path = OUT / f"{name}.pt"
    metadata = {**best.metadata, "role": role, "name": name}
    save_checkpoint(path, best.model.half(), best.arch, best.num_classes, metadata=metadata)
    return {
        "name": name,
        "role": role,
        "file": str(path.relative_to(ROOT)),
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "arch": best.arch,
        "dataset": config.dataset,
        "data_seed": config.data_seed,
        "objective": config.objective,
        "loss_params": config.loss_params,
        "epochs": config.epochs,
        "best_epoch": best.metadata.get("epoch"),
        "top1": best.metadata.get("top1"),
        "training_seconds": round(seconds, 1),
        "config": config.to_dict(),
    }


def _previous_entries() -> dict[str, dict]:
    manifest = json.loads((OUT / "manifest.json").read_text())
    return {entry["name"]: entry for entry in manifest["checkpoints"]}


def _train(name: str, config: TrainConfig) -> tuple[Path, float]:
    run_dir = RUNS / name
    started = time.time()
    result = train(config, run_dir)
    print(
        f"{name}: best top-1 {result.best_top1:.2f}% in {time.time() - started:.0f} s", flush=True
    )
    return run_dir, time.time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher-epochs", type=int, default=TEACHER_EPOCHS)
    parser.add_argument("--student-epochs", type=int, default=STUDENT_EPOCHS)
    parser.add_argument("--limit-train", type=int, default=None, help="fewer images (a test)")
    parser.add_argument(
        "--students", nargs="+", choices=list(STUDENTS), default=list(STUDENTS),
        help="retrain only these students; the others keep their manifest entries",
    )  # fmt: skip
    parser.add_argument(
        "--reuse-teacher", action="store_true",
        help=f"use the teacher run already in {RUNS.relative_to(ROOT)}/ instead of retraining it",
    )  # fmt: skip
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    common = {"dataset": "shapes", "seed": SEED, "device": "auto", "optimizer": OPTIMIZER,
              "limit_train": args.limit_train, "log_every": 50}  # fmt: skip
    previous = (
        _previous_entries() if args.reuse_teacher or len(args.students) < len(STUDENTS) else {}
    )
    entries = []
    teacher_config = TrainConfig(student="resnet20", epochs=args.teacher_epochs, **common)
    if args.reuse_teacher:
        run_dir = RUNS / "teacher_resnet20"
        entries.append(previous["teacher_resnet20"])
    else:
        run_dir, seconds = _train("teacher_resnet20", teacher_config)
        entries.append(_compact(run_dir, "teacher_resnet20", "teacher", teacher_config, seconds))
    teacher_path = str(run_dir / "best.pt")  # the fp32 teacher, exactly what the students saw
    for label, (objective, params) in STUDENTS.items():
        if label not in args.students:
            entries.append(previous[f"student_resnet8_{label}"])
            continue
        teacher = None if label == "vanilla" else teacher_path
        config = TrainConfig(student="resnet8", teacher=teacher, objective=objective,
                             loss_params=params, epochs=args.student_epochs, **common)  # fmt: skip
        name = f"student_resnet8_{label}"
        run_dir, seconds = _train(name, config)
        entry = _compact(run_dir, name, "student", config, seconds)
        if entry["config"]["teacher"]:
            entry["config"]["teacher"] = "teacher_resnet20"
        entries.append(entry)
    manifest = {
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        "torch": torch.__version__,
        "dataset": dataset_info("shapes").name,
        "checkpoints": entries,
    }
    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"wrote {len(entries)} checkpoints and manifest.json to {OUT}")


if __name__ == "__main__":
    main()
