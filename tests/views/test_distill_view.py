"""The Distill page's view: form -> config (with the errors a user reads) and time estimates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kd_core.analysis.errors import AnalysisError
from kd_core.training.config import TrainConfig
from kd_core.training.trainer import check_group
from kd_core.views.distill import (
    DistillForm,
    build_config,
    estimate_cpu_seconds,
    group_configs,
    preset_form,
    run_environment,
    split_size,
)

TEACHER = Path(__file__).resolve().parents[2] / "assets" / "checkpoints" / "teacher_resnet20.pt"
AMD_WEIGHTS = {"ce": 1.0, "amd": 1000.0}


@pytest.fixture
def form() -> DistillForm:
    return DistillForm(teacher=str(TEACHER), weights=dict(AMD_WEIGHTS), device="cpu")


# -- form -> config ------------------------------------------------------------------------------


def test_the_form_becomes_the_preset_with_the_form_values(form):
    form.epochs, form.limit_train, form.limit_test, form.name = 4, 64, 0, "  amd-demo "
    config = build_config(form)
    assert config.objective == AMD_WEIGHTS
    assert config.loss_params == {"amd": {"margin": 1.35, "scale": 64.0, "local": False}}
    assert (config.epochs, config.limit_train, config.limit_test) == (4, 64, None)
    assert config.name == "amd-demo"
    assert config.teacher == form.teacher
    # the shapes-short preset's optimiser: cosine with a 0.2-epoch warm-up
    assert (config.optimizer.schedule, config.optimizer.warmup_epochs) == ("cosine", 0.2)
    saved = json.loads(json.dumps(config.to_dict()))
    assert TrainConfig.from_dict(saved).to_dict() == config.to_dict()


def test_zero_weights_are_dropped_and_parameters_follow_the_terms(form):
    form.weights = {"ce": 0.1, "kd": 0.9, "amd": 0.0, "at": 0.0}
    form.kd_temperature = 2.0
    config = build_config(form)
    assert config.objective == {"ce": 0.1, "kd": 0.9}
    assert config.loss_params == {"kd": {"temperature": 2.0}}


def test_short_runs_fit_the_preset_schedule(form):
    form.epochs = 1  # the warm-up never takes more than half the run
    assert build_config(form).optimizer.warmup_epochs == min(0.2, 1 / 2)
    form.epochs = 24
    cifar = build_config(form, "cifar100").optimizer
    assert (cifar.schedule, tuple(cifar.milestones)) == ("step", (15, 18, 21))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"teacher": None}, "The terms amd distil from a teacher, and no teacher is chosen"),
        ({"weights": {"ce": 0.0, "amd": 0.0}}, "Every objective weight is 0"),
        ({"lr": 0.0}, "lr must be a finite number > 0"),
        ({"epochs": 0}, "epochs must be a positive integer"),
        ({"student": "resnet9000"}, "Unknown model 'resnet9000'"),
        ({"teacher": "/nowhere/teacher.pt"}, "does not exist"),
        ({"device": "cuda:99"}, "is not available here"),
        ({"kd_temperature": 0.0, "weights": {"ce": 1.0, "kd": 1.0}}, "kd: temperature"),
        ({"amd_margin": -1.0}, "amd: margin"),
    ],
)
def test_bad_forms_raise_a_sentence(form, changes, message):
    for name, value in changes.items():
        setattr(form, name, value)
    with pytest.raises(AnalysisError, match=message):
        build_config(form)


def test_presets_fill_the_form():
    short = preset_form("shapes-short")
    assert (short.epochs, short.batch_size, short.lr, short.kd_temperature) == (3, 128, 0.1, 4.0)
    assert preset_form("cifar100").epochs == 240
    with pytest.raises(AnalysisError, match="accepted presets"):
        preset_form("imagenet")


# -- estimates -----------------------------------------------------------------------------------


def test_split_sizes():
    assert split_size("shapes", "train") == 50_000
    assert split_size("shapes", "test", limit=64) == 64
    assert split_size("shapes", "test", limit=0) == 10_000
    assert split_size("cifar100", "train", limit=99_999) == 50_000
    assert split_size("imagefolder", "train") is None
    assert split_size("imagefolder", "train", limit=500) == 500


def test_estimate_known_answers():
    # resnet8 trains 1,280 images/s: 12,800 images x 10 epochs = 100 s
    assert estimate_cpu_seconds("resnet8", epochs=10, train_images=12_800) == pytest.approx(100.0)
    # + teacher forward at 1/3 of resnet20's 500 img/s, + evaluation at 1/3 of resnet8's cost
    expected = 10 * (10_000 * (1 / 1280 + 1 / (3 * 500)) + 2_000 / (3 * 1280))
    got = estimate_cpu_seconds("resnet8", 10, 10_000, test_images=2_000, teacher="resnet20")
    assert got == pytest.approx(expected) == pytest.approx(150.0)


def test_estimate_scales_with_epochs_and_knows_what_it_does_not_know():
    one = estimate_cpu_seconds("resnet56", 1, 1000, 100, teacher="resnet32x4")
    assert estimate_cpu_seconds("resnet56", 7, 1000, 100, teacher="resnet32x4") == pytest.approx(
        7 * one
    )
    assert estimate_cpu_seconds("vgg8", 1, 1000) is None
    assert estimate_cpu_seconds("resnet8", 1, 1000, teacher="vgg13") is None


# -- compare mode ----------------------------------------------------------------------------------


def test_a_group_has_one_config_per_method_and_the_teacher_where_used(form):
    form.name = "class"
    configs = group_configs(form, ["vanilla", "kd", "at", "amd"])
    assert [c.name for c in configs] == ["class-vanilla", "class-kd", "class-at", "class-amd"]
    assert [c.teacher is None for c in configs] == [True, False, False, False]
    assert configs[1].objective == {"ce": 0.1, "kd": 0.9}
    assert configs[1].loss_params == {"kd": {"temperature": 4.0}}
    assert {(c.epochs, c.batch_size, c.seed) for c in configs} == {(form.epochs, 64, 0)}
    check_group(configs)  # they can train side by side


@pytest.mark.parametrize(
    ("methods", "teacher", "message"),
    [
        ([], True, "at least one method"),
        (["amd", "amd"], True, "listed twice"),
        (["vanilla", "kd"], False, "KD distil from a teacher, and no teacher is chosen"),
    ],
)
def test_a_group_that_cannot_train_gets_one_sentence(form, methods, teacher, message):
    if not teacher:
        form.teacher = None
    with pytest.raises(AnalysisError, match=message):
        group_configs(form, methods)


def test_run_environment_names_the_device_precision_and_data_path():
    assert run_environment({"state": "queued"}) is None
    status = {"device": "cuda (NVIDIA H100)", "precision": "bf16", "data_path": "device"}
    assert run_environment(status) == "cuda (NVIDIA H100) · bf16 · data on the device"
    older = {"device": "cpu", "precision": "fp32"}  # written before data_path existed
    assert run_environment(older) == "cpu · fp32 · data through the loader"
