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
from torch import nn as tnn

import convprop as cp
from convprop import models
from tests.models.mirrors import (
    TorchCifarResNet,
    TorchDenseNetBC,
    TorchLeNet5,
    TorchTDNN,
    TorchUNet,
    copy_into_torch,
)
from tests.reference import assert_close

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


@pytest.mark.parametrize(("convolutions", "field"), [(1, 22), (2, 44)])
def test_segmenter_receptive_fields(convolutions: int, field: int) -> None:
    """The pixels one output pixel sees (the module docstring's figures): where the gradient
    of one score with respect to the input is non-zero."""
    cp.manual_seed(0)  # the weights decide which ReLUs are off, so fix them
    model = models.UNet(1, 3, (4, 8, 16), convolutions).double()
    model.eval()
    x = cp.tensor(np.random.default_rng(0).random((1, 1, 96, 96)), requires_grad=True)
    scores = model(x)
    grad = np.zeros(scores.shape)
    grad[0, 0, 48, 48] = 1.0
    scores.backward(grad)
    # Rounding leaves residues far below the gradient's scale (1e-36 of it, through Winograd's
    # transforms) where the exact gradient is 0: count the entries that matter.
    magnitude = np.abs(x.grad.numpy()[0, 0])
    seen = np.argwhere(magnitude > 1e-9 * magnitude.max())
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
