"""The scanning MLP equals the Conv1d stack it converts to (plain and distributed forms).

Deck 004: scanning an input with a network is equivalent to scanning with individual neurons
hierarchically. Checked here three ways: against ``to_conv1d`` (outputs and gradients),
against a plain Python loop over window positions, and against the same conv stack in torch.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import convprop as cp
from convprop import nn
from convprop.autograd import gradcheck
from convprop.models import DistributedScanningMLP, ScanningMLP, to_conv1d, to_scanning_mlp
from tests.reference import assert_close

RTOL = 1e-12
TORCH_ACTIVATIONS = {"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh}


@st.composite
def scanning_configs(draw: Any) -> dict[str, Any]:
    window = draw(st.integers(1, 4))
    return {
        "in_channels": draw(st.integers(1, 3)),
        "window": window,
        "hidden_sizes": tuple(draw(st.lists(st.integers(1, 4), max_size=2))),
        "out_features": draw(st.integers(1, 3)),
        "stride": draw(st.integers(1, 3)),
        "activation": draw(st.sampled_from(["relu", "tanh"])),
        # L == window (a single window) is included.
        "length": window + draw(st.integers(0, 7)),
        "batch": draw(st.integers(1, 2)),
        "seed": draw(st.integers(0, 2**16)),
    }


@st.composite
def distributed_configs(draw: Any) -> dict[str, Any]:
    levels = draw(st.integers(1, 3))
    return {
        "in_channels": draw(st.integers(1, 3)),
        "kernel_sizes": tuple(draw(st.lists(st.integers(1, 3), min_size=levels, max_size=levels))),
        "strides": tuple(draw(st.lists(st.integers(1, 3), min_size=levels, max_size=levels))),
        "hidden_sizes": tuple(
            draw(st.lists(st.integers(1, 3), min_size=levels - 1, max_size=levels - 1))
        ),
        "out_features": draw(st.integers(1, 3)),
        "activation": draw(st.sampled_from(["relu", "tanh"])),
        "extra": draw(st.integers(0, 7)),
        "batch": draw(st.integers(1, 2)),
        "seed": draw(st.integers(0, 2**16)),
    }


def build_scanning(config: dict[str, Any]) -> ScanningMLP:
    cp.manual_seed(config["seed"])
    return ScanningMLP(
        config["in_channels"],
        config["window"],
        config["hidden_sizes"],
        config["out_features"],
        stride=config["stride"],
        activation=config["activation"],
    ).double()


def build_distributed(config: dict[str, Any]) -> DistributedScanningMLP:
    cp.manual_seed(config["seed"])
    return DistributedScanningMLP(
        config["in_channels"],
        config["kernel_sizes"],
        config["strides"],
        config["hidden_sizes"],
        config["out_features"],
        activation=config["activation"],
    ).double()


def forward_backward(model: Any, x: np.ndarray, grad_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Output and input gradient for a random output gradient (same seed -> same gradient)."""
    model.zero_grad()
    inputs = cp.tensor(x, requires_grad=True)
    output = model(inputs)
    grad_out = np.random.default_rng(grad_seed).standard_normal(output.shape)
    output.backward(grad_out)
    return output.numpy(), inputs.grad.numpy()


def conv_layers(stack: nn.Sequential) -> list[nn.Conv1d]:
    return [layer for layer in stack if isinstance(layer, nn.Conv1d)]


def torch_stack(stack: nn.Sequential, activation: str) -> torch.nn.Sequential:
    """The same conv stack built in torch, weights loaded through state_dict."""
    layers: list[torch.nn.Module] = []
    for layer in stack:
        if isinstance(layer, nn.Conv1d):
            layers.append(
                torch.nn.Conv1d(
                    layer.in_channels, layer.out_channels, layer.kernel_size, stride=layer.stride
                )
            )
        else:
            layers.append(TORCH_ACTIVATIONS[activation]())
    theirs = torch.nn.Sequential(*layers).double()
    theirs.load_state_dict({k: torch.tensor(v) for k, v in stack.state_dict().items()})
    return theirs


# ---------------------------------------------------------------------------- plain form
@given(scanning_configs())
def test_scanning_mlp_equals_its_conv1d_stack(config: dict[str, Any]) -> None:
    model = build_scanning(config)
    stack = to_conv1d(model)
    x = np.random.default_rng(config["seed"]).standard_normal(
        (config["batch"], config["in_channels"], config["length"])
    )
    out, grad_x = forward_backward(model, x, config["seed"] + 1)
    conv_out, conv_grad_x = forward_backward(stack, x, config["seed"] + 1)
    expected_length = (config["length"] - config["window"]) // config["stride"] + 1
    assert out.shape == (config["batch"], config["out_features"], expected_length)
    assert_close(out, conv_out, RTOL, "output")
    assert_close(grad_x, conv_grad_x, RTOL, "input gradient")
    linears = [layer for layer in model.mlp if isinstance(layer, nn.Linear)]
    convs = conv_layers(stack)
    assert len(linears) == len(convs) == len(config["hidden_sizes"]) + 1
    for index, (linear, conv) in enumerate(zip(linears, convs, strict=True)):
        assert_close(
            linear.weight.grad.numpy(),
            conv.weight.grad.numpy().reshape(linear.weight.shape),
            RTOL,
            f"weight gradient of layer {index}",
        )
        assert_close(
            linear.bias.grad.numpy(),
            conv.bias.grad.numpy(),
            RTOL,
            f"bias gradient of layer {index}",
        )


@given(scanning_configs())
def test_scanning_mlp_equals_a_loop_over_window_positions(config: dict[str, Any]) -> None:
    """Independent of unfold and of convolution: slice every window, apply the MLP in NumPy."""
    model = build_scanning(config)
    x = np.random.default_rng(config["seed"]).standard_normal(
        (config["batch"], config["in_channels"], config["length"])
    )
    window, stride = config["window"], config["stride"]
    linears = [layer for layer in model.mlp if isinstance(layer, nn.Linear)]
    activation = {"relu": lambda v: np.maximum(v, 0), "tanh": np.tanh}[config["activation"]]
    columns = []
    for start in range(0, config["length"] - window + 1, stride):
        hidden = x[:, :, start : start + window].reshape(config["batch"], -1)  # c * window + k
        for index, linear in enumerate(linears):
            if index:
                hidden = activation(hidden)
            hidden = hidden @ linear.weight.numpy().T + linear.bias.numpy()
        columns.append(hidden)
    expected = np.stack(columns, axis=-1)
    assert_close(model(cp.tensor(x)).numpy(), expected, RTOL, "output")


@given(scanning_configs())
def test_scanning_mlp_equals_torch_conv_stack(config: dict[str, Any]) -> None:
    model = build_scanning(config)
    theirs = torch_stack(to_conv1d(model), config["activation"])
    x = np.random.default_rng(config["seed"]).standard_normal(
        (config["batch"], config["in_channels"], config["length"])
    )
    out, grad_x = forward_backward(model, x, config["seed"] + 1)
    their_x = torch.tensor(x, requires_grad=True)
    their_out = theirs(their_x)
    their_out.backward(
        torch.tensor(np.random.default_rng(config["seed"] + 1).standard_normal(their_out.shape))
    )
    assert_close(out, their_out, RTOL, "output")
    assert_close(grad_x, their_x.grad, RTOL, "input gradient")
    linears = [layer for layer in model.mlp if isinstance(layer, nn.Linear)]
    their_convs = [layer for layer in theirs if isinstance(layer, torch.nn.Conv1d)]
    for linear, conv in zip(linears, their_convs, strict=True):
        assert_close(
            linear.weight.grad.numpy(),
            conv.weight.grad.reshape(linear.weight.shape),
            RTOL,
            "weight gradient",
        )
        assert_close(linear.bias.grad.numpy(), conv.bias.grad, RTOL, "bias gradient")


def test_conv1d_weights_are_the_linear_weights_reshaped() -> None:
    model = ScanningMLP(2, 3, (4,), 5, stride=2)
    stack = to_conv1d(model)
    assert [type(layer).__name__ for layer in stack] == ["Conv1d", "ReLU", "Conv1d"]
    first, second = conv_layers(stack)
    assert (first.kernel_size, first.stride) == ((3,), (2,))
    assert (second.kernel_size, second.stride) == ((1,), (1,))
    linear = model.mlp[0]
    # Channel-major windows: input c * window + k of the MLP is tap k of channel c.
    np.testing.assert_array_equal(
        first.weight.numpy()[:, 1, 2], linear.weight.numpy()[:, 1 * 3 + 2]
    )
    np.testing.assert_array_equal(second.weight.numpy()[:, :, 0], model.mlp[2].weight.numpy())
    assert first.weight.dtype == np.float32  # dtype kept
    assert to_conv1d(model.double())[0].weight.dtype == np.float64


def test_scanning_mlp_unbatched_input_and_float32() -> None:
    model = ScanningMLP(3, 4, (5,), 2, stride=3)
    x = np.random.default_rng(0).standard_normal((3, 13)).astype(np.float32)
    single = model(cp.tensor(x))
    assert single.shape == (2, 4) and single.dtype == np.float32
    np.testing.assert_allclose(single.numpy(), model(cp.tensor(x[None])).numpy()[0], rtol=1e-6)


def test_scanning_mlp_gradcheck() -> None:
    cp.manual_seed(3)
    model = ScanningMLP(2, 3, (3,), 2, stride=2, activation="tanh").double()
    x = cp.tensor(np.random.default_rng(1).standard_normal((2, 2, 7)), requires_grad=True)
    assert gradcheck(lambda inputs, *params: model(inputs), [x, *model.parameters()])


# ---------------------------------------------------------------------------- distributed form
def receptive_field(kernel_sizes: tuple[int, ...], strides: tuple[int, ...]) -> int:
    """R = K1 + (K2 - 1) s1 + (K3 - 1) s1 s2 + ..."""
    total, spacing = kernel_sizes[0], 1
    for level in range(1, len(kernel_sizes)):
        spacing *= strides[level - 1]
        total += (kernel_sizes[level] - 1) * spacing
    return total


@given(distributed_configs())
def test_distributed_scanning_mlp_equals_its_conv1d_stack(config: dict[str, Any]) -> None:
    model = build_distributed(config)
    stack = to_conv1d(model)
    window = receptive_field(config["kernel_sizes"], config["strides"])
    scan_stride = int(np.prod(config["strides"]))
    assert (model.receptive_field, model.scan_stride) == (window, scan_stride)
    length = window + config["extra"]
    x = np.random.default_rng(config["seed"]).standard_normal(
        (config["batch"], config["in_channels"], length)
    )
    out, grad_x = forward_backward(model, x, config["seed"] + 1)
    conv_out, conv_grad_x = forward_backward(stack, x, config["seed"] + 1)
    # The window scan and the level-by-level convolutions give the same number of outputs.
    assert out.shape == conv_out.shape
    assert out.shape[-1] == (length - window) // scan_stride + 1
    assert_close(out, conv_out, RTOL, "output")
    assert_close(grad_x, conv_grad_x, RTOL, "input gradient")
    convs = conv_layers(stack)
    assert len(convs) == len(model.levels)
    for index, (level, conv) in enumerate(zip(model.levels, convs, strict=True)):
        assert (conv.kernel_size, conv.stride) == ((level.kernel_size,), (level.stride,))
        # The shared block's gradient (summed over its copies in the unrolled matrices) is
        # the convolution's weight gradient.
        assert_close(
            level.weight.grad.numpy(),
            conv.weight.grad.numpy(),
            RTOL,
            f"shared weight gradient of level {index}",
        )
        assert_close(
            level.bias.grad.numpy(),
            conv.bias.grad.numpy(),
            RTOL,
            f"shared bias gradient of level {index}",
        )


@given(distributed_configs())
def test_distributed_scanning_mlp_equals_torch_conv_stack(config: dict[str, Any]) -> None:
    model = build_distributed(config)
    theirs = torch_stack(to_conv1d(model), config["activation"])
    length = model.receptive_field + config["extra"]
    x = np.random.default_rng(config["seed"]).standard_normal(
        (config["batch"], config["in_channels"], length)
    )
    out, grad_x = forward_backward(model, x, config["seed"] + 1)
    their_x = torch.tensor(x, requires_grad=True)
    their_out = theirs(their_x)
    their_out.backward(
        torch.tensor(np.random.default_rng(config["seed"] + 1).standard_normal(their_out.shape))
    )
    assert_close(out, their_out, RTOL, "output")
    assert_close(grad_x, their_x.grad, RTOL, "input gradient")
    their_convs = [layer for layer in theirs if isinstance(layer, torch.nn.Conv1d)]
    for level, conv in zip(model.levels, their_convs, strict=True):
        assert_close(level.weight.grad.numpy(), conv.weight.grad, RTOL, "shared weight gradient")
        assert_close(level.bias.grad.numpy(), conv.bias.grad, RTOL, "shared bias gradient")


@given(distributed_configs())
def test_dense_layers_are_the_unrolled_toeplitz_matrices(config: dict[str, Any]) -> None:
    """D_l[(o, q), (i, p)] = W_l[o, i, p - q s_l] for 0 <= p - q s_l < K_l, else 0."""
    model = build_distributed(config)
    dense = model.dense_layers()
    positions = model.positions
    assert positions[0] == model.receptive_field and positions[-1] == 1
    for level_index, (level, (matrix, bias)) in enumerate(zip(model.levels, dense, strict=True)):
        weight = level.weight.numpy()
        out_channels, in_channels, kernel = weight.shape
        rows, cols = positions[level_index + 1], positions[level_index]
        expected = np.zeros((out_channels, rows, in_channels, cols))
        for q in range(rows):
            for p in range(cols):
                if 0 <= p - q * level.stride < kernel:
                    expected[:, q, :, p] = weight[:, :, p - q * level.stride]
        np.testing.assert_array_equal(
            matrix.numpy(), expected.reshape(out_channels * rows, in_channels * cols)
        )
        np.testing.assert_array_equal(bias.numpy(), np.repeat(level.bias.numpy(), rows))
    # Only the shared blocks are parameters.
    assert sum(p.numel() for p in model.parameters()) == sum(
        level.weight.numel() + level.bias.numel() for level in model.levels
    )


@given(distributed_configs())
def test_distributed_form_is_a_scanning_mlp_with_unrolled_weights(config: dict[str, Any]) -> None:
    model = build_distributed(config)
    dense = to_scanning_mlp(model)
    assert (dense.window, dense.stride) == (model.receptive_field, model.scan_stride)
    x = np.random.default_rng(config["seed"]).standard_normal(
        (config["batch"], config["in_channels"], model.receptive_field + config["extra"])
    )
    assert_close(dense(cp.tensor(x)).numpy(), model(cp.tensor(x)).numpy(), RTOL, "output")


def test_distributed_level_example_from_the_notes() -> None:
    """Three levels, K = (3, 2, 2), s = (2, 1, 2): R = 3 + 1*2 + 1*2*1 = 7 frames, S = 4."""
    model = DistributedScanningMLP(2, (3, 2, 2), (2, 1, 2), (4, 5), 3)
    assert model.positions == (7, 3, 2, 1)
    assert (model.receptive_field, model.scan_stride) == (7, 4)
    assert list(model.state_dict()) == [
        f"levels.{i}.{name}" for i in range(3) for name in ("weight", "bias")
    ]
    shapes = [tuple(level.weight.shape) for level in model.levels]
    assert shapes == [(4, 2, 3), (5, 4, 2), (3, 5, 2)]
    assert [tuple(matrix.shape) for matrix, _ in model.dense_layers()] == [
        (4 * 3, 2 * 7),
        (5 * 2, 4 * 3),
        (3 * 1, 5 * 2),
    ]
    stack = to_conv1d(model)
    assert [tuple(layer.weight.shape) for layer in conv_layers(stack)] == shapes
    assert model(cp.tensor(np.zeros((1, 2, 7), dtype=np.float32))).shape == (1, 3, 1)
    assert model(cp.tensor(np.zeros((2, 14), dtype=np.float32))).shape == (3, 2)


def test_distributed_scanning_mlp_gradcheck() -> None:
    cp.manual_seed(5)
    model = DistributedScanningMLP(2, (2, 2), (2, 1), (2,), 2, activation="tanh").double()
    x = cp.tensor(np.random.default_rng(2).standard_normal((1, 2, 7)), requires_grad=True)
    assert gradcheck(lambda inputs, *params: model(inputs), [x, *model.parameters()])


def test_distributed_single_int_stride_applies_to_every_level() -> None:
    model = DistributedScanningMLP(1, (2, 3), 2, (4,), 1)
    assert model.strides == (2, 2)
    assert (model.receptive_field, model.scan_stride) == (2 + 2 * 2, 4)


# ---------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (
            lambda: ScanningMLP(0, 3, (4,), 2),
            ValueError,
            r"ScanningMLP: in_channels must be a positive int, got 0",
        ),
        (
            lambda: ScanningMLP(2, -1, (4,), 2),
            ValueError,
            r"ScanningMLP: window must be a positive int, got -1",
        ),
        (
            lambda: ScanningMLP(2, 3, (4,), 2, stride=0),
            ValueError,
            r"ScanningMLP: stride must be a positive int, got 0",
        ),
        (
            lambda: ScanningMLP(2, 3, (4, 0), 2),
            ValueError,
            r"ScanningMLP: hidden_sizes must be a sequence of positive ints, got \(4, 0\)",
        ),
        (
            lambda: ScanningMLP(2, 3, 4, 2),
            ValueError,
            r"ScanningMLP: hidden_sizes must be a sequence of positive ints, got 4",
        ),
        (
            lambda: ScanningMLP(2, 3, (4,), 2, activation="softplus"),
            ValueError,
            r"ScanningMLP: activation must be one of relu, tanh, .*got 'softplus'",
        ),
        (
            lambda: DistributedScanningMLP(2, (3, 2), (1, 1), (), 2),
            ValueError,
            r"DistributedScanningMLP: hidden_sizes must have len\(kernel_sizes\) - 1 = 1 entries "
            r"\(the widths of the levels below the output\), got \(\)",
        ),
        (
            lambda: DistributedScanningMLP(2, (3,), (1,), (4,), 2),
            ValueError,
            r"DistributedScanningMLP: hidden_sizes must have len\(kernel_sizes\) - 1 = 0 entries",
        ),
        (
            lambda: DistributedScanningMLP(2, (), (), (), 2),
            ValueError,
            r"DistributedScanningMLP: kernel_sizes must list at least one size, got \(\)",
        ),
        (
            lambda: DistributedScanningMLP(2, (3, 0), (1, 1), (4,), 2),
            ValueError,
            r"DistributedScanningMLP: kernel_sizes must be a sequence of positive ints, "
            r"got \(3, 0\)",
        ),
        (
            lambda: DistributedScanningMLP(2, (3, 2), (1,), (4,), 2),
            ValueError,
            r"DistributedScanningMLP: strides must have one entry per level "
            r"\(2, as kernel_sizes\), "
            r"got \(1,\)",
        ),
        (
            lambda: DistributedScanningMLP(2, (3, 2), 0, (4,), 2),
            ValueError,
            r"DistributedScanningMLP: strides must be a positive int, got 0",
        ),
        (
            lambda: DistributedScanningMLP(2, (3, 2), (1, 1), (4,), 0),
            ValueError,
            r"DistributedScanningMLP: out_features must be a positive int, got 0",
        ),
        (
            lambda: to_conv1d(nn.Linear(3, 2)),
            TypeError,
            r"to_conv1d: model must be a ScanningMLP or a DistributedScanningMLP, got Linear",
        ),
        (
            lambda: to_scanning_mlp(ScanningMLP(1, 2, (), 1)),
            TypeError,
            r"to_scanning_mlp: model must be a DistributedScanningMLP, got ScanningMLP",
        ),
    ],
)
def test_bad_arguments_give_clear_errors(build: Any, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        build()


def test_window_longer_than_the_sequence_is_an_error() -> None:
    model = ScanningMLP(3, 5, (4,), 2)
    with pytest.raises(
        ValueError,
        match=r"ScanningMLP: expected input \(N, 3, L\) or \(3, L\) "
        r"with L >= 5 \(the window\), got shape \(2, 3, 4\)",
    ):
        model(cp.tensor(np.zeros((2, 3, 4))))
    with pytest.raises(ValueError, match=r"got shape \(2, 2, 9\)"):
        model(cp.tensor(np.zeros((2, 2, 9))))  # wrong channel count
    distributed = DistributedScanningMLP(1, (3, 3), (2, 1), (2,), 1)
    with pytest.raises(
        ValueError,
        match=r"DistributedScanningMLP: expected input \(N, 1, L\) or "
        r"\(1, L\) with L >= 7 \(the window\), got shape "
        r"\(1, 1, 6\)",
    ):
        distributed(cp.tensor(np.zeros((1, 1, 6))))
