"""The results table (`make table`): resnet8 students of the bundled resnet20 teacher on
``shapes``, ten methods x three seeds (:mod:`shapes_recipe`), written between the table markers
of ``docs/results.md``, every seed's numbers in ``docs/results.json``.

Per method: top-1 after the last epoch (mean ± std over seeds); the paired difference to vanilla
(same seed: same initial weights and batch order) with its 95% confidence interval from
Student's t over seeds; and the measures of AMD's claim from :mod:`kd_core.analysis.transfer`
(attention inside the object, angular separation of object and background positions, distance
of the θ distribution to the teacher's, attention cosine; deepest stage, 2,000 test images).
Also the ratio of the distillation terms' gradient norm to the CE term's at initialisation,
which explains the AT rows. Finished runs are reused, so an interrupted table resumes;
``--report-only`` writes the report from the runs finished so far. About 50 minutes per seed
on a 2-core CPU (measured: each seed's ten students train as one group, 49.4 and 44.9 minutes
without their pauses, other work beside them).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
from pathlib import Path
from typing import Any

import torch
from scipy import stats
from shapes_recipe import (
    ROOT,
    ROWS,
    SEEDS,
    STUDENT_BATCH,
    STUDENT_EPOCHS,
    STUDENT_OPTIMIZER,
    TEACHER_FILE,
    Row,
    finished_run,
    student_config,
    student_run_dir,
    train_or_reuse,
)

from kd_core.analysis.extraction import extract_feature_set
from kd_core.analysis.transfer import transfer_measures
from kd_core.checkpoints import load_checkpoint
from kd_core.data import create_dataset
from kd_core.training.distiller import build_distiller

RESULTS_MD = ROOT / "docs" / "results.md"
RESULTS_JSON = ROOT / "docs" / "results.json"
START, END = "<!-- table:start (written by make table) -->", "<!-- table:end -->"
MEASURE_SAMPLES = 2000
GRADIENT_BATCHES = 8
BUSY_LOAD = 2.5  # a 1-minute load average above this on 2 cores: the timing is not clean
# Published CIFAR-100 top-1 (RepDistiller's table, shared/amd-spec.md), for context only.
CIFAR100 = [
    ("resnet56 -> resnet20", 72.34, 69.06, 70.66, 70.55),
    ("resnet32x4 -> resnet8x4", 79.42, 72.50, 73.33, 73.44),
    ("wrn_40_2 -> wrn_16_2", 75.61, 73.26, 74.92, 74.08),
    ("vgg13 -> vgg8", 74.64, 70.36, 72.98, 71.43),
]


def split_size(split: str) -> int:
    return len(create_dataset("shapes", split=split, augment=False, seed=0))


def feature_set(path: Path, name: str, test_set: Any):
    loaded = load_checkpoint(path)
    return extract_feature_set(
        loaded.model.float(), test_set, name=name, arch=loaded.arch, samples=MEASURE_SAMPLES
    )


def gradient_ratio(row: Row) -> float | None:
    """``||grad of the distillation terms|| / ||grad of the weighted CE term||`` on the
    student's weights at initialisation (seed 0), averaged over the first batches of 64
    un-augmented training images; ``None`` for CE alone."""
    if not row.method.uses_teacher:
        return None
    config = student_config(row, seed=0)
    torch.manual_seed(config.seed)
    distiller = build_distiller(config, num_classes=10)
    params = [p for p in distiller.student.parameters() if p.requires_grad]
    train_set = create_dataset("shapes", split="train", augment=False, seed=0)
    ratios = []
    for batch in range(GRADIENT_BATCHES):
        items = [train_set[i] for i in range(batch * 64, batch * 64 + 64)]
        images = torch.stack([image for image, _ in items])
        labels = torch.tensor([label for _, label in items])
        _, losses = distiller.forward_train(images, labels)
        distill = sum(value for name, value in losses.items() if name != "ce")
        norms = [_grad_norm(loss, params) for loss in (distill, losses["ce"])]
        ratios.append(norms[0] / norms[1])
    return statistics.mean(ratios)


def _grad_norm(loss: torch.Tensor, params: list[torch.Tensor]) -> float:
    grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return math.sqrt(sum(float(g.double().pow(2).sum()) for g in grads if g is not None))


def recorded_runs() -> dict[str, dict[str, Any]]:
    """The runs already in ``docs/results.json``, by configuration: the table resumes from
    them on any machine (run folders are not committed)."""
    if not RESULTS_JSON.exists():
        return {}
    earlier = json.loads(RESULTS_JSON.read_text())
    runs = [run for entry in earlier.get("methods", {}).values() for run in entry["runs"]]
    return {json.dumps(run["config"], sort_keys=True): run for run in runs if "config" in run}


def collect(seeds: list[int], limit_train: int | None, train_missing: bool) -> dict[str, Any]:
    """Every method's runs with their measures: from ``docs/results.json`` when recorded with
    the identical configuration, else from a finished run folder, else trained now (unless
    ``train_missing`` is false; the missing runs of a seed train as one group). The report is
    rewritten after every seed."""
    recorded = recorded_runs()
    test_set = create_dataset("shapes", split="test", augment=False, seed=0)
    teacher = feature_set(TEACHER_FILE, "teacher", test_set)
    teacher_measures = transfer_measures(teacher, teacher)
    results: dict[str, Any] = {
        "methods": {},
        "teacher": {
            "mass_inside": teacher_measures.teacher_mass_inside,
            "separation": teacher_measures.teacher_separation,
            "stage": teacher_measures.teacher_stage,
        },
    }
    for seed in seeds:  # seed by seed: a partial table has whole seeds first
        configs = {r.slug: student_config(r, seed, limit_train) for r in ROWS}
        records = {
            r.slug: recorded.get(json.dumps(configs[r.slug].to_dict(), sort_keys=True))
            for r in ROWS
        }
        missing = [r for r in ROWS if records[r.slug] is None]
        if missing and train_missing:
            runs = train_or_reuse(
                [configs[r.slug] for r in missing], [student_run_dir(r, seed) for r in missing]
            )
        else:
            runs = [finished_run(student_run_dir(r, seed), configs[r.slug]) for r in missing]
        for row, run in zip(missing, runs, strict=True):
            if run is None:
                continue
            student = feature_set(student_run_dir(row, seed) / "last.pt", row.label, test_set)
            measures = transfer_measures(teacher, student).as_dict()
            records[row.slug] = {
                "seed": seed, **run, "measures": measures, "config": configs[row.slug].to_dict()
            }  # fmt: skip
        for row in ROWS:
            if records[row.slug] is None:
                continue
            entry = results["methods"].setdefault(row.label, {"runs": []})
            entry["runs"].append(records[row.slug])
            if "gradient_ratio_at_init" not in entry:
                entry["gradient_ratio_at_init"] = gradient_ratio(row)
        write(results, seeds)
    return results


def paired_difference(runs: list[dict], baseline: list[dict]) -> dict[str, Any] | None:
    """Mean of ``top1(method, seed) - top1(baseline, seed)`` over the seeds both have, with the
    95% t interval over seeds (``None`` below two seeds)."""
    base = {r["seed"]: r["last_top1"] for r in baseline}
    diffs = [r["last_top1"] - base[r["seed"]] for r in runs if r["seed"] in base]
    if len(diffs) < 2:
        return None
    mean, sd = statistics.mean(diffs), statistics.stdev(diffs)
    half = stats.t.ppf(0.975, len(diffs) - 1) * sd / math.sqrt(len(diffs))
    return {"mean": mean, "low": mean - half, "high": mean + half, "seeds": len(diffs)}


def verdict(diff: dict[str, Any] | None) -> str:
    if diff is None:
        return "too few seeds"
    if diff["low"] > 0:
        return "better"
    if diff["high"] < 0:
        return "worse"
    return "cannot be told apart"


def _mean_std(values: list[float], digits: int = 2) -> str:
    if not values:
        return "–"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.{digits}f} ± {std:.{digits}f}"


def _diff_text(diff: dict[str, Any] | None) -> str:
    if diff is None:
        return "–"
    return f"{diff['mean']:+.2f} [{diff['low']:+.2f}, {diff['high']:+.2f}]"


def _measure(runs: list[dict], key: str, scale: float = 1.0, digits: int = 2) -> str:
    values = [r["measures"][key] * scale for r in runs if r["measures"][key] is not None]
    return _mean_std(values, digits)


def report(results: dict[str, Any], seeds: list[int]) -> str:
    """The markdown between the table markers."""
    methods = results["methods"]
    manifest = json.loads((TEACHER_FILE.parent / "manifest.json").read_text())
    teacher = next(c for c in manifest["checkpoints"] if c["role"] == "teacher")
    vanilla = methods.get("vanilla", {}).get("runs", [])
    kd = methods.get("KD", {}).get("runs", [])
    done = sum(len(m["runs"]) for m in methods.values())
    planned = len(ROWS) * len(seeds)
    lines = [
        f"Teacher: the shipped resnet20, top-1 **{teacher['top1']:.2f}%** on the `shapes` test "
        f"split. Students: resnet8, {STUDENT_EPOCHS} epochs of the {split_size('train'):,} "
        f"training images, batch {STUDENT_BATCH}, SGD lr {STUDENT_OPTIMIZER.lr} with a "
        f"{STUDENT_OPTIMIZER.warmup_epochs}-epoch warm-up and cosine decay, seeds "
        f"{', '.join(map(str, seeds))} (the same initial weights and batch order for every "
        f"method of a seed). Top-1 on the {split_size('test'):,} test images after the last "
        "epoch.",
        "",
    ]
    if done < planned:
        lines += [f"**Partial table: {done} of {planned} runs finished so far.**", ""]
    lines += [
        "| method | top-1 | Δ vs vanilla [95% CI] | verdict | attention in object | "
        "separation | θ distance to teacher (°) | attention cosine | grad ratio at init | "
        "s / epoch |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in ROWS:
        entry = methods.get(row.label)
        if entry is None:
            continue
        runs = entry["runs"]
        diff = paired_difference(runs, vanilla) if row.label != "vanilla" else None
        ratio = entry["gradient_ratio_at_init"]
        per_epoch = [s for r in runs for s in r["seconds_per_epoch"]]
        lines.append(
            f"| {row.label} | {_mean_std([r['last_top1'] for r in runs])} | "
            f"{_diff_text(diff)} | {verdict(diff) if row.label != 'vanilla' else ''} | "
            f"{_measure(runs, 'mass_inside', 100, 1)}% | {_measure(runs, 'separation')} | "
            f"{_measure(runs, 'theta_distance_deg')} | "
            f"{_measure(runs, 'attention_cosine', 1, 3)} | "
            f"{'–' if ratio is None else f'{ratio:.2f}'} | "
            f"{statistics.mean(per_epoch):.0f} |"
        )
    t = results["teacher"]
    if t is not None:
        lines.append(
            f"| *teacher* | {teacher['top1']:.2f} | | | {100 * t['mass_inside']:.1f}% | "
            f"{t['separation']:.2f} | 0 | 1 | | |"
        )
    lines += ["", *_verdict_sentences(methods, vanilla, kd), "", *_timing_note(methods)]
    lines += [
        "",
        "Columns: *attention in object* is the share of the student's stage-3 attention map "
        "inside the object mask (the object covers about 11% of the image: chance level); "
        "*separation* is (mean θ of background positions − mean θ of object positions) / pooled "
        "standard deviation at stage 3, positions split by the object mask; *θ distance* is the "
        "Wasserstein-1 distance between the student's and the teacher's θ at stage 3; *attention "
        "cosine* is the cosine of the two stage-3 attention maps (as on the Attention page); all "
        f"on {MEASURE_SAMPLES:,} test images, by `kd_core.analysis.transfer`. *grad ratio at "
        "init* is ||∇ distillation terms|| / ||∇ weighted CE term|| on the student's weights "
        "before training (seed 0, 8 batches of 64).",
        "",
        "For context, the community's published CIFAR-100 top-1 (RepDistiller's table, 240 "
        "epochs; not comparable with the numbers above, which are on another dataset):",
        "",
        "| teacher -> student | teacher | student alone | KD | AT |",
        "| --- | --- | --- | --- | --- |",
        *[f"| {pair} | {t} | {s} | {k} | {a} |" for pair, t, s, k, a in CIFAR100],
    ]
    return "\n".join(lines)


def _verdict_sentences(methods: dict, vanilla: list[dict], kd: list[dict]) -> list[str]:
    """The verdict in words, from the intervals alone (no number chosen by hand)."""
    sentences = []
    for label, against, name in [
        ("AMD, beta 1,000", vanilla, "vanilla"),
        ("AMD, beta 1,000", kd, "KD"),
        ("AMD+KD", kd, "KD"),
        ("AT, beta 1,000", vanilla, "vanilla"),
    ]:
        runs = methods.get(label, {}).get("runs", [])
        diff = paired_difference(runs, against)
        if diff is None:
            continue
        word = {
            "better": "is better than",
            "worse": "is worse than",
            "cannot be told apart": "cannot be told apart from",
        }[verdict(diff)]
        sentences.append(
            f"- **{label} {word} {name}** here: {diff['mean']:+.2f} points "
            f"(95% CI {diff['low']:+.2f} to {diff['high']:+.2f}, {diff['seeds']} paired seeds)."
        )
    return sentences


def _timing_note(methods: dict) -> list[str]:
    loads = [
        max(r["load_average"]) for m in methods.values() for r in m["runs"] if r.get("load_average")
    ]
    busy = sum(load > BUSY_LOAD for load in loads)
    if not loads:
        return ["Timings: no load average was recorded with these runs; treat them as not clean."]
    if busy:
        return [
            f"Timings: {busy} of {len(loads)} runs saw a 1-minute load average above {BUSY_LOAD} "
            "while they trained (sampled every 20 s from seed 1 on; before and after training "
            "for the first seed-0 runs) on this 2-core machine, other work beside them: their "
            "seconds per epoch are not clean."
        ]
    return [f"Timings: every run saw a load average at most {BUSY_LOAD}: a quiet machine."]


def write_section(path: Path, start: str, end: str, body: str) -> None:
    """Replace what lies between the markers ``start`` and ``end`` of ``path`` with ``body``."""
    text = path.read_text() if path.exists() else f"# Results\n\n{start}\n{end}\n"
    if start not in text or end not in text:
        raise SystemExit(f"{path} lacks the markers {start} ... {end}.")
    head, rest = text.split(start, 1)
    tail = rest.split(end, 1)[1]
    path.write_text(f"{head}{start}\n{body}\n{end}{tail}")


def write(results: dict[str, Any], seeds: list[int]) -> None:
    write_section(RESULTS_MD, START, END, report(results, seeds))
    RESULTS_JSON.write_text(json.dumps(results, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--limit-train", type=int, default=None, help="fewer images (a test)")
    parser.add_argument(
        "--report-only", action="store_true", help="write the report from finished runs only"
    )
    args = parser.parse_args()
    os.chdir(ROOT)  # configurations name the teacher file relative to the project root
    if not TEACHER_FILE.exists():
        raise SystemExit(f"{TEACHER_FILE} is missing: run `make assets` first.")
    collect(args.seeds, args.limit_train, train_missing=not args.report_only)
    print(f"wrote {RESULTS_MD.relative_to(ROOT)} and {RESULTS_JSON.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
