"""Adaptive mean and max pooling: the fast kernels of ``convprop.ops.pooling``.

Adaptive pooling of L samples to O gives window i the samples [floor(i L / O),
ceil((i + 1) L / O)) (``geometry.adaptive_bounds``); the kernels take the maps stacked along
one axis, (maps, *spatial), like those of ``kernels.pooling``.

* Mean: the mean over a rectangle is the mean over its rows of the means over its columns, so
  the pooling is one averaging matrix per axis (A[i, l] = 1 / |window i| on window i), each
  applied as one matrix product (:func:`average_by_matrices`); the backward applies the
  transposed matrices (:func:`spread_by_matrices`).
* Max, three ways: windows that tile the input as max pooling with kernel = stride = L / O
  (:func:`max_by_max_pool`), or, for large tiles, along rows of each window's samples
  (:func:`max_over_tile_rows`); any windows one axis at a time, every tap one gather
  (:func:`max_separable`). The backward adds each gradient at its argmax
  (:func:`route_by_disjoint_groups`).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from convprop.ops.geometry import adaptive_bounds, pool_geometry
from convprop.ops.kernels.parallel import matmul_along_axis
from convprop.ops.kernels.pooling import MapBlocks, max_pool_taps


# --------------------------------------------------------------------------- mean
def averaging_matrix(length: int, out: int, dtype: np.dtype) -> np.ndarray:
    """A (out, L) with A[i, l] = 1 / |window i| on window i: 1-D adaptive mean is A @ x."""
    start, end = adaptive_bounds(length, out)
    positions = np.arange(length)
    inside = (positions >= start[:, None]) & (positions < end[:, None])
    matrix: np.ndarray = (inside / (end - start)[:, None]).astype(dtype)
    return matrix


def average_by_matrices(maps: np.ndarray, out_size: Sequence[int]) -> np.ndarray:
    """Adaptive mean of (maps, *spatial): the averaging matrix of the last axis, then of the
    one before (an axis already of the output's size is left as it is)."""
    result = maps
    for axis in range(-1, -len(out_size) - 1, -1):
        if out_size[axis] != result.shape[axis]:
            averaging = averaging_matrix(result.shape[axis], out_size[axis], maps.dtype)
            result = matmul_along_axis(result, averaging, axis)
    return result


def spread_by_matrices(grad_maps: np.ndarray, in_size: Sequence[int]) -> np.ndarray:
    """dL/dx[l] += dL/dy[i] / |window i| over the windows containing l: axis by axis, the
    transposed averaging matrix applied to the gradient."""
    spatial = len(in_size)
    grad = grad_maps
    for axis in range(-spatial, 0):
        length = in_size[axis]
        if grad.shape[axis] == 1 and length > 1:
            # Global pooling along this axis: every sample gets grad / L (a repeat is much
            # cheaper than the rank-1 product with the averaging matrix).
            grad = np.repeat(grad / grad.dtype.type(length), length, axis=axis)
        elif grad.shape[axis] != length:
            averaging = averaging_matrix(length, grad.shape[axis], grad.dtype)
            grad = matmul_along_axis(grad, averaging.T, axis)
    return np.ascontiguousarray(grad)


# --------------------------------------------------------------------------- max
def tile_size(in_size: Sequence[int], out_size: Sequence[int]) -> tuple[int, ...] | None:
    """L / O per axis where the windows tile the input (O divides L), else None."""
    if all(o and length % o == 0 for length, o in zip(in_size, out_size, strict=True)):
        return tuple(length // o for length, o in zip(in_size, out_size, strict=True))
    return None


def max_by_max_pool(
    maps: np.ndarray, out_size: tuple[int, ...], blocks: MapBlocks
) -> tuple[np.ndarray, np.ndarray]:
    """Windows that tile the input: max pooling with kernel = stride = L / O, its tap loop."""
    in_size = maps.shape[1:]
    kernel = tile_size(in_size, out_size)
    if kernel is None:
        raise ValueError(f"max_by_max_pool: windows of {out_size} do not tile {in_size}")
    geometry = pool_geometry("adaptive_max_pool", in_size, kernel, kernel, 0, 1, False)
    values, _, indices = max_pool_taps(maps, geometry, blocks, True)
    assert indices is not None  # asked for with return_indices=True
    return values, indices


def max_over_tile_rows(
    maps: np.ndarray, out_size: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Max and flat argmax over large windows that tile the input (e.g. global pooling).

    Each window's samples are laid out as one contiguous row in window (row-major) order
    (a view for global pooling), so NumPy's max/argmax run along rows; argmax returns the
    first maximum as PyTorch does. For rows holding a NaN PyTorch selects the last NaN.
    """
    count = maps.shape[0]
    kernel = tile_size(maps.shape[1:], out_size)
    if kernel is None:
        raise ValueError(f"max_over_tile_rows: windows of {out_size} do not tile {maps.shape[1:]}")
    rows: np.ndarray
    if len(kernel) == 1:
        rows = maps.reshape(count, out_size[0], kernel[0])
    else:
        tiles = maps.reshape(count, out_size[0], kernel[0], out_size[1], kernel[1])
        rows = tiles.transpose(0, 1, 3, 2, 4).reshape(count, out_size[0], out_size[1], -1)
    values = rows.max(axis=-1)
    tap = rows.argmax(axis=-1)
    has_nan = np.isnan(values)
    if has_nan.any():
        last = rows.shape[-1] - 1
        tap[has_nan] = last - np.argmax(np.isnan(rows[has_nan][:, ::-1]), axis=-1)
    # tap -> position: (window start + tap offset) on every axis, flattened as h * W + w.
    if len(kernel) == 1:
        return values, np.arange(out_size[0]) * kernel[0] + tap
    row, column = np.divmod(tap, kernel[1])
    width = out_size[1] * kernel[1]
    row += (np.arange(out_size[0]) * kernel[0])[:, None]
    column += np.arange(out_size[1]) * kernel[1]
    return values, row * width + column


def max_along(x: np.ndarray, out: int, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Max over the adaptive windows along ``axis`` (positive), and where along it it was.

    Windows differ in length; tap k of window i reads ``min(start_i + k, end_i - 1)``:
    re-reading a window's last sample never changes its maximum (">" is strict, a repeated NaN
    is the same position), so every tap is one gather along the axis, vectorised over all
    windows.
    """
    best, position = _max_along_pass(x, out, axis, nan_aware=False)
    with np.errstate(invalid="ignore", over="ignore"):
        has_nan = bool(np.isnan(best.sum()))
    if has_nan:
        best, position = _max_along_pass(x, out, axis, nan_aware=True)
    return best, position


def _max_along_pass(
    x: np.ndarray, out: int, axis: int, nan_aware: bool
) -> tuple[np.ndarray, np.ndarray]:
    start, end = adaptive_bounds(x.shape[axis], out)
    along = (1,) * axis + (-1,) + (1,) * (x.ndim - axis - 1)  # per window, broadcast
    best = np.take(x, start, axis=axis)
    position = np.broadcast_to(start.astype(np.int32).reshape(along), best.shape).copy()
    update = np.empty(best.shape, dtype=bool)
    sample_if_update = np.empty(best.shape, dtype=np.int32)
    for k in range(1, int((end - start).max())):
        sample = np.minimum(start + k, end - 1)
        candidate = np.take(x, sample, axis=axis)
        # PyTorch's rule: take val if val > max or val is NaN (so the last NaN wins; checked
        # only when the cheap pass met a NaN). Samples only move forward, so "position =
        # sample where update" is a branch-free maximum; the value so chosen is exactly
        # np.maximum's (which propagates NaN).
        np.greater(candidate, best, out=update)
        if nan_aware:
            update |= np.isnan(candidate)
        np.multiply(update, sample.astype(np.int32).reshape(along), out=sample_if_update)
        np.maximum(position, sample_if_update, out=position)
        np.maximum(best, candidate, out=best)
    return best, position


def max_separable(
    maps: np.ndarray, out_size: tuple[int, ...], blocks: MapBlocks
) -> tuple[np.ndarray, np.ndarray]:
    """Adaptive max of (maps, *spatial) one axis at a time, last axis first.

    The maximum over a rectangle is the maximum over rows of the row maxima, and PyTorch's
    row-major scan (first maximum, or last NaN) picks the same element as "first row with the
    largest row maximum, and that row's first maximum" (resp. last row with a NaN, its last
    NaN). Each block of maps is transposed first (cheap, in the cache) so that a tap of the
    column windows gathers whole rows instead of single samples (``parallel`` is ignored).
    """
    if len(out_size) == 1:
        values, positions = max_along(maps, out_size[0], 1)
        return values, positions.astype(np.int64)
    values = np.empty((maps.shape[0],) + out_size, dtype=maps.dtype)
    indices = np.empty(values.shape, dtype=np.int64)
    width = np.int64(maps.shape[-1])
    for block in blocks.slices:
        columns = np.ascontiguousarray(maps[block].transpose(0, 2, 1))  # (maps, W, H)
        row_max, column = max_along(columns, out_size[1], 1)  # (maps, ow, H)
        row_max = np.ascontiguousarray(row_max.transpose(0, 2, 1))  # (maps, H, ow)
        column = column.transpose(0, 2, 1)
        values[block], row = max_along(row_max, out_size[0], 1)  # (maps, oh, ow)
        indices[block] = row * width + np.take_along_axis(column, row, axis=1)
    return values, indices


def disjoint_step(length: int, out: int) -> int:
    """Smallest g with window i + g starting at or after the end of window i, for every i
    (1 when the windows tile the axis, 2 when they overlap by one, more when out > L)."""
    start, end = adaptive_bounds(length, out)
    for step in range(1, out):
        if np.all(start[step:] >= end[:-step]):
            return step
    return max(out, 1)


def route_by_disjoint_groups(
    grad_maps: np.ndarray, indices: np.ndarray, in_size: Sequence[int]
) -> np.ndarray:
    """dL/dx[pidx(i)] += dL/dy[i] for (maps, *out) gradients and flat argmax indices.

    Windows i, i + g, i + 2g, ... are disjoint, so within such a group every argmax position
    is distinct and the group's gradients go in with one fancy-index "+="; the g^d groups
    (1 when the windows tile the input, typically 2 per axis otherwise) accumulate.
    """
    count = grad_maps.shape[0]
    out_size = grad_maps.shape[1:]
    steps = [disjoint_step(length, o) for length, o in zip(in_size, out_size, strict=True)]
    grad = np.zeros((count, int(np.prod(in_size, dtype=np.int64))), dtype=grad_maps.dtype)
    rows = np.arange(count)[:, None]
    for offsets in itertools.product(*(range(step) for step in steps)):
        group = (slice(None),) + tuple(
            slice(o, None, step) for o, step in zip(offsets, steps, strict=True)
        )
        grad[rows, indices[group].reshape(count, -1)] += grad_maps[group].reshape(count, -1)
    return grad.reshape((count, *in_size))
