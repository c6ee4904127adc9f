"""Learning-rate schedules against hand-computed values, and optimiser checks."""

from __future__ import annotations

import math

import pytest
import torch

from kd_core.training.optim import OptimizerConfig, build_optimizer, lr_factor, set_lr


def test_step_schedule_is_the_cifar100_recipe():
    config = OptimizerConfig(schedule="step", milestones=(150, 180, 210), gamma=0.1)
    assert lr_factor(config, 0.0, 240, 100) == 1.0
    assert lr_factor(config, 149.99, 240, 100) == 1.0
    assert lr_factor(config, 150.0, 240, 100) == pytest.approx(0.1)
    assert lr_factor(config, 200.0, 240, 100) == pytest.approx(0.01)
    assert lr_factor(config, 239.0, 240, 100) == pytest.approx(0.001)


def test_cosine_with_warmup():
    config = OptimizerConfig(schedule="cosine", warmup_epochs=2)
    # Linear warm-up: after the first of 10 steps the factor is 1/20, reaching 1 at epoch 2.
    assert lr_factor(config, 0.0, 12, 10) == pytest.approx(1 / 20)
    assert lr_factor(config, 1.0, 12, 10) == pytest.approx(11 / 20)
    assert lr_factor(config, 2.0, 12, 10) == pytest.approx(1.0)
    # Halfway through the cosine part: (1 + cos(pi/2)) / 2 = 0.5; at the end 0.
    assert lr_factor(config, 7.0, 12, 10) == pytest.approx(0.5)
    assert lr_factor(config, 12.0, 12, 10) == pytest.approx(0.0, abs=1e-12)
    assert lr_factor(config, 4.5, 12, 10) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))


def test_build_optimizer_and_set_lr():
    model = torch.nn.Linear(3, 2)
    optimizer = build_optimizer(model.parameters(), OptimizerConfig(lr=0.1, nesterov=True))
    assert optimizer.defaults["nesterov"] and optimizer.defaults["weight_decay"] == 5e-4
    set_lr(optimizer, 0.01)
    assert all(group["lr"] == 0.01 for group in optimizer.param_groups)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"lr": 0.0}, "lr must be"),
        ({"lr": float("nan")}, "lr must be"),
        ({"momentum": 1.0}, "momentum"),
        ({"weight_decay": -1.0}, "weight_decay"),
        ({"momentum": 0.0, "nesterov": True}, "nesterov"),
        ({"schedule": "linear"}, "cosine, step"),
        ({"gamma": 0.0}, "gamma"),
        ({"warmup_epochs": 10}, "warmup_epochs"),
        ({"milestones": (5, 3)}, "milestones"),
        ({"milestones": (20,)}, "milestones"),
    ],
)
def test_bad_configurations_are_value_errors(fields, message):
    with pytest.raises(ValueError, match=message):
        OptimizerConfig(**fields).check(epochs=10)
