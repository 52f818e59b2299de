"""Winograd's F(2x2, 3x3) (ops/winograd): its matrices, its compiled transforms, and the
convolutions that run through it, against the direct sum and PyTorch in float64."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given, settings
from hypothesis import strategies as st

import convprop.nn.functional as F
from convprop.ops import conv, winograd
from tests.reference import assert_close, grad_of, pair

# The module docstring's B^T and A^T (G is winograd._G).
B_T = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=np.float64)
A_T = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], dtype=np.float64)


def direct_tile(d: np.ndarray, g: np.ndarray) -> np.ndarray:
    """y[a, b] = sum_{p, q} g[p, q] d[a + p, b + q] for the 2x2 outputs of a 4x4 tile."""
    return np.array([[np.sum(g * d[a : a + 3, b : b + 3]) for b in range(2)] for a in range(2)])


def test_the_documented_matrices_give_the_correlation_of_a_tile() -> None:
    """Y = A^T [(G g G^T) * (B^T d B)] A equals the direct 3x3 correlation on a 4x4 tile."""
    rng = np.random.default_rng(0)
    for _ in range(20):
        d, g = rng.standard_normal((4, 4)), rng.standard_normal((3, 3))
        winograd_tile = A_T @ ((winograd._G @ g @ winograd._G.T) * (B_T @ d @ B_T.T)) @ A_T.T
        np.testing.assert_allclose(winograd_tile, direct_tile(d, g), rtol=1e-13, atol=1e-13)


def test_input_transform_is_b_transpose_d_b_on_every_padded_tile() -> None:
    rng = np.random.default_rng(1)
    image = rng.standard_normal((2, 3, 5, 7))
    top, left, tiles_h, tiles_w = 1, 2, 3, 4
    out = np.empty((16, 3, 2 * tiles_h * tiles_w))
    winograd._input_transform(image, top, left, tiles_h, tiles_w, out)
    padded = np.zeros((2, 3, 2 * tiles_h + 2, 2 * tiles_w + 2))
    padded[:, :, top : top + 5, left : left + 7] = image
    for n in range(2):
        for c in range(3):
            for i in range(tiles_h):
                for j in range(tiles_w):
                    d = padded[n, c, 2 * i : 2 * i + 4, 2 * j : 2 * j + 4]
                    t = (n * tiles_h + i) * tiles_w + j
                    np.testing.assert_allclose(out[:, c, t], (B_T @ d @ B_T.T).ravel())


def test_output_transform_is_a_transpose_m_a_on_every_tile() -> None:
    rng = np.random.default_rng(2)
    batch, channels, tiles_h, tiles_w = 2, 3, 2, 3
    products = rng.standard_normal((16, channels, batch * tiles_h * tiles_w))
    out = np.empty((batch, channels, 2 * tiles_h, 2 * tiles_w))
    winograd._output_transform(products, out, tiles_h, tiles_w)
    for n in range(batch):
        for f in range(channels):
            for i in range(tiles_h):
                for j in range(tiles_w):
                    m = products[:, f, (n * tiles_h + i) * tiles_w + j].reshape(4, 4)
                    tile = out[n, f, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2]
                    np.testing.assert_allclose(tile, A_T @ m @ A_T.T)


@settings(max_examples=40, deadline=None)
@given(
    batch=st.integers(1, 3),
    channels=st.integers(16, 20),
    out_channels=st.integers(1, 5),
    height=st.integers(1, 9),
    width=st.integers(1, 9),
    padding=st.integers(0, 2),
    bias=st.booleans(),
    seed=st.integers(0, 2**31),
)
def test_conv2d_through_winograd_matches_torch(
    batch: int,
    channels: int,
    out_channels: int,
    height: int,
    width: int,
    padding: int,
    bias: bool,
    seed: int,
) -> None:
    """Odd and even sizes, every padding a 3x3 layer takes, forward and both gradients."""
    if min(height, width) + 2 * padding < 3:
        height, width = height + 2, width + 2
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, channels, height, width))
    assert conv._winograd_applies(x, (3, 3), (1, 1), (1, 1), 1)
    ours_x, torch_x = pair(x)
    ours_w, torch_w = pair(rng.standard_normal((out_channels, channels, 3, 3)))
    ours_b, torch_b = pair(rng.standard_normal(out_channels)) if bias else (None, None)
    ours = F.conv2d(ours_x, ours_w, ours_b, padding=padding)
    theirs = TF.conv2d(torch_x, torch_w, torch_b, padding=padding)
    assert_close(ours.numpy(), theirs, what="forward")
    grad = rng.standard_normal(theirs.shape)
    ours.backward(grad)
    theirs.backward(torch.tensor(grad))
    assert_close(grad_of(ours_x), grad_of(torch_x), what="input gradient")
    assert_close(grad_of(ours_w), grad_of(torch_w), what="weight gradient")


def test_samples_split_into_cache_sized_chunks_give_the_same_result(monkeypatch) -> None:
    """A budget below one sample's tiles: every sample its own chunk, the last chunk shorter."""
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal((5, 16, 6, 6)), rng.standard_normal((4, 16, 3, 3))
    expected = TF.conv2d(torch.tensor(x), torch.tensor(w), padding=1).numpy()
    for budget in (1, 3 * 16 * 20 * 9 * 8, 1 << 30):  # 1 sample, 3 samples, everything
        monkeypatch.setattr(winograd, "_CHUNK_BYTES", budget)
        assert_close(conv.conv2d_forward(x, w, None, 1, 1)[0], expected, what=f"{budget}")


def test_transposed_3x3_stride_1_convolution_through_winograd_matches_torch() -> None:
    """conv_transpose2d's forward is the input gradient, a correlation with the flipped
    kernel: with 16 or more input channels it takes the Winograd path too."""
    rng = np.random.default_rng(4)
    ours_x, torch_x = pair(rng.standard_normal((2, 16, 5, 6)))
    ours_w, torch_w = pair(rng.standard_normal((16, 3, 3, 3)))
    ours = F.conv_transpose2d(ours_x, ours_w, padding=1)
    theirs = TF.conv_transpose2d(torch_x, torch_w, padding=1)
    assert_close(ours.numpy(), theirs, what="forward")


def test_float32_through_winograd_stays_within_float32_rounding_of_float64() -> None:
    rng = np.random.default_rng(5)
    x, w = rng.standard_normal((4, 32, 16, 16)), rng.standard_normal((8, 32, 3, 3))
    exact = conv.conv2d_forward(x, w, None, 1, 1)[0]
    single = conv.conv2d_forward(x.astype(np.float32), w.astype(np.float32), None, 1, 1)[0]
    assert single.dtype == np.float32
    np.testing.assert_allclose(single, exact, rtol=0, atol=1e-5 * np.abs(exact).max())


@pytest.mark.parametrize(
    ("channels", "kernel", "stride", "dilation", "groups"),
    [
        (15, (3, 3), (1, 1), (1, 1), 1),
        (16, (3, 3), (2, 2), (1, 1), 1),
        (16, (3, 3), (1, 1), (2, 2), 1),
        (16, (3, 3), (1, 1), (1, 1), 2),
        (16, (5, 5), (1, 1), (1, 1), 1),
    ],
)
def test_other_convolutions_keep_im2col(channels, kernel, stride, dilation, groups) -> None:
    x = np.zeros((1, channels, 8, 8))
    assert not conv._winograd_applies(x, kernel, stride, dilation, groups)
