"""A tiny workspace for the report tests: three random resnet8 checkpoints (10 classes, fixed
seeds) on a dozen ``shapes`` test images, with an in-memory feature cache."""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

import torch

from kd_core.analysis.feature_cache import FeatureCache
from kd_core.checkpoints import save_checkpoint
from kd_core.models import create_model
from kd_core.report.build import Report, ReportRequest, build_report
from kd_core.workspace import CheckpointEntry

NAMES = ("resnet8 teacher", "resnet8 student A", "resnet8 student B")
SAMPLES = 12


def tiny_entry(folder: Path, name: str, seed: int, num_classes: int = 10) -> CheckpointEntry:
    """A random resnet8 saved under ``folder``, as a workspace entry named ``name``."""
    torch.manual_seed(seed)
    model = create_model("resnet8", num_classes=num_classes)
    path = save_checkpoint(folder / f"{name.replace(' ', '_')}.pt", model, "resnet8", num_classes)
    return CheckpointEntry(key=f"file:{path}", label=name, path=path, source="file", arch="resnet8")


def tiny_request(folder: Path) -> ReportRequest:
    teacher, *students = (tiny_entry(folder, name, seed) for seed, name in enumerate(NAMES))
    return ReportRequest(teacher, tuple(students), "shapes", "test", SAMPLES)


def tiny_report(folder: Path) -> Report:
    return build_report(tiny_request(folder), cache=FeatureCache(persist=False))


@functools.cache
def shared_tiny_report() -> tuple[Path, Report]:
    """``(folder of the checkpoints, report)``, built once per test process and shared by the
    report tests and the browser test (the folder is removed at exit)."""
    folder = Path(tempfile.mkdtemp(prefix="kd_core_tiny_report_"))
    atexit.register(shutil.rmtree, folder, True)
    return folder, tiny_report(folder)
