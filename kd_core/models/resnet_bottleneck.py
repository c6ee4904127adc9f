"""The community zoo's CIFAR ResNet50 (RepDistiller's ``resnetv2.ResNet50``), layer for layer.

An ImageNet-style bottleneck ResNet (3, 4, 6, 3 blocks; widths 64-128-256-512, expansion 4)
adapted to 32x32 inputs: a 3x3 stride-1 stem without max pool, adaptive average pool, linear.
Stages: ``layer1`` (32x32), ``layer2`` (16x16), ``layer3`` (8x8), ``layer4`` (4x4) for a
32x32 input.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kd_core.models._layers import conv3x3, init_like_community
from kd_core.models.features import FeatureSpec


class Bottleneck(nn.Module):
    """1x1-BN-ReLU, 3x3(stride)-BN-ReLU, 1x1(x4)-BN, plus identity or 1x1 projection, ReLU."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out_planes = planes * self.expansion
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_planes, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != out_planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(out_planes),
            )

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + self.shortcut(x))


class BottleneckResNet(nn.Module):
    """CIFAR bottleneck ResNet: 3x3 stem, four bottleneck stages, adaptive avg pool, linear."""

    feature_spec = FeatureSpec(stages=("layer1", "layer2", "layer3", "layer4"), head="linear")

    def __init__(
        self, num_blocks: tuple[int, int, int, int] = (3, 4, 6, 3), num_classes: int = 100
    ) -> None:
        super().__init__()
        self.conv1 = conv3x3(3, 64)
        self.bn1 = nn.BatchNorm2d(64)
        self.in_planes = 64
        self.layer1 = self._stage(64, num_blocks[0], stride=1)
        self.layer2 = self._stage(128, num_blocks[1], stride=2)
        self.layer3 = self._stage(256, num_blocks[2], stride=2)
        self.layer4 = self._stage(512, num_blocks[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(512 * Bottleneck.expansion, num_classes)
        init_like_community(self)

    def _stage(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        layers = []
        for index in range(blocks):
            layers.append(Bottleneck(self.in_planes, planes, stride if index == 0 else 1))
            self.in_planes = planes * Bottleneck.expansion
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return self.linear(torch.flatten(self.avgpool(out), 1))
