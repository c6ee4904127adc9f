"""TrainConfig: round trips, overrides, presets and the errors a config file can contain."""

from __future__ import annotations

import pytest

from kd_core.training.config import PRESETS, TrainConfig, preset


def test_round_trip_through_a_plain_mapping():
    config = TrainConfig(objective={"ce": 1.0, "amd": 1000.0}, loss_params={"amd": {"local": True}})
    assert TrainConfig.from_dict(config.to_dict()) == config


def test_fields_added_later_are_written_only_when_set():
    """A config.json written before data_on_device and compile existed reads back to the same
    dict, so runs and recorded results keyed by it are found again."""
    written_before = TrainConfig().to_dict()
    assert "data_on_device" not in written_before and "compile" not in written_before
    assert TrainConfig.from_dict(written_before).to_dict() == written_before
    config = TrainConfig(data_on_device="on", compile=True)
    assert config.to_dict()["data_on_device"] == "on" and config.to_dict()["compile"] is True
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
        ({"data_on_device": "yes"}, "data_on_device must be one of auto, on, off"),
        ({"compile": "fast"}, "compile must be true or false"),
    ],
)
def test_every_field_is_checked(fields, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**fields).check()
