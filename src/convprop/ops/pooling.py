"""Max and mean pooling, and max unpooling (1-D and 2-D): the notes' math, and one plan.

Deck 004 ("Max pooling", "Mean pooling", "Max Pooling with Downsampling") scans every map j
separately with a K x K pooling window moved by ``stride`` and keeps track of where each
maximum came from::

    pidx(l, j, m, n) = maxidx(Y(l-1, j, x:x+K-1, y:y+K-1))      # x = m*stride, y = n*stride
    Y(l, j, m, n)    = Y(l-1, j, pidx(l, j, m, n))               # max pooling
    Y(l, j, m, n)    = mean(Y(l-1, j, x:x+K-1, y:y+K-1))         # mean pooling

and routes the derivatives back ("Derivative of max pooling" / "of mean pooling")::

    dY(l-1, j, pidx(l, j, m, n)) += dY(l, j, m, n)               # only the argmax gets it
    dY(l-1, j, x+i, y+j')        += dY(l, j, m, n) / K^2         # spread evenly over the pool

"+=" because an input sample can sit in several overlapping windows (stride < K). Max
unpooling puts each value back at the index its maximum came from. (Adaptive pooling, whose
windows follow from the output size: ``convprop.ops.adaptive_pooling``.)

PyTorch's conventions, reproduced exactly:

* stride defaults to kernel_size; padding is implicit (-inf for max, 0 for mean) and at most
  half the kernel (``padding <= kernel_size // 2``); dilation spaces the taps (max pooling);
* output size ``floor((L + 2P - D (K - 1) - 1) / S) + 1`` (``ceil`` with ``ceil_mode``); in
  ceil mode the last window must start inside the input or the left padding: it is dropped when
  ``(out - 1) S >= L + P`` (``geometry.pool_geometry``);
* max: ties go to the first maximum in window (row-major) order; a NaN is the maximum, and with
  several NaNs the last one is selected; a window whose valid samples are all -inf selects its
  first valid sample; ``return_indices`` gives ``h * W + w`` in the unpadded input (int64);
* mean: divisor ``(min(start + K, L + P) - start)`` per axis with ``count_include_pad`` (the
  zero padding counts, the ceil-mode overhang past the padding does not), the number of valid
  samples without it, or ``divisor_override``.

This module holds three things, in this order:

1. **The reference implementation** (``reference_max_pool``, ``reference_avg_pool`` and their
   backwards, ``reference_max_unpool``): the formulas above as the deck writes them, on window
   views, with ``np.add.at`` for the "+=". ``convprop.ops.use_algorithm("reference")`` runs
   every pooling op through them.
2. **The plan** (``plan_max_pool``, ``plan_max_pool_backward``, ``plan_avg_pool``): which fast
   kernel of ``convprop.ops.kernels.pooling`` runs, on which blocks of maps, every threshold
   in one place; the kernel tables the tests iterate over.
3. **The public pairs** (``max_pool1d``, ``max_pool2d``, ``avg_pool1d``, ``avg_pool2d``,
   ``max_unpool1d``, ``max_unpool2d``, each an :class:`~convprop.ops.contract.OpPair`):
   validation, then the plan's kernels.

Every (sample, channel) map is pooled alike, so the kernels take the maps stacked along one
axis: (maps, *spatial), a view of (N, C, *spatial) or unbatched (C, *spatial) input.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, NamedTuple, TypeVar

import numpy as np

from convprop.ops import algorithm
from convprop.ops.checks import check_float, check_ndim
from convprop.ops.contract import Grads, Needs, OpPair
from convprop.ops.geometry import IntOrTuple, PoolGeometry, pool_geometry, unpool_output_size
from convprop.ops.kernels import pooling as window_kernels
from convprop.ops.kernels.parallel import worker_count
from convprop.ops.kernels.pooling import MapBlocks
from convprop.ops.windows import pad_spatial, window_view

K = TypeVar("K")
_LAYOUTS = {1: "N, C, L or C, L", 2: "N, C, H, W or C, H, W"}


# --------------------------------------------------------------------------------------------
# 1. The reference implementation: the notes' formulas, literally.
# --------------------------------------------------------------------------------------------
def _window_samples(padded: np.ndarray, geometry: PoolGeometry) -> np.ndarray:
    """(..., *out, taps): the samples of every window in window (row-major) order, from the
    window view ``view[..., o, k] = padded[..., o S + k D]``."""
    windows = window_view(
        padded, geometry.kernel, geometry.stride, geometry.dilation, geometry.out_size
    )
    taps = int(np.prod(geometry.kernel))
    return windows.reshape(windows.shape[: windows.ndim - len(geometry.kernel)] + (taps,))


def torch_argmax(samples: np.ndarray, maxima: np.ndarray, candidates: Any) -> np.ndarray:
    """PyTorch's argmax over the last axis (max and adaptive max pooling): it scans the
    candidate samples in order from -inf and takes one larger than the maximum so far, or NaN.
    So: the last NaN if there is one, else the first candidate equal to the maximum (for a
    window of -inf, its first candidate)."""
    is_nan = np.isnan(samples)
    last_nan = samples.shape[-1] - 1 - np.argmax(is_nan[..., ::-1], axis=-1)
    first_max = np.argmax(candidates & (samples == maxima[..., np.newaxis]), axis=-1)
    argmax: np.ndarray = np.where(is_nan.any(axis=-1), last_nan, first_max)
    return argmax


def _along_output_axis(values: np.ndarray, axis: int, ndim: int) -> np.ndarray:
    """A per-window vector of spatial axis ``axis``, shaped to broadcast against (maps, ...)."""
    return values.reshape((1,) * (1 + axis) + (-1,) + (1,) * (ndim - 2 - axis))


def _padded_argmax_positions(argmax_tap: np.ndarray, geometry: PoolGeometry) -> list[np.ndarray]:
    """Per axis, the padded position o S + k D that tap k = pidx of window o reads."""
    taps = np.unravel_index(argmax_tap, geometry.kernel)
    return [
        _along_output_axis(np.arange(o) * s, axis, argmax_tap.ndim) + k * d
        for axis, (k, o, s, d) in enumerate(
            zip(taps, geometry.out_size, geometry.stride, geometry.dilation, strict=True)
        )
    ]


def reference_max_pool(
    maps: np.ndarray, geometry: PoolGeometry, return_indices: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Deck 004: Y(m, n) = max over the window, pidx(m, n) = maxidx(window).

    The window view of the input padded with -inf; the maximum over each window's samples
    (NaN propagates); pidx as PyTorch picks it (``torch_argmax``), its scan starting at the
    first tap past the left padding. Returns Y, pidx as a tap number, and with
    ``return_indices`` pidx as PyTorch's flat position h * W + w in the unpadded input.
    """
    samples = _window_samples(pad_spatial(maps, geometry.pads, value=-np.inf), geometry)
    maxima = samples.max(axis=-1)
    past_left_padding = np.ones(geometry.padded_size, dtype=bool)
    for axis, (left, _) in enumerate(geometry.pads):
        past_left_padding[(slice(None),) * axis + (slice(0, left),)] = False
    argmax_tap = torch_argmax(samples, maxima, _window_samples(past_left_padding, geometry))
    indices = None
    if return_indices:
        positions = _padded_argmax_positions(argmax_tap, geometry)
        indices = np.zeros(argmax_tap.shape, dtype=np.int64)
        for axis, (position, (left, _)) in enumerate(zip(positions, geometry.pads, strict=True)):
            indices += (position - left) * int(np.prod(geometry.in_size[axis + 1 :]))
    return maxima, argmax_tap, indices


def reference_max_pool_backward(
    grad_maps: np.ndarray, argmax_tap: np.ndarray, geometry: PoolGeometry
) -> np.ndarray:
    """Deck 004: dY(l-1)[pidx(m, n)] += dY(l)[m, n]; every other input gets 0.

    Each delta is added ("+=", ``np.add.at``: overlapping windows may share an argmax) at its
    window's argmax in the padded input; then the padding region is removed.
    """
    grad_padded = np.zeros((grad_maps.shape[0], *geometry.padded_size), dtype=grad_maps.dtype)
    maps = np.arange(grad_maps.shape[0]).reshape((-1,) + (1,) * len(geometry.kernel))
    np.add.at(grad_padded, (maps, *_padded_argmax_positions(argmax_tap, geometry)), grad_maps)
    unpadded: np.ndarray = grad_padded[geometry.inner()]
    return unpadded


def _counted_samples(geometry: PoolGeometry, count_include_pad: bool) -> np.ndarray:
    """1 where mean pooling counts a sample: the input, and with ``count_include_pad`` the zero
    padding too (never the ceil-mode overhang past it); 0 elsewhere of the padded extent."""
    counted = np.zeros(geometry.padded_size, dtype=np.int64)
    sizes = zip(geometry.in_size, geometry.padding, strict=True)
    if count_include_pad:
        counted[tuple(slice(0, n + 2 * p) for n, p in sizes)] = 1
    else:
        counted[geometry.inner()] = 1
    return counted


def reference_avg_pool(
    maps: np.ndarray,
    geometry: PoolGeometry,
    count_include_pad: bool,
    divisor_override: int | None,
) -> tuple[np.ndarray, np.ndarray | float]:
    """Deck 004: Y(m, n) = mean(window) = sum over the window / divisor.

    The window view of the zero-padded input, summed over each window's samples; the divisor
    is the number of samples the window counts (``_counted_samples``) or ``divisor_override``.
    """
    sums = _window_samples(pad_spatial(maps, geometry.pads, value=0.0), geometry).sum(axis=-1)
    divisor: np.ndarray | float
    if divisor_override is not None:
        divisor = maps.dtype.type(divisor_override)
    else:
        counted = _window_samples(_counted_samples(geometry, count_include_pad), geometry)
        divisor = counted.sum(axis=-1).astype(maps.dtype)
    return sums / divisor, divisor


def reference_avg_pool_backward(
    grad_maps: np.ndarray, divisor: np.ndarray | float, geometry: PoolGeometry
) -> np.ndarray:
    """Deck 004: dY(l-1)[x + i, y + j] += dY(l)[m, n] / divisor(m, n) for every tap (i, j).

    Each delta, divided by its window's divisor (K^2 away from the borders), is added
    ("+=", ``np.add.at``: windows may overlap) at every sample o S + k D of its window in the
    padded input; then the padding region is removed.
    """
    spatial = len(geometry.kernel)
    share = grad_maps / divisor
    grad_padded = np.zeros((grad_maps.shape[0], *geometry.padded_size), dtype=grad_maps.dtype)
    index: list[np.ndarray] = [np.arange(grad_maps.shape[0]).reshape((-1,) + (1,) * 2 * spatial)]
    for axis, (o, k, s, d) in enumerate(
        zip(geometry.out_size, geometry.kernel, geometry.stride, geometry.dilation, strict=True)
    ):
        window_start = _along_output_axis(np.arange(o) * s, axis, 1 + 2 * spatial)
        tap_offset = _along_output_axis(np.arange(k) * d, spatial + axis, 1 + 2 * spatial)
        index.append(window_start + tap_offset)
    np.add.at(grad_padded, tuple(index), share.reshape(share.shape + (1,) * spatial))
    unpadded: np.ndarray = grad_padded[geometry.inner()]
    return unpadded


def reference_max_unpool(values: np.ndarray, flat_indices: np.ndarray, plane: int) -> np.ndarray:
    """Y[pidx] = x, zeros elsewhere: each value goes back to the position its maximum came
    from (one row of ``plane`` positions per map). Max unpooling has no other kernel."""
    output = np.zeros((values.shape[0], plane), dtype=values.dtype)
    np.put_along_axis(output, flat_indices, values, axis=1)
    return output


def reference_max_unpool_backward(grad_maps: np.ndarray, flat_indices: np.ndarray) -> np.ndarray:
    """dL/dx[i] = dL/dY[pidx(i)]: the gather back from where each value was put."""
    gathered: np.ndarray = np.take_along_axis(grad_maps, flat_indices, axis=1)
    return gathered


# --------------------------------------------------------------------------------------------
# 2. The plan: which kernel runs on which blocks of maps, every threshold in one place.
# --------------------------------------------------------------------------------------------
# The tap-by-tap kernels work on blocks of about this many padded input elements: a block's
# padded input, running maximum (or sum) and argmax then stay in the CPU cache across the tap
# loop (BENCHMARKS.md, "Kernels: pooling").
MAP_BLOCK_ELEMENTS = 1 << 18
# Max pooling's blocks go on every core once there are at least this many per core (each makes
# a dozen passes per tap loop; a few blocks, as LeNet-5's 3, gain less than waking the pool
# costs); mean pooling's blocks (one "+=" per tap) did not gain and stay serial (BENCHMARKS.md,
# "Kernels: pooling"). The blocks are the same either way: the shapes alone decide them.
MAX_POOL_BLOCKS_PER_CORE = 2


@dataclass(frozen=True)
class PoolPlan:
    """A kernel (a name in the family's table) and the blocks of maps it works on."""

    kernel: str
    blocks: MapBlocks


# The reference's blocks (it ignores them), and those of kernels without blocks.
WHOLE = MapBlocks((slice(None),))


def blocks_of_maps(count: int, elements_per_map: int) -> list[slice]:
    """``count`` maps in blocks of about ``MAP_BLOCK_ELEMENTS`` elements (a function of the
    shapes alone, so the bits never depend on the core count)."""
    per_block = max(1, MAP_BLOCK_ELEMENTS // max(1, elements_per_map))
    return [slice(start, min(start + per_block, count)) for start in range(0, count, per_block)]


def max_pool_blocks(count: int, elements_per_map: int, cores: int | None = None) -> MapBlocks:
    """Max pooling's blocks, on every core when there are ``MAX_POOL_BLOCKS_PER_CORE`` per
    core (``cores``: by default this process's, ``worker_count()``)."""
    slices = tuple(blocks_of_maps(count, elements_per_map))
    if len(slices) <= 1:  # (no affinity syscall for one block)
        return MapBlocks(slices)
    cores = worker_count() if cores is None else cores
    return MapBlocks(slices, len(slices) >= MAX_POOL_BLOCKS_PER_CORE * cores)


MaxPoolKernel = Callable[
    [np.ndarray, PoolGeometry, MapBlocks, bool], tuple[np.ndarray, np.ndarray, np.ndarray | None]
]
MaxPoolBackwardKernel = Callable[[np.ndarray, np.ndarray, PoolGeometry, MapBlocks], np.ndarray]
AvgPoolKernel = Callable[
    [np.ndarray, PoolGeometry, MapBlocks, bool, int | None], tuple[np.ndarray, np.ndarray | float]
]
AvgPoolBackwardKernel = Callable[
    [np.ndarray, np.ndarray | float, PoolGeometry, MapBlocks], np.ndarray
]

MAX_POOL_KERNELS: dict[str, MaxPoolKernel] = {
    "reference": lambda maps, g, blocks, want: reference_max_pool(maps, g, want),
    "taps": window_kernels.max_pool_taps,
}
# The tap loops' backward writes each tap's slice with "+=" ("taps_add"), with "=" where no
# sample is in two windows ("taps_assign"), and also without zero-filling the gradient first
# where the windows tile the input exactly, so that every entry is written ("taps_tile").
MAX_POOL_BACKWARD_KERNELS: dict[str, MaxPoolBackwardKernel] = {
    "reference": lambda grad, tap, g, blocks: reference_max_pool_backward(grad, tap, g),
    "taps_add": partial(window_kernels.route_to_argmax, accumulate=True, zero_fill=True),
    "taps_assign": partial(window_kernels.route_to_argmax, accumulate=False, zero_fill=True),
    "taps_tile": partial(window_kernels.route_to_argmax, accumulate=False, zero_fill=False),
}
AVG_POOL_KERNELS: dict[str, AvgPoolKernel] = {
    "reference": lambda maps, g, blocks, pad, override: reference_avg_pool(maps, g, pad, override),
    "taps": window_kernels.mean_over_taps,
}
AVG_POOL_BACKWARD_KERNELS: dict[str, AvgPoolBackwardKernel] = {
    "reference": lambda grad, divisor, g, blocks: reference_avg_pool_backward(grad, divisor, g),
    "taps_add": partial(window_kernels.spread_over_taps, accumulate=True, zero_fill=True),
    "taps_assign": partial(window_kernels.spread_over_taps, accumulate=False, zero_fill=True),
    "taps_tile": partial(window_kernels.spread_over_taps, accumulate=False, zero_fill=False),
}


def applicable_window_backward_kernels(geometry: PoolGeometry) -> list[str]:
    """The backward kernels (max or mean pooling) that can compute this geometry."""
    names = ["reference", "taps_add"]
    if geometry.covers_once():
        names.append("taps_assign")
    if geometry.tiles_exactly():
        names.append("taps_tile")
    return names


def _window_backward(geometry: PoolGeometry) -> str:
    if geometry.tiles_exactly():
        return "taps_tile"
    return "taps_assign" if geometry.covers_once() else "taps_add"


def plan_max_pool(geometry: PoolGeometry, maps: int) -> PoolPlan:
    """Max pooling's forward kernel for ``maps`` maps."""
    if algorithm.reference():
        return PoolPlan("reference", WHOLE)
    return PoolPlan("taps", max_pool_blocks(maps, math.prod(geometry.padded_size)))


def plan_max_pool_backward(geometry: PoolGeometry, maps: int) -> PoolPlan:
    """Max pooling's backward kernel for ``maps`` maps."""
    if algorithm.reference():
        return PoolPlan("reference", WHOLE)
    blocks = max_pool_blocks(maps, math.prod(geometry.padded_size))
    return PoolPlan(_window_backward(geometry), blocks)


def plan_avg_pool(geometry: PoolGeometry, maps: int, backward: bool = False) -> PoolPlan:
    """Mean pooling's forward (or ``backward``) kernel for ``maps`` maps; serial blocks."""
    if algorithm.reference():
        return PoolPlan("reference", WHOLE)
    blocks = MapBlocks(tuple(blocks_of_maps(maps, math.prod(geometry.padded_size))))
    return PoolPlan(_window_backward(geometry) if backward else "taps", blocks)


def pick(table: dict[str, K], part: str, name: str) -> K:
    """The kernel ``name`` of ``table``, counted as ``pool.<part>.<name>``."""
    algorithm.ran(f"pool.{part}.{name}")
    return table[name]


# --------------------------------------------------------------------------------------------
# 3. The public pairs: validation, then the plan's kernels.
# --------------------------------------------------------------------------------------------
def check_input(func: str, spatial: int, x: np.ndarray) -> None:
    """``x`` must be a float (N, C, *spatial) or unbatched (C, *spatial) array."""
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{func}: input must be an ndarray, got {type(x).__name__}")
    check_ndim(x, (spatial + 1, spatial + 2), func, "input", _LAYOUTS[spatial])
    check_float(x, func, "input")
    if any(size == 0 for size in x.shape[x.ndim - spatial - 1 :]):
        raise ValueError(
            f"{func}: input must have non-zero channel and spatial sizes (only the batch may "
            f"be empty), got shape {tuple(x.shape)}"
        )


def as_maps(x: np.ndarray, spatial: int) -> np.ndarray:
    """(N, C, *S) or (C, *S) -> (maps, *S), a view for contiguous inputs."""
    return x.reshape((-1,) + x.shape[-spatial:])


class MaxPoolSaved(NamedTuple):
    """What max-pool backward needs: the argmax tap of every window (pidx) and the geometry.

    ``indices`` (int64 flat positions in the unpadded input) is filled only when the caller
    asked for ``return_indices``; backward does not use it.
    """

    argmax_tap: np.ndarray
    input_shape: tuple[int, ...]
    geometry: PoolGeometry
    indices: np.ndarray | None


def _max_pool_forward(
    func: str,
    spatial: int,
    x: np.ndarray,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None,
    padding: IntOrTuple,
    dilation: IntOrTuple,
    ceil_mode: bool,
    return_indices: bool,
) -> tuple[np.ndarray, MaxPoolSaved]:
    check_input(func, spatial, x)
    geometry = pool_geometry(
        func, x.shape[-spatial:], kernel_size, stride, padding, dilation, bool(ceil_mode)
    )
    maps = as_maps(x, spatial)
    plan = plan_max_pool(geometry, maps.shape[0])
    values, argmax_tap, indices = pick(MAX_POOL_KERNELS, "max_pool.forward", plan.kernel)(
        maps, geometry, plan.blocks, bool(return_indices)
    )
    out_shape = x.shape[:-spatial] + geometry.out_size
    if indices is not None:
        indices = indices.reshape(out_shape)
    return values.reshape(out_shape), MaxPoolSaved(argmax_tap, x.shape, geometry, indices)


def max_pool_backward(grad_out: np.ndarray, saved: MaxPoolSaved, needs: Needs) -> Grads:
    """Gradient of max pooling: route each output's gradient to its argmax, "+=" on overlap.

    dL/dY(l-1)[pidx(m, n)] += dL/dY(l)[m, n], all other inputs get 0; the padding region is
    then removed (an argmax is never there). ``reference_max_pool_backward`` computes it as
    written; the fast kernels per tap: the outputs whose argmax is tap t add their gradient
    into the strided slice of tap t (slice "+=", the adjoint of reading it).
    """
    if not needs[0]:
        return (None,)
    argmax_tap, input_shape, geometry, _ = saved
    plan = plan_max_pool_backward(geometry, argmax_tap.shape[0])
    grad_input = pick(MAX_POOL_BACKWARD_KERNELS, "max_pool.backward", plan.kernel)(
        grad_out.reshape(argmax_tap.shape), argmax_tap, geometry, plan.blocks
    )
    return (grad_input.reshape(input_shape),)


def max_pool1d_forward(
    x: np.ndarray,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
) -> tuple[np.ndarray, MaxPoolSaved]:
    """1-D max pooling of (N, C, L) or (C, L); see the module docstring for the rules."""
    return _max_pool_forward(
        "max_pool1d", 1, x, kernel_size, stride, padding, dilation, ceil_mode, return_indices
    )


def max_pool2d_forward(
    x: np.ndarray,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
) -> tuple[np.ndarray, MaxPoolSaved]:
    """2-D max pooling of (N, C, H, W) or (C, H, W); see the module docstring for the rules."""
    return _max_pool_forward(
        "max_pool2d", 2, x, kernel_size, stride, padding, dilation, ceil_mode, return_indices
    )


class AvgPoolSaved(NamedTuple):
    """What mean-pool backward needs: the divisor of every window and the geometry."""

    divisor: np.ndarray | float
    input_shape: tuple[int, ...]
    geometry: PoolGeometry


def _avg_pool_forward(
    func: str,
    spatial: int,
    x: np.ndarray,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None,
    padding: IntOrTuple,
    ceil_mode: bool,
    count_include_pad: bool,
    divisor_override: int | None,
) -> tuple[np.ndarray, AvgPoolSaved]:
    check_input(func, spatial, x)
    geometry = pool_geometry(
        func, x.shape[-spatial:], kernel_size, stride, padding, 1, bool(ceil_mode)
    )
    if divisor_override is not None:
        if not isinstance(divisor_override, (int, np.integer)) or isinstance(
            divisor_override, bool
        ):
            raise TypeError(
                f"{func}: divisor_override must be an int or None, got {divisor_override!r}"
            )
        if divisor_override == 0:
            raise ValueError(f"{func}: divisor_override must not be zero, got 0")
    maps = as_maps(x, spatial)
    plan = plan_avg_pool(geometry, maps.shape[0])
    out, divisor = pick(AVG_POOL_KERNELS, "avg_pool.forward", plan.kernel)(
        maps, geometry, plan.blocks, bool(count_include_pad), divisor_override
    )
    out_shape = x.shape[:-spatial] + geometry.out_size
    return out.reshape(out_shape), AvgPoolSaved(divisor, x.shape, geometry)


def avg_pool_backward(grad_out: np.ndarray, saved: AvgPoolSaved, needs: Needs) -> Grads:
    """Gradient of mean pooling: spread each output's gradient evenly over its window.

    dL/dY(l-1)[x + i, y + j] += dL/dY(l)[m, n] / divisor(m, n) for every tap (i, j) of window
    (m, n) (divisor = K^2 away from the borders); "+=" because adjacent windows may overlap;
    then the padding region is removed. ``reference_avg_pool_backward`` computes it as
    written; the fast kernels with one strided slice "+=" per tap.
    """
    if not needs[0]:
        return (None,)
    divisor, input_shape, geometry = saved
    grad_maps = grad_out.reshape((-1,) + geometry.out_size)
    plan = plan_avg_pool(geometry, grad_maps.shape[0], backward=True)
    grad_input = pick(AVG_POOL_BACKWARD_KERNELS, "avg_pool.backward", plan.kernel)(
        grad_maps, divisor, geometry, plan.blocks
    )
    return (grad_input.reshape(input_shape),)


def avg_pool1d_forward(
    x: np.ndarray,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
) -> tuple[np.ndarray, AvgPoolSaved]:
    """1-D mean pooling of (N, C, L) or (C, L); see the module docstring for the divisor."""
    return _avg_pool_forward(
        "avg_pool1d", 1, x, kernel_size, stride, padding, ceil_mode, count_include_pad, None
    )


def avg_pool2d_forward(
    x: np.ndarray,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
) -> tuple[np.ndarray, AvgPoolSaved]:
    """2-D mean pooling of (N, C, H, W) or (C, H, W); see the module docstring for the divisor."""
    return _avg_pool_forward(
        "avg_pool2d",
        2,
        x,
        kernel_size,
        stride,
        padding,
        ceil_mode,
        count_include_pad,
        divisor_override,
    )


class MaxUnpoolSaved(NamedTuple):
    """The flat target of every input value (one row per map) and the input shape."""

    flat_indices: np.ndarray
    input_shape: tuple[int, ...]


def _max_unpool_forward(
    func: str,
    spatial: int,
    x: np.ndarray,
    indices: np.ndarray,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None,
    padding: IntOrTuple,
    output_size: Sequence[int] | None,
) -> tuple[np.ndarray, MaxUnpoolSaved]:
    check_input(func, spatial, x)
    if not isinstance(indices, np.ndarray) or not np.issubdtype(indices.dtype, np.integer):
        raise TypeError(
            f"{func}: indices must be an integer (int64) array, got "
            f"{getattr(indices, 'dtype', type(indices).__name__)}"
        )
    if indices.shape != x.shape:
        raise ValueError(
            f"{func}: indices must have the input's shape {tuple(x.shape)}, got "
            f"{tuple(indices.shape)}"
        )
    out_size = unpool_output_size(
        func, x.shape[-spatial:], kernel_size, stride, padding, output_size
    )
    plane = int(np.prod(out_size, dtype=np.int64))
    maps = as_maps(x, spatial).shape[0]
    flat_indices = indices.reshape(maps, -1).astype(np.int64, copy=False)
    if plane and flat_indices.size:
        lowest, highest = int(flat_indices.min()), int(flat_indices.max())
        if lowest < 0 or highest >= plane:
            bad = lowest if lowest < 0 else highest
            raise ValueError(
                f"{func}: found an invalid max index {bad} (the output planes have size "
                f"{'x'.join(map(str, out_size))})"
            )
        algorithm.ran("pool.max_unpool.forward.reference")
        output = reference_max_unpool(x.reshape(maps, -1), flat_indices, plane)
    else:
        output = np.zeros((maps, plane), dtype=x.dtype)
    output = output.reshape(x.shape[:-spatial] + out_size)
    return output, MaxUnpoolSaved(flat_indices, x.shape)


def max_unpool_backward(grad_out: np.ndarray, saved: MaxUnpoolSaved, needs: Needs) -> Grads:
    """Gradient of max unpooling: dL/dx[i] = dL/dY[pidx(i)] (a gather; indices get none)."""
    flat_indices, input_shape = saved
    grad_input = None
    if needs[0] and grad_out.size == 0:
        # An empty output (PyTorch allows (in - 1) S - 2P + K = 0) depends on nothing.
        grad_input = np.zeros(input_shape, dtype=grad_out.dtype)
    elif needs[0]:
        algorithm.ran("pool.max_unpool.backward.reference")
        grad_maps = grad_out.reshape(flat_indices.shape[0], -1)
        grad_input = reference_max_unpool_backward(grad_maps, flat_indices).reshape(input_shape)
    return (grad_input, None)


def max_unpool1d_forward(
    x: np.ndarray,
    indices: np.ndarray,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    output_size: Sequence[int] | None = None,
) -> tuple[np.ndarray, MaxUnpoolSaved]:
    """Partial inverse of max_pool1d: (N, C, L) values placed at ``indices``, zeros elsewhere."""
    return _max_unpool_forward(
        "max_unpool1d", 1, x, indices, kernel_size, stride, padding, output_size
    )


def max_unpool2d_forward(
    x: np.ndarray,
    indices: np.ndarray,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    output_size: Sequence[int] | None = None,
) -> tuple[np.ndarray, MaxUnpoolSaved]:
    """Partial inverse of max_pool2d: (N, C, H, W) values placed at ``indices``."""
    return _max_unpool_forward(
        "max_unpool2d", 2, x, indices, kernel_size, stride, padding, output_size
    )


max_pool1d = OpPair("max_pool1d", max_pool1d_forward, max_pool_backward)
max_pool2d = OpPair("max_pool2d", max_pool2d_forward, max_pool_backward)
avg_pool1d = OpPair("avg_pool1d", avg_pool1d_forward, avg_pool_backward)
avg_pool2d = OpPair("avg_pool2d", avg_pool2d_forward, avg_pool_backward)
max_unpool1d = OpPair("max_unpool1d", max_unpool1d_forward, max_unpool_backward)
max_unpool2d = OpPair("max_unpool2d", max_unpool2d_forward, max_unpool_backward)
