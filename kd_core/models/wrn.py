"""The wide ResNets of the community zoo (``wrn_{depth}_{widen}``), layer for layer.

Pre-activation basic blocks, ``n = (depth - 4) // 6`` per stage, widths ``16k-32k-64k``; a 3x3
stem convolution without norm, a final BN-ReLU, an 8x8 average pool and a linear classifier.
Stages: ``block1`` (32x32), ``block2`` (16x16), ``block3`` (8x8) for a 32x32 input; as in the
community code the stage features are the raw block outputs, before the final BN-ReLU.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kd_core.models._layers import conv3x3, init_like_community
from kd_core.models.features import FeatureSpec


class WideBasicBlock(nn.Module):
    """BN-ReLU-conv3x3-BN-ReLU-conv3x3 with an identity or 1x1 convolution shortcut.

    Community quirk kept: when the width changes, the shortcut convolution reads the
    pre-activated input (BN-ReLU of ``x``); an identity shortcut reads ``x`` itself.
    """

    def __init__(self, in_planes: int, out_planes: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = conv3x3(in_planes, out_planes, stride)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.conv2 = conv3x3(out_planes, out_planes)
        # The community's attribute name, kept so that checkpoints load unchanged.
        self.convShortcut: nn.Conv2d | None = None
        if in_planes != out_planes:
            self.convShortcut = nn.Conv2d(
                in_planes, out_planes, kernel_size=1, stride=stride, bias=False
            )

    def forward(self, x: Tensor) -> Tensor:
        activated = F.relu(self.bn1(x))
        out = self.conv2(F.relu(self.bn2(self.conv1(activated))))
        shortcut = x if self.convShortcut is None else self.convShortcut(activated)
        return shortcut + out


class WideStage(nn.Module):
    """One stage of wide blocks (the community's ``NetworkBlock``: blocks under ``layer``)."""

    def __init__(self, blocks: int, in_planes: int, out_planes: int, stride: int) -> None:
        super().__init__()
        self.layer = nn.Sequential(
            WideBasicBlock(in_planes, out_planes, stride),
            *(WideBasicBlock(out_planes, out_planes, 1) for _ in range(blocks - 1)),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.layer(x)


class WideResNet(nn.Module):
    """WRN-depth-k for CIFAR: conv3x3 stem, three wide stages, BN-ReLU, 8x8 avg pool, linear."""

    feature_spec = FeatureSpec(stages=("block1", "block2", "block3"), head="fc")

    def __init__(self, depth: int, widen_factor: int, num_classes: int = 100) -> None:
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"WRN depth must be 6n + 4 (10, 16, 22, 28, 40, ...), got {depth}.")
        blocks = (depth - 4) // 6
        widths = (16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor)
        self.conv1 = conv3x3(3, widths[0])
        self.block1 = WideStage(blocks, widths[0], widths[1], stride=1)
        self.block2 = WideStage(blocks, widths[1], widths[2], stride=2)
        self.block3 = WideStage(blocks, widths[2], widths[3], stride=2)
        self.bn1 = nn.BatchNorm2d(widths[3])
        self.fc = nn.Linear(widths[3], num_classes)
        init_like_community(self)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: Tensor) -> Tensor:
        out = self.block3(self.block2(self.block1(self.conv1(x))))
        out = F.relu(self.bn1(out))
        # The community pools with a fixed 8x8 window: global only for 32x32 inputs.
        return self.fc(torch.flatten(F.avg_pool2d(out, 8), 1))
