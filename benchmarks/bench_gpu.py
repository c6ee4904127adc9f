"""Distillation speed on CIFAR-100-shaped data: the loader path against data on the device,
compile off against on (prints a table; ``--json`` writes the figures).

Pairs resnet32x4 -> resnet8x4 and resnet56 -> resnet20, objective CE + KD (T = 4, 0.9) + AMD
(1000), SGD as the trainer builds it, the trainer's step (:func:`~kd_core.training.optim.
sgd_step`) and batches (:class:`~kd_core.training.data_path.DataPath`) on random uint8 images
held as a CIFAR-style data set (the loader path runs torchvision's CIFAR transforms per image,
as ``cifar100`` does). Each case: fresh models, warm-up steps (the first of them compiles;
its time beyond a steady step is reported as compile time), then timed steps, with CUDA events
on a GPU and ``perf_counter`` on a CPU. Also: peak device memory of the case, and the minutes
RepDistiller's recipe (240 epochs of 50,000 images) would take at that rate.

On CUDA (default there): 50,000 images, batches 64, 128 and 256, bf16 autocast, compile on at
batch 128 only (``--compile-batches`` for more; each compile takes tens of seconds). On a CPU
(``--small``, the default without CUDA): 512 images, batches 16 and 32, fp32, compile off
(``--compile-batches 16`` to try it).

    PYTHONPATH=. python benchmarks/bench_gpu.py [--small] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from kd_core.data.catalog import CIFAR100_INFO
from kd_core.data.transforms import cifar_transform
from kd_core.losses import Objective
from kd_core.models import create_model
from kd_core.training.compiled import CompiledExtract
from kd_core.training.data_path import DataPath
from kd_core.training.device import resolve_precision, tune_for
from kd_core.training.distiller import Distiller
from kd_core.training.distributed import Distributed
from kd_core.training.optim import OptimizerConfig, build_optimizer, sgd_step

PAIRS = (("resnet32x4", "resnet8x4"), ("resnet56", "resnet20"))
OBJECTIVE = {"ce": 1.0, "kd": 0.9, "amd": 1000.0}
RECIPE_IMAGES = 240 * 50_000
"""RepDistiller's CIFAR-100 recipe: 240 epochs of 50,000 images."""


class RandomCifar(Dataset):
    """``count`` random uint8 32 x 32 images in 100 classes, read as torchvision's CIFAR-100 is:
    ``data``/``targets`` in memory, PIL image -> crop, flip, tensor, normalise per item."""

    def __init__(self, count: int, seed: int = 0) -> None:
        generator = np.random.default_rng(seed)
        self.data = generator.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)
        self.targets = generator.integers(0, 100, count).tolist()
        self.info = CIFAR100_INFO
        self.transform = cifar_transform(CIFAR100_INFO.mean, CIFAR100_INFO.std, augment=True)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(Image.fromarray(self.data[index])), self.targets[index]


@dataclass
class Case:
    teacher: str
    student: str
    batch: int
    path: str  # "loader" or "device"
    compile: bool
    images_per_second: float = 0.0
    recipe_minutes: float = 0.0
    compile_seconds: float | None = None
    peak_memory_mib: float | None = None
    compile_fallback: str | None = None


class Timer:
    """Elapsed seconds between ``start()`` and ``stop()``: CUDA events on a GPU (what the device
    did), ``perf_counter`` on a CPU."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"

    def start(self) -> None:
        if self.cuda:
            self.begin = torch.cuda.Event(enable_timing=True)
            self.end = torch.cuda.Event(enable_timing=True)
            self.begin.record()
        else:
            self.begin_seconds = time.perf_counter()

    def stop(self) -> float:
        if self.cuda:
            self.end.record()
            self.end.synchronize()
            return self.begin.elapsed_time(self.end) / 1000.0
        return time.perf_counter() - self.begin_seconds


def run_case(case: Case, data: RandomCifar, device: torch.device, warmup: int, steps: int) -> Case:
    """Fill ``case``'s figures: ``warmup`` untimed steps (compiling), then ``steps`` timed."""
    torch.manual_seed(0)
    teacher = create_model(case.teacher, num_classes=100)
    student = create_model(case.student, num_classes=100)
    objective = Objective(OBJECTIVE, params={"kd": {"temperature": 4.0}})
    distiller = Distiller(student, teacher, objective).to(device)
    channels_last = device.type == "cuda"
    if channels_last:
        distiller.to(memory_format=torch.channels_last)
    notes: list[str] = []
    if case.compile:
        distiller.use_extractors(
            CompiledExtract(student, "student", notes.append),
            CompiledExtract(teacher, "teacher", notes.append),
        )
    optimizer = build_optimizer(distiller.parameters(), OptimizerConfig(lr=0.05))
    precision = resolve_precision("auto", device)
    scaler = torch.amp.GradScaler(device.type, enabled=precision.needs_scaler)
    path = DataPath(
        data, RandomCifar(8), case.path == "device", device, channels_last, Distributed()
    )

    def batches():
        epoch = 0
        while True:
            yield from path.train_batches(0, epoch, case.batch)
            epoch += 1

    stream = batches()

    def step() -> None:
        images, labels = next(stream)
        images = images.to(device, non_blocking=True)
        labels = labels.to(device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        sgd_step(
            lambda: distiller.forward_train(images, labels), optimizer, scaler, precision, device
        )

    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    timer = Timer(device)
    timer.start()
    step()
    first = timer.stop()
    for _ in range(warmup - 1):
        step()
    timer.start()
    for _ in range(steps):
        step()
    seconds = timer.stop()
    case.images_per_second = steps * case.batch / seconds
    case.recipe_minutes = RECIPE_IMAGES / case.images_per_second / 60
    if case.compile:
        case.compile_seconds = max(first - seconds / steps, 0.0)
        case.compile_fallback = notes[0] if notes else None
    if device.type == "cuda":
        case.peak_memory_mib = torch.cuda.max_memory_allocated(device) / 2**20
    return case


def data_rates(data: RandomCifar, device: str | torch.device, batches) -> dict[str, float]:
    """Images/s of preparing one epoch of batches alone (no model), per ``path/batch``."""
    device = torch.device(device)
    rates = {}
    for batch in batches:
        for on_device in (False, True):
            path = DataPath(data, RandomCifar(8), on_device, device, False, Distributed())
            timer = Timer(device)
            timer.start()
            for images, _ in path.train_batches(0, 0, batch):
                images.to(device, non_blocking=True)
            rates[f"{path.label}/{batch}"] = len(data) / timer.stop()
    return rates


def plan(small: bool, compile_batches: list[int]) -> tuple[list[Case], int, int, int]:
    """The cases, and images, warm-up steps and timed steps per case. The cases of the issue's
    goals (the first pair at batch 128) come first, so a run cut short still has them."""
    batches = (16, 32) if small else (64, 128, 256)
    cases = [
        Case(teacher, student, batch, path, compiled)
        for teacher, student in PAIRS
        for batch in batches
        for compiled in (False, True)
        if not compiled or batch in compile_batches
        for path in ("device", "loader")
    ]
    cases.sort(key=lambda c: (c.teacher != PAIRS[0][0] or c.batch != 128, c.teacher != PAIRS[0][0]))
    return (cases, 512, 1, 3) if small else (cases, 50_000, 5, 40)


def table(cases: list[Case], device: str) -> str:
    lines = [
        f"device: {device}; torch {torch.__version__}",
        f"{'pair':<24}{'batch':>6}  {'path':<7}{'compile':<8}{'img/s':>9}{'240 ep (min)':>14}"
        f"{'compile (s)':>13}{'peak MiB':>10}",
    ]
    for c in cases:
        compile_s = "–" if c.compile_seconds is None else f"{c.compile_seconds:.1f}"
        memory = "–" if c.peak_memory_mib is None else f"{c.peak_memory_mib:,.0f}"
        lines.append(
            f"{c.teacher + ' -> ' + c.student:<24}{c.batch:>6}  {c.path:<7}"
            f"{'on' if c.compile else 'off':<8}{c.images_per_second:>9,.0f}"
            f"{c.recipe_minutes:>14,.1f}{compile_s:>13}{memory:>10}"
        )
        if c.compile_fallback:
            lines.append(f"    {c.compile_fallback}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true", default=None, help="CPU sizes")
    parser.add_argument("--compile-batches", type=int, nargs="*", default=None)
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    small = device.type != "cuda" if args.small is None else args.small
    compile_batches = args.compile_batches
    if compile_batches is None:
        compile_batches = [] if small else [128]
    cases, images, warmup, steps = plan(small, compile_batches)
    data = RandomCifar(images)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    tune_for(device)
    rates = data_rates(data, device, sorted({case.batch for case in cases}))
    print("data alone, img/s: " + ", ".join(f"{k} {v:,.0f}" for k, v in rates.items()))
    report = {
        "device": name, "torch": torch.__version__, "images": images, "warmup_steps": warmup,
        "timed_steps": steps, "precision": resolve_precision("auto", device).label,
        "cases": [], "planned_cases": len(cases), "data_images_per_second": rates,
    }  # fmt: skip
    for case in cases:  # the JSON is rewritten after each case: a cut-short run keeps its figures
        run_case(case, data, device, warmup, steps)
        print(table([case], name).splitlines()[-1], flush=True)
        report["cases"].append(asdict(case))
        if args.json:
            with open(args.json, "w") as file:
                json.dump(report, file, indent=2)
    print(table(cases, name))
    return report


if __name__ == "__main__":
    main()
