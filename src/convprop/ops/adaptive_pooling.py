"""Adaptive mean and max pooling (1-D and 2-D): the windows follow from the output size.

Adaptive pooling of a length L to O outputs gives output i the window (PyTorch's rule,
``geometry.adaptive_bounds``)::

    window(i) = [floor(i L / O), ceil((i + 1) L / O))            # per axis
    y(i) = mean(x[window(i)])       or      y(i) = x[pidx(i)], pidx(i) = maxidx(x[window(i)])

so the windows cover the input, neighbouring windows overlap by a sample when O does not
divide L, and samples repeat when O > L. The derivatives go back as for mean and max pooling
(deck 004, ``convprop.ops.pooling``)::

    dL/dx[window(i)] += dL/dy(i) / |window(i)|        dL/dx[pidx(i)] += dL/dy(i)

"+=" because windows may overlap. Max: ties go to the first maximum in window (row-major)
order, a NaN is the maximum (the last NaN is selected); the indices are ``h * W + w`` (int64).

This module holds, as ``convprop.ops.pooling`` does for the other pools:

1. **The reference implementation** (``reference_adaptive_avg_pool``,
   ``reference_adaptive_max_pool`` and their backwards): one output position at a time, its
   window sliced out, with ``+=`` (``np.add.at``) for the gradients.
2. **The plan** (``plan_adaptive_avg``, ``plan_adaptive_max``, ``plan_adaptive_max_backward``):
   which kernel of ``convprop.ops.kernels.adaptive_pooling`` runs; the kernel tables.
3. **The public pairs** (``adaptive_avg_pool1d``, ``adaptive_avg_pool2d``,
   ``adaptive_max_pool1d``, ``adaptive_max_pool2d``, each an
   :class:`~convprop.ops.contract.OpPair`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np

from convprop.ops import algorithm
from convprop.ops.contract import Grads, Needs, OpPair
from convprop.ops.geometry import adaptive_bounds, adaptive_output_size
from convprop.ops.kernels import adaptive_pooling as adaptive_kernels
from convprop.ops.kernels.pooling import MapBlocks
from convprop.ops.pooling import (
    WHOLE,
    PoolPlan,
    as_maps,
    blocks_of_maps,
    check_input,
    max_pool_blocks,
    pick,
    torch_argmax,
)

Index = tuple[Any, ...]


# --------------------------------------------------------------------------------------------
# 1. The reference implementation: the windows sliced out one output at a time.
# --------------------------------------------------------------------------------------------
def _adaptive_windows(
    in_size: Sequence[int], out_size: Sequence[int]
) -> Iterator[tuple[Index, Index]]:
    """Each output position and its window, [floor(i L / O), ceil((i + 1) L / O)) per axis,
    as indices into (maps, *out) and (maps, *in) arrays."""
    bounds = [adaptive_bounds(length, o) for length, o in zip(in_size, out_size, strict=True)]
    for position in np.ndindex(*out_size):
        window = tuple(
            slice(int(start[i]), int(end[i]))
            for (start, end), i in zip(bounds, position, strict=True)
        )
        yield (slice(None), *position), (slice(None), *window)


def reference_adaptive_avg_pool(maps: np.ndarray, out_size: tuple[int, ...]) -> np.ndarray:
    """y[i] = mean(x[floor(i L / O) : ceil((i + 1) L / O)]) per axis, one output at a time."""
    out = np.empty((maps.shape[0], *out_size), dtype=maps.dtype)
    axes = tuple(range(1, maps.ndim))
    for output, window in _adaptive_windows(maps.shape[1:], out_size):
        out[output] = maps[window].mean(axis=axes)
    return out


def reference_adaptive_avg_pool_backward(
    grad_maps: np.ndarray, in_size: tuple[int, ...]
) -> np.ndarray:
    """dL/dx[window i] += dL/dy[i] / |window i|: each delta spread evenly over its window
    ("+=": neighbouring windows overlap when O does not divide L)."""
    grad = np.zeros((grad_maps.shape[0], *in_size), dtype=grad_maps.dtype)
    for output, window in _adaptive_windows(in_size, grad_maps.shape[1:]):
        size = int(np.prod([w.stop - w.start for w in window[1:]]))
        delta = grad_maps[output] / grad_maps.dtype.type(size)
        grad[window] += delta.reshape((-1,) + (1,) * len(in_size))
    return grad


def reference_adaptive_max_pool(
    maps: np.ndarray, out_size: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """y[i] = max over window i, pidx(i) its flat position h * W + w (PyTorch's argmax: the
    first maximum, or the last NaN), one output at a time."""
    in_size = maps.shape[1:]
    values = np.empty((maps.shape[0], *out_size), dtype=maps.dtype)
    indices = np.empty(values.shape, dtype=np.int64)
    for output, window in _adaptive_windows(in_size, out_size):
        samples = maps[window]
        flat = samples.reshape(maps.shape[0], -1)
        values[output] = flat.max(axis=1)
        offsets = np.unravel_index(torch_argmax(flat, values[output], True), samples.shape[1:])
        where = [w.start + offset for w, offset in zip(window[1:], offsets, strict=True)]
        indices[output] = np.ravel_multi_index(tuple(where), in_size)
    return values, indices


def reference_adaptive_max_pool_backward(
    grad_maps: np.ndarray, indices: np.ndarray, in_size: tuple[int, ...]
) -> np.ndarray:
    """dL/dx[pidx(i)] += dL/dy[i] ("+=", ``np.add.at``: overlapping windows may share one)."""
    count = grad_maps.shape[0]
    grad = np.zeros((count, int(np.prod(in_size))), dtype=grad_maps.dtype)
    rows = np.arange(count)[:, np.newaxis]
    np.add.at(grad, (rows, indices.reshape(count, -1)), grad_maps.reshape(count, -1))
    return grad.reshape((count, *in_size))


# --------------------------------------------------------------------------------------------
# 2. The plan: which kernel runs, every threshold in one place.
# --------------------------------------------------------------------------------------------
# Adaptive max over windows that tile the input: up to this many samples per window by max
# pooling's tap loop (on ``pooling.max_pool_blocks``), larger windows (global pooling) by
# NumPy's max along each window's row of samples.
TILED_MAX_POOL_MAX_TAPS = 64

AdaptiveAvgKernel = Callable[[np.ndarray, tuple[int, ...]], np.ndarray]
AdaptiveMaxKernel = Callable[
    [np.ndarray, tuple[int, ...], MapBlocks], tuple[np.ndarray, np.ndarray]
]
AdaptiveMaxBackwardKernel = Callable[[np.ndarray, np.ndarray, tuple[int, ...]], np.ndarray]

ADAPTIVE_AVG_KERNELS: dict[str, AdaptiveAvgKernel] = {
    "reference": reference_adaptive_avg_pool,
    "matrices": adaptive_kernels.average_by_matrices,
}
ADAPTIVE_AVG_BACKWARD_KERNELS: dict[str, AdaptiveAvgKernel] = {
    "reference": reference_adaptive_avg_pool_backward,
    "matrices": adaptive_kernels.spread_by_matrices,
}
ADAPTIVE_MAX_KERNELS: dict[str, AdaptiveMaxKernel] = {
    "reference": lambda maps, out_size, blocks: reference_adaptive_max_pool(maps, out_size),
    "max_pool": adaptive_kernels.max_by_max_pool,
    "tile_rows": lambda maps, out_size, blocks: adaptive_kernels.max_over_tile_rows(maps, out_size),
    "separable": adaptive_kernels.max_separable,
}
ADAPTIVE_MAX_BACKWARD_KERNELS: dict[str, AdaptiveMaxBackwardKernel] = {
    "reference": reference_adaptive_max_pool_backward,
    "disjoint_groups": adaptive_kernels.route_by_disjoint_groups,
}


def applicable_adaptive_max_kernels(in_size: Sequence[int], out_size: Sequence[int]) -> list[str]:
    """The adaptive max kernels that can compute these sizes (max pooling's tap loop and the
    tile rows only where the windows tile the input)."""
    tiles = adaptive_kernels.tile_size(in_size, out_size) is not None
    return [name for name in ADAPTIVE_MAX_KERNELS if tiles or name not in ("max_pool", "tile_rows")]


def plan_adaptive_avg() -> str:
    """Adaptive mean pooling's kernel, forward and backward: one averaging matrix per axis."""
    return "reference" if algorithm.reference() else "matrices"


def plan_adaptive_max(in_size: Sequence[int], out_size: Sequence[int], maps: int) -> PoolPlan:
    """Adaptive max pooling's forward kernel for ``maps`` maps of ``in_size``."""
    if algorithm.reference():
        return PoolPlan("reference", WHOLE)
    tile = adaptive_kernels.tile_size(in_size, out_size)
    elements = math.prod(in_size)
    if tile is not None and math.prod(tile) <= TILED_MAX_POOL_MAX_TAPS:
        return PoolPlan("max_pool", max_pool_blocks(maps, elements))
    if tile is not None:
        return PoolPlan("tile_rows", WHOLE)
    return PoolPlan("separable", MapBlocks(tuple(blocks_of_maps(maps, elements))))


def plan_adaptive_max_backward() -> str:
    """Adaptive max pooling's backward kernel: one "+=" per group of disjoint windows."""
    return "reference" if algorithm.reference() else "disjoint_groups"


# --------------------------------------------------------------------------------------------
# 3. The public pairs: validation, then the plan's kernels.
# --------------------------------------------------------------------------------------------
class AdaptiveAvgSaved(NamedTuple):
    """The input shape and the pooled size: enough to rebuild the averaging matrices."""

    input_shape: tuple[int, ...]
    out_size: tuple[int, ...]


def _adaptive_avg_forward(
    func: str, spatial: int, x: np.ndarray, output_size: Any
) -> tuple[np.ndarray, AdaptiveAvgSaved]:
    check_input(func, spatial, x)
    out_size = adaptive_output_size(func, output_size, x.shape[-spatial:])
    kernel = pick(ADAPTIVE_AVG_KERNELS, "adaptive_avg_pool.forward", plan_adaptive_avg())
    out = kernel(as_maps(x, spatial), out_size)
    return out.reshape(x.shape[:-spatial] + out_size), AdaptiveAvgSaved(x.shape, out_size)


def adaptive_avg_pool_backward(
    grad_out: np.ndarray, saved: AdaptiveAvgSaved, needs: Needs
) -> Grads:
    """Gradient of adaptive mean pooling: dL/dx[l] += dL/dy[i] / |window i| over the windows
    containing l ("+=": windows overlap when L is not divisible by out). Axis by axis, this is
    the transposed averaging matrix applied to the gradient."""
    if not needs[0]:
        return (None,)
    input_shape, out_size = saved
    spatial = len(out_size)
    in_size = input_shape[-spatial:]
    kernel = pick(ADAPTIVE_AVG_BACKWARD_KERNELS, "adaptive_avg_pool.backward", plan_adaptive_avg())
    grad_input = kernel(grad_out.reshape((-1,) + out_size), in_size)
    return (grad_input.reshape(input_shape),)


def adaptive_avg_pool1d_forward(
    x: np.ndarray, output_size: int | Sequence[int | None]
) -> tuple[np.ndarray, AdaptiveAvgSaved]:
    """Adaptive mean pooling of (N, C, L) or (C, L) to ``output_size`` samples."""
    return _adaptive_avg_forward("adaptive_avg_pool1d", 1, x, output_size)


def adaptive_avg_pool2d_forward(
    x: np.ndarray, output_size: int | None | Sequence[int | None]
) -> tuple[np.ndarray, AdaptiveAvgSaved]:
    """Adaptive mean pooling of (N, C, H, W) or (C, H, W) to ``output_size``."""
    return _adaptive_avg_forward("adaptive_avg_pool2d", 2, x, output_size)


class AdaptiveMaxSaved(NamedTuple):
    """Flat argmax positions (int64, ``h * W + w``, shaped like the output), the input shape
    and its spatial size."""

    indices: np.ndarray
    input_shape: tuple[int, ...]
    in_size: tuple[int, ...]


def _adaptive_max_forward(
    func: str, spatial: int, x: np.ndarray, output_size: Any
) -> tuple[np.ndarray, AdaptiveMaxSaved]:
    check_input(func, spatial, x)
    out_size = adaptive_output_size(func, output_size, x.shape[-spatial:])
    maps = as_maps(x, spatial)
    in_size = tuple(maps.shape[1:])
    out_shape = x.shape[:-spatial] + out_size
    if 0 in out_size:  # an empty output: nothing to compute
        values = np.empty(out_shape, dtype=x.dtype)
        indices = np.empty(out_shape, dtype=np.int64)
    else:
        plan = plan_adaptive_max(in_size, out_size, maps.shape[0])
        values, indices = pick(ADAPTIVE_MAX_KERNELS, "adaptive_max_pool.forward", plan.kernel)(
            maps, out_size, plan.blocks
        )
    saved = AdaptiveMaxSaved(indices.reshape(out_shape), x.shape, in_size)
    return values.reshape(out_shape), saved


def adaptive_max_pool_backward(
    grad_out: np.ndarray, saved: AdaptiveMaxSaved, needs: Needs
) -> Grads:
    """Gradient of adaptive max pooling: dL/dx[pidx(i)] += dL/dy[i] ("+=": windows may
    overlap). The fast kernel adds a group of disjoint windows (i, i + g, i + 2g, ...) at a
    time, whose argmax positions are distinct."""
    if not needs[0]:
        return (None,)
    indices, input_shape, in_size = saved
    out_size = indices.shape[indices.ndim - len(in_size) :]
    kernel = pick(
        ADAPTIVE_MAX_BACKWARD_KERNELS, "adaptive_max_pool.backward", plan_adaptive_max_backward()
    )
    grad_maps = grad_out.reshape((-1,) + out_size)
    grad_input = kernel(grad_maps, indices.reshape(grad_maps.shape), in_size)
    return (grad_input.reshape(input_shape),)


def adaptive_max_pool1d_forward(
    x: np.ndarray, output_size: int | Sequence[int | None]
) -> tuple[np.ndarray, AdaptiveMaxSaved]:
    """Adaptive max pooling of (N, C, L) or (C, L); ``saved.indices`` are the argmax positions."""
    return _adaptive_max_forward("adaptive_max_pool1d", 1, x, output_size)


def adaptive_max_pool2d_forward(
    x: np.ndarray, output_size: int | None | Sequence[int | None]
) -> tuple[np.ndarray, AdaptiveMaxSaved]:
    """Adaptive max pooling of (N, C, H, W) or (C, H, W); ``saved.indices`` = flat argmax."""
    return _adaptive_max_forward("adaptive_max_pool2d", 2, x, output_size)


adaptive_avg_pool1d = OpPair(
    "adaptive_avg_pool1d", adaptive_avg_pool1d_forward, adaptive_avg_pool_backward
)
adaptive_avg_pool2d = OpPair(
    "adaptive_avg_pool2d", adaptive_avg_pool2d_forward, adaptive_avg_pool_backward
)
adaptive_max_pool1d = OpPair(
    "adaptive_max_pool1d", adaptive_max_pool1d_forward, adaptive_max_pool_backward
)
adaptive_max_pool2d = OpPair(
    "adaptive_max_pool2d", adaptive_max_pool2d_forward, adaptive_max_pool_backward
)
