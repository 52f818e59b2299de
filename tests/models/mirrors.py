"""The zoo's architectures written in torch, with torchvision's parameter names.

Used by the zoo's tests (``test_zoo.py``, ``test_lockstep.py``), the ONNX and explain tests and
the benchmarks. Nothing here imports convprop, so a benchmark can load these mirrors beside
any version of convprop's source (``benchmarks.versus`` times old trees with them).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as TF
from torch import nn as tnn


class TorchLeNet5(tnn.Module):
    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        input_size: int = 28,
        activation: str = "relu",
        pooling: str = "max",
    ) -> None:
        super().__init__()
        height, width = (input_size, input_size) if isinstance(input_size, int) else input_size
        padding = 2 if (height, width) == (28, 28) else 0
        flat_h = ((height + 2 * padding - 4) // 2 - 4) // 2
        flat_w = ((width + 2 * padding - 4) // 2 - 4) // 2
        act = tnn.ReLU if activation == "relu" else tnn.Tanh
        pool = tnn.MaxPool2d if pooling == "max" else tnn.AvgPool2d
        self.features = tnn.Sequential(
            tnn.Conv2d(in_channels, 6, 5, padding=padding),
            act(),
            pool(2),
            tnn.Conv2d(6, 16, 5),
            act(),
            pool(2),
        )
        self.classifier = tnn.Sequential(
            tnn.Flatten(),
            tnn.Linear(16 * flat_h * flat_w, 120),
            act(),
            tnn.Linear(120, 84),
            act(),
            tnn.Linear(84, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class TorchBasicBlock(tnn.Module):
    """He et al.'s basic block, torchvision's names; projection shortcut (option B)."""

    def __init__(self, in_channels: int, channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = tnn.Conv2d(in_channels, channels, 3, stride, 1, bias=False)
        self.bn1 = tnn.BatchNorm2d(channels)
        self.conv2 = tnn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = tnn.BatchNorm2d(channels)
        self.downsample = None
        if stride != 1 or in_channels != channels:
            self.downsample = tnn.Sequential(
                tnn.Conv2d(in_channels, channels, 1, stride, bias=False), tnn.BatchNorm2d(channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = TF.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return TF.relu(out + (x if self.downsample is None else self.downsample(x)))


class TorchCifarResNet(tnn.Module):
    def __init__(self, blocks: int, in_channels: int = 3, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = tnn.Conv2d(in_channels, 16, 3, padding=1, bias=False)
        self.bn1 = tnn.BatchNorm2d(16)
        stages = []
        for previous, channels, stride in ((16, 16, 1), (16, 32, 2), (32, 64, 2)):
            stages.append(
                tnn.Sequential(
                    TorchBasicBlock(previous, channels, stride),
                    *(TorchBasicBlock(channels, channels) for _ in range(blocks - 1)),
                )
            )
        self.layer1, self.layer2, self.layer3 = stages
        self.avgpool = tnn.AdaptiveAvgPool2d(1)
        self.fc = tnn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = TF.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class TorchDenseLayer(tnn.Module):
    def __init__(self, in_channels: int, growth_rate: int) -> None:
        super().__init__()
        self.norm1 = tnn.BatchNorm2d(in_channels)
        self.relu1 = tnn.ReLU()
        self.conv1 = tnn.Conv2d(in_channels, 4 * growth_rate, 1, bias=False)
        self.norm2 = tnn.BatchNorm2d(4 * growth_rate)
        self.relu2 = tnn.ReLU()
        self.conv2 = tnn.Conv2d(4 * growth_rate, growth_rate, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.relu2(self.norm2(self.conv1(self.relu1(self.norm1(x))))))


class TorchDenseBlock(tnn.ModuleDict):
    def __init__(self, layers: int, in_channels: int, growth_rate: int) -> None:
        super().__init__()
        for i in range(layers):
            self.add_module(
                f"denselayer{i + 1}", TorchDenseLayer(in_channels + i * growth_rate, growth_rate)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = [x]
        for layer in self.values():
            maps.append(layer(torch.cat(maps, 1)))
        return torch.cat(maps, 1)


class TorchTransition(tnn.Sequential):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.add_module("norm", tnn.BatchNorm2d(in_channels))
        self.add_module("relu", tnn.ReLU())
        self.add_module("conv", tnn.Conv2d(in_channels, out_channels, 1, bias=False))
        self.add_module("pool", tnn.AvgPool2d(2))


class TorchDenseNetBC(tnn.Module):
    """torchvision's DenseNet layout (features.conv0, denseblockN, transitionN, norm5) with
    the CIFAR stem (one 3x3 conv with 2 x growth channels) and three blocks."""

    def __init__(
        self, depth: int = 40, growth_rate: int = 12, in_channels: int = 3, num_classes: int = 10
    ) -> None:
        super().__init__()
        layers = (depth - 4) // 6
        channels = 2 * growth_rate
        self.features = tnn.Sequential()
        self.features.add_module(
            "conv0", tnn.Conv2d(in_channels, channels, 3, padding=1, bias=False)
        )
        for block in range(1, 4):
            self.features.add_module(
                f"denseblock{block}", TorchDenseBlock(layers, channels, growth_rate)
            )
            channels += layers * growth_rate
            if block < 3:
                self.features.add_module(
                    f"transition{block}", TorchTransition(channels, channels // 2)
                )
                channels //= 2
        self.features.add_module("norm5", tnn.BatchNorm2d(channels))
        self.classifier = tnn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = TF.relu(self.features(x))
        return self.classifier(torch.flatten(TF.adaptive_avg_pool2d(features, 1), 1))


class TorchTDNN(tnn.Module):
    def __init__(
        self,
        in_channels: int = 40,
        num_classes: int = 10,
        channels: int = 64,
        context: tuple[tuple[int, int], ...] = ((5, 1), (3, 2), (3, 3), (1, 1)),
    ) -> None:
        super().__init__()
        layers: list[tnn.Module] = []
        previous = in_channels
        for kernel, dilation in context:
            layers += [
                tnn.Conv1d(previous, channels, kernel, dilation=dilation),
                tnn.ReLU(),
                tnn.BatchNorm1d(channels),
            ]
            previous = channels
        self.frames = tnn.Sequential(*layers)
        self.pool = tnn.AdaptiveAvgPool1d(1)
        self.classifier = tnn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.frames(x)), 1))


def torch_conv_bn_relu(in_channels: int, out_channels: int, convolutions: int) -> tnn.Sequential:
    layers: list[tnn.Module] = []
    for i in range(convolutions):
        first = in_channels if i == 0 else out_channels
        layers += [
            tnn.Conv2d(first, out_channels, 3, padding=1, bias=False),
            tnn.BatchNorm2d(out_channels),
            tnn.ReLU(),
        ]
    return tnn.Sequential(*layers)


class TorchUNet(tnn.Module):
    """Ronneberger et al.'s U-Net at small scale: conv-BN-ReLU levels with 2x2 max pooling,
    ConvTranspose2d(k=2, s=2) upsampling, concatenated skips, a 1x1 classifier."""

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 11,
        widths: tuple[int, ...] = (16, 32, 64),
        convolutions: int = 2,
    ) -> None:
        super().__init__()
        self.encoder = tnn.ModuleList(
            torch_conv_bn_relu(in_channels if i == 0 else widths[i - 1], w, convolutions)
            for i, w in enumerate(widths)
        )
        self.pool = tnn.MaxPool2d(2)
        deep = widths[::-1]
        self.upsample = tnn.ModuleList(
            tnn.ConvTranspose2d(a, b, 2, stride=2) for a, b in zip(deep, deep[1:], strict=False)
        )
        self.decoder = tnn.ModuleList(torch_conv_bn_relu(2 * b, b, convolutions) for b in deep[1:])
        self.classifier = tnn.Conv2d(widths[0], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for level, encode in enumerate(self.encoder):
            x = encode(x if level == 0 else self.pool(x))
            skips.append(x)
        skips.pop()
        for upsample, decode in zip(self.upsample, self.decoder, strict=True):
            x = decode(torch.cat([upsample(x), skips.pop()], 1))
        return self.classifier(x)


def torch_state(state: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {key: torch.from_numpy(np.array(value)) for key, value in state.items()}


def copy_into_torch(ours: Any, theirs: tnn.Module) -> None:
    """Load convprop's weights (and buffers) into the torch mirror through state_dict."""
    theirs.load_state_dict(torch_state(ours.state_dict()))
