"""The community zoo's CIFAR ShuffleNet V1 (``ShuffleV1``: groups 3, widths 240-480-960).

A 1x1 conv stem (3 -> 24, stride 1, no max pool), three stages of 4, 8, 4 bottlenecks whose
first block has stride 2 and concatenates an avg-pooled shortcut, a 4x4 average pool and a
linear classifier. Community quirks kept: the very first bottleneck (24 input channels) uses an
ungrouped first 1x1 convolution and no shuffle; the last 1x1 convolution is always grouped.
Stages: ``layer1`` (16x16), ``layer2`` (8x8), ``layer3`` (4x4) for a 32x32 input.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kd_core.models._layers import ChannelShuffle
from kd_core.models.features import FeatureSpec


class ShuffleV1Bottleneck(nn.Module):
    """Grouped 1x1-BN-ReLU, channel shuffle, 3x3 depthwise-BN-ReLU, grouped 1x1-BN, then ReLU
    of ``out + x`` (stride 1) or of ``cat(out, avgpool3x3/2(x))`` (stride 2)."""

    def __init__(self, in_planes: int, out_planes: int, stride: int, groups: int) -> None:
        super().__init__()
        self.stride = stride
        mid_planes = out_planes // 4
        first_groups = 1 if in_planes == 24 else groups
        self.conv1 = nn.Conv2d(in_planes, mid_planes, 1, groups=first_groups, bias=False)
        self.bn1 = nn.BatchNorm2d(mid_planes)
        self.shuffle1 = ChannelShuffle(first_groups)
        self.conv2 = nn.Conv2d(mid_planes, mid_planes, 3, stride, 1, groups=mid_planes, bias=False)
        self.bn2 = nn.BatchNorm2d(mid_planes)
        self.conv3 = nn.Conv2d(mid_planes, out_planes, 1, groups=groups, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self.shortcut = nn.AvgPool2d(3, stride=2, padding=1) if stride == 2 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        out = self.shuffle1(F.relu(self.bn1(self.conv1(x))))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        shortcut = self.shortcut(x)
        out = torch.cat([out, shortcut], 1) if self.stride == 2 else out + shortcut
        return F.relu(out)


class ShuffleNetV1(nn.Module):
    """CIFAR ShuffleNet V1: 1x1 conv stem, three bottleneck stages, 4x4 avg pool, linear."""

    feature_spec = FeatureSpec(stages=("layer1", "layer2", "layer3"), head="linear")

    def __init__(
        self,
        out_planes: tuple[int, int, int] = (240, 480, 960),
        num_blocks: tuple[int, int, int] = (4, 8, 4),
        groups: int = 3,
        num_classes: int = 100,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 24, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(24)
        self.in_planes = 24
        self.layer1 = self._stage(out_planes[0], num_blocks[0], groups)
        self.layer2 = self._stage(out_planes[1], num_blocks[1], groups)
        self.layer3 = self._stage(out_planes[2], num_blocks[2], groups)
        self.linear = nn.Linear(out_planes[2], num_classes)

    def _stage(self, out_planes: int, blocks: int, groups: int) -> nn.Sequential:
        # The first block concatenates its input, so its branch makes out - in channels.
        layers = [ShuffleV1Bottleneck(self.in_planes, out_planes - self.in_planes, 2, groups)]
        layers += [
            ShuffleV1Bottleneck(out_planes, out_planes, 1, groups) for _ in range(blocks - 1)
        ]
        self.in_planes = out_planes
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        # The community pools with a fixed 4x4 window: global only for 32x32 inputs.
        return self.linear(torch.flatten(F.avg_pool2d(out, 4), 1))
