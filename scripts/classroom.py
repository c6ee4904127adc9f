"""The classroom group measured (`make classroom`): what a class sees when the Distill page's
compare mode trains vanilla, KD, AT and AMD side by side from the bundled teacher with the
``shapes-classroom`` preset, over seeds 0, 1, 2 — wall-clock time, test top-1 and the stage-3
attention cosine to the teacher of each student — written between the classroom markers of
``docs/results.md`` (every seed's numbers in ``docs/classroom.json``).

Budgets are decided before any result: the preset's (one epoch of the first 30,000 images) and,
to find the shortest budget at which AMD is ahead of training alone, one epoch of 10,000 and of
all 50,000 images; the table's 3-epoch budget is the longer reference (``make table``). All of
them are reported. On a quiet 2-core CPU a group of the preset's budget takes 3.2 minutes, so
the three budgets take about 30 minutes; finished runs are reused.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from pathlib import Path
from typing import Any

from make_table import BUSY_LOAD, paired_difference, verdict, write_section
from shapes_recipe import ROOT, RUNS, TEACHER_FILE, file_hash, train_or_reuse

from kd_core.training.config import TrainConfig, preset
from kd_core.training.methods import METHOD_SETS, METHODS
from kd_core.training.run_files import RunFiles
from kd_core.views.distill import CLASSROOM_PRESET

RESULTS_MD = ROOT / "docs" / "results.md"
RESULTS_JSON = ROOT / "docs" / "classroom.json"
START, END = "<!-- classroom:start (written by make classroom) -->", "<!-- classroom:end -->"
BUDGETS = (30_000, 10_000, 50_000)  # training images, one epoch: the preset's first
SEEDS = (0, 1, 2)
STUDENT = "resnet8"


def configs(limit_train: int, seed: int) -> list[TrainConfig]:
    """The classroom group of one budget and seed, as the Distill page's compare mode builds
    it (the preset, each method's objective, the bundled teacher)."""
    base = preset(CLASSROOM_PRESET)
    tag = file_hash(TEACHER_FILE)[:12]
    teacher = TEACHER_FILE.relative_to(ROOT).as_posix()
    return [
        base.with_overrides({
            **METHODS[name].overrides(), "student": STUDENT, "seed": seed,
            "teacher": teacher if METHODS[name].uses_teacher else None,
            "limit_train": None if limit_train >= 50_000 else limit_train,
            "name": f"classroom-{limit_train}-{name}-seed{seed}-teacher-{tag}",
        })
        for name in METHOD_SETS["classroom"]
    ]  # fmt: skip


def measure(budgets: list[int], seeds: list[int]) -> dict[str, Any]:
    results: dict[str, Any] = {"budgets": {}}
    for limit_train in budgets:
        entry = results["budgets"].setdefault(str(limit_train), {"groups": []})
        for seed in seeds:
            group = configs(limit_train, seed)
            dirs = [RUNS / "classroom" / c.name.split("-teacher-")[0] for c in group]
            records = train_or_reuse(group, dirs)
            entry["groups"].append({
                "seed": seed,
                "seconds": max(r["group_seconds"] or r["seconds"] for r in records),
                "load_average": max(max(r["load_average"] or [0.0]) for r in records),
                "students": {
                    name: {**record, "attention_cosine": _last_cosine(d)}
                    for name, record, d in zip(METHOD_SETS["classroom"], records, dirs,
                                               strict=True)
                },
            })  # fmt: skip
            write(results)
    return results


def _last_cosine(run_dir: Path) -> float | None:
    epochs = [r for r in RunFiles(run_dir).read_metrics() if r.get("kind") == "epoch"]
    return epochs[-1].get("attention_cosine") if epochs else None


def _runs(entry: dict, name: str) -> list[dict]:
    return [{"seed": g["seed"], **g["students"][name]} for g in entry["groups"]]


def report(results: dict[str, Any]) -> str:
    lines = [
        "| budget (images, 1 epoch) | group minutes | "
        + " | ".join(f"{METHODS[n].label} top-1" for n in METHOD_SETS["classroom"])
        + " | AMD − vanilla [95% CI] | "
        + " | ".join(f"{METHODS[n].label} attention cosine" for n in METHOD_SETS["classroom"])
        + " |",
        "| --- | --- | " + "--- | " * (2 * len(METHOD_SETS["classroom"]) + 1),
    ]
    for budget, entry in results["budgets"].items():
        minutes = [g["seconds"] / 60 for g in entry["groups"]]
        tops = [
            _mean_std([r["last_top1"] for r in _runs(entry, n)]) for n in METHOD_SETS["classroom"]
        ]
        diff = paired_difference(_runs(entry, "amd"), _runs(entry, "vanilla"))
        diff_text = "–" if diff is None else (
            f"{diff['mean']:+.2f} [{diff['low']:+.2f}, {diff['high']:+.2f}] ({verdict(diff)})"
        )  # fmt: skip
        cosines = [
            _mean_std([r["attention_cosine"] for r in _runs(entry, n)], 3)
            for n in METHOD_SETS["classroom"]
        ]
        lines.append(
            f"| {int(budget):,} | {_mean_std(minutes, 1)} | {' | '.join(tops)} | {diff_text} | "
            f"{' | '.join(cosines)} |"
        )
    missing = [f"{b:,}" for b in BUDGETS if str(b) not in results["budgets"]]
    if missing:
        lines.append(f"| {' and '.join(missing)} | not measured yet (`make classroom`) |")
    busy = [
        g["load_average"] for e in results["budgets"].values() for g in e["groups"]
        if g["load_average"] > BUSY_LOAD
    ]  # fmt: skip
    groups = sum(len(e["groups"]) for e in results["budgets"].values())
    lines += [
        "",
        "Mean ± std over the seeds of each budget (the same three for all). Minutes: the "
        "group's wall clock in `train_group` (data, teacher, training, each epoch's evaluation "
        "on the 10,000 test images and the attention probe); the page's worker adds a few "
        f"seconds to start. Timings: {len(busy)} of {groups} groups saw a "
        f"1-minute load average above {BUSY_LOAD} while they trained "
        f"({'not clean' if busy else 'a quiet machine'}).",
    ]
    return "\n".join(lines)


def _mean_std(values: list[float | None], digits: int = 2) -> str:
    numbers = [v for v in values if v is not None]
    if not numbers:
        return "–"
    std = statistics.stdev(numbers) if len(numbers) > 1 else 0.0
    return f"{statistics.mean(numbers):.{digits}f} ± {std:.{digits}f}"


def write(results: dict[str, Any]) -> None:
    write_section(RESULTS_MD, START, END, report(results))
    RESULTS_JSON.write_text(json.dumps(results, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", type=int, nargs="+", default=list(BUDGETS))
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    args = parser.parse_args()
    os.chdir(ROOT)  # configurations name the teacher file relative to the project root
    measure(args.budgets, args.seeds)
    print(f"wrote {RESULTS_MD.relative_to(ROOT)} and {RESULTS_JSON.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
