"""Distillation across families: a timm ViT teacher and a timm ResNet student, AMD and AT
pairing their stages with ``align=True`` (the ViT's 4 x 4 grids against 8, 4, 2, 1 maps)."""

from __future__ import annotations

import pytest
import torch

from kd_core.losses import Objective
from kd_core.models import create_model
from kd_core.training.config import TrainConfig
from kd_core.training.distiller import Distiller, build_distiller

VIT_ARGS = {"img_size": 32, "patch_size": 8}


def _pair(objective: Objective) -> Distiller:
    teacher = create_model("timm:vit_tiny_patch16_224", num_classes=5, model_args=VIT_ARGS)
    student = create_model("timm:resnet18", num_classes=5)
    return Distiller(student, teacher, objective)


def test_one_step_from_a_vit_teacher_to_a_resnet18_student():
    torch.manual_seed(0)
    objective = Objective(
        {"ce": 1, "amd": 1000, "at": 1000},
        params={"amd": {"align": True}, "at": {"align": True}},
    )
    distiller = _pair(objective).train()
    images, labels = torch.randn(2, 3, 32, 32), torch.tensor([0, 3])
    before = distiller.student.fc.weight.detach().clone()
    optimizer = torch.optim.SGD(distiller.parameters(), lr=0.1)
    _, losses = distiller.forward_train(images, labels)
    assert set(losses) == {"ce", "amd", "at"}
    assert all(torch.isfinite(value) and value > 0 for value in losses.values())
    sum(losses.values()).backward()
    optimizer.step()
    assert not torch.equal(distiller.student.fc.weight, before)
    assert all(p.grad is None for p in distiller.teacher.parameters())


def test_stages_that_cannot_be_paired_get_a_sentence():
    distiller = _pair(Objective({"ce": 1, "amd": 1000}))  # no align: 8 x 8 against 4 x 4
    with pytest.raises(ValueError, match="align=True"):
        distiller.forward_train(torch.randn(2, 3, 32, 32), torch.tensor([0, 1]))


def test_the_pre_training_check_uses_the_students_own_input_size():
    """On an image folder a timm student sees its own recipe: timm's test_vit3, made for 160 px
    images, is checked at 160 px, not at the folder's 224 (which it refuses)."""
    config = TrainConfig(student="timm:test_vit3", dataset="imagefolder", objective={"ce": 1.0})
    distiller = build_distiller(config, num_classes=3)
    assert distiller.student.patch_embed.img_size == (160, 160)
