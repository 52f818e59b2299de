"""Batch norm's fast passes: compiled loops that read each map once, in blocks of samples.

The notes' formulas, written in NumPy (``convprop.ops.normalization``'s reference), are a
chain of whole-array operations: subtract the mean, square and sum, scale, shift; in backward
seven such passes, each reading and writing the whole map. The loops here do all the
arithmetic of one pass per element, so each reads the map once (BENCHMARKS.md, "Kernels:
batch norm"):

* ``statistics``: mu and the biased variance from one read of x (sums of x - k and (x - k)^2);
* ``normalize``: y = (x - center) scale + offset, per channel;
* ``backward``: the sums of dL/dy and dL/dy (x - mu) in one read (``grad_sums``), then
  dL/dx in one more (``input_grad``).

Every pass runs over blocks of samples on every core (``parallel.batch_blocks``, unless the
caller gives ``blocks``), partial sums added in block order, so the bits depend on the shapes
alone. The arrays are (N, C, S) and C-contiguous; per-channel statistics are float64 (C,)
arrays, and every loop computes in float64 whatever the maps' dtype.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from convprop.ops.contract import Grads, Needs
from convprop.ops.kernels.compiled import compiled
from convprop.ops.kernels.parallel import batch_blocks, map_blocks, sum_blocks

Blocks = Sequence[slice] | None


def _blocks_of(values: np.ndarray, blocks: Blocks) -> Sequence[slice]:
    return batch_blocks(values.shape[0], values[0].nbytes) if blocks is None else blocks


def statistics(values: np.ndarray, blocks: Blocks = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and biased variance of (N, C, S) ``values``, in float64.

    Sums of x - k and (x - k)^2 with k_c the channel's first value: mu = k + sum/m and
    var = sum (x - k)^2 / m - (mu - k)^2, one read of x. The shift keeps the subtraction from
    cancelling when |mu| >> sigma (k lies within a few sigma of mu).
    """
    channels = values.shape[1]
    count = values.shape[0] * values.shape[2]
    shift = values[0, :, 0].astype(np.float64)

    def shifted_sums(block: slice) -> np.ndarray:
        sums = np.empty((channels, 2))
        _shifted_sums(values[block], shift, sums)
        return sums

    offset_sum, square_sum = sum_blocks(shifted_sums, _blocks_of(values, blocks), blas=False).T
    mean_offset = offset_sum / count
    variance = np.maximum(square_sum / count - mean_offset * mean_offset, 0.0)
    return shift + mean_offset, variance


def normalize(
    values: np.ndarray,
    mean: np.ndarray,
    variance: np.ndarray,
    weight: np.ndarray | None,
    bias: np.ndarray | None,
    eps: float,
    training: bool,
    blocks: Blocks = None,
) -> np.ndarray:
    """y = gamma (x - mu) / sqrt(var + eps) + beta for (N, C, S) ``values``, in x's dtype.

    Training mode: y = (x - mu) (gamma inv_std) + beta. Evaluation mode, a fixed affine map:
    y = x (gamma inv_std) + (beta - mu gamma inv_std), PyTorch's form.
    """
    channels = values.shape[1]
    inv_std = 1.0 / np.sqrt(variance + eps)
    scale = inv_std if weight is None else weight * inv_std
    beta = np.zeros(channels) if bias is None else bias.astype(np.float64)
    if training:
        center, offset = mean, beta
    else:
        center, offset = np.zeros(channels), beta - mean * scale
    out = np.empty_like(values)

    def block(b: slice) -> None:
        _shifted_affine(values[b], center, scale, offset, out[b])

    map_blocks(block, _blocks_of(values, blocks), blas=False)
    return out


def grad_sums(
    grad: np.ndarray, values: np.ndarray, mean: np.ndarray, blocks: Blocks = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel sum dL/dy and sum dL/dy (x - mu) of (N, C, S) ``grad`` and ``values``, in
    float64, from one read of both (the two sums the training-mode dL/dx needs; a
    ``SyncBatchNorm`` adds them over the processes before using them)."""
    channels = values.shape[1]

    def sums(b: slice) -> np.ndarray:
        partial = np.empty((channels, 2))
        _grad_sums(grad[b], values[b], mean, partial)
        return partial

    grad_sum, grad_dot_centered = sum_blocks(sums, _blocks_of(values, blocks), blas=False).T
    return grad_sum, grad_dot_centered


def input_grad(
    grad: np.ndarray,
    values: np.ndarray,
    mean: np.ndarray,
    variance: np.ndarray,
    weight: np.ndarray | None,
    eps: float,
    grad_sum: np.ndarray,
    grad_dot_centered: np.ndarray,
    count: int,
    blocks: Blocks = None,
) -> np.ndarray:
    """Training mode's dL/dx for (N, C, S) ``grad`` and ``values``, given the two sums over
    the ``count`` values per channel that the statistics were taken over (``grad_sums``),
    one pass; in the dtype of ``grad`` and ``values``."""
    dtype = np.result_type(grad, values)
    inv_std = 1.0 / np.sqrt(variance + eps)
    scale = inv_std if weight is None else weight * inv_std
    # The bracket expanded per channel, with xhat = (x - mu) inv_std and
    # sum dxhat = gamma grad_sum, sum dxhat xhat = gamma grad_dot_normalized:
    # dL/dx = scale dL/dy - scale inv_std (grad_dot_normalized / m) (x - mu)
    #         - scale grad_sum / m: three per-channel coefficients, one pass.
    grad_dot_normalized = grad_dot_centered * inv_std
    coefficients = (
        mean,
        scale,
        -scale * inv_std * grad_dot_normalized / count,
        -scale * grad_sum / count,
    )
    grad_x = np.empty(values.shape, dtype=dtype)

    def block(b: slice) -> None:
        _input_grad(grad[b], values[b], *coefficients, grad_x[b])

    map_blocks(block, _blocks_of(values, blocks), blas=False)
    return grad_x


def backward(
    grad: np.ndarray,
    values: np.ndarray,
    mean: np.ndarray,
    variance: np.ndarray,
    weight: np.ndarray | None,
    eps: float,
    training: bool,
    needs: Needs,
    blocks: Blocks = None,
) -> Grads:
    """dL/dx, dL/dgamma, dL/dbeta for (N, C, S) ``grad`` and ``values`` (see the reference,
    ``convprop.ops.normalization.reference_backward``, for the formulas).

    Training mode reads x and dL/dy twice (the two sums, then dL/dx); evaluation mode's dL/dx
    is dL/dy gamma inv_std, one pass.
    """
    dtype = np.result_type(grad, values)
    channels, count = values.shape[1], values.shape[0] * values.shape[2]
    blocks = _blocks_of(values, blocks)
    inv_std = 1.0 / np.sqrt(variance + eps)
    grad_x = grad_weight = grad_bias = None
    grad_sum = grad_dot_centered = np.zeros(channels)
    if training or needs[1] or needs[2]:
        grad_sum, grad_dot_centered = grad_sums(grad, values, mean, blocks)
        if needs[1]:
            # sum dL/dy xhat = inv_std sum dL/dy (x - mu)
            grad_weight = (grad_dot_centered * inv_std).astype(dtype)
        if needs[2]:
            grad_bias = grad_sum.astype(dtype)
    if needs[0]:
        if training:
            grad_x = input_grad(
                grad,
                values,
                mean,
                variance,
                weight,
                eps,
                grad_sum,
                grad_dot_centered,
                count,
                blocks,
            )
        else:
            scale = inv_std if weight is None else weight * inv_std
            per_channel = scale.astype(dtype)[:, np.newaxis]
            grad_x = np.empty(values.shape, dtype=dtype)

            def scaled(b: slice) -> None:
                np.multiply(grad[b], per_channel, out=grad_x[b])

            map_blocks(scaled, blocks, blas=False)
    return grad_x, grad_weight, grad_bias


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
