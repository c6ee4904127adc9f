"""What a network hands to the distillation losses: logits, stage features, pooled feature."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor


@dataclass
class ModelOutputs:
    """The outputs of one forward pass that distillation losses read.

    Attributes:
        logits: ``B x K`` class scores.
        stages: the named stage outputs (``B x C x H x W`` each), shallow to deep; feature
            losses (AMD, AT, FitNet, SP) read them in this order.
        pooled: the ``B x D`` pooled (penultimate) feature that relational losses (PKT, RKD) read.
    """

    logits: Tensor
    stages: dict[str, Tensor] = field(default_factory=dict)
    pooled: Tensor | None = None

    @property
    def stage_list(self) -> list[Tensor]:
        """The stage outputs as a list, shallow to deep."""
        return list(self.stages.values())
