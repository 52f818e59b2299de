"""The CIFAR ResNets of He et al. 2016 ("Deep Residual Learning", section 4.2): ResNet-20/32/56.

A 3x3 stem with 16 filters, then three stages of n basic blocks with 16, 32 and 64 filters
(the first block of stages 2 and 3 halves the map with stride 2), global average pooling and a
linear classifier: 6n + 2 layers. A block computes relu(bn(conv(relu(bn(conv(x))))) + s(x)),
with the identity as shortcut s, or a 1x1 strided projection + BatchNorm where the shape
changes (the paper's option B). The residual addition means the backward pass sends the local
gradient down both paths and sums it where they meet.
"""

from __future__ import annotations

from convprop import nn
from convprop.autograd import Tensor
from convprop.models._common import check_positive_int
from convprop.nn import functional as F


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with a shortcut; parameter names as torchvision's."""

    def __init__(self, in_channels: int, channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        if stride != 1 or in_channels != channels:
            self.downsample: nn.Module | None = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(channels),
            )
        else:
            self.downsample = None

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(out + shortcut)


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for small images; works for any input size of at least 4x4."""

    def __init__(self, blocks_per_stage: int, in_channels: int = 3, num_classes: int = 10) -> None:
        super().__init__()
        check_positive_int(
            "resnet",
            blocks_per_stage=blocks_per_stage,
            in_channels=in_channels,
            num_classes=num_classes,
        )
        self.conv1 = nn.Conv2d(in_channels, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = self._stage(16, 16, blocks_per_stage, stride=1)
        self.layer2 = self._stage(16, 32, blocks_per_stage, stride=2)
        self.layer3 = self._stage(32, 64, blocks_per_stage, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    @staticmethod
    def _stage(in_channels: int, channels: int, blocks: int, stride: int) -> nn.Sequential:
        layers = [BasicBlock(in_channels, channels, stride)]
        layers += [BasicBlock(channels, channels) for _ in range(blocks - 1)]
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.avgpool(x).flatten(1))


def resnet20(in_channels: int = 3, num_classes: int = 10) -> CifarResNet:
    """ResNet-20 (n = 3, 0.27M parameters)."""
    return CifarResNet(3, in_channels, num_classes)


def resnet32(in_channels: int = 3, num_classes: int = 10) -> CifarResNet:
    """ResNet-32 (n = 5, 0.46M parameters)."""
    return CifarResNet(5, in_channels, num_classes)


def resnet56(in_channels: int = 3, num_classes: int = 10) -> CifarResNet:
    """ResNet-56 (n = 9, 0.85M parameters)."""
    return CifarResNet(9, in_channels, num_classes)
