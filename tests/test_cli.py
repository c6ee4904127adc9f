"""``python -m kd_core``: ``inspect`` prints a checkpoint's summary (lines or JSON); bad input
exits with status 2 and one line on stderr, anything unexpected with status 1 and one line,
never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from google.protobuf import text_format
from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig

from kd_core import checkpoints, cli

ROOT = Path(__file__).resolve().parents[1]
REPDISTILLER_CKPT = ROOT / "tests" / "fixtures" / "repdistiller_golden" / "resnet20_random_ckpt.pth"


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # one tiny forward pass: no thread start-up
    return subprocess.run(
        [sys.executable, "-m", "kd_core", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


# In-process runs call the same main() that `python -m kd_core` runs.


def _run_main(capsys, *args: str) -> tuple[int, str, str]:
    status = cli.main(list(args))
    out, err = capsys.readouterr()
    return status, out, err


def test_inspect_prints_the_summary():
    result = run_cli("inspect", str(REPDISTILLER_CKPT))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert "architecture: resnet20" in [" ".join(line.split()) for line in lines]
    text = " ".join(result.stdout.split())
    for expected in (
        "format: repdistiller",
        "classes: 100",
        "parameters: 278,324",
        "input: 1x3x32x32",
        "stages: layer1 1x16x32x32, layer2 1x32x16x16, layer3 1x64x8x8",
        "epoch: 240",
        "best_acc: 71.5",
    ):
        assert expected in text


def test_inspect_json(capsys):
    # In-process: the subprocess start-up is paid once above.
    status, out, err = _run_main(capsys, "inspect", str(REPDISTILLER_CKPT), "--json")
    assert status == 0 and err == ""
    summary = json.loads(out)
    assert summary["architecture"] == "resnet20" and summary["num_classes"] == 100
    assert summary["source_format"] == "repdistiller"
    assert summary["stages"]["layer3"] == [1, 64, 8, 8]
    assert summary["metadata"] == {"epoch": 240, "best_acc": 71.5}


class _WritesMarker:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_bad_input_exits_2_with_one_line_and_runs_nothing(tmp_path):
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.pth"
    torch.save({"model": _WritesMarker(marker)}, path)
    result = run_cli("inspect", str(path))
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("python -m kd_core: error: ")
    assert "not allowed" in lines[0] and "never executes" in lines[0]
    assert not marker.exists()


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda tmp: tmp / "missing.pth", "no such file"),
        (lambda tmp: tmp, "is a directory"),
        (lambda tmp: (tmp / "empty.pth", (tmp / "empty.pth").write_bytes(b""))[0], "is empty"),
        (
            lambda tmp: (tmp / "notes.txt", (tmp / "notes.txt").write_text("hello\nworld\n"))[0],
            "is a text file",
        ),
    ],
)
def test_bad_inputs_in_process(capsys, tmp_path, make, expected):
    path = make(tmp_path)
    status, out, err = _run_main(capsys, "inspect", str(path))
    assert status == cli.EXIT_BAD_INPUT == 2
    assert out == ""
    assert err.count("\n") == 1 and expected in err and "Traceback" not in err


def test_explicit_arch_mismatch(capsys):
    status, _, err = _run_main(capsys, "inspect", str(REPDISTILLER_CKPT), "--arch", "resnet32")
    assert status == 2
    assert err.count("\n") == 1 and "does not fit architecture 'resnet32'" in err


def test_usage_errors_are_one_line(capsys):
    for args in ([], ["frobnicate"], ["inspect"], ["inspect", "x.pth", "--num-classes", "ten"]):
        status, out, err = _run_main(capsys, *args)
        assert status == 2, args
        assert out == "" and err.count("\n") == 1 and "--help" in err, (args, err)


def test_unexpected_errors_exit_1_with_one_line(capsys, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("something broke\nsecond line")

    monkeypatch.setattr(checkpoints, "load_checkpoint", broken)
    status, _, err = _run_main(capsys, "inspect", str(REPDISTILLER_CKPT))
    assert status == cli.EXIT_UNEXPECTED == 1
    assert err == "python -m kd_core: unexpected error: RuntimeError: something broke second line\n"


def test_keyboard_interrupt_is_not_swallowed(monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoints, "load_checkpoint", interrupted)
    with pytest.raises(KeyboardInterrupt):
        cli.main(["inspect", str(REPDISTILLER_CKPT)])


def test_one_function_per_subcommand():
    parser = cli.build_parser()
    args = parser.parse_args(["inspect", "x.pth", "--json"])
    assert args.handler is cli.cmd_inspect and args.json and args.path == "x.pth"


def test_projector_export_from_the_command_line(tmp_path, capsys):
    out = tmp_path / "projector"
    assets = ROOT / "assets" / "checkpoints"
    status = cli.main(
        [
            "projector",
            str(out),
            "--teacher",
            str(assets / "teacher_resnet20.pt"),
            "--students",
            str(assets / "student_resnet8_amd.pt"),
            "--samples",
            "50",
        ]
    )
    assert status == 0, capsys.readouterr().err
    config = text_format.Parse((out / "projector_config.pbtxt").read_text(), ProjectorConfig())
    assert len(config.embeddings) == 2
    assert "tensorboard --logdir" in capsys.readouterr().out
    assert cli.main(["projector", str(out), "--teacher", str(assets / "teacher_resnet20.pt")]) == 2
    assert "not an empty folder" in capsys.readouterr().err
