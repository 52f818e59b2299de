"""Batch normalisation: the formulas, literally; one plan; the public pair.

Batch norm is not in the decks; its backward is the standard hand derivation (Ioffe and
Szegedy, 2015), written in the notes' terms. Per channel c, over the m = N * (product of
spatial sizes) values x_i of that channel:

    mu = (1/m) sum_i x_i,    var = (1/m) sum_i (x_i - mu)^2    (the biased batch variance)
    xhat_i = (x_i - mu) / sqrt(var + eps),    y_i = gamma xhat_i + beta

In training mode mu and var are the batch statistics and the running statistics are updated in
place, running <- (1 - momentum) running + momentum * batch, with the *unbiased* variance
var * m / (m - 1) (as PyTorch). In evaluation mode mu and var are the running statistics, so the
layer is a fixed per-channel affine map.

Backward, with delta_i = dL/dy_i and sigma = sqrt(var + eps). In evaluation mode the statistics
are constants and dL/dx_i = gamma delta_i / sigma. In training mode mu and var depend on every
x_i of the channel, and the chain rule through them gives the standard formula

    dL/dx_i = (1/m) gamma / sigma (m delta_i - sum_j delta_j - xhat_i sum_j delta_j xhat_j).

dL/dgamma = sum_i delta_i xhat_i and dL/dbeta = sum_i delta_i in both modes.

This module holds, in this order:

1. **The reference implementation** (``reference_statistics``, ``reference_normalize``,
   ``reference_backward``): the formulas above in plain NumPy over the reduction axes.
   ``convprop.ops.use_algorithm("reference")`` runs every batch norm through them.
2. **The plan** (``plan_batch_norm``) and the kernel tables: the reference, or the compiled
   passes of ``convprop.ops.kernels.batch_norm`` (each reads the map once, in blocks of
   samples on every core).
3. **The public pair** (``batch_norm``, an :class:`~convprop.ops.contract.OpPair`): validation,
   the running statistics, then the plan's kernels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from convprop.ops import algorithm
from convprop.ops.checks import check_float, check_same_dtype
from convprop.ops.contract import Grads, Needs, OpPair
from convprop.ops.kernels import batch_norm as batch_norm_kernels


# --------------------------------------------------------------------------------------------
# 1. The reference implementation: the formulas, literally.
# --------------------------------------------------------------------------------------------
def _reduction_axes(x: np.ndarray) -> tuple[int, ...]:
    """Every axis but the channels': the batch and the positions."""
    return (0, *range(2, x.ndim))


def _per_channel(values: np.ndarray, ndim: int) -> np.ndarray:
    """A (C,) array shaped (1, C, 1, ...) to broadcast against an (N, C, *) array."""
    return values.reshape(1, -1, *(1,) * (ndim - 2))


def reference_statistics(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """mu = (1/m) sum_i x_i and var = (1/m) sum_i (x_i - mu)^2 per channel, in float64."""
    axes = _reduction_axes(x)
    mean = x.mean(axis=axes, dtype=np.float64)
    variance = ((x - _per_channel(mean, x.ndim)) ** 2).mean(axis=axes)
    return mean, variance


def reference_normalize(
    x: np.ndarray,
    mean: np.ndarray,
    variance: np.ndarray,
    weight: np.ndarray | None,
    bias: np.ndarray | None,
    eps: float,
    training: bool,
) -> np.ndarray:
    """y = gamma xhat + beta, xhat = (x - mu) / sqrt(var + eps) (the same in both modes)."""
    sigma = _per_channel(np.sqrt(variance + eps), x.ndim)
    x_hat = (x - _per_channel(mean, x.ndim)) / sigma
    gamma = 1.0 if weight is None else _per_channel(weight, x.ndim)
    beta = 0.0 if bias is None else _per_channel(bias, x.ndim)
    y: np.ndarray = (gamma * x_hat + beta).astype(x.dtype, copy=False)
    return y


def reference_backward(
    grad_out: np.ndarray,
    x: np.ndarray,
    mean: np.ndarray,
    variance: np.ndarray,
    weight: np.ndarray | None,
    eps: float,
    training: bool,
    needs: Needs,
) -> Grads:
    """delta = dL/dy, sums over the batch and the positions (m values per channel):

    dL/dx (training)   = (1/m) gamma / sigma (m delta - sum delta - xhat sum(delta xhat))
    dL/dx (evaluation) = gamma delta / sigma
    dL/dgamma = sum delta xhat,    dL/dbeta = sum delta
    """
    axes, dtype = _reduction_axes(x), np.result_type(grad_out, x)
    delta, m = grad_out, x.size // x.shape[1]
    sigma = _per_channel(np.sqrt(variance + eps), x.ndim)
    x_hat = (x - _per_channel(mean, x.ndim)) / sigma
    gamma = 1.0 if weight is None else _per_channel(weight, x.ndim)
    sum_delta = delta.sum(axis=axes, keepdims=True, dtype=np.float64)
    sum_delta_x_hat = (delta * x_hat).sum(axis=axes, keepdims=True)
    grad_x = grad_weight = grad_bias = None
    if needs[0]:
        if training:
            grad_x = (1 / m) * gamma / sigma * (m * delta - sum_delta - x_hat * sum_delta_x_hat)
        else:
            grad_x = gamma * delta / sigma
        grad_x = grad_x.astype(dtype, copy=False)
    if needs[1]:
        grad_weight = sum_delta_x_hat.reshape(-1).astype(dtype)
    if needs[2]:
        grad_bias = sum_delta.reshape(-1).astype(dtype)
    return grad_x, grad_weight, grad_bias


# --------------------------------------------------------------------------------------------
# 2. The plan: the reference or the compiled passes.
# --------------------------------------------------------------------------------------------
# Every implementation takes (N, C, S) arrays (the public pair's contiguous view of the maps);
# the compiled passes split them into ``parallel.batch_blocks`` (the one threshold: maps too
# small to be worth sharing between the cores run whole in the calling thread).
StatisticsKernel = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
NormalizeKernel = Callable[
    [np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None, float, bool],
    np.ndarray,
]
BackwardKernel = Callable[
    [np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, float, bool, Needs],
    Grads,
]

STATISTICS_KERNELS: dict[str, StatisticsKernel] = {
    "reference": reference_statistics,
    "compiled": batch_norm_kernels.statistics,
}
NORMALIZE_KERNELS: dict[str, NormalizeKernel] = {
    "reference": reference_normalize,
    "compiled": batch_norm_kernels.normalize,
}
BACKWARD_KERNELS: dict[str, BackwardKernel] = {
    "reference": reference_backward,
    "compiled": batch_norm_kernels.backward,
}


def plan_batch_norm() -> str:
    """The implementation of every part of batch norm: ``"reference"`` under
    ``use_algorithm("reference")``, else the compiled passes, which read the map once per pass
    at any size (BENCHMARKS.md, "Kernels: batch norm")."""
    return "reference" if algorithm.reference() else "compiled"


# --------------------------------------------------------------------------------------------
# 3. The public pair: validation, the running statistics, then the plan's kernels.
# --------------------------------------------------------------------------------------------
def _check_batch_norm(
    x: np.ndarray,
    weight: np.ndarray | None,
    bias: np.ndarray | None,
    running_mean: np.ndarray | None,
    running_var: np.ndarray | None,
    training: bool,
    local_count: bool = True,
) -> None:
    """Validate batch norm's arguments; ``local_count=False`` leaves the rule "more than one
    value per channel when training" to the caller, which counts over several processes
    (``convprop.ops.sync_batch_norm``)."""
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
    if training and local_count and values_per_channel == 1:
        raise ValueError(
            "batch_norm: Expected more than 1 value per channel when training, got input of "
            f"shape {tuple(x.shape)} (1 value per channel, its variance is undefined)"
        )


@dataclass(frozen=True)
class BatchNormSaved:
    """What batch norm's backward needs: the maps as (N, C, S) ``values`` (x itself where it
    was contiguous: alive anyway as this node's input) and mu rather than a copy of xhat,
    which the backward rebuilds as it runs; ``mean`` is None for an empty input."""

    values: np.ndarray
    mean: np.ndarray | None
    variance: np.ndarray | None
    weight: np.ndarray | None
    eps: float
    training: bool
    shape: tuple[int, ...]


def _update_running(
    running_mean: np.ndarray | None,
    running_var: np.ndarray | None,
    mean: np.ndarray,
    variance: np.ndarray,
    momentum: float,
    count: int,
) -> None:
    """running <- (1 - momentum) running + momentum batch, with the unbiased variance."""
    if running_mean is None or running_var is None:
        return
    running_mean *= 1.0 - momentum
    running_mean += momentum * mean
    running_var *= 1.0 - momentum
    running_var += (momentum * count / (count - 1)) * variance


def batch_norm_forward(
    x: np.ndarray,
    weight: np.ndarray | None,
    bias: np.ndarray | None,
    running_mean: np.ndarray | None,
    running_var: np.ndarray | None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> tuple[np.ndarray, BatchNormSaved]:
    """y = gamma (x - mu) / sqrt(var + eps) + beta, statistics per channel (axis 1).

    ``running_mean``/``running_var`` are updated in place when ``training`` is true.
    """
    _check_batch_norm(x, weight, bias, running_mean, running_var, training)
    if x.size == 0:
        return x.copy(), BatchNormSaved(x, None, None, weight, eps, training, x.shape)
    values = np.ascontiguousarray(x).reshape(x.shape[0], x.shape[1], -1)
    kernel = plan_batch_norm()
    if training:
        algorithm.ran(f"batch_norm.statistics.{kernel}")
        mean, variance = STATISTICS_KERNELS[kernel](values)
        count = values.shape[0] * values.shape[2]
        _update_running(running_mean, running_var, mean, variance, momentum, count)
    else:
        # Evaluation mode: _check_batch_norm guarantees the running statistics are given.
        mean = np.asarray(running_mean, dtype=np.float64)
        variance = np.asarray(running_var, dtype=np.float64)
    algorithm.ran(f"batch_norm.normalize.{kernel}")
    out = NORMALIZE_KERNELS[kernel](values, mean, variance, weight, bias, eps, training)
    saved = BatchNormSaved(values, mean, variance, weight, eps, training, x.shape)
    return out.reshape(x.shape), saved


def batch_norm_backward(grad_out: np.ndarray, saved: BatchNormSaved, needs: Needs) -> Grads:
    """dL/dx (training): (1/m) gamma / sigma (m delta - sum delta - xhat sum(delta xhat));
    dL/dx (evaluation): gamma delta / sigma; dL/dgamma = sum delta xhat; dL/dbeta = sum delta.

    Here delta = dL/dy, sigma = sqrt(var + eps), sums over the batch and the positions;
    ``reference_backward`` computes them as written, ``plan_batch_norm`` picks what runs.
    """
    if saved.mean is None or saved.variance is None:  # an empty input
        empty_channel = np.zeros(saved.shape[1], dtype=grad_out.dtype)
        return (
            np.zeros_like(grad_out) if needs[0] else None,
            empty_channel if needs[1] else None,
            empty_channel.copy() if needs[2] else None,
        )
    values = saved.values
    grad = np.ascontiguousarray(grad_out).reshape(values.shape)
    kernel = plan_batch_norm()
    algorithm.ran(f"batch_norm.backward.{kernel}")
    grad_x, grad_weight, grad_bias = BACKWARD_KERNELS[kernel](
        grad, values, saved.mean, saved.variance, saved.weight, saved.eps, saved.training, needs
    )
    if grad_x is not None:
        grad_x = grad_x.reshape(saved.shape)
    return grad_x, grad_weight, grad_bias


batch_norm = OpPair("batch_norm", batch_norm_forward, batch_norm_backward)
