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

from convprop.ops._parallel import batch_blocks, map_blocks, sum_blocks
from convprop.ops._util import check_float, check_same_dtype
from convprop.ops.elementwise import Grads, Needs


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
    """
    _check_batch_norm(x, weight, bias, running_mean, running_var, training)
    axes = (0, *range(2, x.ndim))
    channels = x.shape[1]
    count = math.prod(x.shape[i] for i in axes)
    if x.size == 0:
        return x.copy(), (None, None, None, weight, training, x.shape, count)

    # (N, C, S): every per-channel sum runs first along the contiguous positions S, then over
    # the batch; per-channel arrays of shape (C,) broadcast as (C, 1). Each pass runs over
    # blocks of samples on every core (``batch_blocks``), partial sums added in block order.
    values = x.reshape(x.shape[0], channels, -1)
    blocks = batch_blocks(values.shape[0], values[0].nbytes)
    out = np.empty_like(values)
    if training:
        mean = sum_blocks(lambda b: np.einsum("ncs->c", values[b]), blocks, blas=False) / count

        def center(b: slice) -> np.ndarray:
            np.subtract(values[b], mean[:, np.newaxis], out=out[b])
            # sum_i (x_i - mu)^2 as one dot product per sample and channel (no squared copy).
            squares: np.ndarray = np.einsum("ncs,ncs->nc", out[b], out[b]).sum(axis=0)
            return squares

        variance = sum_blocks(center, blocks, blas=False) / count
        if running_mean is not None and running_var is not None:
            running_mean *= 1.0 - momentum
            running_mean += momentum * mean
            running_var *= 1.0 - momentum
            running_var += (momentum * count / (count - 1)) * variance
    else:
        # Evaluation mode: _check_batch_norm guarantees the running statistics are given.
        mean = np.array(running_mean)
        variance = np.asarray(running_var)
    inv_std = 1.0 / np.sqrt(variance + eps)
    scale = (inv_std if weight is None else weight * inv_std)[:, np.newaxis]
    if training:
        # y = (x - mu) * (gamma inv_std) + beta, in place in ``out``, which holds x - mu.
        # Backward keeps x (alive anyway: it is this node's input) and mu rather than a copy
        # of xhat, and rebuilds x - mu when it runs.
        shift = None if bias is None else bias[:, np.newaxis]

        def normalize(b: slice) -> None:
            out[b] *= scale
            if shift is not None:
                out[b] += shift

    else:
        # A fixed affine map, y = x * (gamma inv_std) + (beta - mu gamma inv_std) (PyTorch's
        # form): two passes over the data instead of three.
        offset = -mean[:, np.newaxis] * scale
        if bias is not None:
            offset += bias[:, np.newaxis]

        def normalize(b: slice) -> None:
            np.multiply(values[b], scale, out=out[b])
            out[b] += offset

    map_blocks(normalize, blocks, blas=False)
    return out.reshape(x.shape), (values, mean, inv_std, weight, training, x.shape, count)


def batch_norm_backward(grad_out: np.ndarray, saved: Any, needs: Needs) -> Grads:
    """dL/dx (training): (1/m) inv_std (m dxhat - sum dxhat - xhat sum(dxhat xhat));
    dL/dx (evaluation): dxhat inv_std; dL/dgamma = sum dL/dy xhat; dL/dbeta = sum dL/dy.

    Here dxhat = gamma dL/dy, inv_std = 1/sqrt(var + eps), sums over batch and positions.
    """
    values, mean, inv_std, weight, training, shape, count = saved
    if grad_out.size == 0:
        empty_channel = np.zeros(shape[1], dtype=grad_out.dtype)
        return (
            np.zeros_like(grad_out) if needs[0] else None,
            empty_channel if needs[1] else None,
            empty_channel.copy() if needs[2] else None,
        )
    grad = grad_out.reshape(values.shape)
    blocks = batch_blocks(values.shape[0], values[0].nbytes)
    centering = mean[:, np.newaxis]
    # x - mu, written once into the array that becomes dL/dx (training mode reads it again
    # there), not into a temporary per pass.
    centered = np.empty_like(grad)

    def sums(b: slice) -> np.ndarray:
        # sum dL/dy and sum dL/dy (x - mu), one dot product per sample and channel.
        np.subtract(values[b], centering, out=centered[b])
        return np.stack(
            [
                np.einsum("ncs->c", grad[b]),
                np.einsum("ncs,ncs->nc", grad[b], centered[b]).sum(0),
            ]
        )

    grad_sum, grad_dot_centered = sum_blocks(sums, blocks, blas=False)
    # sum dL/dy xhat = inv_std sum dL/dy (x - mu)
    grad_dot_normalized = grad_dot_centered * inv_std
    grad_x = grad_weight = grad_bias = None
    if needs[0]:
        scale = inv_std if weight is None else weight * inv_std
        grad_x_values = centered
        if training:
            # The bracket expanded per channel, with xhat = (x - mu) inv_std and
            # sum dxhat = gamma grad_sum, sum dxhat xhat = gamma grad_dot_normalized:
            # dL/dx = scale dL/dy - scale grad_sum / m - scale inv_std (grad_dot_normalized / m)
            # (x - mu): three per-channel coefficients, one pass over the data.
            centered_coefficient = (-scale * inv_std * grad_dot_normalized / count)[:, np.newaxis]
            constant = (-scale * grad_sum / count)[:, np.newaxis]

            def input_grad(b: slice) -> None:
                grad_x_values[b] *= centered_coefficient
                grad_x_values[b] += constant
                grad_x_values[b] += grad[b] * scale[:, np.newaxis]

        else:

            def input_grad(b: slice) -> None:
                np.multiply(grad[b], scale[:, np.newaxis], out=grad_x_values[b])

        map_blocks(input_grad, blocks, blas=False)
        grad_x = grad_x_values.reshape(shape)
    if needs[1]:
        grad_weight = grad_dot_normalized
    if needs[2]:
        grad_bias = grad_sum
    return grad_x, grad_weight, grad_bias
