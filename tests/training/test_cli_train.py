"""`python -m kd_core train` and `eval`, in process and under torchrun (2 gloo processes)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from kd_core.cli import main
from kd_core.training.run_files import RunFiles

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--student", "resnet8", "--dataset", "shapes", "--epochs", "1", "--limit-train", "64",
        "--limit-test", "32", "--batch-size", "32", "--device", "cpu"]  # fmt: skip


def only_run(root: Path) -> RunFiles:
    [run] = [p for p in root.iterdir() if p.is_dir()]
    return RunFiles(run)


def test_train_then_eval(tmp_path, capsys, teacher_checkpoint):
    status = main(["train", *TINY, "--teacher", teacher_checkpoint, "--objective",
                   "ce=1,amd=1000", "--amd-local", "--amd-margin", "1.5",
                   "--runs-root", str(tmp_path), "--name", "cli"])  # fmt: skip
    assert status == 0
    files = only_run(tmp_path)
    assert files.dir.name.endswith("-cli")
    config = json.loads(files.config.read_text())
    assert config["objective"] == {"ce": 1.0, "amd": 1000.0}
    assert config["loss_params"]["amd"] == {"margin": 1.5, "local": True}
    assert files.read_status()["state"] == "finished"
    capsys.readouterr()
    assert main(["eval", str(files.best), "--dataset", "shapes", "--limit", "40", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["images"] == 40 and 0 <= result["top1"] <= result["top5"] <= 100


def test_data_on_device_and_compile_flags_reach_the_config_and_status(tmp_path):
    assert main(["train", *TINY, "--data-on-device", "on", "--no-compile",
                 "--runs-root", str(tmp_path)]) == 0  # fmt: skip
    files = only_run(tmp_path)
    assert json.loads(files.config.read_text())["data_on_device"] == "on"
    assert files.read_status()["data_path"] == "device"


def test_config_file_with_flags_overriding_it(tmp_path):
    config_file = tmp_path / "run.yaml"
    config_file.write_text("student: resnet14\nepochs: 5\noptimizer:\n  lr: 0.2\n")
    status = main(["train", "--config", str(config_file), *TINY, "--lr", "0.01",
                   "--runs-root", str(tmp_path / "runs")])  # fmt: skip
    assert status == 0
    config = json.loads(only_run(tmp_path / "runs").config.read_text())
    assert config["student"] == "resnet8" and config["epochs"] == 1
    assert config["optimizer"]["lr"] == 0.01


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--student", "resnet9000"], "Unknown model 'resnet9000'"),
        (["--dataset", "mnist"], "mnist"),
        (["--objective", "ce=1,banana=2"], "Unknown loss 'banana'"),
        (["--objective", "ce=x"], "is not NAME=WEIGHT"),
        (["--epochs", "0"], "epochs must be a positive integer"),
        (["--lr", "-1"], "lr must be"),
        (["--teacher", "/missing.pt", "--objective", "ce=1,kd=1"], "does not exist"),
        (["--config", "/missing.yaml"], "cannot read the config file"),
    ],
)
def test_configuration_errors_exit_2_with_one_line(tmp_path, capsys, flags, message):
    assert main(["train", *TINY, *flags, "--runs-root", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not any(tmp_path.iterdir())


def test_teacher_and_student_stage_sizes_that_differ_are_an_error(tmp_path, capsys):
    from kd_core.checkpoints import save_checkpoint
    from kd_core.models import create_model

    teacher = tmp_path / "shufflev2.pt"  # stages at 16, 8, 4 px; resnet8's at 32, 16, 8
    save_checkpoint(teacher, create_model("ShuffleV2", num_classes=10), "ShuffleV2", 10)
    status = main(["train", *TINY, "--teacher", str(teacher), "--objective", "ce=1,at=1000",
                   "--runs-root", str(tmp_path / "runs")])  # fmt: skip
    assert status == 2
    assert "spatial sizes differ" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_torchrun_with_two_gloo_processes(tmp_path):
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
        "--master-addr", "127.0.0.1", "--master-port", str(_free_port()),
        "-m", "kd_core", "train", *TINY, "--limit-train", "96", "--runs-root", str(tmp_path),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=240)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    files = only_run(tmp_path)  # only rank 0 wrote a run folder
    [epoch] = [m for m in files.read_metrics() if m["kind"] == "epoch"]
    # Metrics are summed over both processes: all 96 training and 32 test images.
    assert epoch["train_images"] == 96 and epoch["test_images"] == 32
    assert files.read_status()["state"] == "finished"


def test_compare_trains_one_student_per_method_as_one_group(tmp_path, capsys, teacher_checkpoint):
    status = main(["train", *TINY, "--teacher", teacher_checkpoint, "--compare", "vanilla,amd",
                   "--runs-root", str(tmp_path), "--name", "demo"])  # fmt: skip
    assert status == 0
    runs = sorted(p for p in tmp_path.iterdir() if p.is_dir())
    assert [p.name.split("-", 2)[2] for p in runs] == ["demo-amd", "demo-vanilla"]
    statuses = [RunFiles(p).read_status() for p in runs]
    assert {s["state"] for s in statuses} == {"finished"}
    assert len({s["group"] for s in statuses}) == 1
    configs = {p.name: json.loads(RunFiles(p).config.read_text()) for p in runs}
    vanilla = next(c for name, c in configs.items() if name.endswith("vanilla"))
    assert vanilla["teacher"] is None and vanilla["objective"] == {"ce": 1.0}
    out = capsys.readouterr().out
    assert "vanilla: best top-1" in out and "amd: best top-1" in out


@pytest.mark.parametrize(
    ("methods", "message"),
    [
        ("nonsense", "Unknown method 'nonsense'; accepted: vanilla, kd"),
        ("amd,amd", "'amd' is listed twice"),
        (" , ", "Choose at least one method"),
        ("classroom", "need a teacher checkpoint"),  # no --teacher
    ],
)
def test_compare_refuses_bad_method_lists_in_one_sentence(tmp_path, capsys, methods, message):
    status = main(["train", *TINY, "--compare", methods, "--runs-root", str(tmp_path)])
    assert status == 2
    assert message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
