"""Data-parallel training under ``torchrun``: which process this is, and the module that
DistributedDataParallel wraps (the distiller's training forward)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn

from kd_core.training.distiller import Distiller


@dataclass
class Distributed:
    """This process's place: ``rank`` of ``world_size``; ``owns_group`` when it created the
    process group (and so destroys it); ``joined`` when it trains in a group its caller
    initialised, which is data-parallel even with one process."""

    rank: int = 0
    world_size: int = 1
    owns_group: bool = False
    joined: bool = False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1 or self.joined

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def distributed_from_env(device: torch.device) -> Distributed:
    """One process (``WORLD_SIZE`` unset or 1), or this process's rank in the group that
    ``torchrun`` describes (NCCL on CUDA, Gloo elsewhere), or in the group the caller already
    initialised (used as it is, one process included: how the GPU check runs DDP over NCCL)."""
    if dist.is_available() and dist.is_initialized():
        return Distributed(dist.get_rank(), dist.get_world_size(), joined=True)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Distributed()
    owns_group = not dist.is_initialized()
    if owns_group:
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Distributed(dist.get_rank(), dist.get_world_size(), owns_group)


class TrainStep(nn.Module):
    """What DistributedDataParallel wraps: its forward is the distiller's ``forward_train``."""

    def __init__(self, distiller: Distiller) -> None:
        super().__init__()
        self.distiller = distiller

    def forward(self, images: Tensor, labels: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        return self.distiller.forward_train(images, labels)
