r"""SGD with a step or cosine learning-rate schedule and a linear warm-up.

For epoch progress :math:`e` (fractional, updated every step), base rate :math:`\eta_0`,
``warmup_epochs`` :math:`w` and ``epochs`` :math:`E`:

.. math::

    \eta(e) = \eta_0 \cdot \begin{cases}
        (e + 1/S) / w & e < w \quad\text{(linear warm-up, } S \text{ steps per epoch)}\\
        \gamma^{|\{k:\ e \ge m_k\}|} & \text{step: times } \gamma \text{ at each milestone } m_k\\
        \tfrac12\big(1 + \cos(\pi (e - w) / (E - w))\big) & \text{cosine, after the warm-up}
    \end{cases}

The community CIFAR-100 recipe is ``step`` with milestones 150, 180, 210, gamma 0.1, 240 epochs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from kd_core.training.device import Precision

SCHEDULES = ("cosine", "step")


@dataclass(frozen=True)
class OptimizerConfig:
    """Everything that defines the optimiser and its schedule."""

    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False
    schedule: str = "cosine"
    milestones: Sequence[int] = field(default_factory=tuple)
    gamma: float = 0.1
    warmup_epochs: float = 0.0

    def check(self, epochs: int) -> None:
        """``ValueError`` with a sentence for any value that cannot train."""
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a finite number > 0, got {self.lr!r}.")
        for name in ("momentum", "weight_decay", "gamma", "warmup_epochs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{name} must be a number, got {value!r}.")
        if not isinstance(self.nesterov, bool):
            raise ValueError(f"nesterov must be true or false, got {self.nesterov!r}.")
        milestones = self.milestones
        if (
            isinstance(milestones, (str, bytes))
            or not isinstance(milestones, Sequence)
            or any(isinstance(m, bool) or not isinstance(m, (int, float)) for m in milestones)
        ):
            raise ValueError(f"milestones must be a list of epochs, got {milestones!r}.")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum!r}.")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(f"weight_decay must be finite and >= 0, got {self.weight_decay!r}.")
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov needs a momentum > 0.")
        if self.schedule not in SCHEDULES:
            raise ValueError(
                f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}."
            )
        if not 0 < self.gamma <= 1:
            raise ValueError(f"gamma must be in (0, 1], got {self.gamma!r}.")
        if not 0 <= self.warmup_epochs < max(epochs, 1):
            raise ValueError(
                f"warmup_epochs must be in [0, epochs = {epochs}), got {self.warmup_epochs!r}."
            )
        if any(not 0 < m <= epochs for m in self.milestones) or list(self.milestones) != sorted(
            self.milestones
        ):
            raise ValueError(
                f"milestones must be increasing epochs in 1..{epochs}, got {list(self.milestones)}."
            )


def lr_factor(
    config: OptimizerConfig, epoch_progress: float, epochs: int, steps_per_epoch: int
) -> float:
    """The multiplier of the base rate at ``epoch_progress`` (epochs done, fractional)."""
    warmup = config.warmup_epochs
    if epoch_progress < warmup:
        return min(1.0, (epoch_progress + 1.0 / steps_per_epoch) / warmup)
    if config.schedule == "step":
        return config.gamma ** sum(epoch_progress >= m for m in config.milestones)
    span = max(epochs - warmup, 1e-12)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (epoch_progress - warmup) / span)))


def build_optimizer(parameters: Iterable[nn.Parameter], config: OptimizerConfig) -> torch.optim.SGD:
    """SGD over ``parameters`` (student plus any learnable loss parts, e.g. FitNet regressors):
    the fused kernel when they are all on CUDA (one launch per step, and no host sync for the
    fp16 gradient scaler's overflow check), PyTorch's default implementation elsewhere."""
    parameters = list(parameters)
    on_cuda = bool(parameters) and all(p.device.type == "cuda" for p in parameters)
    return torch.optim.SGD(
        parameters,
        lr=config.lr,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
        nesterov=config.nesterov,
        fused=True if on_cuda else None,
    )


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every parameter group's rate (called once per step)."""
    for group in optimizer.param_groups:
        group["lr"] = lr


def sgd_step(
    forward: Callable[[], tuple[Tensor, dict[str, Tensor]]],
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    precision: Precision,
    device: torch.device,
) -> tuple[Tensor, dict[str, Tensor], Tensor]:
    """One optimiser step on the batch that ``forward()`` scores: ``(logits, named losses)``
    under ``precision``'s autocast, their sum ``loss`` back-propagated (scaled for fp16) and
    stepped. Returns ``(logits, losses, loss)``, still on the device (no host sync)."""
    with torch.autocast(
        device.type, dtype=precision.dtype or torch.float32, enabled=precision.dtype is not None
    ):
        logits, losses = forward()
        loss = sum(losses.values())
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return logits, losses, loss
