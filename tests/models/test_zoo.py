"""Every model of the zoo against the same architecture written here in torch.

The torch mirrors (also used by ``test_lockstep.py``) repeat the papers' architectures with
torchvision's parameter names, so that equal ``state_dict`` keys and shapes mean the same
layers, equal outputs mean the same wiring, and weights move both ways losslessly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from torch import nn as tnn

import convprop as cp
from convprop import models
from tests.reference import assert_close

# ---------------------------------------------------------------------------- torch mirrors


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


# (id, convprop builder, torch builder, input shape): the same keyword arguments for both.
ZOO: list[tuple[str, Callable[[], Any], Callable[[], tnn.Module], tuple[int, ...]]] = [
    ("lenet5_28_gray", lambda: models.lenet5(), lambda: TorchLeNet5(), (2, 1, 28, 28)),
    (
        "lenet5_32_gray",
        lambda: models.lenet5(input_size=32),
        lambda: TorchLeNet5(input_size=32),
        (2, 1, 32, 32),
    ),
    ("lenet5_28_rgb", lambda: models.lenet5(3, 7), lambda: TorchLeNet5(3, 7), (2, 3, 28, 28)),
    (
        "lenet5_32_rgb_tanh_avg",
        lambda: models.lenet5(3, 10, 32, activation="tanh", pooling="avg"),
        lambda: TorchLeNet5(3, 10, 32, activation="tanh", pooling="avg"),
        (2, 3, 32, 32),
    ),
    ("resnet20", lambda: models.resnet20(), lambda: TorchCifarResNet(3), (2, 3, 8, 8)),
    ("resnet32", lambda: models.resnet32(), lambda: TorchCifarResNet(5), (2, 3, 8, 8)),
    ("resnet56", lambda: models.resnet56(), lambda: TorchCifarResNet(9), (2, 3, 8, 8)),
    (
        "resnet20_gray_5",
        lambda: models.resnet20(1, 5),
        lambda: TorchCifarResNet(3, 1, 5),
        (2, 1, 12, 10),
    ),
    ("densenet_bc", lambda: models.densenet_bc(), lambda: TorchDenseNetBC(), (2, 3, 8, 8)),
    (
        "densenet_bc_10_gray",
        lambda: models.densenet_bc(10, 6, 1, 4),
        lambda: TorchDenseNetBC(10, 6, 1, 4),
        (2, 1, 12, 12),
    ),
    ("fcn", lambda: models.fcn(), lambda: TorchUNet(), (2, 1, 16, 12)),
    ("unet", lambda: models.unet(), lambda: TorchUNet(widths=(16, 32, 64, 128)), (2, 1, 8, 16)),
    (
        "unet_one_convolution",
        lambda: models.UNet(1, 11, (16, 32, 64), 1),
        lambda: TorchUNet(convolutions=1),
        (2, 1, 4, 8),
    ),
    (
        "unet_rgb_4_levels",
        lambda: models.UNet(3, 5, (4, 6, 8, 10), 2),
        lambda: TorchUNet(3, 5, (4, 6, 8, 10), 2),
        (2, 3, 16, 24),
    ),
    ("tdnn", lambda: models.tdnn(), lambda: TorchTDNN(), (2, 40, 20)),
    (
        "tdnn_custom",
        lambda: models.tdnn(5, 3, 8, ((3, 1), (2, 4))),
        lambda: TorchTDNN(5, 3, 8, ((3, 1), (2, 4))),
        (2, 5, 9),
    ),
]
ZOO_IDS = [case[0] for case in ZOO]
ZOO_CASES = [case[1:] for case in ZOO]


def torch_state(state: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {key: torch.from_numpy(np.array(value)) for key, value in state.items()}


def copy_into_torch(ours: Any, theirs: tnn.Module) -> None:
    """Load convprop's weights (and buffers) into the torch mirror through state_dict."""
    theirs.load_state_dict(torch_state(ours.state_dict()))


# ---------------------------------------------------------------------------- keys and weights
@pytest.mark.parametrize(("build", "build_torch", "shape"), ZOO_CASES, ids=ZOO_IDS)
def test_state_dict_keys_and_shapes_equal_torch(
    build: Callable[[], Any], build_torch: Callable[[], tnn.Module], shape: tuple[int, ...]
) -> None:
    ours, theirs = build(), build_torch()
    our_state, their_state = ours.state_dict(), theirs.state_dict()
    assert list(our_state) == list(their_state)
    for key, value in our_state.items():
        assert value.shape == tuple(their_state[key].shape), key
        assert value.dtype == their_state[key].numpy().dtype, key  # float32 and int64 counters
    assert [name for name, _ in ours.named_parameters()] == [
        name for name, _ in theirs.named_parameters()
    ]


@pytest.mark.parametrize(("build", "build_torch", "shape"), ZOO_CASES, ids=ZOO_IDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_state_dict_round_trip_through_torch_is_lossless(
    build: Callable[[], Any],
    build_torch: Callable[[], tnn.Module],
    shape: tuple[int, ...],
    dtype: type,
) -> None:
    cp.manual_seed(0)
    ours = build().to(dtype)
    # Non-trivial buffers too: one training-mode forward moves the running statistics.
    ours(cp.tensor(np.random.default_rng(0).standard_normal(shape).astype(dtype)))
    theirs = build_torch().to(torch.float64 if dtype == np.float64 else torch.float32)
    copy_into_torch(ours, theirs)
    cp.manual_seed(1)
    again = build().to(dtype)
    again.load_state_dict(theirs.state_dict())
    original, returned = ours.state_dict(), again.state_dict()
    assert list(original) == list(returned)
    for key, value in original.items():
        assert returned[key].dtype == value.dtype, key
        assert returned[key].tobytes() == value.tobytes(), key  # bitwise
    running_means = [value for key, value in original.items() if key.endswith("running_mean")]
    assert all(value.any() for value in running_means)  # the buffers did move


# ---------------------------------------------------------------------------- forward values
@pytest.mark.parametrize(("build", "build_torch", "shape"), ZOO_CASES, ids=ZOO_IDS)
def test_forward_matches_torch_in_train_and_eval(
    build: Callable[[], Any], build_torch: Callable[[], tnn.Module], shape: tuple[int, ...]
) -> None:
    cp.manual_seed(2)
    ours = build().double()
    theirs = build_torch().double()
    copy_into_torch(ours, theirs)
    rng = np.random.default_rng(3)
    for step in range(2):  # train mode: batch statistics; running stats move
        x = rng.standard_normal(shape)
        our_x, their_x = cp.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
        our_out, their_out = ours(our_x), theirs(their_x)
        assert_close(our_out.numpy(), their_out, 1e-10, f"train output {step}")
        grad = rng.standard_normal(their_out.shape)
        our_out.backward(grad)
        their_out.backward(torch.tensor(grad))
        assert_close(our_x.grad.numpy(), their_x.grad, 1e-10, f"input gradient {step}")
    their_params = dict(theirs.named_parameters())
    for name, param in ours.named_parameters():
        assert_close(param.grad.numpy(), their_params[name].grad, 1e-10, f"grad of {name}")
    their_state = theirs.state_dict()
    for key, value in ours.state_dict().items():
        assert_close(value, their_state[key], 1e-10, f"state {key}")
    ours.eval()
    theirs.eval()
    x = rng.standard_normal(shape)
    with torch.no_grad():
        expected = theirs(torch.tensor(x))
    assert_close(ours(cp.tensor(x)).numpy(), expected, 1e-10, "eval output")


# ---------------------------------------------------------------------------- sizes
def count(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (lambda: models.lenet5(), 61_706),
        (lambda: models.lenet5(input_size=32), 61_706),
        (lambda: models.lenet5(3, 10, 32), 62_006),
        (lambda: models.resnet20(), 272_474),
        (lambda: models.resnet32(), 466_906),
        (lambda: models.resnet56(), 855_770),
        (lambda: models.densenet_bc(), 176_122),
    ],
    ids=["lenet5_28", "lenet5_32", "lenet5_rgb", "resnet20", "resnet32", "resnet56", "densenet_bc"],
)
def test_parameter_counts(build: Callable[[], Any], expected: int) -> None:
    assert count(build()) == expected


@pytest.mark.parametrize(("build", "build_torch", "shape"), ZOO_CASES, ids=ZOO_IDS)
def test_parameter_counts_equal_torch(
    build: Callable[[], Any], build_torch: Callable[[], tnn.Module], shape: tuple[int, ...]
) -> None:
    assert count(build()) == sum(p.numel() for p in build_torch().parameters())


@pytest.mark.parametrize(
    ("build", "shape", "classes"),
    [
        (lambda: models.lenet5(3, 4, (36, 20)), (2, 3, 36, 20), 4),
        (lambda: models.lenet5(1, 2, 16), (1, 1, 16, 16), 2),
        (lambda: models.resnet20(4, 100), (1, 4, 5, 7), 100),
        (lambda: models.resnet32(1, 2), (2, 1, 4, 4), 2),
        (lambda: models.densenet_bc(16, 4, 2, 3), (2, 2, 20, 12), 3),
        (lambda: models.tdnn(13, 6, 16), (2, 13, 15), 6),
        (lambda: models.tdnn(13, 6, 16), (1, 13, 31), 6),
    ],
    ids=[
        "lenet_36x20",
        "lenet_16",
        "resnet20_4ch_100",
        "resnet32_tiny",
        "densenet_2ch",
        "tdnn_min_length",
        "tdnn_long",
    ],
)
def test_models_adapt_to_channels_classes_and_size(
    build: Callable[[], Any], shape: tuple[int, ...], classes: int
) -> None:
    model = build()
    model.eval()
    output = model(cp.tensor(np.random.default_rng(0).standard_normal(shape).astype(np.float32)))
    assert output.shape == (shape[0], classes)
    assert output.dtype == np.float32


@pytest.mark.parametrize(
    ("build", "multiple"), [(models.fcn, 4), (models.unet, 8)], ids=["fcn", "unet"]
)
def test_segmenters_score_every_pixel_at_any_multiple_of_their_stride(
    build: Callable[..., Any], multiple: int
) -> None:
    model = build(2, 7)
    model.eval()
    for height, width in ((multiple * 7, multiple * 7), (64, 40), (multiple, 2 * multiple)):
        x = np.random.default_rng(0).standard_normal((1, 2, height, width)).astype(np.float32)
        assert model(cp.tensor(x)).shape == (1, 7, height, width)
    with pytest.raises(
        ValueError,
        match=r"unet: expects \(N, C, H, W\) images with H and W "
        rf"multiples of {multiple}, got input of shape \(1, 2, 30, 28\)",
    ):
        model(cp.tensor(np.zeros((1, 2, 30, 28), np.float32)))


@pytest.mark.parametrize(("convolutions", "field"), [(1, 22), (2, 56)])
def test_segmenter_receptive_fields(convolutions: int, field: int) -> None:
    """The pixels one output pixel sees (the module docstring's figures): where the gradient
    of one score with respect to the input is non-zero."""
    model = models.UNet(1, 3, (4, 8, 16), convolutions).double()
    model.eval()
    x = cp.tensor(np.random.default_rng(0).random((1, 1, 96, 96)), requires_grad=True)
    scores = model(x)
    grad = np.zeros(scores.shape)
    grad[0, 0, 48, 48] = 1.0
    scores.backward(grad)
    seen = np.argwhere(x.grad.numpy()[0, 0] != 0)
    assert (seen.max(axis=0) - seen.min(axis=0) + 1).tolist() == [field, field]


def test_lenet_first_linear_layer_fits_the_input_size() -> None:
    assert models.lenet5(input_size=28).classifier[1].in_features == 400  # padded to 32x32
    assert models.lenet5(input_size=32).classifier[1].in_features == 400
    assert models.lenet5(input_size=(36, 20)).classifier[1].in_features == 16 * 6 * 2


def test_tdnn_receptive_field() -> None:
    assert models.tdnn().receptive_field == 1 + 4 * 1 + 2 * 2 + 2 * 3 + 0
    assert models.tdnn(context=((3, 1), (2, 4))).receptive_field == 1 + 2 + 4


# ---------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: models.lenet5(0), r"lenet5: in_channels must be a positive int, got 0"),
        (lambda: models.lenet5(1, -3), r"lenet5: num_classes must be a positive int, got -3"),
        (
            lambda: models.lenet5(input_size=(28, 28, 3)),
            r"lenet5: input_size must be a positive int or \(height, width\), got \(28, 28, 3\)",
        ),
        (
            lambda: models.lenet5(input_size=12),
            r"lenet5: input_size 12x12 is too small; LeNet-5 needs at least 16x16",
        ),
        (
            lambda: models.lenet5(activation="gelu"),
            r"lenet5: activation must be 'relu' or 'tanh', got 'gelu'",
        ),
        (
            lambda: models.lenet5(pooling="min"),
            r"lenet5: pooling must be 'max' or 'avg', got 'min'",
        ),
        (lambda: models.resnet20(0), r"resnet: in_channels must be a positive int, got 0"),
        (lambda: models.resnet56(3, 0), r"resnet: num_classes must be a positive int, got 0"),
        (lambda: models.CifarResNet(0), r"resnet: blocks_per_stage must be a positive int, got 0"),
        (
            lambda: models.densenet_bc(41),
            r"densenet_bc: depth must be 6k \+ 4 with k >= 1 \(e.g. 40, 100\), got 41",
        ),
        (
            lambda: models.densenet_bc(4),
            r"densenet_bc: depth must be 6k \+ 4 with k >= 1 \(e.g. 40, 100\), got 4",
        ),
        (
            lambda: models.densenet_bc(40, 0),
            r"densenet_bc: growth_rate must be a positive int, got 0",
        ),
        (
            lambda: models.DenseNetBC(compression=1.5),
            r"densenet_bc: compression must be in \(0, 1\], got 1.5",
        ),
        (lambda: models.unet(0), r"unet: in_channels must be a positive int, got 0"),
        (lambda: models.fcn(1, 11, (8,)), r"unet: widths must give at least 2 levels, got \(8,\)"),
        (lambda: models.unet(1, 11, (8, 0)), r"unet: widths\[1\] must be a positive int, got 0"),
        (lambda: models.tdnn(0), r"tdnn: in_channels must be a positive int, got 0"),
        (
            lambda: models.tdnn(context=()),
            r"tdnn: context must list at least one \(kernel, dilation\) pair",
        ),
        (lambda: models.tdnn(context=((3, 0),)), r"tdnn: dilation must be a positive int, got 0"),
    ],
)
def test_bad_arguments_raise_documented_errors(build: Callable[[], Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()


def test_tdnn_rejects_sequences_shorter_than_its_receptive_field() -> None:
    model = models.tdnn(4, 2, 8)
    with pytest.raises(
        ValueError,
        match=r"tdnn: expected input \(N, C, L\) with L >= 15 \(the "
        r"receptive field\), got shape \(2, 4, 14\)",
    ):
        model(cp.tensor(np.zeros((2, 4, 14), dtype=np.float32)))
