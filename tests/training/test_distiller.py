"""The distiller keeps its teacher frozen: eval mode, no gradients, not trained, not saved."""

from __future__ import annotations

import torch

from kd_core.losses import Objective
from kd_core.models import create_model
from kd_core.training.distiller import Distiller


def test_the_teacher_stays_frozen_through_training_steps():
    torch.manual_seed(0)
    teacher = create_model("resnet8", num_classes=10)
    running_mean = teacher.bn1.running_mean.clone()
    weights = [p.clone() for p in teacher.parameters()]
    distiller = Distiller(create_model("resnet8", num_classes=10), teacher,
                          Objective({"ce": 1, "amd": 1000}))  # fmt: skip
    distiller.train()
    assert distiller.student.training and not teacher.training
    assert not any(p.requires_grad for p in teacher.parameters())
    teacher_ids = {id(p) for p in teacher.parameters()}
    assert not teacher_ids & {id(p) for p in distiller.parameters()}
    assert not any(key.startswith("_teacher") for key in distiller.state_dict())
    optimizer = torch.optim.SGD(distiller.parameters(), lr=0.1)
    images, labels = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    for _ in range(2):
        _, losses = distiller.forward_train(images, labels)
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()
    # Batch-norm statistics and weights of the teacher are untouched.
    torch.testing.assert_close(teacher.bn1.running_mean, running_mean)
    for before, after in zip(weights, teacher.parameters(), strict=True):
        torch.testing.assert_close(after, before)


def test_the_teacher_moves_with_the_distiller():
    distiller = Distiller(create_model("resnet8", num_classes=10),
                          create_model("resnet8", num_classes=10),
                          Objective({"ce": 1, "kd": 1}))  # fmt: skip
    distiller.to(torch.float64)
    assert next(distiller.teacher.parameters()).dtype == torch.float64
