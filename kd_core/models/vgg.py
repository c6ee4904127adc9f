"""The VGG networks of the community zoo (``vgg8/11/13/16/19``, all with batch norm).

Five blocks of conv3x3(+bias)-BN-ReLU; max pools after blocks 0, 1 and 2; no fully connected
layers but one linear classifier on a global average pool. Community quirks kept: the pool
after block 3 runs only for 64x64 inputs, so at 32x32 blocks 3 and 4 both work at 4x4.
Stages: ``block1`` (16x16), ``block2`` (8x8), ``block3`` (4x4), ``block4`` (4x4) for a 32x32
input. The community applies each block's last ReLU in ``forward``; here it is the block's last
module (parameter-free, so the ``state_dict`` is unchanged) and the stage feature is the block
output, after that ReLU, as the community's features are.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from kd_core.models._layers import init_like_community
from kd_core.models.features import FeatureSpec

VGG_CONFIGS: dict[int, tuple[tuple[int, ...], ...]] = {
    8: ((64,), (128,), (256,), (512,), (512,)),
    11: ((64,), (128,), (256, 256), (512, 512), (512, 512)),
    13: ((64, 64), (128, 128), (256, 256), (512, 512), (512, 512)),
    16: ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)),
    19: (
        (64, 64),
        (128, 128),
        (256, 256, 256, 256),
        (512, 512, 512, 512),
        (512, 512, 512, 512),
    ),
}


def _block(in_channels: int, widths: tuple[int, ...]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in widths:
        layers += [
            nn.Conv2d(in_channels, width, kernel_size=3, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        ]
        in_channels = width
    return nn.Sequential(*layers)


class VGG(nn.Module):
    """CIFAR VGG with batch norm: five conv blocks, max pools, global avg pool, one linear."""

    feature_spec = FeatureSpec(stages=("block1", "block2", "block3", "block4"), head="classifier")

    def __init__(self, depth: int, num_classes: int = 100) -> None:
        super().__init__()
        config = VGG_CONFIGS[depth]
        self.block0 = _block(3, config[0])
        self.block1 = _block(config[0][-1], config[1])
        self.block2 = _block(config[1][-1], config[2])
        self.block3 = _block(config[2][-1], config[3])
        self.block4 = _block(config[3][-1], config[4])
        self.pool0 = nn.MaxPool2d(kernel_size=2, stride=2)
        self.pool1 = nn.MaxPool2d(kernel_size=2, stride=2)
        self.pool2 = nn.MaxPool2d(kernel_size=2, stride=2)
        self.pool3 = nn.MaxPool2d(kernel_size=2, stride=2)
        self.pool4 = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(config[4][-1], num_classes)
        init_like_community(self, linear_std=0.01)

    def forward(self, x: Tensor) -> Tensor:
        height = x.shape[2]
        out = self.pool0(self.block0(x))
        out = self.pool1(self.block1(out))
        out = self.pool2(self.block2(out))
        out = self.block3(out)
        if height == 64:  # community quirk: pool3 only for 64x64 inputs
            out = self.pool3(out)
        out = self.pool4(self.block4(out))
        return self.classifier(torch.flatten(out, 1))
