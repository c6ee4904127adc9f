"""Bad training configurations: every field of ``TrainConfig`` invalid in turn, the Distill
form (``kd_core.views.distill.build_config``) and the command line. Each is refused with one
sentence that names the field, before any run folder or process exists."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from kd_core.analysis.errors import AnalysisError
from kd_core.cli import main
from kd_core.training.config import TrainConfig
from kd_core.training.runs import check_config_for_launch
from kd_core.views.distill import DistillForm, build_config
from tests.reliability.corpus import assert_sentence

NAN, INF = float("nan"), float("inf")
PROJECT = Path(__file__).resolve().parents[2]
TEACHER = str(PROJECT / "assets" / "checkpoints" / "teacher_resnet20.pt")

POSITIVE = "must be a positive integer"
#: (field, bad value, phrase of the refusal); ``optimizer.x`` is a field of the optimiser.
CONFIG_CASES = [
    ("student", "nosuchnet", "Unknown model 'nosuchnet'; accepted names: resnet8"),
    ("student", "", "Unknown model ''"),
    ("student", 3, "Unknown model 3"),
    ("teacher", "/nonexistent/teacher.pt", "teacher checkpoint /nonexistent/teacher.pt does not"),
    ("teacher", 5, "teacher must be text or empty, got 5"),
    ("dataset", "mnist", "Unknown dataset 'mnist'; accepted names: shapes"),
    ("dataset", None, "Unknown dataset None"),
    ("data_root", 5, "data_root must be text or empty"),
    ("objective", {}, "give at least one weighted term"),
    ("objective", "ce", "give at least one weighted term"),
    ("objective", {"ce": -1}, "weight of 'ce' must be finite and >= 0, got -1"),
    ("objective", {"ce": NAN}, "weight of 'ce' must be finite and >= 0, got nan"),
    ("objective", {"ce": INF}, "weight of 'ce' must be finite and >= 0, got inf"),
    ("objective", {"ce": "one"}, "weight of 'ce' must be a number, got 'one'"),
    ("objective", {"ce": True}, "weight of 'ce' must be a number, got True"),
    ("objective", {"bogus": 1}, "Unknown loss 'bogus'; accepted names: amd"),
    ("objective", {"ce": 0}, "every weight is 0"),
    ("objective", {"ce": 1, "amd": 1000}, r"terms \['amd'\] need a teacher checkpoint"),
    ("loss_params", "x", "loss_params must map loss names to their parameters"),
    ("loss_params", {"bogus": {}}, "Unknown loss 'bogus'"),
    ("loss_params", {"amd": 1.35}, r"loss_params\['amd'\] must be a mapping of parameters"),
    ("epochs", 0, f"epochs {POSITIVE}, got 0"),
    ("epochs", -1, f"epochs {POSITIVE}"),
    ("epochs", NAN, f"epochs {POSITIVE}, got nan"),
    ("epochs", INF, f"epochs {POSITIVE}, got inf"),
    ("epochs", "10", f"epochs {POSITIVE}, got '10'"),
    ("epochs", 2.5, f"epochs {POSITIVE}"),
    ("epochs", True, f"epochs {POSITIVE}, got True"),
    ("batch_size", 0, f"batch_size {POSITIVE}"),
    ("batch_size", -5, f"batch_size {POSITIVE}"),
    ("batch_size", "64", f"batch_size {POSITIVE}"),
    ("limit_train", 0, "limit_train must be a positive integer or empty"),
    ("limit_train", "x", "limit_train must be a positive integer or empty"),
    ("limit_test", -1, "limit_test must be a positive integer or empty"),
    ("seed", -1, "seed must be an integer >= 0"),
    ("seed", NAN, "seed must be an integer >= 0"),
    ("data_seed", "s", "data_seed must be an integer >= 0"),
    ("device", 5, "device must be text"),
    ("precision", "fp8", "precision must be one of auto, fp32, bf16, fp16"),
    ("channels_last", "yes", "channels_last must be true or false"),
    ("log_every", 0, f"log_every {POSITIVE}"),
    ("name", 5, "name must be text or empty"),
    ("optimizer.lr", 0, "lr must be a finite number > 0, got 0"),
    ("optimizer.lr", -0.1, "lr must be a finite number > 0"),
    ("optimizer.lr", NAN, "lr must be a finite number > 0, got nan"),
    ("optimizer.lr", INF, "lr must be a finite number > 0, got inf"),
    ("optimizer.lr", "fast", "lr must be a finite number > 0, got 'fast'"),
    ("optimizer.momentum", 1.0, r"momentum must be in \[0, 1\)"),
    ("optimizer.momentum", NAN, r"momentum must be in \[0, 1\)"),
    ("optimizer.momentum", "high", "momentum must be a number, got 'high'"),
    ("optimizer.weight_decay", -1, "weight_decay must be finite and >= 0"),
    ("optimizer.weight_decay", INF, "weight_decay must be finite and >= 0"),
    ("optimizer.weight_decay", None, "weight_decay must be a number, got None"),
    ("optimizer.nesterov", "false", "nesterov must be true or false, got 'false'"),
    ("optimizer.schedule", "linear", "schedule must be one of cosine, step"),
    ("optimizer.milestones", [0], r"milestones must be increasing epochs in 1\.\.10"),
    ("optimizer.milestones", [5, 3], "milestones must be increasing epochs"),
    ("optimizer.milestones", "abc", "milestones must be a list of epochs"),
    ("optimizer.milestones", 5, "milestones must be a list of epochs, got 5"),
    ("optimizer.gamma", 0, r"gamma must be in \(0, 1\]"),
    ("optimizer.gamma", NAN, r"gamma must be in \(0, 1\]"),
    ("optimizer.gamma", "g", "gamma must be a number"),
    ("optimizer.warmup_epochs", 10, r"warmup_epochs must be in \[0, epochs = 10\)"),
    ("optimizer.warmup_epochs", -1, "warmup_epochs must be in"),
    ("optimizer.warmup_epochs", "w", "warmup_epochs must be a number"),
    ("foo", 1, r"Unknown configuration keys \['foo'\]; known keys"),
    ("optimizer.foo", 1, r"Unknown optimizer keys \['foo'\]"),
    ("optimizer", "sgd", "optimizer must be a mapping of optimiser settings"),
]


def _config_data(field: str, value: object) -> dict:
    if field.startswith("optimizer."):
        return {"optimizer": {field.removeprefix("optimizer."): value}}
    return {field: value}


def _case_id(case: tuple) -> str:
    return f"{case[0]}={case[1]!r}"[:40]


@pytest.mark.parametrize("case", CONFIG_CASES, ids=[_case_id(c) for c in CONFIG_CASES])
def test_an_invalid_config_field_gives_one_sentence(case) -> None:
    field, value, phrase = case
    data = _config_data(field, value)
    with pytest.raises(ValueError) as refused:
        check_config_for_launch(TrainConfig.from_dict(data))
    assert_sentence(str(refused.value), phrase)
    if "." not in field and field not in ("optimizer", "foo"):  # the constructor, too
        with pytest.raises(ValueError, match=phrase):
            check_config_for_launch(TrainConfig(**data))


#: (form field, bad value, phrase); AMD/KD values are tried with a teacher and that term.
FORM_CASES = [
    ("student", "nosuchnet", "Unknown model 'nosuchnet'"),
    ("teacher", "/nonexistent/teacher.pt", "does not exist"),
    ("dataset", "mnist", "Unknown dataset 'mnist'"),
    ("weights", {}, "Every objective weight is 0"),
    ("weights", {"ce": 0}, "Every objective weight is 0"),
    ("weights", {"ce": -1}, "weight of 'ce' must be finite and >= 0"),
    ("weights", {"ce": NAN}, "weight of 'ce' must be finite and >= 0, got nan"),
    ("weights", {"ce": INF}, "weight of 'ce' must be finite and >= 0, got inf"),
    ("weights", {"bogus": 1}, "Unknown loss 'bogus'"),
    ("weights", {"ce": 1, "amd": 1000}, "The terms amd distil from a teacher"),
    ("amd_margin", 0, r"amd: margin must be in \(0\.0, inf\], got 0\.0"),
    ("amd_margin", -1, "amd: margin must be in"),
    ("amd_margin", NAN, "amd: margin must be finite, got nan"),
    ("amd_margin", INF, "amd: margin must be finite, got inf"),
    ("amd_scale", 0, "amd: scale must be in"),
    ("amd_scale", -64, "amd: scale must be in"),
    ("amd_scale", NAN, "amd: scale must be finite"),
    ("kd_temperature", 0, "kd: temperature must be in"),
    ("kd_temperature", NAN, "kd: temperature must be finite"),
    ("epochs", 0, f"epochs {POSITIVE}"),
    ("batch_size", -1, f"batch_size {POSITIVE}"),
    ("lr", 0, "lr must be a finite number > 0"),
    ("lr", NAN, "lr must be a finite number > 0, got nan"),
    ("lr", INF, "lr must be a finite number > 0, got inf"),
    ("limit_train", -1, "limit_train must be a positive integer or empty"),
    ("limit_test", -1, "limit_test must be a positive integer or empty"),
    ("seed", -1, "seed must be an integer >= 0"),
    ("device", "tpu", "Unknown device 'tpu'; use auto, cpu, cuda, cuda:N or mps"),
    ("device", "cuda:7", "Device 'cuda:7' is not available here"),
]


@pytest.mark.parametrize("case", FORM_CASES, ids=[_case_id(c) for c in FORM_CASES])
def test_an_invalid_distill_form_gives_one_sentence(case) -> None:
    field, value, phrase = case
    values: dict = {field: value}
    if field.startswith("amd_"):
        values |= {"teacher": TEACHER, "weights": {"ce": 1.0, "amd": 1000.0}}
    elif field == "kd_temperature":
        values |= {"teacher": TEACHER, "weights": {"ce": 1.0, "kd": 1.0}}
    with pytest.raises(AnalysisError) as refused:
        build_config(DistillForm(**values))
    assert_sentence(str(refused.value), phrase)


# ---------------------------------------------------------------- the command line


def _write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    ("arguments", "phrase"),
    [
        (["--epochs", "0"], f"epochs {POSITIVE}, got 0"),
        (["--epochs", "ten"], "argument --epochs: invalid int value: 'ten'"),
        (["--student", "nosuchnet"], "Unknown model 'nosuchnet'"),
        (["--objective", "ce=abc"], "--objective: 'ce=abc' is not NAME=WEIGHT"),
        (["--objective", "amd=1000"], r"terms \['amd'\] need a teacher checkpoint"),
        (["--lr", "nan"], "lr must be a finite number > 0, got nan"),
        (["--teacher", "/nonexistent/t.pt"], "does not exist"),
        (["--config", "{dir}/momentum.yaml"], "momentum must be a number, got 'high'"),
        (["--config", "{dir}/list.yaml"], "must hold a mapping of configuration keys"),
        (["--config", "{dir}/broken.json"], "is not valid JSON/YAML"),
        (["--config", "{dir}/missing.yaml"], "cannot read the config file"),
    ],
    ids=[
        "epochs_zero", "epochs_text", "unknown_student", "objective_text", "amd_no_teacher",
        "lr_nan", "teacher_missing", "yaml_momentum_text", "yaml_list", "json_broken",
        "config_missing",
    ],
)  # fmt: skip
def test_the_cli_refuses_a_bad_train_command_in_one_line(arguments, phrase, tmp_path, capsys):
    _write(tmp_path / "momentum.yaml", "optimizer:\n  momentum: high\n")
    _write(tmp_path / "list.yaml", "- epochs\n- 3\n")
    _write(tmp_path / "broken.json", '{"epochs": 3,')
    runs = tmp_path / "runs"
    arguments = [a.replace("{dir}", str(tmp_path)) for a in arguments]
    status = main(["train", *arguments, "--runs-root", str(runs)])
    captured = capsys.readouterr()
    assert status == 2 and captured.out == ""
    [line] = captured.err.splitlines()
    assert line.startswith("python -m kd_core: error: ") and "Traceback" not in line
    assert re.search(phrase, line), line
    assert not runs.exists()  # refused before any run folder


def test_the_cli_refuses_a_device_that_is_not_here_and_records_the_failed_run(tmp_path, capsys):
    """The device is resolved when training starts: the run folder exists by then and says
    ``failed`` with the same sentence (a complete record, not a half-written run)."""
    runs = tmp_path / "runs"
    status = main(["train", "--device", "tpu", "--runs-root", str(runs), "--name", "d"])
    folder_line, line = capsys.readouterr().err.splitlines()
    assert folder_line.startswith("run folder: ")  # printed when the run starts
    assert status == 2 and line.startswith("python -m kd_core: error: Unknown device 'tpu'")
    [run] = list(runs.iterdir())
    assert sorted(p.name for p in run.iterdir()) == ["config.json", "status.json"]
    status_text = (run / "status.json").read_text()
    assert '"state": "failed"' in status_text and "Unknown device 'tpu'" in status_text


@pytest.mark.parametrize(
    ("arguments", "phrase"),
    [
        (["--epochs", "0"], f"epochs {POSITIVE}, got 0"),
        (["--config", "{dir}/momentum.yaml"], "momentum must be a number, got 'high'"),
    ],
    ids=["epochs_zero", "yaml_momentum_text"],
)
def test_python_m_kd_core_exits_2_with_one_line(arguments, phrase, tmp_path) -> None:
    _write(tmp_path / "momentum.yaml", "optimizer:\n  momentum: high\n")
    arguments = [a.replace("{dir}", str(tmp_path)) for a in arguments]
    command = [sys.executable, "-m", "kd_core", "train", *arguments]
    result = subprocess.run(
        [*command, "--runs-root", str(tmp_path / "runs")],
        capture_output=True, text=True, cwd=PROJECT, timeout=120,
        env={**os.environ, "PYTHONPATH": str(PROJECT), "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert result.returncode == 2 and result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("python -m kd_core: error: ") and "Traceback" not in line
    assert phrase in line
    assert not (tmp_path / "runs").exists()


def test_the_distill_page_shows_why_a_run_cannot_launch(
    app_opener, module_project_env, monkeypatch
) -> None:
    """The one bad value the form can hold: ``cuda`` chosen on a machine without a GPU (made
    so here whatever the machine): an error sentence, no run folder, the page still drawn."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    at = app_opener("distill.py", distill_device="cuda")
    before = module_project_env.snapshot()
    [launch] = [b for b in at.button if b.label == "Launch run"]
    launch.click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.error) == 1
    assert_sentence(at.error[0].value, "Device 'cuda' is not available here")
    assert module_project_env.snapshot() == before  # no run folder, no process
    assert at.title[0].value == "Distill a student"
