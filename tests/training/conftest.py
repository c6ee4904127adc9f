"""Shared fixtures of the training tests: a teacher checkpoint and tiny configurations."""

from __future__ import annotations

import pytest
import torch

from kd_core.checkpoints import save_checkpoint
from kd_core.models import create_model
from kd_core.training.config import TrainConfig


@pytest.fixture(scope="session")
def teacher_checkpoint(tmp_path_factory):
    """A resnet20 teacher for the 10 ``shapes`` classes (random weights: the tests check the
    mechanics, not the accuracy)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("teacher") / "teacher.pt"
    save_checkpoint(path, create_model("resnet20", num_classes=10), "resnet20", 10)
    return str(path)


@pytest.fixture
def tiny_config():
    """Two epochs of resnet8 on 96 training and 64 test images of ``shapes``."""
    return TrainConfig(
        student="resnet8", dataset="shapes", epochs=2, batch_size=32,
        limit_train=96, limit_test=64, log_every=1, device="cpu",
    )  # fmt: skip
