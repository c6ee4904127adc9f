"""Small building blocks shared by the CIFAR zoo families."""

from __future__ import annotations

from torch import Tensor, nn


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution, padding 1, no bias (the zoo's default convolution)."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


class ChannelShuffle(nn.Module):
    """ShuffleNet's channel shuffle: ``N x (g*c) x H x W`` -> view ``g x c`` -> transpose."""

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        return x.view(n, self.groups, c // self.groups, h, w).transpose(1, 2).reshape(n, c, h, w)


def init_like_community(model: nn.Module, *, linear_std: float | None = None) -> None:
    """The zoo's initialisation: He-normal (fan-out) convolutions with zero bias, batch norm
    weight 1 and bias 0; linear layers ``N(0, linear_std)`` with zero bias when ``linear_std``
    is given, PyTorch's default otherwise. A model on the meta device is left as it is: it holds
    no values to fill, and torch's meta ``normal_`` imports ``torch._dynamo`` (about 2 s, paid
    by the first checkpoint a server loads, whose architecture is matched on the meta device)."""
    if any(parameter.is_meta for parameter in model.parameters()):
        return
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear) and linear_std is not None:
            nn.init.normal_(module.weight, 0.0, linear_std)
            nn.init.zeros_(module.bias)
