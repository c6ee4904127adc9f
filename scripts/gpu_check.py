"""The one GPU check: the CUDA tests, the GPU benchmark, and ``docs/gpu.md`` with every figure.

    make gpu-check            # = PYTHONPATH=. python3 scripts/gpu_check.py

For a machine whose ``python3`` has PyTorch and no network: kd_core needs no installing
(``PYTHONPATH=.``), the app's packages are not needed. The checks of
``tests/cuda/cuda_checks.py`` run through pytest when it is importable, else through the tiny
runner below (the output and docs/gpu.md say which); then ``benchmarks/bench_gpu.py``; then
the AMD loss under bf16 against fp32. Everything within :data:`BUDGET_SECONDS` (8 minutes).

``--device cpu`` runs the same on the CPU (checks in fp32 over Gloo, the benchmark's small
sizes) and writes ``--out`` (not docs/gpu.md): how the script itself is tested where no GPU is
lent.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
BUDGET_SECONDS = 8 * 60
CHECKS_SECONDS = 240
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}


def run_checks_with_pytest() -> list[dict]:
    """The CUDA tests through pytest; one record per test from its JUnit report."""
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "junit.xml"
        command = [sys.executable, "-m", "pytest", "tests/cuda", "-q", "-p", "no:cacheprovider",
                   "-o", "addopts=", f"--junitxml={report}"]  # fmt: skip
        subprocess.run(command, cwd=ROOT, env=ENV, timeout=CHECKS_SECONDS, check=False)
        records = []
        for case in ElementTree.parse(report).getroot().iter("testcase"):
            found = (case.find(tag) for tag in ("failure", "error", "skipped"))
            problem = next((element for element in found if element is not None), None)
            outcome = "passed" if problem is None else problem.tag.replace("failure", "failed")
            message = "" if problem is None else (problem.get("message") or "")[:300]
            records.append({"check": case.get("name"), "outcome": outcome,
                            "seconds": float(case.get("time", 0)), "message": message})  # fmt: skip
    return records


def run_checks_builtin(device: str) -> list[dict]:
    """The same checks without pytest: each in a fresh temporary folder, failures caught."""
    sys.path.insert(0, str(ROOT))
    from tests.cuda.cuda_checks import CHECKS

    records = []
    for check in CHECKS:
        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as folder:
            try:
                check(Path(folder), torch.device(device))
                outcome, message = "passed", ""
            except Exception as error:
                outcome, message = "failed", f"{type(error).__name__}: {error}"[:300]
                traceback.print_exc()
        seconds = time.perf_counter() - started
        print(f"{outcome.upper():7} {check.__name__} ({seconds:.1f} s) {message}", flush=True)
        records.append({"check": check.__name__, "outcome": outcome, "seconds": seconds,
                        "message": message})  # fmt: skip
    return records


def run_benchmark(small: bool, seconds: float) -> dict | None:
    """``benchmarks/bench_gpu.py``'s figures (those of the cases it finished, when it ran out
    of time or failed midway), or ``None`` when it measured nothing."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "bench.json"
        command = [sys.executable, "benchmarks/bench_gpu.py", "--json", str(out)]
        command += ["--small"] if small else []
        try:
            subprocess.run(command, cwd=ROOT, env=ENV, timeout=max(seconds, 1), check=True)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
            print(f"The benchmark did not finish: {error}", flush=True)
        return json.loads(out.read_text()) if out.is_file() else None


def amd_bf16_difference(device: str) -> dict[str, float]:
    """Relative difference of AMD (global, global+local) between a bf16-autocast forward pass
    of resnet8 and resnet20 and an fp32 one, on the same random weights and images."""
    sys.path.insert(0, str(ROOT))
    from kd_core.losses import build_loss
    from kd_core.models import create_model
    from kd_core.models.features import extract_features

    torch.manual_seed(0)
    student = create_model("resnet8", num_classes=100).to(device).eval()
    teacher = create_model("resnet20", num_classes=100).to(device).eval()
    images = torch.randn(64, 3, 32, 32, device=device)
    figures = {}
    for local in (False, True):
        amd = build_loss("amd", margin=1.35, scale=64.0, local=local)
        with torch.no_grad():
            fp32 = amd(extract_features(student, images).stage_list,
                       extract_features(teacher, images).stage_list)  # fmt: skip
            with torch.autocast(torch.device(device).type, dtype=torch.bfloat16):
                bf16 = amd(extract_features(student, images).stage_list,
                           extract_features(teacher, images).stage_list)  # fmt: skip
        figures["global+local" if local else "global"] = abs(bf16.item() / fp32.item() - 1)
    return figures


def goals(bench: dict | None) -> list[str]:
    """The issue's goals for resnet32x4 -> resnet8x4 at batch 128, met or not."""
    if bench is None:
        return ["The benchmark did not finish: no goal could be checked."]
    rate = {
        (c["path"], c["compile"]): c["images_per_second"]
        for c in bench["cases"]
        if c["teacher"] == "resnet32x4" and c["batch"] == 128
    }
    lines = []
    if ("loader", False) in rate and ("device", False) in rate:
        ratio = rate["device", False] / rate["loader", False]
        lines.append(f"Data on the device / loader, compile off: {ratio:.1f}x (goal: at least 3x): "
                     f"{'met' if ratio >= 3 else 'not met'}.")  # fmt: skip
    if ("device", True) in rate:
        best = rate["device", True]
        verdict = "met" if best >= 25_000 else "not met"
        lines.append(
            f"Data on the device, compiled, {bench['precision']}: {best:,.0f} img/s (goal: at "
            f"least 25,000; stretch 40,000): {verdict}."
        )
    return lines or ["The batch-128 cases of resnet32x4 -> resnet8x4 were not in this run."]


def markdown(facts: dict) -> str:
    """docs/gpu.md from what the run measured."""
    lines = [
        "# GPU figures",
        "",
        f"Measured by `make gpu-check` (`scripts/gpu_check.py`) on {facts['date']}: "
        f"**{facts['device']}**, torch {facts['torch']}, Python {facts['python']}; "
        f"{facts['seconds']:.0f} s in all.",
        "",
        f"## CUDA checks ({facts['runner']})",
        "",
        "| check | outcome | seconds |",
        "| --- | --- | ---: |",
    ]
    for record in facts["checks"]:
        message = f" ({record['message']})" if record["message"] else ""
        lines.append(f"| {record['check']} | {record['outcome']}{message} | "
                     f"{record['seconds']:.1f} |")  # fmt: skip
    lines += ["", "## Distillation speed (`benchmarks/bench_gpu.py`)", ""]
    bench = facts["bench"]
    timer = "CUDA events" if facts["cuda"] else "wall clock"
    if bench is None:
        lines.append("The benchmark measured nothing (see the command's output).")
    else:
        lines += [
            f"CE + KD + AMD, {bench['images']:,} random CIFAR-100-shaped images held as the data "
            f"set, {bench['precision']}; {bench['warmup_steps']} warm-up steps, then "
            f"{bench['timed_steps']} timed steps ({timer}). 240 epochs: RepDistiller's recipe "
            "(240 x 50,000 images) at that rate. Compile time: the first step's time beyond "
            "a steady step.",
            "",
            "| pair | batch | data | compile | img/s | 240 epochs (min) | compile (s) | peak MiB |",
            "| --- | ---: | --- | --- | ---: | ---: | ---: | ---: |",
        ]
        if len(bench["cases"]) < bench["planned_cases"]:
            lines.insert(-3, f"Cut short: {len(bench['cases'])} of {bench['planned_cases']} "
                         "cases finished within the time budget.\n")  # fmt: skip
        for c in bench["cases"]:
            compile_s = "–" if c["compile_seconds"] is None else f"{c['compile_seconds']:.1f}"
            memory = "–" if c["peak_memory_mib"] is None else f"{c['peak_memory_mib']:,.0f}"
            lines.append(
                f"| {c['teacher']} -> {c['student']} | {c['batch']} | {c['path']} | "
                f"{'on' if c['compile'] else 'off'} | {c['images_per_second']:,.0f} | "
                f"{c['recipe_minutes']:,.1f} | {compile_s} | {memory} |"
            )
            if c["compile_fallback"]:
                lines.append(f"| | | | | {c['compile_fallback']} | | | |")
    if bench is not None:
        rates = bench["data_images_per_second"]
        listed = ", ".join(f"{key} {value:,.0f}" for key, value in rates.items())
        lines += ["", f"Preparing batches alone (one epoch, no model), img/s: {listed}."]
    lines += ["", "## Goals (issue 17)", "", *(f"- {line}" for line in goals(bench))]
    amd = facts["amd_bf16"]
    lines += [
        "",
        "## AMD under bf16",
        "",
        "Relative difference of the AMD loss between bf16-autocast and fp32 forward passes "
        "(resnet8 student, resnet20 teacher, random weights, 64 random images): "
        + ", ".join(f"{name} {value:.1e}" for name, value in amd.items())
        + ". The loss itself runs in fp32 inside autocast (equal to fp32 on the same features: "
        "`tests/losses/test_amd.py`); this difference is the bf16 rounding of the features.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--runner", default="auto", choices=["auto", "pytest", "builtin"])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "gpu.md")
    args = parser.parse_args(argv)
    started = time.monotonic()
    cuda = args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        print("No CUDA device here: run this on a GPU machine, or pass --device cpu to test the "
              "script itself on the CPU.", file=sys.stderr)  # fmt: skip
        return 2
    if not cuda and args.out == ROOT / "docs" / "gpu.md":
        print("--device cpu measures no GPU figures: give --out another file.", file=sys.stderr)
        return 2
    has_pytest = importlib.util.find_spec("pytest") is not None
    runner = (
        args.runner if args.runner != "auto" else ("pytest" if has_pytest and cuda else "builtin")
    )
    device_name = (
        torch.cuda.get_device_name(0) if cuda else f"CPU ({platform.processor() or 'cpu'})"
    )
    how = "pytest" if runner == "pytest" else "the built-in runner"
    if runner == "builtin" and not has_pytest:
        how += " (pytest is not installed here)"
    print(f"gpu-check: {device_name}, torch {torch.__version__}; checks through {how}", flush=True)
    checks = run_checks_with_pytest() if runner == "pytest" else run_checks_builtin(args.device)
    left = BUDGET_SECONDS - (time.monotonic() - started) - 30
    bench = run_benchmark(small=not cuda, seconds=left)
    facts = {
        "date": time.strftime("%Y-%m-%d"), "device": device_name, "torch": torch.__version__,
        "python": platform.python_version(), "cuda": cuda,
        "runner": how,
        "checks": checks, "bench": bench, "amd_bf16": amd_bf16_difference(args.device),
    }  # fmt: skip
    facts["seconds"] = time.monotonic() - started
    args.out.write_text(markdown(facts))
    print(f"wrote {args.out} ({facts['seconds']:.0f} s)", flush=True)
    failed = [r for r in checks if r["outcome"] not in ("passed",)]
    complete = bench is not None and len(bench["cases"]) == bench["planned_cases"]
    return 1 if failed or not complete else 0


if __name__ == "__main__":
    sys.exit(main())
