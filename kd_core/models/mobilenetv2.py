"""The community zoo's CIFAR MobileNetV2 (``MobileNetV2`` = RepDistiller's ``mobile_half``).

Expansion ratio 6 and width multiplier 0.5 on the channel counts (16-12-16-32-48-80-160), but
a full 1280-channel last convolution (the multiplier only widens it above 1.0). Community
quirks kept: ReLU (not ReLU6); every inverted residual has its 1x1 expansion convolution, also
at ratio 1; the stem has stride 2; the final pool is ``AvgPool2d(2, ceil_mode=True)`` (its
window is fixed for 32x32 inputs, where the last map is 2x2). Stages: ``blocks.1`` (16x16),
``blocks.2`` (8x8), ``blocks.4`` (4x4), ``blocks.6`` (2x2) for a 32x32 input.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from kd_core.models._layers import init_like_community
from kd_core.models.features import FeatureSpec

# expansion (None: the model's ratio), output channels, blocks, first stride
_SETTINGS: tuple[tuple[int | None, int, int, int], ...] = (
    (1, 16, 1, 1),
    (None, 24, 2, 1),
    (None, 32, 3, 2),
    (None, 64, 4, 2),
    (None, 96, 3, 1),
    (None, 160, 3, 2),
    (None, 320, 1, 1),
)


def _conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1):
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class InvertedResidual(nn.Module):
    """1x1 expand-BN-ReLU, 3x3 depthwise-BN-ReLU, 1x1 project-BN (linear bottleneck); identity
    shortcut when stride is 1 and the width is unchanged."""

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = inp * expand_ratio
        self.use_res_connect = stride == 1 and inp == oup
        self.conv = nn.Sequential(
            nn.Conv2d(inp, hidden, 1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, oup, 1, bias=False),
            nn.BatchNorm2d(oup),
        )

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv(x)
        return x + out if self.use_res_connect else out


class MobileNetV2(nn.Module):
    """CIFAR MobileNetV2: stride-2 conv stem, seven inverted-residual groups, 1x1 conv to 1280,
    average pool, linear classifier (inside a one-element ``classifier`` Sequential)."""

    feature_spec = FeatureSpec(
        stages=("blocks.1", "blocks.2", "blocks.4", "blocks.6"), head="classifier"
    )

    def __init__(
        self, expand_ratio: int = 6, width_mult: float = 0.5, num_classes: int = 100
    ) -> None:
        super().__init__()
        channels = int(32 * width_mult)
        self.conv1 = _conv_bn_relu(3, channels, 3, stride=2)
        self.blocks = nn.ModuleList()
        for ratio, width, count, stride in _SETTINGS:
            out_channels = int(width * width_mult)
            layers = []
            for index in range(count):
                layers.append(
                    InvertedResidual(
                        channels, out_channels, stride if index == 0 else 1, ratio or expand_ratio
                    )
                )
                channels = out_channels
            self.blocks.append(nn.Sequential(*layers))
        last_channels = int(1280 * width_mult) if width_mult > 1.0 else 1280
        self.conv2 = _conv_bn_relu(channels, last_channels, 1)
        self.avgpool = nn.AvgPool2d(2, ceil_mode=True)
        self.classifier = nn.Sequential(nn.Linear(last_channels, num_classes))
        init_like_community(self, linear_std=0.01)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv1(x)
        for group in self.blocks:
            out = group(out)
        out = self.avgpool(self.conv2(out))
        return self.classifier(torch.flatten(out, 1))
