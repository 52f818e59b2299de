"""The lecture notes' identities for convolution, each a named test.

Right-hand sides are computed independently of ``convprop.ops.conv``'s internals: with plain
NumPy loops over the notes' index formulas, or with other convprop ops (dilate, decimate,
stride-1 convolution).
"""

from __future__ import annotations

import numpy as np
import pytest

import convprop as cp
import convprop.nn.functional as F


def full_correlation_loops(padded: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """out[n, c, i, j] = sum_{f, p, q} padded[n, f, i + p, j + q] kernel[c, f, p, q]."""
    batch, in_channels, height, width = padded.shape
    out_channels, _, kh, kw = kernel.shape
    out = np.zeros((batch, out_channels, height - kh + 1, width - kw + 1))
    for n in range(batch):
        for c in range(out_channels):
            for i in range(out.shape[2]):
                for j in range(out.shape[3]):
                    out[n, c, i, j] = np.sum(padded[n, :, i : i + kh, j : j + kw] * kernel[c])
    return out


def conv2d_grads(
    x: np.ndarray, w: np.ndarray, b: np.ndarray | None, grad_out: np.ndarray, **kwargs
) -> tuple[np.ndarray, ...]:
    """convprop's (dL/dx, dL/dw, dL/db) for L = sum(conv2d(x, w, b) * grad_out)."""
    tx = cp.tensor(x, requires_grad=True)
    tw = cp.tensor(w, requires_grad=True)
    tb = cp.tensor(b, requires_grad=True) if b is not None else None
    F.conv2d(tx, tw, tb, **kwargs).backward(grad_out)
    return tx.grad.numpy(), tw.grad.numpy(), None if tb is None else tb.grad.numpy()


@pytest.mark.parametrize("padding", [0, 1])
def test_input_grad_is_full_convolution_with_rot180_kernel(padding: int) -> None:
    # Deck 004: "a convolution of the zero-padded dDiv/dz maps by the transposed and flipped
    # filter, after zero padding it first with K-1 zeros on every side"; "if the Y map was
    # zero-padded in the forward pass ... the zero padding regions must be deleted".
    rng = np.random.default_rng(10)
    x = rng.standard_normal((2, 3, 6, 5))
    w = rng.standard_normal((4, 3, 3, 2))
    height = 6 + 2 * padding - 3 + 1
    width = 5 + 2 * padding - 2 + 1
    delta = rng.standard_normal((2, 4, height, width))
    grad_x, _, _ = conv2d_grads(x, w, None, delta, padding=padding)

    padded_delta = np.pad(delta, ((0, 0), (0, 0), (2, 2), (1, 1)))  # K - 1 per axis
    rot180_swapped = w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)  # (C_in, C_out, kh, kw)
    full = full_correlation_loops(padded_delta, rot180_swapped)  # the padded input's shape
    expected = full[:, :, padding : full.shape[2] - padding, padding : full.shape[3] - padding]
    np.testing.assert_allclose(grad_x, expected, rtol=1e-12, atol=1e-12)


def test_weight_grad_is_correlation_of_input_with_grad_out() -> None:
    # Deck 002: dL/dw_(j,i) = sum_s dL/dy_(s,j) * x_(s,i); deck 004: "if Y(l-1,m) was zero
    # padded in the forward pass, it must be zero padded for backprop".
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 3, 5, 6))
    w = rng.standard_normal((4, 3, 2, 3))
    delta = rng.standard_normal((2, 4, 6, 6))  # padding 1: (5 + 2 - 2 + 1, 6 + 2 - 3 + 1)
    _, grad_w, _ = conv2d_grads(x, w, None, delta, padding=1)

    padded_x = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    expected = np.zeros_like(w)
    for f in range(4):
        for c in range(3):
            for p in range(2):
                for q in range(3):
                    # dw[f, c, p, q] = sum_{n, i, j} delta[n, f, i, j] x_pad[n, c, i + p, j + q]
                    expected[f, c, p, q] = np.sum(
                        delta[:, f] * padded_x[:, c, p : p + 6, q : q + 6]
                    )
    np.testing.assert_allclose(grad_w, expected, rtol=1e-12, atol=1e-12)


def test_bias_grad_is_sum_of_grad_out() -> None:
    rng = np.random.default_rng(12)
    x = rng.standard_normal((3, 2, 5, 5))
    w = rng.standard_normal((4, 2, 3, 3))
    b = rng.standard_normal(4)
    delta = rng.standard_normal((3, 4, 2, 2))
    _, _, grad_b = conv2d_grads(x, w, b, delta, stride=2)
    expected = [
        sum(delta[n, f, i, j] for n in range(3) for i in range(2) for j in range(2))
        for f in range(4)
    ]
    np.testing.assert_allclose(grad_b, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("stride, padding", [(2, 0), (3, 1), ((2, 3), (1, 0))])
def test_strided_conv_is_decimated_stride1_conv(stride, padding) -> None:
    # Deck 004: "the downsampling is combined with the layers just before it by performing
    # the operations with a stride > 1".
    rng = np.random.default_rng(13)
    x = cp.tensor(rng.standard_normal((2, 3, 9, 8)))
    w = cp.tensor(rng.standard_normal((2, 3, 3, 2)))
    b = cp.tensor(rng.standard_normal(2))
    strided = F.conv2d(x, w, b, stride=stride, padding=padding)
    decimated = F.decimate(F.conv2d(x, w, b, stride=1, padding=padding), stride)
    np.testing.assert_allclose(strided.numpy(), decimated.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("stride, padding, dilation", [(2, 0, 1), (3, 1, 1), ((2, 3), 1, 2)])
def test_strided_input_grad_uses_zero_inserted_grad_out(stride, padding, dilation) -> None:
    # Deck 004: "it is more convenient to think of the two as separate operations in the
    # backward pass": a strided conv is a stride-1 conv followed by downsampling, so its
    # input gradient is the stride-1 conv's input gradient of the zero-inserted (upsampled)
    # grad_out -- zeros also after the last kept sample, where decimation dropped outputs.
    rng = np.random.default_rng(14)
    x = rng.standard_normal((2, 3, 10, 9))
    w = rng.standard_normal((4, 3, 3, 2))
    kwargs = {"padding": padding, "dilation": dilation}
    strided_out = F.conv2d(cp.tensor(x), cp.tensor(w), stride=stride, **kwargs)
    delta = rng.standard_normal(strided_out.shape)
    grad_strided, _, _ = conv2d_grads(x, w, None, delta, stride=stride, **kwargs)

    dense_shape = F.conv2d(cp.tensor(x), cp.tensor(w), stride=1, **kwargs).shape
    upsampled = F.dilate(cp.tensor(delta), stride).numpy()
    tail = [(0, dense - up) for dense, up in zip(dense_shape[2:], upsampled.shape[2:], strict=True)]
    zero_inserted = np.pad(upsampled, [(0, 0), (0, 0), *tail])
    grad_dense, _, _ = conv2d_grads(x, w, None, zero_inserted, stride=1, **kwargs)
    np.testing.assert_allclose(grad_strided, grad_dense, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("stride, padding", [(1, 0), (2, 0), (2, 1), (3, 2)])
def test_transposed_conv_is_conv_of_dilated_input_with_flipped_kernel(stride, padding) -> None:
    # Deck 004: "upsampling layers followed by a convolutional layer ... also called
    # transpose convolutions": insert S - 1 zeros, pad by K - 1 - P, correlate with the
    # flipped kernel whose in/out channels are swapped.
    rng = np.random.default_rng(15)
    kernel = 3
    x = rng.standard_normal((2, 3, 4, 5))
    w = rng.standard_normal((3, 2, kernel, kernel))  # (C_in, C_out, k, k)
    transposed = F.conv_transpose2d(cp.tensor(x), cp.tensor(w), stride=stride, padding=padding)

    upsampled = F.dilate(cp.tensor(x), stride).numpy()
    border = kernel - 1 - padding
    padded = np.pad(upsampled, ((0, 0), (0, 0), (border, border), (border, border)))
    flipped = np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
    expected = F.conv2d(cp.tensor(padded), cp.tensor(flipped))
    np.testing.assert_allclose(transposed.numpy(), expected.numpy(), rtol=1e-12, atol=1e-12)


def test_seed000_example() -> None:
    # Deck 000: a 3x3 input and a 2x2 kernel with *true* convolution (kernel rotated 180
    # degrees), written out by hand; conv2d (cross-correlation) must agree once it is given
    # the rotated kernel.
    rng = np.random.default_rng(16)
    x11, x12, x13, x21, x22, x23, x31, x32, x33 = rng.standard_normal(9)
    w11, w12, w21, w22 = rng.standard_normal(4)
    x = np.array([[x11, x12, x13], [x21, x22, x23], [x31, x32, x33]])
    w = np.array([[w11, w12], [w21, w22]])

    h11 = x11 * w22 + x12 * w21 + x21 * w12 + x22 * w11
    h12 = x12 * w22 + x13 * w21 + x22 * w12 + x23 * w11
    h21 = x21 * w22 + x22 * w21 + x31 * w12 + x32 * w11
    h22 = x22 * w22 + x23 * w21 + x32 * w12 + x33 * w11
    rotated = w[::-1, ::-1].copy()
    tx = cp.tensor(x.reshape(1, 1, 3, 3), requires_grad=True)
    trot = cp.tensor(rotated.reshape(1, 1, 2, 2), requires_grad=True)
    h = F.conv2d(tx, trot)
    np.testing.assert_allclose(h.numpy()[0, 0], [[h11, h12], [h21, h22]], rtol=1e-13)

    # Backward: the deck's 3x3 grid of delta * w sums. (The deck prints the (2, 3) entry as
    # "d12 w21 + d12 w22"; from h12 and h22 above it is d12 w11 + d22 w21.)
    d11, d12, d21, d22 = rng.standard_normal(4)
    h.backward(np.array([[[[d11, d12], [d21, d22]]]]))
    expected_dx = [
        [d11 * w22, d11 * w21 + d12 * w22, d12 * w21],
        [
            d11 * w12 + d21 * w22,
            d11 * w11 + d12 * w12 + d21 * w21 + d22 * w22,
            d12 * w11 + d22 * w21,
        ],
        [d21 * w12, d21 * w11 + d22 * w12, d22 * w11],
    ]
    np.testing.assert_allclose(tx.grad.numpy()[0, 0], expected_dx, rtol=1e-13)

    # dE/dw_ab = sum_xy delta_xy x_(x-a, y-b): w11 multiplies x22, x23, x32, x33 (above).
    expected_dw = [
        [
            d11 * x22 + d12 * x23 + d21 * x32 + d22 * x33,
            d11 * x21 + d12 * x22 + d21 * x31 + d22 * x32,
        ],
        [
            d11 * x12 + d12 * x13 + d21 * x22 + d22 * x23,
            d11 * x11 + d12 * x12 + d21 * x21 + d22 * x22,
        ],
    ]
    grad_w = trot.grad.numpy()[0, 0][::-1, ::-1]  # back from the rotated kernel to w
    np.testing.assert_allclose(grad_w, expected_dw, rtol=1e-13)


def test_seed001_example() -> None:
    # Deck 001: x = (x1..x4), w = (w1, w2), bias b, stride 1, no padding:
    # y_i = w1 x_i + w2 x_(i+1) + b (the deck's "=" between the terms is a "+").
    x1, x2, x3, x4 = 0.5, -1.25, 2.0, 0.75
    w1, w2, b = 1.5, -0.5, 0.25
    dy1, dy2, dy3 = 0.3, -1.1, 0.8
    tx = cp.tensor(np.array([[[x1, x2, x3, x4]]]), requires_grad=True)
    tw = cp.tensor(np.array([[[w1, w2]]]), requires_grad=True)
    tb = cp.tensor(np.array([b]), requires_grad=True)
    y = F.conv1d(tx, tw, tb)
    np.testing.assert_allclose(
        y.numpy()[0, 0],
        [w1 * x1 + w2 * x2 + b, w1 * x2 + w2 * x3 + b, w1 * x3 + w2 * x4 + b],
        rtol=1e-15,
    )
    y.backward(np.array([[[dy1, dy2, dy3]]]))

    np.testing.assert_allclose(tb.grad.numpy(), [dy1 + dy2 + dy3], rtol=1e-15)
    # dw = x * dy (the deck's dw2 reads "x4 dy4"; with three outputs it is x4 dy3).
    np.testing.assert_allclose(
        tw.grad.numpy()[0, 0],
        [x1 * dy1 + x2 * dy2 + x3 * dy3, x2 * dy1 + x3 * dy2 + x4 * dy3],
        rtol=1e-15,
    )
    expected_dx = [w1 * dy1, w2 * dy1 + w1 * dy2, w2 * dy2 + w1 * dy3, w2 * dy3]
    np.testing.assert_allclose(tx.grad.numpy()[0, 0], expected_dx, rtol=1e-15)
    # ... which is the full convolution of (0, dy1, dy2, dy3, 0) with the flipped (w2, w1).
    padded_dy = [0.0, dy1, dy2, dy3, 0.0]
    flipped = [w2, w1]
    full = [padded_dy[i] * flipped[0] + padded_dy[i + 1] * flipped[1] for i in range(4)]
    np.testing.assert_allclose(tx.grad.numpy()[0, 0], full, rtol=1e-15)
