"""Batch normalisation as a forward/backward pair.

Per channel c, over the m = N * (product of spatial sizes) values x_i of that channel:

    mu = (1/m) sum_i x_i,    var = (1/m) sum_i (x_i - mu)^2    (the biased batch variance)
    xhat_i = (x_i - mu) / sqrt(var + eps),    y_i = gamma xhat_i + beta

In training mode mu and var are the batch statistics and the running statistics are updated in
place, running <- (1 - momentum) running + momentum * batch, with the *unbiased* variance
var * m / (m - 1) (as PyTorch). In evaluation mode mu and var are the running statistics, so the
layer is a fixed per-channel affine map.

Backward, with dxhat_i = gamma dL/dy_i. In evaluation mode the statistics are constants and
dL/dx_i = dxhat_i / sqrt(var + eps). In training mode mu and var depend on every x_i of the
channel, and the chain rule through them gives the standard formula

    dL/dx_i = (1 / m) / sqrt(var + eps) * (m dxhat_i - sum_j dxhat_j - xhat_i sum_j dxhat_j xhat_j).

dL/dgamma = sum_i dL/dy_i xhat_i and dL/dbeta = sum_i dL/dy_i in both modes.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from convprop.ops.checks import check_float, check_same_dtype
from convprop.ops.contract import Grads, Needs, OpPair
from convprop.ops.kernels.compiled import compiled
from convprop.ops.kernels.parallel import batch_blocks, map_blocks, sum_blocks


def _check_batch_norm(
    x: np.ndarray,
    weight: np.ndarray | None,
    bias: np.ndarray | None,
    running_mean: np.ndarray | None,
    running_var: np.ndarray | None,
    training: bool,
) -> None:
    check_float(x, "batch_norm", "input")
    if x.ndim < 2:
        raise ValueError(
            f"batch_norm: input must be at least 2-D (N, C, *), got shape {tuple(x.shape)}"
        )
    channels = x.shape[1]
    named = {
        "weight": weight,
        "bias": bias,
        "running_mean": running_mean,
        "running_var": running_var,
    }
    for name, array in named.items():
        if array is None:
            continue
        check_float(array, "batch_norm", name)
        if array.shape != (channels,):
            raise ValueError(
                f"batch_norm: {name} must have one entry per channel, shape ({channels},) for "
                f"input of shape {tuple(x.shape)}, got shape {tuple(array.shape)}"
            )
    check_same_dtype({"input": x, **named}, "batch_norm")
    if (running_mean is None) != (running_var is None):
        raise ValueError(
            "batch_norm: running_mean and running_var must either both be None or neither be "
            f"None, got running_mean={'None' if running_mean is None else 'an array'} and "
            f"running_var={'None' if running_var is None else 'an array'}"
        )
    if not training and running_mean is None:
        raise ValueError(
            "batch_norm: running_mean and running_var must be given in evaluation mode "
            "(training=False); pass training=True to normalise with the batch statistics"
        )
    values_per_channel = x.size // channels if channels else 0
    if training and values_per_channel == 1:
        raise ValueError(
            "batch_norm: Expected more than 1 value per channel when training, got input of "
            f"shape {tuple(x.shape)} (1 value per channel, its variance is undefined)"
        )


def batch_norm_forward(
    x: np.ndarray,
    weight: np.ndarray | None,
    bias: np.ndarray | None,
    running_mean: np.ndarray | None,
    running_var: np.ndarray | None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> tuple[np.ndarray, Any]:
    """y = gamma (x - mu) / sqrt(var + eps) + beta, statistics per channel (axis 1).

    ``running_mean``/``running_var`` are updated in place when ``training`` is true.
    Training mode reads x twice (the statistics, then y); evaluation mode once.
    """
    _check_batch_norm(x, weight, bias, running_mean, running_var, training)
    axes = (0, *range(2, x.ndim))
    channels = x.shape[1]
    count = math.prod(x.shape[i] for i in axes)
    if x.size == 0:
        return x.copy(), (None, None, None, weight, training, x.shape, count)

    # (N, C, S), contiguous; per-channel statistics are float64 arrays of shape (C,). Each pass
    # runs over blocks of samples on every core (``batch_blocks``), partial sums added in block
    # order.
    values = np.ascontiguousarray(x).reshape(x.shape[0], channels, -1)
    blocks = batch_blocks(values.shape[0], values[0].nbytes)
    if training:
        # Sums of x - k and (x - k)^2 with k_c the channel's first value: mu = k + sum/m and
        # var = sum (x - k)^2 / m - (mu - k)^2, one read of x. The shift keeps the subtraction
        # from cancelling when |mu| >> sigma (k lies within a few sigma of mu).
        shift = values[0, :, 0].astype(np.float64)

        def shifted_sums(b: slice) -> np.ndarray:
            sums = np.empty((channels, 2))
            _shifted_sums(values[b], shift, sums)
            return sums

        offset_sum, square_sum = sum_blocks(shifted_sums, blocks, blas=False).T
        mean_offset = offset_sum / count
        mean = shift + mean_offset
        variance = np.maximum(square_sum / count - mean_offset * mean_offset, 0.0)
        if running_mean is not None and running_var is not None:
            running_mean *= 1.0 - momentum
            running_mean += momentum * mean
            running_var *= 1.0 - momentum
            running_var += (momentum * count / (count - 1)) * variance
    else:
        # Evaluation mode: _check_batch_norm guarantees the running statistics are given.
        mean = np.asarray(running_mean, dtype=np.float64)
        variance = np.asarray(running_var, dtype=np.float64)
    inv_std = 1.0 / np.sqrt(variance + eps)
    scale = inv_std if weight is None else weight * inv_std
    beta = np.zeros(channels) if bias is None else bias.astype(np.float64)
    if training:
        # y = (x - mu) (gamma inv_std) + beta.
        center, offset = mean, beta
    else:
        # A fixed affine map, y = x (gamma inv_std) + (beta - mu gamma inv_std), PyTorch's form.
        center, offset = np.zeros(channels), beta - mean * scale
    out = np.empty_like(values)

    def normalize(b: slice) -> None:
        _shifted_affine(values[b], center, scale, offset, out[b])

    map_blocks(normalize, blocks, blas=False)
    # Backward keeps x (alive anyway: it is this node's input) and mu rather than a copy of
    # xhat, and rebuilds x - mu as it runs.
    return out.reshape(x.shape), (values, mean, inv_std, weight, training, x.shape, count)


@compiled
def _shifted_sums(values: np.ndarray, shift: np.ndarray, sums: np.ndarray) -> None:
    """sums[c] = (sum_(n,s) (x[n,c,s] - k_c), sum_(n,s) (x[n,c,s] - k_c)^2), in float64."""
    batch, channels, positions = values.shape
    for c in range(channels):
        k = shift[c]
        linear = 0.0
        square = 0.0
        for n in range(batch):
            for s in range(positions):
                d = np.float64(values[n, c, s]) - k
                linear += d
                square += d * d
        sums[c, 0] = linear
        sums[c, 1] = square


@compiled
def _shifted_affine(
    values: np.ndarray, center: np.ndarray, scale: np.ndarray, offset: np.ndarray, out: np.ndarray
) -> None:
    """out[n,c,s] = (x[n,c,s] - center_c) scale_c + offset_c, computed in float64."""
    batch, channels, positions = values.shape
    for n in range(batch):
        for c in range(channels):
            m, a, b = center[c], scale[c], offset[c]
            for s in range(positions):
                out[n, c, s] = (np.float64(values[n, c, s]) - m) * a + b


def batch_norm_backward(grad_out: np.ndarray, saved: Any, needs: Needs) -> Grads:
    """dL/dx (training): (1/m) inv_std (m dxhat - sum dxhat - xhat sum(dxhat xhat));
    dL/dx (evaluation): dxhat inv_std; dL/dgamma = sum dL/dy xhat; dL/dbeta = sum dL/dy.

    Here dxhat = gamma dL/dy, inv_std = 1/sqrt(var + eps), sums over batch and positions.
    Training mode reads x and dL/dy twice (the two sums, then dL/dx).
    """
    values, mean, inv_std, weight, training, shape, count = saved
    if grad_out.size == 0:
        empty_channel = np.zeros(shape[1], dtype=grad_out.dtype)
        return (
            np.zeros_like(grad_out) if needs[0] else None,
            empty_channel if needs[1] else None,
            empty_channel.copy() if needs[2] else None,
        )
    grad = np.ascontiguousarray(grad_out).reshape(values.shape)
    dtype = np.result_type(grad, values)
    channels = values.shape[1]
    blocks = batch_blocks(values.shape[0], values[0].nbytes)
    grad_x = grad_weight = grad_bias = None
    if training or needs[1] or needs[2]:

        def sums(b: slice) -> np.ndarray:
            partial = np.empty((channels, 2))
            _grad_sums(grad[b], values[b], mean, partial)
            return partial

        grad_sum, grad_dot_centered = sum_blocks(sums, blocks, blas=False).T
        # sum dL/dy xhat = inv_std sum dL/dy (x - mu)
        grad_dot_normalized = grad_dot_centered * inv_std
        if needs[1]:
            grad_weight = grad_dot_normalized.astype(dtype)
        if needs[2]:
            grad_bias = grad_sum.astype(dtype)
    if needs[0]:
        scale = inv_std if weight is None else weight * inv_std
        grad_x_values = np.empty(values.shape, dtype=dtype)
        if training:
            # The bracket expanded per channel, with xhat = (x - mu) inv_std and
            # sum dxhat = gamma grad_sum, sum dxhat xhat = gamma grad_dot_normalized:
            # dL/dx = scale dL/dy - scale inv_std (grad_dot_normalized / m) (x - mu)
            #         - scale grad_sum / m: three per-channel coefficients, one pass.
            coefficients = (
                mean,
                scale,
                -scale * inv_std * grad_dot_normalized / count,
                -scale * grad_sum / count,
            )

            def input_grad(b: slice) -> None:
                _input_grad(grad[b], values[b], *coefficients, grad_x_values[b])

        else:
            per_channel = scale.astype(dtype)[:, np.newaxis]

            def input_grad(b: slice) -> None:
                np.multiply(grad[b], per_channel, out=grad_x_values[b])

        map_blocks(input_grad, blocks, blas=False)
        grad_x = grad_x_values.reshape(shape)
    return grad_x, grad_weight, grad_bias


@compiled
def _grad_sums(grad: np.ndarray, values: np.ndarray, mean: np.ndarray, sums: np.ndarray) -> None:
    """sums[c] = (sum_(n,s) g[n,c,s], sum_(n,s) g[n,c,s] (x[n,c,s] - mu_c)), in float64."""
    batch, channels, positions = values.shape
    for c in range(channels):
        m = mean[c]
        linear = 0.0
        product = 0.0
        for n in range(batch):
            for s in range(positions):
                g = np.float64(grad[n, c, s])
                linear += g
                product += g * (np.float64(values[n, c, s]) - m)
        sums[c, 0] = linear
        sums[c, 1] = product


@compiled
def _input_grad(
    grad: np.ndarray,
    values: np.ndarray,
    center: np.ndarray,
    grad_scale: np.ndarray,
    centered_scale: np.ndarray,
    constant: np.ndarray,
    out: np.ndarray,
) -> None:
    """out[n,c,s] = g[n,c,s] grad_scale_c + (x[n,c,s] - center_c) centered_scale_c + constant_c,
    computed in float64."""
    batch, channels, positions = values.shape
    for n in range(batch):
        for c in range(channels):
            m, a, b, k = center[c], grad_scale[c], centered_scale[c], constant[c]
            for s in range(positions):
                x = np.float64(values[n, c, s])
                out[n, c, s] = np.float64(grad[n, c, s]) * a + (x - m) * b + k


batch_norm = OpPair("batch_norm", batch_norm_forward, batch_norm_backward)
