"""How far a student's attention has come to its teacher's, measured during training: the
cosine of the deepest stage's AMD attention maps on a fixed set of test images, by the function
the Attention page's agreement table uses. A group's live chart plots it per epoch."""

from __future__ import annotations

import torch
from torch import nn

from kd_core.analysis.agreement import cosine_similarity
from kd_core.analysis.extraction import select_indices
from kd_core.losses.amd import attention_map
from kd_core.models.features import extract_features

PROBE_SAMPLES = 64
"""Test images the probe looks at (the same seeded choice the pages make for 64 samples)."""


class AttentionProbe:
    """``probe(student)``: mean cosine, over :data:`PROBE_SAMPLES` test images, of the
    student's and the teacher's attention maps ``q`` at their deepest stages (the smaller map
    pooled to the other's size). The student's mode is restored afterwards."""

    def __init__(self, teacher: nn.Module, test_set, device: torch.device) -> None:
        indices = select_indices(len(test_set), samples=min(PROBE_SAMPLES, len(test_set)))
        self.images = torch.stack([test_set[int(i)][0] for i in indices]).to(device)
        self.teacher_maps = self._maps(teacher)

    def _maps(self, model: nn.Module) -> torch.Tensor:
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                return attention_map(extract_features(model, self.images).stage_list[-1]).cpu()
        finally:
            model.train(was_training)

    def __call__(self, student: nn.Module) -> float:
        return float(cosine_similarity(self.teacher_maps, self._maps(student)).mean())
