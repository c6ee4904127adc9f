"""The CIFAR ResNets of the community model zoo (RepDistiller / mdistiller / CRD), layer for layer.

``resnet{8,14,20,32,44,56,110}`` use 16-16-32-64 filters, ``resnet8x4``/``resnet32x4`` use
32-64-128-256; ``n = (depth - 2) // 6`` basic blocks per stage. Parameter names and shapes match
the community's ``state_dict`` key for key, so their checkpoints load unchanged.
Stages: ``layer1`` (32x32), ``layer2`` (16x16), ``layer3`` (8x8) for a 32x32 input.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kd_core.models._layers import conv3x3, init_like_community
from kd_core.models.features import FeatureSpec


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and an identity (or 1x1 projection) shortcut."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample: nn.Module | None = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes),
            )

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(out + shortcut)


class CifarResNet(nn.Module):
    """CIFAR ResNet: 3x3 stem, three stages of basic blocks, global average pool, linear."""

    feature_spec = FeatureSpec(stages=("layer1", "layer2", "layer3"), head="fc")

    def __init__(
        self, depth: int, filters: tuple[int, int, int, int], num_classes: int = 100
    ) -> None:
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n + 2 (8, 14, 20, ...), got {depth}.")
        blocks = (depth - 2) // 6
        self.conv1 = nn.Conv2d(3, filters[0], kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(filters[0])
        self.layer1 = self._stage(filters[0], filters[1], blocks, stride=1)
        self.layer2 = self._stage(filters[1], filters[2], blocks, stride=2)
        self.layer3 = self._stage(filters[2], filters[3], blocks, stride=2)
        self.fc = nn.Linear(filters[3], num_classes)
        init_like_community(self)

    @staticmethod
    def _stage(inplanes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
        layers = [BasicBlock(inplanes, planes, stride)]
        layers += [BasicBlock(planes, planes) for _ in range(blocks - 1)]
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(out, 1), 1))
