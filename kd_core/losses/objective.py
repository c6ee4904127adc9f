r"""The training objective: a weighted sum of named loss terms.

.. math:: L = \sum_k w_k L_k, \qquad \text{e.g. } L = 1\cdot\mathrm{CE} + 0.9\cdot\mathrm{KD}
    + 1000 \cdot \sum_{layers} L_{AMD}

Built from plain mappings, so it can come from a config file or a form::

    objective = Objective({"ce": 1, "kd": 0.9, "amd": 1000},
                          params={"kd": {"temperature": 4}, "amd": {"local": True}})
    total, terms = objective(student_outputs, teacher_outputs, labels)
    # terms == {"ce": 1 * CE, "kd": 0.9 * KD, "amd": 1000 * AMD}; total == sum(terms.values())

Learnable parts of the losses (FitNet regressors) are parameters of the objective, so
``optimizer = SGD([*student.parameters(), *objective.parameters()], ...)`` trains them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from kd_core.losses.registry import build_loss, list_losses, loss_class
from kd_core.outputs import ModelOutputs


def check_weights(weights: Mapping[str, float]) -> dict[str, float]:
    """The weights as floats; a ``ValueError`` for unknown names, negative or non-finite weights,
    or no positive weight."""
    if not isinstance(weights, Mapping) or not weights:
        raise ValueError(
            "objective: give at least one weighted term, e.g. {'ce': 1, 'amd': 1000}; "
            f"accepted names: {', '.join(list_losses())}."
        )
    checked = {}
    for name, weight in weights.items():
        loss_class(name)  # unknown names raise with the list of accepted ones
        if isinstance(weight, bool) or not isinstance(weight, (int, float)):
            raise ValueError(f"objective: the weight of {name!r} must be a number, got {weight!r}.")
        if not math.isfinite(weight) or weight < 0:
            raise ValueError(
                f"objective: the weight of {name!r} must be finite and >= 0, got {weight}."
            )
        checked[name] = float(weight)
    if all(weight == 0 for weight in checked.values()):
        raise ValueError("objective: every weight is 0; give at least one term a positive weight.")
    return checked


class Objective(nn.Module):
    """Weighted sum of registered losses; returns ``(total, {name: weight * loss})``.

    Terms with weight 0 are not computed. ``needs_teacher`` tells whether any term reads the
    teacher's outputs.
    """

    def __init__(
        self,
        weights: Mapping[str, float],
        params: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        super().__init__()
        self.weights = check_weights(weights)
        params = dict(params or {})
        stray = sorted(set(params) - set(self.weights))
        if stray:
            raise ValueError(
                f"objective: parameters given for {stray}, which are not terms of the objective "
                f"({', '.join(self.weights)})."
            )
        self.terms = nn.ModuleDict(
            {name: build_loss(name, **params.get(name, {})) for name in self.weights}
        )

    @property
    def needs_teacher(self) -> bool:
        return any(self.terms[name].needs_teacher for name, w in self.weights.items() if w > 0)

    def forward(
        self, student: ModelOutputs, teacher: ModelOutputs | None, target: Tensor
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Compute every weighted term and their sum."""
        if teacher is None and self.needs_teacher:
            names = [
                name
                for name, weight in self.weights.items()
                if weight > 0 and self.terms[name].needs_teacher
            ]
            raise ValueError(f"objective: the terms {names} need the teacher's outputs.")
        weighted = {
            name: weight * self.terms[name].from_outputs(student, teacher, target)
            for name, weight in self.weights.items()
            if weight > 0
        }
        total = torch.stack(list(weighted.values())).sum()
        return total, weighted

    def extra_repr(self) -> str:
        return ", ".join(f"{name}={weight:g}" for name, weight in self.weights.items())
