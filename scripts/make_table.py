"""The results table (`make table`): resnet8 students of the bundled resnet20 teacher on
``shapes``, several seeds per method, written to ``docs/results.md`` (and ``docs/results.json``).

Methods: vanilla (CE alone), KD, AT, AMD, AMD global+local, AMD+KD, and a vanilla student
trained twice as long, which separates faster optimisation from a better final student. Every
run uses the same data (``data_seed`` 0), schedule and budget; only the objective and the seed
change. About 75 minutes on a 2-core CPU with the defaults.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from kd_core.training.config import TrainConfig
from kd_core.training.optim import OptimizerConfig
from kd_core.training.run_files import RunFiles
from kd_core.training.trainer import train

ROOT = Path(__file__).resolve().parents[1]
TEACHER = ROOT / "assets" / "checkpoints" / "teacher_resnet20.pt"
RUNS = ROOT / "runs" / "table"
EPOCHS = 10
OPTIMIZER = OptimizerConfig(lr=0.05, schedule="cosine", warmup_epochs=1)
KD = {"kd": {"temperature": 4.0}}
METHODS = {
    # label: (objective, loss parameters, uses the teacher, epochs multiplier)
    "vanilla": ({"ce": 1.0}, {}, False, 1),
    "vanilla, 2x epochs": ({"ce": 1.0}, {}, False, 2),
    "KD": ({"ce": 0.1, "kd": 0.9}, KD, True, 1),
    "AT": ({"ce": 1.0, "at": 1000.0}, {}, True, 1),
    "AMD": ({"ce": 1.0, "amd": 1000.0}, {}, True, 1),
    "AMD global+local": ({"ce": 1.0, "amd": 1000.0}, {"amd": {"local": True}}, True, 1),
    "AMD+KD": ({"ce": 0.1, "kd": 0.9, "amd": 1000.0}, KD, True, 1),
}
# Published CIFAR-100 top-1 (RepDistiller's table, shared/amd-spec.md), for context only.
CIFAR100 = [
    ("resnet56 -> resnet20", 72.34, 69.06, 70.66, 70.55),
    ("resnet32x4 -> resnet8x4", 79.42, 72.50, 73.33, 73.44),
    ("wrn_40_2 -> wrn_16_2", 75.61, 73.26, 74.92, 74.08),
    ("vgg13 -> vgg8", 74.64, 70.36, 72.98, 71.43),
]


def run_all(seeds: list[int], epochs: int, limit_train: int | None) -> dict:
    results: dict[str, list[dict]] = {}
    for label, (objective, params, uses_teacher, multiplier) in METHODS.items():
        for seed in seeds:
            config = TrainConfig(
                student="resnet8", teacher=str(TEACHER) if uses_teacher else None,
                dataset="shapes", objective=objective, loss_params=params,
                epochs=epochs * multiplier, seed=seed, optimizer=OPTIMIZER,
                limit_train=limit_train, log_every=100, device="auto",
            )  # fmt: skip
            slug = label.replace(" ", "_").replace(",", "").replace("+", "_plus_")
            run = _finished_run(RUNS / f"{slug}-seed{seed}", config) or _train(config, slug)
            results.setdefault(label, []).append({"seed": seed, **run})
            print(f"{label}, seed {seed}: {run['last_top1']:.2f}% ({run['seconds']:.0f} s)",
                  flush=True)  # fmt: skip
    return results


def _train(config: TrainConfig, slug: str) -> dict:
    started = time.time()
    result = train(config, RUNS / f"{slug}-seed{config.seed}")
    return {"last_top1": result.last_top1, "best_top1": result.best_top1,
            "seconds": round(time.time() - started, 1), "epochs": config.epochs}  # fmt: skip


def _finished_run(run_dir: Path, config: TrainConfig) -> dict | None:
    """The result of an earlier run of this exact configuration, so an interrupted table resumes."""
    files = RunFiles(run_dir)
    if not (files.status.exists() and files.config.exists()):
        return None
    status = files.read_status()
    earlier = TrainConfig.from_dict(json.loads(files.config.read_text()))
    if status.get("state") != "finished" or earlier.to_dict() != config.to_dict():
        return None
    return {"last_top1": status["last_top1"], "best_top1": status["best_top1"],
            "seconds": round(status["finished_at"] - status["started_at"], 1),
            "epochs": config.epochs}  # fmt: skip


def _mean_std(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.2f} ± {std:.2f}"


def write_report(results: dict, seeds: list[int], epochs: int, minutes: float) -> None:
    manifest = json.loads((TEACHER.parent / "manifest.json").read_text())
    teacher = next(c for c in manifest["checkpoints"] if c["role"] == "teacher")
    lines = [
        "# Results on `shapes`: AMD and the usual baselines",
        "",
        f"resnet8 students of the bundled resnet20 teacher (top-1 {teacher['top1']:.2f}% on the "
        f"`shapes` test split), {epochs} epochs each (the 2x row: {2 * epochs}), batch 64, SGD "
        "0.05 with cosine decay and one warm-up epoch, the same 10,000 training and 2,000 test "
        f"images for every run; seeds {', '.join(map(str, seeds))}. Top-1 on the test split "
        "after the last epoch (mean ± standard deviation over seeds) and the best epoch's.",
        f"Budget: {minutes:.0f} minutes for the whole table on a 2-core CPU (`make table`).",
        "",
        "| method | top-1, last epoch | top-1, best epoch | minutes per run |",
        "| --- | --- | --- | --- |",
    ]
    for label, runs in results.items():
        lines.append(
            f"| {label} | {_mean_std([r['last_top1'] for r in runs])} | "
            f"{_mean_std([r['best_top1'] for r in runs])} | "
            f"{statistics.mean(r['seconds'] for r in runs) / 60:.1f} |"
        )
    lines += [
        "",
        "For context, the community's published CIFAR-100 top-1 (RepDistiller's table, 240 "
        "epochs; not comparable with the numbers above, which are on another dataset):",
        "",
        "| teacher -> student | teacher | student alone | KD | AT |",
        "| --- | --- | --- | --- | --- |",
        *[f"| {pair} | {t} | {s} | {kd} | {at} |" for pair, t, s, kd, at in CIFAR100],
        "",
    ]
    (ROOT / "docs" / "results.md").write_text("\n".join(lines))
    (ROOT / "docs" / "results.json").write_text(json.dumps(results, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--limit-train", type=int, default=None, help="fewer images (a test)")
    args = parser.parse_args()
    if not TEACHER.exists():
        raise SystemExit(f"{TEACHER} is missing: run `make assets` first.")
    started = time.time()
    results = run_all(args.seeds, args.epochs, args.limit_train)
    write_report(results, args.seeds, args.epochs, (time.time() - started) / 60)
    print("wrote docs/results.md")


if __name__ == "__main__":
    main()
