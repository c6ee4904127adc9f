"""The checks that need a CUDA device, as plain functions ``check(folder, device)`` (no pytest
here: ``scripts/gpu_check.py`` runs them through pytest where it is installed, through its own
tiny runner where it is not). ``tests/cuda/test_cuda.py`` collects them, skipped without CUDA.

On a CPU (``device`` cpu, ``scripts/gpu_check.py --device cpu``) they run too, in fp32 and over
Gloo, so the script itself is tested where no GPU is lent.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from kd_core.checkpoints import load_checkpoint, load_training_state
from kd_core.training.config import TrainConfig
from kd_core.training.run_files import FINAL_STATES, RunFiles
from kd_core.training.runs import RunManager
from kd_core.training.trainer import RunCancelled, train

ROOT = Path(__file__).resolve().parents[2]
Check = Callable[[Path, torch.device], None]


def tiny_config(device: torch.device, **fields) -> TrainConfig:
    """Two epochs of resnet8 on 96 training and 64 test images of ``shapes`` on ``device``."""
    values = dict(
        student="resnet8", dataset="shapes", epochs=2, batch_size=32, limit_train=96,
        limit_test=64, log_every=1, device=str(device), precision="fp32",
    )  # fmt: skip
    return TrainConfig(**{**values, **fields})


def _low_precision(device: torch.device, name: str) -> str:
    """``name`` (fp16, bf16) on CUDA; fp32 on a CPU, where autocast precisions are refused."""
    return name if device.type == "cuda" else "fp32"


def _finished(folder: Path) -> dict:
    status = RunFiles(folder).read_status()
    assert status["state"] == "finished", status
    return status


def _finite(path: Path) -> None:
    weights = load_checkpoint(path).model.state_dict().values()
    assert all(torch.isfinite(w).all() for w in weights if w.is_floating_point())


def check_fp16_with_grad_scaler(folder: Path, device: torch.device) -> None:
    """fp16 autocast with the gradient scaler, through the loader: the scale is kept in ``last``."""
    precision = _low_precision(device, "fp16")
    train(tiny_config(device, precision=precision, data_on_device="off"), folder)
    status = _finished(folder)
    assert status["precision"] == precision and status["data_path"] == "loader"
    if precision == "fp16":
        assert load_training_state(folder / "last.pt")["scaler"]["scale"] > 0
    _finite(folder / "last.pt")


def check_bf16_with_data_on_the_device(folder: Path, device: torch.device) -> None:
    """bf16 autocast, the splits held on the device."""
    precision = _low_precision(device, "bf16")
    train(tiny_config(device, precision=precision, data_on_device="on"), folder)
    status = _finished(folder)
    assert status["precision"] == precision and status["data_path"] == "device"
    assert status["device"].startswith(device.type)
    _finite(folder / "last.pt")


def check_a_checkpoint_saved_on_cuda_loads_on_the_cpu(folder: Path, device: torch.device) -> None:
    """``best`` written by a run on the device reads back onto the CPU and scores images there."""
    train(tiny_config(device, epochs=1), folder)
    loaded = load_checkpoint(folder / "best.pt")
    assert {p.device.type for p in loaded.model.parameters()} == {"cpu"}
    logits = loaded.model.eval()(torch.zeros(2, 3, 32, 32))
    assert logits.shape == (2, 10) and torch.isfinite(logits).all()


@contextmanager
def _reproducible_kernels() -> Iterator[None]:
    """cuDNN's deterministic algorithms and no TF32 inside; the previous settings after."""
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    saved = cudnn.deterministic, cudnn.allow_tf32, matmul.allow_tf32
    cudnn.deterministic, cudnn.allow_tf32, matmul.allow_tf32 = True, False, False
    try:
        yield
    finally:
        cudnn.deterministic, cudnn.allow_tf32, matmul.allow_tf32 = saved


def check_cancel_and_resume(folder: Path, device: torch.device) -> None:
    """A run cancelled in its second epoch and resumed ends as one never interrupted (within
    the run-to-run noise of the device's kernels: cuDNN deterministic, no TF32)."""
    config = tiny_config(device, data_on_device="on")
    steps = {"n": 0}

    def stop_in_second_epoch() -> bool:
        steps["n"] += 1
        return steps["n"] == 4  # the first step of epoch 2 (3 steps per epoch)

    with _reproducible_kernels():
        train(config, folder / "whole")
        try:
            train(config, folder / "interrupted", should_stop=stop_in_second_epoch)
        except RunCancelled:
            pass
        else:
            raise AssertionError("the run was not cancelled")
        assert RunFiles(folder / "interrupted").read_status()["state"] == "cancelled"
        train(config, folder / "interrupted", resume=True)
    _finished(folder / "interrupted")
    whole = load_checkpoint(folder / "whole/last.pt").model.state_dict()
    resumed = load_checkpoint(folder / "interrupted/last.pt").model.state_dict()
    for key, value in whole.items():
        torch.testing.assert_close(resumed[key], value, rtol=1e-3, atol=1e-4)


def check_the_distill_pages_worker_process(folder: Path, device: torch.device) -> None:
    """The worker process the Distill page starts (``RunManager.start``) trains on the device."""
    manager = RunManager(folder)
    info = manager.start(tiny_config(device, epochs=1), name="worker")
    deadline = time.monotonic() + 180
    while manager.read(info.run_id).state not in FINAL_STATES:
        assert time.monotonic() < deadline, "the worker did not finish within 3 minutes"
        time.sleep(0.5)
    status = manager.read(info.run_id).status
    assert status["state"] == "finished", (status, (info.path / "train.log").read_text()[-2000:])
    assert status["device"].startswith(device.type)


_DDP_SCRIPT = """
import json, sys, torch, torch.distributed as dist
from kd_core.training.config import TrainConfig
from kd_core.training.trainer import train
device, port, folder, config = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
backend = "nccl" if device.startswith("cuda") else "gloo"
dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
try:
    train(TrainConfig.from_dict(config), folder)
    print("backend", dist.get_backend())
finally:
    dist.destroy_process_group()
"""


def check_ddp_with_one_process(folder: Path, device: torch.device) -> None:
    """DistributedDataParallel over NCCL (Gloo on a CPU) with one process: the sharded sampler,
    the wrapped step and the summed metrics."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = tiny_config(device, epochs=1, data_on_device="on")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", _DDP_SCRIPT, str(device), str(port), str(folder / "ddp"),
         json.dumps(config.to_dict())],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"backend {'nccl' if device.type == 'cuda' else 'gloo'}" in result.stdout
    [epoch] = [m for m in RunFiles(folder / "ddp").read_metrics() if m["kind"] == "epoch"]
    assert epoch["train_images"] == 96 and epoch["test_images"] == 64
    assert math.isfinite(epoch["train_loss"])


CHECKS: tuple[Check, ...] = (
    check_fp16_with_grad_scaler,
    check_bf16_with_data_on_the_device,
    check_a_checkpoint_saved_on_cuda_loads_on_the_cpu,
    check_cancel_and_resume,
    check_the_distill_pages_worker_process,
    check_ddp_with_one_process,
)
