"""TrainConfig: round trips, overrides, presets and the errors a config file can contain."""

from __future__ import annotations

import pytest

from kd_core.training.config import PRESETS, TrainConfig, preset


def test_round_trip_through_a_plain_mapping():
    config = TrainConfig(objective={"ce": 1.0, "amd": 1000.0}, loss_params={"amd": {"local": True}})
    assert TrainConfig.from_dict(config.to_dict()) == config


def test_overrides_reach_top_level_and_optimizer_fields():
    config = TrainConfig().with_overrides({"epochs": 3, "lr": 0.2, "milestones": [1, 2]})
    assert config.epochs == 3 and config.optimizer.lr == 0.2
    assert config.optimizer.milestones == (1, 2)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_are_valid_and_fresh_copies(name):
    config = preset(name)
    config.check()
    config.loss_params["kd"] = {"temperature": 1.0}
    assert preset(name).loss_params["kd"] == {"temperature": 4.0}


def test_the_cifar100_preset_is_the_community_recipe():
    config = preset("cifar100")
    assert (config.epochs, config.batch_size, config.optimizer.lr) == (240, 64, 0.05)
    assert config.optimizer.milestones == (150, 180, 210) and config.optimizer.schedule == "step"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"epochz": 3}, r"Unknown configuration keys \['epochz'\]"),
        ({"optimizer": {"learning_rate": 1}}, r"Unknown optimizer keys \['learning_rate'\]"),
        ({"optimizer": 0.1}, "optimizer must be a mapping"),
    ],
)
def test_unknown_keys_are_named(data, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig.from_dict(data)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"batch_size": 0}, "batch_size"),
        ({"limit_train": -5}, "limit_train"),
        ({"seed": -1}, "seed"),
        ({"data_seed": 1.5}, "data_seed"),
        ({"precision": "fp8"}, "precision"),
        ({"objective": {}}, "at least one weighted term"),
        ({"objective": {"ce": float("nan")}}, "finite"),
        ({"objective": {"kd": 1.0}}, "need a teacher"),
    ],
)
def test_every_field_is_checked(fields, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**fields).check()
