"""The community zoo's CIFAR ShuffleNet V2 (``ShuffleV2``: net size 1, widths 116-232-464).

A 1x1 conv stem (3 -> 24, stride 1, no max pool), three stages each of one stride-2 down block
followed by 3, 7, 3 basic blocks, a 1x1 conv to 1024 channels, a 4x4 average pool and a linear
classifier. Basic blocks split the channels in halves, transform the second half and
concatenate, then shuffle with 2 groups. Stages: ``layer1`` (16x16), ``layer2`` (8x8),
``layer3`` (4x4) for a 32x32 input.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kd_core.models._layers import ChannelShuffle
from kd_core.models.features import FeatureSpec


def _conv1x1(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)


def _depthwise3x3(channels: int, stride: int) -> nn.Conv2d:
    return nn.Conv2d(channels, channels, 3, stride, 1, groups=channels, bias=False)


class ShuffleV2Block(nn.Module):
    """Split in halves; the second goes 1x1-BN-ReLU, 3x3 depthwise-BN, 1x1-BN-ReLU; concatenate
    with the untouched first half and shuffle."""

    def __init__(self, channels: int, split_ratio: float = 0.5) -> None:
        super().__init__()
        self.split = int(channels * split_ratio)
        half = self.split
        self.conv1 = _conv1x1(half, half)
        self.bn1 = nn.BatchNorm2d(half)
        self.conv2 = _depthwise3x3(half, 1)
        self.bn2 = nn.BatchNorm2d(half)
        self.conv3 = _conv1x1(half, half)
        self.bn3 = nn.BatchNorm2d(half)
        self.shuffle = ChannelShuffle(2)

    def forward(self, x: Tensor) -> Tensor:
        kept, branch = x[:, : self.split], x[:, self.split :]
        out = F.relu(self.bn1(self.conv1(branch)))
        out = self.bn2(self.conv2(out))
        out = F.relu(self.bn3(self.conv3(out)))
        return self.shuffle(torch.cat([kept, out], 1))


class ShuffleV2DownBlock(nn.Module):
    """Stride-2 block: left 3x3 depthwise-BN, 1x1-BN-ReLU; right 1x1-BN-ReLU, 3x3
    depthwise-BN, 1x1-BN-ReLU; concatenate (half the output channels each) and shuffle."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        mid = out_channels // 2
        self.conv1 = _depthwise3x3(in_channels, 2)
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv2 = _conv1x1(in_channels, mid)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv3 = _conv1x1(in_channels, mid)
        self.bn3 = nn.BatchNorm2d(mid)
        self.conv4 = _depthwise3x3(mid, 2)
        self.bn4 = nn.BatchNorm2d(mid)
        self.conv5 = _conv1x1(mid, mid)
        self.bn5 = nn.BatchNorm2d(mid)
        self.shuffle = ChannelShuffle(2)

    def forward(self, x: Tensor) -> Tensor:
        left = F.relu(self.bn2(self.conv2(self.bn1(self.conv1(x)))))
        right = F.relu(self.bn3(self.conv3(x)))
        right = F.relu(self.bn5(self.conv5(self.bn4(self.conv4(right)))))
        return self.shuffle(torch.cat([left, right], 1))


class ShuffleNetV2(nn.Module):
    """CIFAR ShuffleNet V2: 1x1 conv stem, three stages, 1x1 conv, 4x4 avg pool, linear."""

    feature_spec = FeatureSpec(stages=("layer1", "layer2", "layer3"), head="linear")

    def __init__(
        self,
        out_channels: tuple[int, int, int, int] = (116, 232, 464, 1024),
        num_blocks: tuple[int, int, int] = (3, 7, 3),
        num_classes: int = 100,
    ) -> None:
        super().__init__()
        self.conv1 = _conv1x1(3, 24)
        self.bn1 = nn.BatchNorm2d(24)
        self.layer1 = self._stage(24, out_channels[0], num_blocks[0])
        self.layer2 = self._stage(out_channels[0], out_channels[1], num_blocks[1])
        self.layer3 = self._stage(out_channels[1], out_channels[2], num_blocks[2])
        self.conv2 = _conv1x1(out_channels[2], out_channels[3])
        self.bn2 = nn.BatchNorm2d(out_channels[3])
        self.linear = nn.Linear(out_channels[3], num_classes)

    @staticmethod
    def _stage(in_channels: int, out_channels: int, blocks: int) -> nn.Sequential:
        return nn.Sequential(
            ShuffleV2DownBlock(in_channels, out_channels),
            *(ShuffleV2Block(out_channels) for _ in range(blocks)),
        )

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.relu(self.bn2(self.conv2(out)))
        # The community pools with a fixed 4x4 window: global only for 32x32 inputs.
        return self.linear(torch.flatten(F.avg_pool2d(out, 4), 1))
