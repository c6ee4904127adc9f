"""``compile``: the student's and the teacher's forward passes through ``torch.compile``.

Each model is traced as a :class:`~kd_core.models.features.FeatureExtractor` (its feature hooks
registered once), so the graphs are built once and reused at every step. Where compiling fails
(no compiler on the machine, an operation it cannot trace; at once or at the first batch) the
run says so in one sentence and goes on uncompiled: the same results at eager speed.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from kd_core.models.features import FeatureExtractor
from kd_core.outputs import ModelOutputs


class CompiledExtract:
    """``extract(images)``: what ``extract_features(model, images)`` returns, computed by the
    compiled extractor; eagerly from its first failure on, which ``note`` hears of once."""

    def __init__(self, model: nn.Module, role: str, note: Callable[[str], None]) -> None:
        self.extractor = FeatureExtractor(model)
        self.role, self.note = role, note
        self.compiled: Callable[[Tensor], tuple[Tensor, ...]] | None = None
        try:
            self.compiled = torch.compile(self.extractor)
        except Exception as error:  # any failure: go on uncompiled
            self._give_up(error)

    def _give_up(self, error: Exception) -> None:
        self.compiled = None
        reason = (str(error).strip().splitlines() or [""])[0][:200]
        self.note(
            f"torch.compile of the {self.role} failed ({type(error).__name__}: {reason}); the "
            "run goes on uncompiled."
        )

    def __call__(self, images: Tensor) -> ModelOutputs:
        if self.compiled is not None:
            try:
                return self.extractor.outputs(self.compiled(images))
            except Exception as error:  # a real error raises again below
                self._give_up(error)
        return self.extractor.outputs(self.extractor(images))
