"""LeNet-5 (LeCun et al. 1998): two conv + pool stages, then a three-layer MLP.

This is deck 004's CNN end to end: convolution, point-wise activation, pooling (the notes'
downsampling), flatten and an MLP ending in the class scores that softmax + cross-entropy read.
"""

from __future__ import annotations

from convprop import nn
from convprop.autograd import Tensor
from convprop.models._common import check_positive_int, pair_size


class LeNet5(nn.Module):
    """conv(6@5x5) - act - pool - conv(16@5x5) - act - pool - fc120 - act - fc84 - act - fc.

    A 28x28 input is padded by 2 in the first convolution (as LeNet-5 is usually run on MNIST),
    so 28x28 and 32x32 inputs both reach 5x5 maps before the MLP; other sizes work too (at least
    13x13 after padding), the first linear layer being sized to fit.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        input_size: int | tuple[int, int] = 28,
        activation: str = "relu",
        pooling: str = "max",
    ) -> None:
        super().__init__()
        check_positive_int("lenet5", in_channels=in_channels, num_classes=num_classes)
        height, width = pair_size("lenet5", input_size)
        if activation not in ("relu", "tanh"):
            raise ValueError(f"lenet5: activation must be 'relu' or 'tanh', got {activation!r}")
        if pooling not in ("max", "avg"):
            raise ValueError(f"lenet5: pooling must be 'max' or 'avg', got {pooling!r}")
        # The size the first Linear is sized for (fully_convolutional reads it).
        self.input_size = (height, width)
        padding = 2 if (height, width) == (28, 28) else 0
        feature_sizes = []
        for size in (height, width):
            size = (size + 2 * padding - 4) // 2  # conv 5x5, pool 2
            size = (size - 4) // 2  # conv 5x5, pool 2
            feature_sizes.append(size)
        if min(feature_sizes) < 1:
            raise ValueError(
                f"lenet5: input_size {height}x{width} is too small; LeNet-5 needs at least 16x16"
            )
        act = nn.ReLU if activation == "relu" else nn.Tanh
        pool = nn.MaxPool2d if pooling == "max" else nn.AvgPool2d
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5, padding=padding),
            act(),
            pool(2),
            nn.Conv2d(6, 16, 5),
            act(),
            pool(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(16 * feature_sizes[0] * feature_sizes[1], 120),
            act(),
            nn.Linear(120, 84),
            act(),
            nn.Linear(84, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


def lenet5(
    in_channels: int = 1,
    num_classes: int = 10,
    input_size: int | tuple[int, int] = 28,
    activation: str = "relu",
    pooling: str = "max",
) -> LeNet5:
    """LeNet-5 for ``in_channels`` x ``input_size`` images and ``num_classes`` classes."""
    return LeNet5(in_channels, num_classes, input_size, activation, pooling)
