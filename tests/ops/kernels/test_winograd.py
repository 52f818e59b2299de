"""Winograd's F(4x4, 3x3) (``convprop.ops.kernels.winograd``): its matrices, its compiled
passes, and the convolution kernels built on it, against the direct sum, the reference
implementation and PyTorch in float64; and where the plan sends convolutions through it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given, settings
from hypothesis import strategies as st

import convprop.nn.functional as F
from convprop.ops import conv
from convprop.ops.algorithm import kernels_used, use_algorithm
from convprop.ops.geometry import conv_geometry, conv_transpose_geometry
from convprop.ops.kernels import winograd
from tests.reference import assert_close, grad_of, pair

B_T, G, A_T = winograd.B_T, winograd.G, winograd.A_T


def direct_tile(d: np.ndarray, g: np.ndarray) -> np.ndarray:
    """y[a, b] = sum_{p, q} g[p, q] d[a + p, b + q] for the 4x4 outputs of a 6x6 tile."""
    return np.array([[np.sum(g * d[a : a + 3, b : b + 3]) for b in range(4)] for a in range(4)])


def test_the_documented_matrices_give_the_correlation_of_a_tile() -> None:
    """Y = A^T [(G g G^T) * (B^T d B)] A equals the direct 3x3 correlation on a 6x6 tile."""
    rng = np.random.default_rng(0)
    for _ in range(20):
        d, g = rng.standard_normal((6, 6)), rng.standard_normal((3, 3))
        winograd_tile = A_T @ ((G @ g @ G.T) * (B_T @ d @ B_T.T)) @ A_T.T
        np.testing.assert_allclose(winograd_tile, direct_tile(d, g), rtol=1e-13, atol=1e-13)


def test_the_matrices_are_the_ones_in_the_module_docstring() -> None:
    """The docstring shows the matrices a reader checks by hand; the code must use those."""
    doc = winograd.__doc__ or ""
    for name, matrix in (("B^T", B_T), ("A^T", A_T)):
        for row in matrix.astype(int):
            assert "[" + ", ".join(f"{v:2d}" for v in row).replace(" ", "") in doc.replace(
                " ", ""
            ), f"{name} row {row}"
    np.testing.assert_allclose(
        G * 24, [[6, 0, 0], [-4, -4, -4], [-4, 4, -4], [1, 2, 4], [1, -2, 4], [0, 0, 24]]
    )


def test_filter_transform_is_g_w_g_transpose_for_every_kernel() -> None:
    rng = np.random.default_rng(6)
    weight = rng.standard_normal((5, 3, 3, 3))
    filters = winograd.filter_transform(weight)
    assert filters.shape == (36, 3, 5)
    for f in range(5):
        for c in range(3):
            expected = (G @ weight[f, c] @ G.T).ravel()
            np.testing.assert_allclose(filters[:, c, f], expected, rtol=1e-14, atol=1e-14)


def channels_last_padded(image: np.ndarray, top: int, left: int, tiles_h: int, tiles_w: int):
    """The zero-padded image as (padded height, padded width, lanes), lane = (n, c)."""
    batch, channels, height, width = image.shape
    padded = np.zeros((batch * channels, 4 * tiles_h + 2, 4 * tiles_w + 2))
    padded[:, top : top + height, left : left + width] = image.reshape(-1, height, width)
    return padded.transpose(1, 2, 0)


@pytest.mark.parametrize("shape", [(2, 3, 5, 7), (1, 9, 11, 10), (3, 8, 8, 16)])
def test_to_channels_last_transposes_into_the_padded_buffer_with_a_zero_border(shape) -> None:
    """Lane counts and widths below, at and past the 8x8 blocks."""
    rng = np.random.default_rng(1)
    image = rng.standard_normal(shape)
    top, left = 1, 2
    tiles_h, tiles_w = -(-shape[2] // 4) + 1, -(-shape[3] // 4) + 1
    padded_w = 4 * tiles_w + 2
    buffer = np.full((4 * tiles_h + 2) * padded_w * shape[0] * shape[1], np.nan)
    winograd._to_channels_last(image, top, left, padded_w, buffer)
    expected = channels_last_padded(image, top, left, tiles_h, tiles_w)
    np.testing.assert_array_equal(buffer.reshape(expected.shape), expected)


def test_input_transform_is_b_transpose_d_b_on_every_tile_and_lane() -> None:
    rng = np.random.default_rng(1)
    image = rng.standard_normal((2, 3, 5, 7))
    top, left, tiles_h, tiles_w = 1, 2, 2, 3
    padded = channels_last_padded(image, top, left, tiles_h, tiles_w)
    lanes = 6
    plane = tiles_h * tiles_w * lanes + 5  # planes need not be back to back
    out = np.full(36 * plane, np.nan)
    winograd._input_transform(
        np.ascontiguousarray(padded).ravel(), padded.shape[1], tiles_h, tiles_w, lanes, out, plane
    )
    v = out.reshape(36, plane)[:, : tiles_h * tiles_w * lanes].reshape(36, -1, lanes)
    for p in range(lanes):
        for i in range(tiles_h):
            for j in range(tiles_w):
                d = padded[4 * i : 4 * i + 6, 4 * j : 4 * j + 6, p]
                expected = (B_T @ d @ B_T.T).ravel()
                np.testing.assert_allclose(v[:, i * tiles_w + j, p], expected, atol=1e-12)


def test_output_transform_is_a_transpose_m_a_on_every_tile_and_lane() -> None:
    rng = np.random.default_rng(2)
    lanes, tiles_h, tiles_w = 5, 2, 3
    plane = tiles_h * tiles_w * lanes + 3
    products = rng.standard_normal(36 * plane)
    out = np.full(16 * tiles_h * tiles_w * lanes, np.nan)
    winograd._output_transform(products, plane, tiles_h, tiles_w, lanes, out)
    m_all = products.reshape(36, plane)[:, : tiles_h * tiles_w * lanes].reshape(36, -1, lanes)
    spatial = out.reshape(4 * tiles_h, 4 * tiles_w, lanes)
    for q in range(lanes):
        for i in range(tiles_h):
            for j in range(tiles_w):
                m = m_all[:, i * tiles_w + j, q].reshape(6, 6)
                tile = spatial[4 * i : 4 * i + 4, 4 * j : 4 * j + 4, q]
                np.testing.assert_allclose(tile, A_T @ m @ A_T.T, atol=1e-12)


@pytest.mark.parametrize("shape", [(2, 3, 5, 7), (1, 9, 11, 10), (3, 8, 8, 16)])
def test_to_channels_first_transposes_back_and_drops_the_extra_rows_and_columns(shape) -> None:
    rng = np.random.default_rng(3)
    batch, channels, height, width = shape
    outputs_w = 4 * -(-width // 4)
    rows = 4 * -(-height // 4)
    outputs = rng.standard_normal(rows * outputs_w * batch * channels)
    out = np.full(shape, np.nan)
    winograd._to_channels_first(outputs, outputs_w, out)
    expected = outputs.reshape(rows, outputs_w, batch, channels).transpose(2, 3, 0, 1)
    np.testing.assert_array_equal(out, expected[:, :, :height, :width])


@settings(max_examples=40, deadline=None)
@given(
    batch=st.integers(1, 3),
    channels=st.integers(16, 20),
    out_channels=st.integers(1, 5),
    height=st.integers(1, 9),
    width=st.integers(1, 9),
    padding=st.integers(0, 2),
    seed=st.integers(0, 2**31),
)
def test_conv2d_through_winograd_matches_torch(
    batch: int,
    channels: int,
    out_channels: int,
    height: int,
    width: int,
    padding: int,
    seed: int,
) -> None:
    """Odd and even sizes, every padding a 3x3 layer takes: the forward, the input gradient
    and the weight gradient through Winograd's kernels (called directly: the plan would keep
    these small inputs on im2col) against PyTorch and the reference implementation."""
    if min(height, width) + 2 * padding < 3:
        height, width = height + 2, width + 2
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, channels, height, width))
    w = rng.standard_normal((out_channels, channels, 3, 3))
    torch_x, torch_w = pair(x)[1], pair(w)[1]
    theirs = TF.conv2d(torch_x, torch_w, padding=padding)
    grad = rng.standard_normal(theirs.shape)
    theirs.backward(torch.tensor(grad))
    geometry = conv_geometry("conv2d", (height, width), (3, 3), 1, padding, 1, 1)
    forward = conv.FORWARD_KERNELS["winograd"](x, w, geometry)
    assert_close(forward, theirs, what="forward")
    assert_close(forward, conv.reference_forward(x, w, geometry), what="forward vs reference")
    grad_input = conv.INPUT_GRAD_KERNELS["full_correlation_winograd"](grad, w, geometry, channels)
    assert_close(grad_input, grad_of(torch_x), what="input gradient")
    grad_weight = conv.WEIGHT_GRAD_KERNELS["winograd"](x, grad, geometry)
    assert_close(grad_weight, grad_of(torch_w), what="weight gradient")


def test_samples_split_into_cache_sized_chunks_give_the_same_result() -> None:
    """Budgets of one sample, of 3 (the last chunk shorter, its zero border rebuilt) and of
    everything, straight through ``correlate_block``."""
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal((5, 16, 6, 7)), rng.standard_normal((4, 16, 3, 3))
    expected = TF.conv2d(torch.tensor(x), torch.tensor(w), padding=1).numpy()
    per_sample = winograd.bytes_per_sample(16, 4, (6, 7), 8)
    for budget in (1, 3 * per_sample, 1 << 30):
        out = np.full(expected.shape, np.nan)
        winograd.correlate_block(x, winograd.filter_transform(w), (1, 1), out, budget)
        assert_close(out, expected, what=f"budget {budget}")


def test_transposed_3x3_stride_1_convolution_through_winograd_matches_torch() -> None:
    """conv_transpose2d's forward is the input gradient, a correlation with the flipped
    kernel, which the Winograd input-gradient kernel computes."""
    rng = np.random.default_rng(4)
    x, w = rng.standard_normal((2, 16, 5, 6)), rng.standard_normal((16, 3, 3, 3))
    geometry = conv_transpose_geometry("conv_transpose2d", (5, 6), (3, 3), 1, 1, 0, 1, 1)
    ours = conv.INPUT_GRAD_KERNELS["full_correlation_winograd"](x, w, geometry, 3)
    theirs = TF.conv_transpose2d(torch.tensor(x), torch.tensor(w), padding=1)
    assert_close(ours, theirs, what="forward")


def test_float32_through_winograd_stays_within_float32_rounding_of_float64() -> None:
    rng = np.random.default_rng(5)
    x, w = rng.standard_normal((4, 32, 16, 16)), rng.standard_normal((8, 32, 3, 3))
    with use_algorithm("fast"), kernels_used() as used:
        exact = conv.conv2d_forward(x, w, None, 1, 1)[0]
        single = conv.conv2d_forward(x.astype(np.float32), w.astype(np.float32), None, 1, 1)[0]
    assert used == {"conv.forward.winograd": 2}
    assert single.dtype == np.float32
    np.testing.assert_allclose(single, exact, rtol=0, atol=1e-5 * np.abs(exact).max())


@pytest.mark.parametrize(
    ("channels", "kernel", "stride", "dilation", "groups"),
    [
        (7, (3, 3), (1, 1), (1, 1), 1),
        (16, (3, 3), (2, 2), (1, 1), 1),
        (16, (3, 3), (1, 1), (2, 2), 1),
        (16, (3, 3), (1, 1), (1, 1), 2),
        (16, (5, 5), (1, 1), (1, 1), 1),
    ],
)
def test_other_convolutions_keep_im2col(channels, kernel, stride, dilation, groups) -> None:
    geometry = conv_geometry("conv2d", (8, 8), kernel, stride, 1, dilation, groups)
    with use_algorithm("fast"):
        assert conv.plan_forward(geometry, 4, channels) == "im2col"
    assert ("winograd" in conv.applicable_forward_kernels(geometry)) == (
        kernel == (3, 3) and stride == dilation == (1, 1) and groups == 1
    )


@pytest.mark.parametrize(
    ("batch", "channels", "size", "kernel"),
    [
        (4, 8, (8, 8), "winograd"),
        (4, 7, (8, 8), "im2col"),  # fewer than 8 channels
        (3, 64, (8, 10), "im2col"),  # 240 positions
        (1, 64, (16, 16), "winograd"),  # 256 positions
    ],
)
def test_small_inputs_keep_im2col_where_the_filter_transform_would_not_pay(
    batch: int, channels: int, size: tuple[int, int], kernel: str
) -> None:
    """256 positions (samples x height x width) and 8 channels are the measured thresholds."""
    geometry = conv_geometry("conv2d", size, (3, 3), 1, 1, 1, 1)
    with use_algorithm("fast"):
        assert conv.plan_forward(geometry, batch, channels) == kernel


def test_output_gradient_transform_is_a_g_a_transpose_on_every_tile_and_lane() -> None:
    """The adjoint of the output transform: <A^T m A, g> = <m, A g A^T> for every tile."""
    rng = np.random.default_rng(7)
    lanes, tiles_h, tiles_w = 5, 2, 3
    grid = rng.standard_normal((4 * tiles_h, 4 * tiles_w, lanes))
    plane = tiles_h * tiles_w * lanes + 3
    out = np.full(36 * plane, np.nan)
    winograd._output_gradient_transform(
        grid.ravel(), 4 * tiles_w, tiles_h, tiles_w, lanes, out, plane
    )
    spread = out.reshape(36, plane)[:, : tiles_h * tiles_w * lanes].reshape(36, -1, lanes)
    for q in range(lanes):
        for i in range(tiles_h):
            for j in range(tiles_w):
                g = grid[4 * i : 4 * i + 4, 4 * j : 4 * j + 4, q]
                expected = (A_T.T @ g @ A_T).ravel()
                np.testing.assert_allclose(spread[:, i * tiles_w + j, q], expected, atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(
    batch=st.integers(1, 4),
    channels=st.integers(1, 6),
    out_channels=st.integers(1, 6),
    height=st.integers(3, 11),
    width=st.integers(3, 11),
    padding=st.integers(0, 2),
    budget_samples=st.integers(1, 3),
    seed=st.integers(0, 2**31),
)
def test_weight_gradient_from_tiles_matches_torch(
    batch: int,
    channels: int,
    out_channels: int,
    height: int,
    width: int,
    padding: int,
    budget_samples: int,
    seed: int,
) -> None:
    """G^T (V^T dM) G summed over chunks of 1-3 samples is dL/dw, for odd and even sizes."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, channels, height, width))
    ours_w, torch_w = pair(rng.standard_normal((out_channels, channels, 3, 3)))
    z = TF.conv2d(torch.tensor(x), torch_w, padding=padding)
    delta = rng.standard_normal(z.shape)
    z.backward(torch.tensor(delta))
    per_sample = winograd.bytes_per_sample(channels, out_channels, z.shape[2:], 8)
    tiles = winograd.tile_weight_gradient(x, delta, (padding, padding), budget_samples * per_sample)
    assert_close(winograd.weight_from_tile_gradient(tiles), grad_of(torch_w), what="dL/dw")


def test_conv2d_backward_takes_the_winograd_weight_gradient_and_matches_torch() -> None:
    """A ResNet-like layer (C <= F, 3x3, stride 1): both gradients, in float64, and the
    float32 weight gradient within float32 rounding of the float64 one."""
    rng = np.random.default_rng(8)
    x = rng.standard_normal((8, 16, 12, 12))
    ours_x, torch_x = pair(x)
    ours_w, torch_w = pair(rng.standard_normal((24, 16, 3, 3)))
    theirs = TF.conv2d(torch_x, torch_w, padding=1)
    grad = rng.standard_normal(theirs.shape)
    with use_algorithm("fast"), kernels_used() as used:
        ours = F.conv2d(ours_x, ours_w, padding=1)
        ours.backward(grad)
    assert used == {
        "conv.forward.winograd": 1,
        "conv.input_grad.full_correlation_winograd": 1,
        "conv.weight_grad.winograd": 1,
    }
    theirs.backward(torch.tensor(grad))
    assert_close(grad_of(ours_x), grad_of(torch_x), what="input gradient")
    assert_close(grad_of(ours_w), grad_of(torch_w), what="weight gradient")
    _, saved = conv.conv2d_forward(
        x.astype(np.float32), ours_w.numpy().astype(np.float32), None, 1, 1
    )
    with use_algorithm("fast"):
        single = conv.conv_backward(grad.astype(np.float32), saved, (False, True, False))[1]
    exact = grad_of(torch_w)
    assert single.dtype == np.float32
    np.testing.assert_allclose(single, exact, rtol=0, atol=1e-5 * np.abs(exact).max())
