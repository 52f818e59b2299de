"""Every layer against the same PyTorch layer, weights copied through state_dict (float64).

Each case is a function of the module namespace (``convprop.nn`` or ``torch.nn``), so one line
builds the layer in both libraries with identical arguments.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

import convprop as cp
import convprop.nn as cnn
from tests.reference import assert_close

Build = Callable[[Any], Any]

# (id, builder, input shape)
LAYER_CASES: list[tuple[str, Build, tuple[int, ...]]] = [
    ("conv1d", lambda nn: nn.Conv1d(3, 4, 3), (2, 3, 9)),
    (
        "conv1d_strided_dilated",
        lambda nn: nn.Conv1d(4, 6, 3, stride=2, dilation=2, groups=2),
        (2, 4, 13),
    ),
    (
        "conv1d_same_circular",
        lambda nn: nn.Conv1d(2, 3, 4, padding="same", padding_mode="circular"),
        (2, 2, 7),
    ),
    ("conv2d", lambda nn: nn.Conv2d(3, 4, 3, padding=1), (2, 3, 7, 6)),
    (
        "conv2d_nobias_stride",
        lambda nn: nn.Conv2d(2, 4, (3, 2), stride=(2, 1), bias=False),
        (3, 2, 8, 7),
    ),
    (
        "conv2d_reflect",
        lambda nn: nn.Conv2d(2, 3, 3, padding=2, padding_mode="reflect"),
        (1, 2, 6, 5),
    ),
    (
        "conv2d_replicate_same",
        lambda nn: nn.Conv2d(2, 2, (2, 3), padding="same", padding_mode="replicate"),
        (2, 2, 5, 5),
    ),
    (
        "conv2d_groups_dilation",
        lambda nn: nn.Conv2d(4, 6, 3, groups=2, dilation=2, padding=1),
        (2, 4, 9, 8),
    ),
    (
        "conv_transpose1d",
        lambda nn: nn.ConvTranspose1d(3, 2, 3, stride=2, padding=1, output_padding=1),
        (2, 3, 5),
    ),
    (
        "conv_transpose2d",
        lambda nn: nn.ConvTranspose2d(4, 2, 3, stride=2, padding=1, output_padding=1, groups=2),
        (2, 4, 4, 3),
    ),
    (
        "conv_transpose2d_dilated",
        lambda nn: nn.ConvTranspose2d(2, 3, 2, dilation=2, bias=False),
        (1, 2, 3, 4),
    ),
    ("max_pool1d", lambda nn: nn.MaxPool1d(3, 2, 1), (2, 3, 10)),
    ("max_pool2d", lambda nn: nn.MaxPool2d(2), (2, 3, 8, 6)),
    ("max_pool2d_overlap_ceil", lambda nn: nn.MaxPool2d(3, 2, 1, ceil_mode=True), (2, 2, 9, 8)),
    ("avg_pool1d", lambda nn: nn.AvgPool1d(3, 2, 1, count_include_pad=False), (2, 3, 10)),
    ("avg_pool2d", lambda nn: nn.AvgPool2d(3, 2, 1, ceil_mode=True), (2, 2, 9, 8)),
    ("avg_pool2d_divisor", lambda nn: nn.AvgPool2d(2, divisor_override=3), (2, 2, 6, 6)),
    ("adaptive_avg_pool1d", lambda nn: nn.AdaptiveAvgPool1d(4), (2, 3, 10)),
    ("adaptive_avg_pool2d", lambda nn: nn.AdaptiveAvgPool2d((3, 1)), (2, 3, 7, 5)),
    ("adaptive_max_pool1d", lambda nn: nn.AdaptiveMaxPool1d(3), (2, 3, 10)),
    ("adaptive_max_pool2d", lambda nn: nn.AdaptiveMaxPool2d(2), (2, 3, 7, 5)),
    ("upsample_nearest", lambda nn: nn.Upsample(scale_factor=2), (2, 3, 4, 3)),
    (
        "upsample_bilinear",
        lambda nn: nn.Upsample(size=(5, 7), mode="bilinear", align_corners=True),
        (2, 3, 4, 3),
    ),
    ("pixel_shuffle", lambda nn: nn.PixelShuffle(2), (2, 8, 3, 3)),
    ("pixel_unshuffle", lambda nn: nn.PixelUnshuffle(2), (2, 2, 4, 6)),
    ("flatten", lambda nn: nn.Flatten(), (2, 3, 4, 3)),
    ("unflatten", lambda nn: nn.Unflatten(1, (2, 6)), (2, 12, 3)),
    ("linear", lambda nn: nn.Linear(5, 3), (4, 5)),
    ("linear_nobias_3d", lambda nn: nn.Linear(5, 2, bias=False), (2, 3, 5)),
    ("identity", lambda nn: nn.Identity(3, unused=True), (2, 3)),
    ("relu", lambda nn: nn.ReLU(), (2, 3, 4)),
    ("leaky_relu", lambda nn: nn.LeakyReLU(0.2), (2, 3, 4)),
    ("elu", lambda nn: nn.ELU(0.7), (2, 3, 4)),
    ("gelu", lambda nn: nn.GELU(), (2, 3, 4)),
    ("gelu_tanh", lambda nn: nn.GELU(approximate="tanh"), (2, 3, 4)),
    ("sigmoid", lambda nn: nn.Sigmoid(), (2, 3, 4)),
    ("tanh", lambda nn: nn.Tanh(), (2, 3, 4)),
    ("silu", lambda nn: nn.SiLU(), (2, 3, 4)),
    ("softmax", lambda nn: nn.Softmax(dim=1), (2, 3, 4)),
    ("log_softmax", lambda nn: nn.LogSoftmax(dim=-1), (2, 3, 4)),
    ("batch_norm1d_2d_input", lambda nn: nn.BatchNorm1d(3), (5, 3)),
    ("batch_norm1d_3d_input", lambda nn: nn.BatchNorm1d(3, momentum=None), (4, 3, 5)),
    ("batch_norm2d", lambda nn: nn.BatchNorm2d(3), (4, 3, 3, 2)),
    (
        "batch_norm2d_no_affine",
        lambda nn: nn.BatchNorm2d(3, affine=False, momentum=0.3),
        (4, 3, 3, 2),
    ),
    (
        "batch_norm2d_no_tracking",
        lambda nn: nn.BatchNorm2d(3, track_running_stats=False),
        (4, 3, 3, 2),
    ),
    ("batch_norm2d_no_bias", lambda nn: nn.BatchNorm2d(3, bias=False), (4, 3, 3, 2)),
    (
        "sequential",
        lambda nn: nn.Sequential(
            nn.Conv2d(2, 3, 3),
            nn.BatchNorm2d(3),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(12, 4),
        ),
        (3, 2, 6, 6),
    ),
]


def build_pair(build: Build) -> tuple[Any, torch.nn.Module]:
    """The layer in both libraries, float64, with PyTorch's weights loaded into ours."""
    theirs = build(torch.nn).double()
    ours = build(cnn).double()
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.load_state_dict(theirs.state_dict())
    return ours, theirs


def run_step(ours: Any, theirs: torch.nn.Module, x: np.ndarray, seed: int) -> None:
    """One forward and backward in both; outputs, input gradients and parameter gradients equal."""
    our_x = cp.tensor(x, requires_grad=True)
    their_x = torch.tensor(x, requires_grad=True)
    our_out, their_out = ours(our_x), theirs(their_x)
    assert_close(our_out.numpy(), their_out, what="output")
    grad = np.random.default_rng(seed).standard_normal(their_out.shape)
    our_out.backward(grad)
    their_out.backward(torch.tensor(grad))
    assert_close(our_x.grad.numpy(), their_x.grad, what="input grad")
    their_params = dict(theirs.named_parameters())
    for name, param in ours.named_parameters():
        assert_close(param.grad.numpy(), their_params[name].grad, what=f"grad of {name}")


@pytest.mark.parametrize(
    ("build", "shape"), [c[1:] for c in LAYER_CASES], ids=[c[0] for c in LAYER_CASES]
)
def test_layer_matches_torch_in_train_and_eval(build: Build, shape: tuple[int, ...]) -> None:
    ours, theirs = build_pair(build)
    assert repr(ours) == repr(theirs)
    rng = np.random.default_rng(0)
    for step in range(3):
        run_step(ours, theirs, rng.standard_normal(shape), seed=step)
        ours.zero_grad()
        theirs.zero_grad()
    ours.eval()
    theirs.eval()
    run_step(ours, theirs, rng.standard_normal(shape), seed=9)
    their_state = theirs.state_dict()
    for name, value in ours.state_dict().items():
        assert_close(value, their_state[name], what=f"state {name}")


def test_conv_transpose_output_size_matches_torch() -> None:
    ours, theirs = build_pair(lambda nn: nn.ConvTranspose2d(2, 3, 3, stride=3, padding=1))
    x = np.random.default_rng(1).standard_normal((1, 2, 4, 5))
    for size in [(10, 13), (11, 14), (1, 3, 12, 15)]:
        our_out = ours(cp.tensor(x), output_size=size)
        their_out = theirs(torch.tensor(x), output_size=size)
        assert_close(our_out.numpy(), their_out)
    with pytest.raises(
        ValueError, match=r"requested an output size of \(13, 13\), but valid sizes"
    ):
        ours(cp.tensor(x), output_size=(13, 13))


def test_max_unpool_round_trip_matches_torch() -> None:
    x = np.random.default_rng(2).standard_normal((2, 3, 6, 5))
    for ours_pool, ours_unpool, torch_pool, torch_unpool in [
        (
            cnn.MaxPool2d(2, return_indices=True),
            cnn.MaxUnpool2d(2),
            torch.nn.MaxPool2d(2, return_indices=True),
            torch.nn.MaxUnpool2d(2),
        ),
    ]:
        our_x, their_x = cp.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
        our_values, our_indices = ours_pool(our_x)
        their_values, their_indices = torch_pool(their_x)
        our_out = ours_unpool(our_values, our_indices, output_size=x.shape)
        their_out = torch_unpool(their_values, their_indices, output_size=x.shape)
        assert_close(our_out.numpy(), their_out)
        (our_out * 2).sum().backward()
        (their_out * 2).sum().backward()
        assert_close(our_x.grad.numpy(), their_x.grad)


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (lambda: cnn.MaxPool2d(0), ValueError, r"MaxPool2d: kernel_size must be positive"),
        (
            lambda: cnn.MaxPool1d(2, stride=0),
            ValueError,
            r"MaxPool1d: stride must be positive, got \(0,\)",
        ),
        (
            lambda: cnn.MaxPool2d(3, padding=2),
            ValueError,
            r"MaxPool2d: padding should be at most half of kernel_size",
        ),
        (lambda: cnn.MaxPool2d(2, dilation=0), ValueError, r"MaxPool2d: dilation must be positive"),
        (
            lambda: cnn.MaxPool2d((2, 2, 2)),
            TypeError,
            r"MaxPool2d: kernel_size must be an int or a sequence of 2 ints",
        ),
        (
            lambda: cnn.AvgPool1d(2, padding=-1),
            ValueError,
            r"AvgPool1d: padding must be non-negative",
        ),
        (
            lambda: cnn.AvgPool2d(2, stride=(1, 0)),
            ValueError,
            r"AvgPool2d: stride must be positive",
        ),
        (
            lambda: cnn.MaxUnpool2d(2.5),
            TypeError,
            r"MaxUnpool2d: kernel_size must be an int or a sequence of 2 ints",
        ),
        (
            lambda: cnn.MaxUnpool1d(2, padding="same"),
            TypeError,
            r"MaxUnpool1d: padding must be an int",
        ),
    ],
)
def test_pool_layers_check_their_window_arguments_when_built(
    build: Callable[[], Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        build()
    # PyTorch's defaults and stored values are kept as given.
    assert cnn.MaxPool2d(3).stride == 3 and cnn.MaxUnpool2d(2, stride=[]).stride == []


@pytest.mark.parametrize(
    ("build", "target"),
    [
        (lambda nn: nn.CrossEntropyLoss(), "index"),
        (lambda nn: nn.CrossEntropyLoss(label_smoothing=0.1, ignore_index=1), "index"),
        (lambda nn: nn.CrossEntropyLoss(reduction="sum"), "probability"),
        (lambda nn: nn.NLLLoss(reduction="none"), "index"),
        (lambda nn: nn.MSELoss(), "same"),
        (lambda nn: nn.BCEWithLogitsLoss(), "binary"),
    ],
    ids=["ce", "ce_smooth_ignore", "ce_prob_sum", "nll_none", "mse", "bce"],
)
def test_loss_layers_match_torch(build: Build, target: str) -> None:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((6, 4))
    if target == "index":
        our_t, their_t = cp.tensor(np.arange(6) % 4), torch.tensor(np.arange(6) % 4)
    else:
        values = {
            "probability": np.abs(rng.standard_normal((6, 4))),
            "same": rng.standard_normal((6, 4)),
            "binary": (rng.random((6, 4)) > 0.5).astype(np.float64),
        }[target]
        if target == "probability":
            values /= values.sum(1, keepdims=True)
        our_t, their_t = cp.tensor(values), torch.tensor(values)
    ours, theirs = build(cnn), build(torch.nn)
    assert repr(ours) == repr(theirs)
    our_x, their_x = cp.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    our_loss, their_loss = ours(our_x, our_t), theirs(their_x, their_t)
    assert_close(our_loss.numpy(), their_loss)
    our_loss.sum().backward()
    their_loss.sum().backward()
    assert_close(our_x.grad.numpy(), their_x.grad)


def test_weighted_loss_keeps_weight_as_buffer_like_torch() -> None:
    weight = np.array([1.0, 2.0, 0.5])
    ours = cnn.CrossEntropyLoss(weight=cp.tensor(weight))
    theirs = torch.nn.CrossEntropyLoss(weight=torch.tensor(weight))
    assert list(ours.state_dict()) == list(theirs.state_dict()) == ["weight"]


def test_dropout_layers_are_identity_in_eval_and_drop_in_training() -> None:
    # Seeded: Dropout2d keeps 2048 channels, so the kept fraction's spread (~0.01) made the
    # 0.02 bound fail about one run in thirty with whatever state earlier tests left.
    cp.manual_seed(0)
    x = cp.tensor(np.ones((64, 32, 4, 4)))
    for layer in (cnn.Dropout(0.25), cnn.Dropout2d(0.25)):
        layer.eval()
        np.testing.assert_array_equal(layer(x).numpy(), x.numpy())
        layer.train()
        out = layer(x).numpy()
        kept = out != 0
        assert abs(1 - kept.mean() - 0.25) < 0.02
        np.testing.assert_allclose(out[kept], 1 / 0.75)
    channel_masks = cnn.Dropout2d(0.5)(x).numpy()
    # Dropout2d drops whole channels: every map is either all zero or all kept.
    per_channel = channel_masks.reshape(64, 32, -1)
    assert np.all((per_channel == 0).all(-1) | (per_channel != 0).all(-1))


def test_notes_resampling_layers() -> None:
    x = cp.tensor(np.arange(1.0, 7.0).reshape(1, 1, 2, 3), requires_grad=True)
    up = cnn.Dilate2d(2)(x)
    np.testing.assert_array_equal(
        up.numpy()[0, 0],
        [[1, 0, 2, 0, 3], [0, 0, 0, 0, 0], [4, 0, 5, 0, 6]],
    )
    np.testing.assert_array_equal(cnn.Decimate2d(2)(up).numpy(), x.numpy())
    np.testing.assert_array_equal(
        cnn.Decimate1d(3)(cp.tensor(np.arange(7.0).reshape(1, 1, 7))).numpy(), [[[0.0, 3.0, 6.0]]]
    )
    with pytest.raises(
        ValueError, match=r"Dilate1d: expected a 3-D input \(N, C, L\), got shape \(1, 1, 2, 3\)"
    ):
        cnn.Dilate1d(2)(x)
    assert repr(cnn.Dilate2d(2)) == "Dilate2d(factor=2)"


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (
            lambda: cnn.Conv2d(3, 4, 3, groups=2),
            r"Conv2d: in_channels \(3\) must be divisible by groups \(2\)",
        ),
        (
            lambda: cnn.Conv2d(4, 3, 3, groups=2),
            r"Conv2d: out_channels \(3\) must be divisible by groups \(2\)",
        ),
        (lambda: cnn.Conv2d(0, 3, 3), r"Conv2d: in_channels must be a positive int, got 0"),
        (
            lambda: cnn.Conv2d(2, 3, 3, padding_mode="mirror"),
            r"Conv2d: padding_mode must be one of zeros, reflect, replicate, circular, "
            r"got 'mirror'",
        ),
        (
            lambda: cnn.Conv2d(2, 3, 3, stride=2, padding="same"),
            r"Conv2d: padding='same' is not supported for strided convolutions",
        ),
        (
            lambda: cnn.Conv1d(2, 3, 3, padding="full"),
            r"Conv1d: padding must be an int, a tuple of ints, 'valid' or 'same', got 'full'",
        ),
        # The window arguments are checked as the op checks them (ops.geometry), at build time.
        (lambda: cnn.Conv2d(2, 3, 0), r"Conv2d: kernel_size must be positive, got \(0, 0\)"),
        (lambda: cnn.Conv2d(2, 3, 3, stride=(1, 0)), r"Conv2d: stride must be positive"),
        (lambda: cnn.Conv1d(2, 3, 3, dilation=0), r"Conv1d: dilation must be positive"),
        (lambda: cnn.Conv2d(2, 3, 3, padding=-1), r"Conv2d: padding must be non-negative"),
        (
            lambda: cnn.ConvTranspose2d(2, 3, 3, output_padding=-1),
            r"ConvTranspose2d: output_padding must be non-negative",
        ),
        (
            lambda: cnn.ConvTranspose2d(2, 3, 3, padding_mode="reflect"),
            r'ConvTranspose2d: only "zeros" padding_mode is supported',
        ),
        (lambda: cnn.Linear(-1, 3), r"Linear: in_features must be a non-negative int, got -1"),
        (lambda: cnn.BatchNorm2d(0), r"BatchNorm2d: num_features must be a positive int, got 0"),
        (
            lambda: cnn.Dropout(1.5),
            r"Dropout: dropout probability has to be between 0 and 1, got 1.5",
        ),
        (
            lambda: cnn.CrossEntropyLoss(reduction="avg"),
            r"CrossEntropyLoss: reduction must be 'mean', 'sum' or 'none', got 'avg'",
        ),
    ],
)
def test_bad_layer_arguments_give_clear_errors(build: Callable[[], Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()


def test_batch_norm_rejects_wrong_rank() -> None:
    with pytest.raises(ValueError, match=r"BatchNorm2d: expected 4D input \(got 3D input\)"):
        cnn.BatchNorm2d(3)(cp.tensor(np.zeros((2, 3, 4))))
