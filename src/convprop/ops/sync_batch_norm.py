"""Batch norm over a batch split between processes: statistics and gradient sums exchanged.

In data-parallel training each of P processes holds a share x^(r) of the global batch, m_r
values per channel on process r, m = sum_r m_r in all. ``SyncBatchNorm`` normalises with the
statistics of the *global* batch, so the result is the batch norm of the concatenated batch
(``convprop.ops.normalization``'s formulas, with every sum running over all processes):

    mu = (1/m) sum_r sum_i x_i^(r),    var = (1/m) sum_r sum_i (x_i^(r) - mu)^2
    xhat_i = (x_i - mu) / sigma,  sigma = sqrt(var + eps),    y_i = gamma xhat_i + beta

**Forward: one exchange of the local statistics.** Each process computes, per channel, its
count m_r, mean mu_r and sum of squared deviations M_r = sum_i (x_i - mu_r)^2 from its own
values (the local passes of batch norm), and the processes exchange them (an ``Allgather``
of 2C + 1 numbers). Every process then combines them in rank order (Chan, Golub and LeVeque's
pairwise update, which is exact algebra):

    mu = (1/m) sum_r m_r mu_r,    var = (1/m) (sum_r M_r + sum_r m_r (mu_r - mu)^2)

Exchanging sums of x and of x^2 instead would cost the same one collective but compute var
as E[x^2] - mu^2, which cancels catastrophically where |mu| >> sigma (a channel of activations
around 1000 with spread 1 keeps only ~10 of float64's 16 digits). Gathering rather than
adding also gives every process bit-identical statistics, so their running statistics never
drift apart. The running statistics are updated as batch norm's, with the unbiased global
variance var m / (m - 1).

**Backward: one reduction of the two sums the gradient needs.** With delta_i = dL/dy_i,
batch norm's input gradient is

    dL/dx_i = (1/m) gamma / sigma (m delta_i - sum_j delta_j - xhat_i sum_j delta_j xhat_j)

where j runs over the whole global batch, because mu and var depend on every x_j of it. Only
two per-channel sums cross processes: sum_j delta_j and sum_j delta_j xhat_j = (1/sigma)
sum_j delta_j (x_j - mu). Each process computes them over its share, the processes add them
(one ``Allreduce`` of 2C numbers), and each applies the formula to its own delta_i with the
global m and the global sums.

Which loss is that the gradient of? Process r's delta is the gradient of its own loss L_r
(the mean over its share), y_j of process s reaching only L_s, so the summed deltas are those
of L' = sum_r L_r and the formula gives process r's part of dL'/dx. The parameter gradients
that follow are process r's parts of dL'/dw; their sum over processes is dL'/dw, and
``DistributedDataParallel``'s average (the sum / P) is the gradient of the mean loss over
the global batch, (1/P) L' when the shares are equal: what one process computes on the whole
batch. For the same reason dL/dgamma = sum_i delta_i xhat_i and dL/dbeta = sum_i delta_i
stay *local* sums: the averaging of the parameter gradients adds them up.

A process whose share is empty takes part with m_r = 0 and zero sums. Evaluation mode needs
no exchange: the running statistics are the same everywhere, and ``SyncBatchNorm`` runs the
plain batch norm.

The exchanges go through a :class:`Collectives` (``convprop.distributed.ProcessGroup`` is
one), so this module, like every op, knows nothing of processes or tensors;
``LocalCollectives`` is the world of one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from convprop.ops import algorithm
from convprop.ops.contract import Grads, Needs, OpPair
from convprop.ops.kernels import batch_norm as batch_norm_kernels
from convprop.ops.normalization import (
    NORMALIZE_KERNELS,
    STATISTICS_KERNELS,
    _check_batch_norm,
    _per_channel,
    _reduction_axes,
    _update_running,
    plan_batch_norm,
)


class Collectives(Protocol):
    """What a synchronised batch norm needs of the processes it spans."""

    def all_gather(self, array: np.ndarray) -> np.ndarray:
        """Every process's ``array`` stacked in rank order, (processes, *array.shape), the
        same on every process."""
        ...

    def all_reduce_sum(self, array: np.ndarray) -> None:
        """``array`` replaced in place by its sum over the processes."""
        ...


class LocalCollectives:
    """The collectives of a world of one process: gathering stacks, adding changes nothing."""

    def all_gather(self, array: np.ndarray) -> np.ndarray:
        return np.asarray(array)[np.newaxis].copy()

    def all_reduce_sum(self, array: np.ndarray) -> None:
        return None


# --------------------------------------------------------------------------------------------
# The combination of the processes' statistics, and the reference backward.
# --------------------------------------------------------------------------------------------
def combine_statistics(
    counts: np.ndarray, means: np.ndarray, squared_deviations: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Global mean and biased variance per channel from the processes' (P,) counts m_r and
    (P, C) means mu_r and sums of squared deviations M_r, added in rank order:

    mu = (1/m) sum_r m_r mu_r,    var = (1/m) (sum_r M_r + sum_r m_r (mu_r - mu)^2)
    """
    total = counts.sum()
    weights = counts[:, np.newaxis]
    mean = (weights * means).sum(axis=0) / total
    variance = (
        squared_deviations.sum(axis=0) + (weights * (means - mean) ** 2).sum(axis=0)
    ) / total
    return mean, variance


def reference_grad_sums(
    grad_out: np.ndarray, x: np.ndarray, mean: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """This process's sum delta and sum delta (x - mu) per channel, in float64."""
    axes = _reduction_axes(x)
    sum_delta = grad_out.sum(axis=axes, dtype=np.float64)
    sum_delta_centered = (grad_out * (x - _per_channel(mean, x.ndim))).sum(
        axis=axes, dtype=np.float64
    )
    return sum_delta, sum_delta_centered


def reference_input_grad(
    grad_out: np.ndarray,
    x: np.ndarray,
    mean: np.ndarray,
    variance: np.ndarray,
    weight: np.ndarray | None,
    eps: float,
    sum_delta: np.ndarray,
    sum_delta_centered: np.ndarray,
    count: int,
) -> np.ndarray:
    """dL/dx = (1/m) gamma / sigma (m delta - sum delta - xhat sum(delta xhat)), m and the
    sums those of the global batch, sum(delta xhat) = sum(delta (x - mu)) / sigma."""
    ndim, m, delta = x.ndim, count, grad_out
    sigma = _per_channel(np.sqrt(variance + eps), ndim)
    x_hat = (x - _per_channel(mean, ndim)) / sigma
    gamma = 1.0 if weight is None else _per_channel(weight, ndim)
    sum_delta_x_hat = _per_channel(sum_delta_centered, ndim) / sigma
    grad_x = (
        (1 / m)
        * gamma
        / sigma
        * (m * delta - _per_channel(sum_delta, ndim) - x_hat * sum_delta_x_hat)
    )
    result: np.ndarray = grad_x.astype(np.result_type(grad_out, x), copy=False)
    return result


# --------------------------------------------------------------------------------------------
# The public pair (training mode; evaluation mode is the plain batch norm).
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SyncBatchNormSaved:
    """What the backward needs: this process's values as (N, C, S), the global statistics
    and count, and the collectives to add the gradient sums over."""

    values: np.ndarray
    mean: np.ndarray
    variance: np.ndarray
    weight: np.ndarray | None
    eps: float
    count: int
    collectives: Collectives
    shape: tuple[int, ...]


def sync_batch_norm_forward(
    x: np.ndarray,
    weight: np.ndarray | None,
    bias: np.ndarray | None,
    running_mean: np.ndarray | None,
    running_var: np.ndarray | None,
    momentum: float,
    eps: float,
    collectives: Collectives,
) -> tuple[np.ndarray, SyncBatchNormSaved]:
    """y = gamma (x - mu) / sqrt(var + eps) + beta with mu and var of the global batch (one
    ``all_gather`` of the local count, means and squared deviations); ``running_mean`` and
    ``running_var`` are updated in place, the same on every process."""
    _check_batch_norm(x, weight, bias, running_mean, running_var, True, local_count=False)
    channels = x.shape[1]
    positions = int(np.prod(x.shape[2:], dtype=np.int64))
    values = np.ascontiguousarray(x).reshape(x.shape[0], channels, positions)
    local_count = values.shape[0] * values.shape[2]
    kernel = plan_batch_norm()
    local = np.zeros(2 * channels + 1)
    local_mean = local_variance = np.zeros(channels)
    if local_count:
        algorithm.ran(f"sync_batch_norm.statistics.{kernel}")
        local_mean, local_variance = STATISTICS_KERNELS[kernel](values)
        local[0] = local_count
        local[1 : channels + 1] = local_mean
        local[channels + 1 :] = local_variance * local_count
    gathered = collectives.all_gather(local)
    counts = gathered[:, 0]
    count = int(counts.sum())
    if count <= 1:
        raise ValueError(
            "sync_batch_norm: Expected more than 1 value per channel when training, got "
            f"{count} over all {len(counts)} processes (input of shape {tuple(x.shape)} here)"
        )
    if len(counts) == 1:
        mean, variance = local_mean, local_variance
    else:
        mean, variance = combine_statistics(
            counts, gathered[:, 1 : channels + 1], gathered[:, channels + 1 :]
        )
    _update_running(running_mean, running_var, mean, variance, momentum, count)
    saved = SyncBatchNormSaved(values, mean, variance, weight, eps, count, collectives, x.shape)
    if not local_count:
        return x.copy(), saved
    algorithm.ran(f"sync_batch_norm.normalize.{kernel}")
    out = NORMALIZE_KERNELS[kernel](values, mean, variance, weight, bias, eps, True)
    return out.reshape(x.shape), saved


def sync_batch_norm_backward(
    grad_out: np.ndarray, saved: SyncBatchNormSaved, needs: Needs
) -> Grads:
    """dL/dx = (1/m) gamma / sigma (m delta - sum delta - xhat sum(delta xhat)) with m and
    both sums over the global batch (one ``all_reduce_sum`` of sum delta and
    sum delta (x - mu)); dL/dgamma = sum delta xhat and dL/dbeta = sum delta over this
    process's share (the parameter-gradient averaging adds them up)."""
    values, channels = saved.values, saved.shape[1]
    grad = np.ascontiguousarray(grad_out).reshape(values.shape)
    dtype = np.result_type(grad, values)
    kernel = plan_batch_norm()
    algorithm.ran(f"sync_batch_norm.backward.{kernel}")
    if values.size:
        if kernel == "reference":
            local_sums = reference_grad_sums(grad, values, saved.mean)
        else:
            local_sums = batch_norm_kernels.grad_sums(grad, values, saved.mean)
        sums = np.stack(local_sums)
    else:
        sums = np.zeros((2, channels))
    inv_std = 1.0 / np.sqrt(saved.variance + saved.eps)
    grad_weight = (sums[1] * inv_std).astype(dtype) if needs[1] else None
    grad_bias = sums[0].astype(dtype) if needs[2] else None
    grad_x = None
    if needs[0]:
        global_sums = sums.copy()
        saved.collectives.all_reduce_sum(global_sums)
        arguments = (
            saved.mean,
            saved.variance,
            saved.weight,
            saved.eps,
            global_sums[0],
            global_sums[1],
            saved.count,
        )
        if not values.size:
            grad_x = np.zeros(values.shape, dtype=dtype)
        elif kernel == "reference":
            grad_x = reference_input_grad(grad, values, *arguments)
        else:
            grad_x = batch_norm_kernels.input_grad(grad, values, *arguments)
        grad_x = grad_x.reshape(saved.shape)
    return grad_x, grad_weight, grad_bias


sync_batch_norm = OpPair("sync_batch_norm", sync_batch_norm_forward, sync_batch_norm_backward)
