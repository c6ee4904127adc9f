"""The attention probe: the Attention page's cosine, on a fixed set of test images."""

from __future__ import annotations

import copy

import torch

from kd_core.data import create_dataset
from kd_core.models import create_model
from kd_core.training.probe import PROBE_SAMPLES, AttentionProbe


def test_a_copy_of_the_teacher_scores_one_and_its_mode_is_kept():
    test_set = create_dataset("shapes", split="test", augment=False, limit=100)
    torch.manual_seed(0)
    teacher = create_model("resnet20", num_classes=10)
    probe = AttentionProbe(teacher, test_set, torch.device("cpu"))
    assert probe.images.shape == (PROBE_SAMPLES, 3, 32, 32)
    twin = copy.deepcopy(teacher).train()
    assert abs(probe(twin) - 1.0) < 1e-5 and twin.training
    other = create_model("resnet8", num_classes=10)
    assert 0.0 <= probe(other) < 0.999
