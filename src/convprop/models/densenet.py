"""A small DenseNet-BC (Huang et al. 2017) for small images, growth rate 12.

Each dense layer sees the concatenation of every earlier map in its block and adds ``growth``
new channels: BN-ReLU-Conv1x1 (the bottleneck, 4 x growth channels) then BN-ReLU-Conv3x3.
Between blocks a transition layer (BN-ReLU-Conv1x1 with compression 0.5, then 2x2 average
pooling) halves channels and map size. Backward through a concatenation hands each input its
own slice of the gradient, and a map used by every later layer sums all their gradients.
Parameter names follow torchvision's DenseNet (features.denseblock1.denselayer1.conv1, ...).
"""

from __future__ import annotations

import convprop as cp
from convprop import nn
from convprop.autograd import Tensor
from convprop.models._common import check_positive_int
from convprop.nn import functional as F


class DenseLayer(nn.Module):
    def __init__(self, in_channels: int, growth_rate: int, bottleneck_width: int = 4) -> None:
        super().__init__()
        inner = bottleneck_width * growth_rate
        self.norm1 = nn.BatchNorm2d(in_channels)
        self.relu1 = nn.ReLU()
        self.conv1 = nn.Conv2d(in_channels, inner, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(inner)
        self.relu2 = nn.ReLU()
        self.conv2 = nn.Conv2d(inner, growth_rate, 3, padding=1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv1(self.relu1(self.norm1(x)))
        return self.conv2(self.relu2(self.norm2(out)))


class DenseBlock(nn.ModuleDict):
    def __init__(self, layers: int, in_channels: int, growth_rate: int) -> None:
        super().__init__()
        for i in range(layers):
            self.add_module(
                f"denselayer{i + 1}", DenseLayer(in_channels + i * growth_rate, growth_rate)
            )

    def forward(self, x: Tensor) -> Tensor:
        maps = [x]
        for layer in self.values():
            maps.append(layer(cp.cat(maps, 1)))
        return cp.cat(maps, 1)


class Transition(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.add_module("norm", nn.BatchNorm2d(in_channels))
        self.add_module("relu", nn.ReLU())
        self.add_module("conv", nn.Conv2d(in_channels, out_channels, 1, bias=False))
        self.add_module("pool", nn.AvgPool2d(2))


class DenseNetBC(nn.Module):
    """DenseNet-BC with three dense blocks of ``(depth - 4) / 6`` layers each."""

    def __init__(
        self,
        depth: int = 40,
        growth_rate: int = 12,
        in_channels: int = 3,
        num_classes: int = 10,
        compression: float = 0.5,
    ) -> None:
        super().__init__()
        check_positive_int(
            "densenet_bc",
            depth=depth,
            growth_rate=growth_rate,
            in_channels=in_channels,
            num_classes=num_classes,
        )
        if (depth - 4) % 6 or depth < 10:
            raise ValueError(
                f"densenet_bc: depth must be 6k + 4 with k >= 1 (e.g. 40, 100), got {depth}"
            )
        if not 0 < compression <= 1:
            raise ValueError(f"densenet_bc: compression must be in (0, 1], got {compression}")
        layers = (depth - 4) // 6
        channels = 2 * growth_rate
        self.features = nn.Sequential()
        self.features.add_module(
            "conv0", nn.Conv2d(in_channels, channels, 3, padding=1, bias=False)
        )
        for block in range(1, 4):
            self.features.add_module(
                f"denseblock{block}", DenseBlock(layers, channels, growth_rate)
            )
            channels += layers * growth_rate
            if block < 3:
                reduced = int(channels * compression)
                self.features.add_module(f"transition{block}", Transition(channels, reduced))
                channels = reduced
        self.features.add_module("norm5", nn.BatchNorm2d(channels))
        self.classifier = nn.Linear(channels, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight)
            elif isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)

    def forward(self, x: Tensor) -> Tensor:
        features = F.relu(self.features(x))
        return self.classifier(F.adaptive_avg_pool2d(features, 1).flatten(1))


def densenet_bc(
    depth: int = 40, growth_rate: int = 12, in_channels: int = 3, num_classes: int = 10
) -> DenseNetBC:
    """A small DenseNet-BC (depth 40, growth rate 12: about 0.18M parameters)."""
    return DenseNetBC(depth, growth_rate, in_channels, num_classes)
