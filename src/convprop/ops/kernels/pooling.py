"""Max and mean pooling one kernel tap at a time: the fast kernels of ``convprop.ops.pooling``.

Tap (i, j) of every window at once is the strided slice ``padded[..., i D::S, j D::S]`` of the
padded maps (``PoolGeometry.tap_slice``). The forward reduces over the taps in window order,
one slice at a time (max pooling keeping the tap number of each window's argmax, the notes'
pidx); the backward sends each output gradient back through the same slices with one slice
"+=" per tap, the adjoint of reading them, and then removes the padding region. No loop runs
over batch, channels or pixels.

Every (sample, channel) map is pooled alike, so the kernels take the maps stacked along one
axis, (maps, *spatial), and work on the blocks of maps the plan gives them
(``convprop.ops.pooling.plan_max_pool`` ...): a block's padded input, running maximum (or
sum) and argmax stay in the CPU cache across the tap loop instead of streaming through memory
once per tap (BENCHMARKS.md, "Kernels: pooling"). With ``parallel`` the blocks run on every
core (``parallel.map_blocks``, :class:`MapBlocks`); each block writes only its own maps, so
where they run never changes the bits. (Mean pooling's loops ignore ``parallel``.)

* :func:`max_pool_taps`: running maximum and argmax tap, with PyTorch's rules for NaN and
  windows of -inf, and PyTorch's flat indices;
* :func:`route_to_argmax`: dL/dx[pidx] += dL/dy;
* :func:`mean_over_taps` (:func:`sum_over_taps` divided by :func:`window_divisor`, PyTorch's
  divisors) and :func:`spread_over_taps`: dL/dx[window] += dL/dy / divisor.

The backward kernels take two switches the plan sets from the geometry: ``accumulate``
("+=" where windows overlap; plain assignment where no sample is in two windows) and
``zero_fill`` (off where the windows tile the input, so every entry is written anyway).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from convprop.ops.geometry import PoolGeometry
from convprop.ops.kernels.parallel import map_blocks
from convprop.ops.windows import pad_spatial, window_view

T = TypeVar("T")
Tap = tuple[int, ...]


@dataclass(frozen=True)
class MapBlocks:
    """The blocks of maps a kernel works on, one after another or (``parallel``) on every
    core."""

    slices: tuple[slice, ...]
    parallel: bool = False


def taps(kernel_size: Sequence[int]) -> list[Tap]:
    """Kernel taps in window (row-major) order, the order in which ties are broken."""
    return list(itertools.product(*(range(k) for k in kernel_size)))


def tap_dtype(tap_count: int) -> np.dtype:
    """The smallest integer type for a window's tap numbers (less memory for the argmax)."""
    return np.dtype(np.uint8) if tap_count <= 256 else np.dtype(np.int32)


def run_blocks(work: Callable[[slice], T], blocks: MapBlocks) -> list[T]:
    """``[work(block) for block in blocks]``, on every core (``map_blocks``) if they are
    ``parallel``."""
    if blocks.parallel and len(blocks.slices) > 1:
        return map_blocks(work, blocks.slices, blas=False)
    return [work(block) for block in blocks.slices]


# --------------------------------------------------------------------------- max pooling
def max_over_taps(
    windows: np.ndarray, window_taps: list[Tap], best: np.ndarray, argmax_tap: np.ndarray
) -> None:
    """Running maximum over the taps in window order, and the tap it came from.

    A strict ">" keeps the first of equal maxima, as PyTorch does. Tap numbers only grow, so
    "argmax = t where larger" is max(argmax, t * larger): branch-free, unlike a masked copy
    (slow on random masks).
    """
    best[...] = windows[(Ellipsis,) + window_taps[0]]
    argmax_tap.fill(0)
    larger = np.empty(best.shape, dtype=bool)
    tap_if_larger = np.empty(best.shape, dtype=argmax_tap.dtype)
    for tap_number, tap in enumerate(window_taps[1:], start=1):
        candidate = windows[(Ellipsis,) + tap]
        np.greater(candidate, best, out=larger)
        np.multiply(larger, argmax_tap.dtype.type(tap_number), out=tap_if_larger)
        np.maximum(argmax_tap, tap_if_larger, out=argmax_tap)
        np.maximum(best, candidate, out=best)


def first_tap_in_input(geometry: PoolGeometry) -> list[np.ndarray]:
    """Per axis, the first tap k of each window with ``start + k D >= 0`` (start = oS - P);
    it may lie past the kernel or the input when dilation jumps over the whole input."""
    return [
        np.maximum(0, -(-(p - np.arange(o, dtype=np.int64) * s) // d))
        for o, s, p, d in zip(
            geometry.out_size, geometry.stride, geometry.padding, geometry.dilation, strict=True
        )
    ]


def fix_argmax(
    windows: np.ndarray,
    window_taps: list[Tap],
    best: np.ndarray,
    argmax_tap: np.ndarray,
    geometry: PoolGeometry,
) -> np.ndarray:
    """Exact argmax for NaN and all -inf windows; returns the mask of all -inf windows.

    ">" cannot see NaNs (PyTorch selects the last NaN of a window) nor a window whose valid
    samples are all -inf (PyTorch selects its first valid sample, never the padding).
    """
    all_minus_inf: np.ndarray = best == -np.inf
    if all_minus_inf.any():
        first = first_tap_in_input(geometry)
        grids = np.meshgrid(*first, indexing="ij")
        starts = np.meshgrid(
            *(
                np.arange(o) * s - p
                for o, s, p in zip(
                    geometry.out_size, geometry.stride, geometry.padding, strict=True
                )
            ),
            indexing="ij",
        )
        has_sample = np.logical_and.reduce(
            [
                (k < size) & (start + k * d < length)
                for k, size, start, d, length in zip(
                    grids, geometry.kernel, starts, geometry.dilation, geometry.in_size, strict=True
                )
            ]
        )
        # A window that dilation makes jump over the whole input has no sample at all: its
        # argmax stays on a padding tap, so its gradient is dropped with the padding.
        first_tap = np.ravel_multi_index(
            tuple(np.where(has_sample, k, 0) for k in grids), geometry.kernel
        ).astype(argmax_tap.dtype)
        np.copyto(
            argmax_tap,
            np.broadcast_to(first_tap, argmax_tap.shape),
            where=all_minus_inf & has_sample,
        )
    for tap_number, tap in enumerate(window_taps):
        np.copyto(argmax_tap, tap_number, where=np.isnan(windows[(Ellipsis,) + tap]))
    return all_minus_inf


def flat_indices(
    argmax_tap: np.ndarray, all_minus_inf: np.ndarray | None, geometry: PoolGeometry
) -> np.ndarray:
    """pidx as PyTorch returns it: the flat position ``h * W + w`` in the unpadded input."""
    in_size, out_size = geometry.in_size, geometry.out_size
    plane_strides = [int(np.prod(in_size[i + 1 :], dtype=np.int64)) for i in range(len(in_size))]

    def along_axis(values: np.ndarray, axis: int) -> np.ndarray:
        return values.reshape((-1,) + (1,) * (len(out_size) - 1 - axis))

    # position = (window start - padding) + tap * dilation, separately on every axis.
    window_start = sum(
        along_axis((np.arange(o, dtype=np.int64) * s - p) * step, axis)
        for axis, (o, s, p, step) in enumerate(
            zip(out_size, geometry.stride, geometry.padding, plane_strides, strict=True)
        )
    )
    tap_offset = np.array(
        [
            sum(
                k * d * step
                for k, d, step in zip(tap, geometry.dilation, plane_strides, strict=True)
            )
            for tap in taps(geometry.kernel)
        ],
        dtype=np.int64,
    )
    indices = window_start + np.take(tap_offset, argmax_tap)
    if all_minus_inf is not None and all_minus_inf.any():
        # PyTorch's index for a window without a larger value: its first tap at or after the
        # input's start, even where dilation puts that beyond the input.
        first_position = window_start + sum(
            along_axis(k * d * step, axis)
            for axis, (k, d, step) in enumerate(
                zip(first_tap_in_input(geometry), geometry.dilation, plane_strides, strict=True)
            )
        )
        np.copyto(indices, np.broadcast_to(first_position, indices.shape), where=all_minus_inf)
    return indices


def max_pool_taps(
    maps: np.ndarray,
    geometry: PoolGeometry,
    blocks: MapBlocks,
    return_indices: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Max pooling of (maps, *spatial): the maxima, each window's argmax tap and, with
    ``return_indices``, PyTorch's flat indices (int64), a block of maps at a time."""
    window_taps = taps(geometry.kernel)
    best = np.empty((maps.shape[0],) + geometry.out_size, dtype=maps.dtype)
    argmax_tap = np.empty(best.shape, dtype=tap_dtype(len(window_taps)))

    def pool_block(block: slice) -> np.ndarray | None:
        padded = pad_spatial(maps[block], geometry.pads, value=-np.inf)
        windows = window_view(
            padded, geometry.kernel, geometry.stride, geometry.dilation, geometry.out_size
        )
        max_over_taps(windows, window_taps, best[block], argmax_tap[block])
        # NaNs and all -inf windows both leave a non-finite sum, so the exact fix-up runs
        # only when it can matter.
        with np.errstate(invalid="ignore", over="ignore"):
            suspicious = best[block].size and not np.isfinite(best[block].sum())
        if not suspicious:
            return None
        return fix_argmax(windows, window_taps, best[block], argmax_tap[block], geometry)

    all_minus_inf = None
    fixed = run_blocks(pool_block, blocks)
    for block, block_minus_inf in zip(blocks.slices, fixed, strict=True):
        if block_minus_inf is not None:
            if all_minus_inf is None:
                all_minus_inf = np.zeros(best.shape, dtype=bool)
            all_minus_inf[block] = block_minus_inf
    indices = flat_indices(argmax_tap, all_minus_inf, geometry) if return_indices else None
    return best, argmax_tap, indices


def route_to_argmax(
    grad_maps: np.ndarray,
    argmax_tap: np.ndarray,
    geometry: PoolGeometry,
    blocks: MapBlocks,
    *,
    accumulate: bool,
    zero_fill: bool,
) -> np.ndarray:
    """dL/dx[pidx] += dL/dy, per tap: the outputs whose argmax is tap t add their gradient
    into the strided slice of tap t (slice "+=", the adjoint of reading it); the padding
    region is then removed (an argmax is never there, but a window without samples)."""
    window_taps = taps(geometry.kernel)
    allocate = np.zeros if zero_fill else np.empty
    grad_input = allocate((argmax_tap.shape[0],) + geometry.in_size, dtype=grad_maps.dtype)
    zero = grad_maps.dtype.type(0)

    def route_block(block: slice) -> None:
        grad_block, tap_block = grad_maps[block], argmax_tap[block]
        target = grad_input[block]
        if geometry.is_padded:
            target = np.zeros(grad_block.shape[:1] + geometry.padded_size, dtype=grad_maps.dtype)
        selected = np.empty(grad_block.shape, dtype=bool)
        routed = np.empty(grad_block.shape, dtype=grad_maps.dtype)
        # grad * [argmax is tap t] is branch-free and exact for finite gradients; an inf or
        # NaN gradient times 0 would leak into non-argmax inputs, so then select with where.
        with np.errstate(invalid="ignore", over="ignore"):
            finite = bool(np.isfinite(grad_block.sum()))
        for tap_number, tap in enumerate(window_taps):
            np.equal(tap_block, tap_number, out=selected)
            tap_target = target[geometry.tap_slice(tap)]
            if not finite:
                routed[...] = np.where(selected, grad_block, zero)
            elif accumulate:
                np.multiply(grad_block, selected, out=routed)
            else:
                np.multiply(grad_block, selected, out=tap_target)
                continue
            if accumulate:
                tap_target += routed
            else:
                tap_target[...] = routed
        if geometry.is_padded:
            grad_input[block] = target[geometry.inner()]

    run_blocks(route_block, blocks)
    return grad_input


# --------------------------------------------------------------------------- mean pooling
def window_divisor(geometry: PoolGeometry, count_include_pad: bool, dtype: np.dtype) -> np.ndarray:
    """Number of samples each window averages over, PyTorch's rule, as an (out_1, ..., out_d)
    array: a product of per-axis counts."""
    divisor = np.ones((), dtype=dtype)
    for length, o, k, s, p in zip(
        geometry.in_size,
        geometry.out_size,
        geometry.kernel,
        geometry.stride,
        geometry.padding,
        strict=True,
    ):
        start = np.arange(o) * s - p
        if count_include_pad:
            # The zero padding counts; the ceil-mode overhang beyond it does not.
            count = np.minimum(start + k, length + p) - start
        else:
            count = np.minimum(start + k, length) - np.maximum(start, 0)
        divisor = np.multiply.outer(divisor, count.astype(dtype))
    return divisor


def sum_over_taps(
    maps: np.ndarray,
    geometry: PoolGeometry,
    divisor: np.ndarray | float,
    blocks: MapBlocks,
) -> np.ndarray:
    """Mean pooling of (maps, *spatial): window sums accumulated tap by tap in window order
    (the zero padding adds exact zeros), divided by ``divisor``, a block of maps at a time."""
    window_taps = taps(geometry.kernel)
    total = np.empty((maps.shape[0],) + geometry.out_size, dtype=maps.dtype)
    for block in blocks.slices:
        padded = pad_spatial(maps[block], geometry.pads, value=0.0)
        windows = window_view(
            padded, geometry.kernel, geometry.stride, geometry.dilation, geometry.out_size
        )
        block_total = total[block]
        block_total[...] = windows[(Ellipsis,) + window_taps[0]]
        for tap in window_taps[1:]:
            block_total += windows[(Ellipsis,) + tap]
        block_total /= divisor
    return total


def mean_over_taps(
    maps: np.ndarray,
    geometry: PoolGeometry,
    blocks: MapBlocks,
    count_include_pad: bool,
    divisor_override: int | None,
) -> tuple[np.ndarray, np.ndarray | float]:
    """Mean pooling of (maps, *spatial) and its divisor: ``divisor_override``, else PyTorch's
    per-window count (``window_divisor``)."""
    divisor: np.ndarray | float
    if divisor_override is not None:
        divisor = maps.dtype.type(divisor_override)
    else:
        divisor = window_divisor(geometry, count_include_pad, maps.dtype)
    return sum_over_taps(maps, geometry, divisor, blocks), divisor


def spread_over_taps(
    grad_maps: np.ndarray,
    divisor: np.ndarray | float,
    geometry: PoolGeometry,
    blocks: MapBlocks,
    *,
    accumulate: bool,
    zero_fill: bool,
) -> np.ndarray:
    """dL/dx[window] += dL/dy / divisor: one strided slice "+=" per tap (plain assignment
    where no sample is in two windows), then the padding region is removed."""
    window_taps = taps(geometry.kernel)
    allocate = np.zeros if zero_fill else np.empty
    grad_input = allocate((grad_maps.shape[0],) + geometry.in_size, dtype=grad_maps.dtype)
    for block in blocks.slices:
        share = grad_maps[block] / divisor
        target = grad_input[block]
        if geometry.is_padded:
            target = np.zeros(share.shape[:1] + geometry.padded_size, dtype=grad_maps.dtype)
        for tap in window_taps:
            tap_target = target[geometry.tap_slice(tap)]
            if accumulate:
                tap_target += share
            else:
                tap_target[...] = share
        if geometry.is_padded:
            grad_input[block] = target[geometry.inner()]
    return grad_input
