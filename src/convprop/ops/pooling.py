"""Pooling layers: max, mean (average), adaptive and max-unpooling, as forward/backward pairs.

Deck 004 ("Max pooling", "Mean pooling", "Max Pooling with Downsampling") scans every map j
separately with a K x K pooling window moved by ``stride`` and keeps track of where each
maximum came from::

    pidx(l, j, m, n) = maxidx(Y(l-1, j, x:x+K-1, y:y+K-1))      # x = m*stride, y = n*stride
    Y(l, j, m, n)    = Y(l-1, j, pidx(l, j, m, n))               # max pooling
    Y(l, j, m, n)    = mean(Y(l-1, j, x:x+K-1, y:y+K-1))         # mean pooling

and routes the derivatives back ("Derivative of max pooling" / "of mean pooling")::

    dY(l-1, j, pidx(l, j, m, n)) += dY(l, j, m, n)               # only the argmax gets it
    dY(l-1, j, x+i, y+j')        += dY(l, j, m, n) / K^2         # spread evenly over the pool

"+=" because an input sample can sit in several overlapping windows (stride < K).

Max and mean pooling are computed one kernel *tap* at a time on a zero-copy window view: tap
(i, j) of every window at once is the strided slice ``padded[..., i*D::S, j*D::S]``. The
forward reduces over taps (keeping, for max, the tap number of the argmax); the backward sends
each output gradient back through the same slices with one slice ``+=`` per tap, the adjoint of
reading them (what ``windows.scatter_windows`` does). No loop runs over batch, channels or
pixels; the maps are processed in cache-sized blocks. Adaptive mean pooling is one averaging
matrix per axis (a GEMM); adaptive max pooling reduces the last axis, then the other, with one
gather per window tap (or plain max pooling when the windows tile the input).

PyTorch's conventions, reproduced exactly:

* stride defaults to kernel_size; padding is implicit (-inf for max, 0 for mean) and at most
  half the kernel (``padding <= kernel_size // 2``); dilation spaces the taps (max pooling);
* output size ``floor((L + 2P - D (K - 1) - 1) / S) + 1`` (``ceil`` with ``ceil_mode``); in
  ceil mode the last window must start inside the input or the left padding: it is dropped when
  ``(out - 1) S >= L + P``;
* max: ties go to the first maximum in window (row-major) order; a NaN is the maximum, and with
  several NaNs the last one is selected; a window whose valid samples are all -inf selects its
  first valid sample; ``return_indices`` gives ``h * W + w`` in the unpadded input (int64);
* mean: divisor ``(min(start + K, L + P) - start)`` per axis with ``count_include_pad`` (the
  zero padding counts, the ceil-mode overhang past the padding does not), the number of valid
  samples without it, or ``divisor_override``;
* adaptive: window ``i`` of ``out`` over a length ``L`` is ``[floor(i L / out),
  ceil((i + 1) L / out))``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, TypeVar

import numpy as np

from convprop.ops.checks import (
    check_float,
    check_ndim,
    check_non_negative,
    check_positive,
    to_tuple,
)
from convprop.ops.contract import Grads, Needs, OpPair
from convprop.ops.geometry import conv_output_size as window_count
from convprop.ops.kernels.parallel import map_blocks, matmul_along_axis, worker_count
from convprop.ops.windows import pad_spatial, window_view

T = TypeVar("T")
IntOrTuple = int | Sequence[int]
_LAYOUTS = {1: "N, C, L or C, L", 2: "N, C, H, W or C, H, W"}


# --------------------------------------------------------------------------- shared helpers
def _batched(x: np.ndarray, spatial: int, func: str) -> np.ndarray:
    """Validate ``x`` and give it a batch axis if it is unbatched (C, *spatial)."""
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{func}: input must be an ndarray, got {type(x).__name__}")
    check_ndim(x, (spatial + 1, spatial + 2), func, "input", _LAYOUTS[spatial])
    check_float(x, func, "input")
    batched = x if x.ndim == spatial + 2 else x[np.newaxis]
    if any(size == 0 for size in batched.shape[1:]):
        raise ValueError(
            f"{func}: input must have non-zero channel and spatial sizes (only the batch may "
            f"be empty), got shape {tuple(x.shape)}"
        )
    return batched


def _taps(kernel_size: Sequence[int]) -> list[tuple[int, ...]]:
    """Kernel taps in window (row-major) order, the order in which ties are broken."""
    return list(itertools.product(*(range(k) for k in kernel_size)))


def _pool_arguments(
    func: str,
    spatial: int,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None,
    padding: IntOrTuple,
    dilation: IntOrTuple,
) -> tuple[tuple[int, ...], ...]:
    kernel = to_tuple(kernel_size, spatial, func, "kernel_size")
    # PyTorch treats an empty stride list like None: the stride is the kernel size.
    no_stride = stride is None or (isinstance(stride, Sequence) and len(stride) == 0)
    strides = kernel if no_stride or stride is None else to_tuple(stride, spatial, func, "stride")
    pads = to_tuple(padding, spatial, func, "padding")
    dilations = to_tuple(dilation, spatial, func, "dilation")
    check_positive(kernel, func, "kernel_size")
    check_positive(strides, func, "stride")
    check_positive(dilations, func, "dilation")
    check_non_negative(pads, func, "padding")
    if any(p > k // 2 for p, k in zip(pads, kernel, strict=True)):
        raise ValueError(
            f"{func}: padding should be at most half of kernel_size (padding <= kernel_size // 2), "
            f"got padding={pads} and kernel_size={kernel}"
        )
    return kernel, strides, pads, dilations


def _pooled_size(
    func: str,
    in_size: Sequence[int],
    kernel: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    ceil_mode: bool,
) -> tuple[int, ...]:
    sizes = []
    for length, k, s, p, d in zip(in_size, kernel, stride, padding, dilation, strict=True):
        count = window_count(length, k, s, 2 * p, d, ceil_mode)
        # A ceil-mode window must start inside the input or the left padding.
        if ceil_mode and (count - 1) * s >= length + p:
            count -= 1
        sizes.append(count)
    if any(size < 1 for size in sizes):
        raise ValueError(
            f"{func}: output size is too small: input size {tuple(in_size)} with "
            f"kernel_size={tuple(kernel)}, stride={tuple(stride)}, padding={tuple(padding)}, "
            f"dilation={tuple(dilation)}, ceil_mode={ceil_mode} gives {tuple(sizes)}"
        )
    return tuple(sizes)


def _window_pads(
    in_size: Sequence[int],
    out_size: Sequence[int],
    kernel: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
) -> tuple[tuple[int, int], ...]:
    """(left, right) padding so that every window exists; the right side covers only what the
    windows read (less than ``padding`` in floor mode, possibly more in ceil mode)."""
    return tuple(
        (p, max(0, (o - 1) * s + d * (k - 1) + 1 - length - p))
        for length, o, k, s, p, d in zip(
            in_size, out_size, kernel, stride, padding, dilation, strict=True
        )
    )


def _tap_dtype(tap_count: int) -> np.dtype:
    return np.dtype(np.uint8) if tap_count <= 256 else np.dtype(np.int32)


def _unbatch(output: np.ndarray, batched: bool) -> np.ndarray:
    return output if batched else output[0]


# --------------------------------------------------------------------------- map blocks
# Both pools treat every (sample, channel) map alike, so they work on the maps stacked along
# one axis, a block of maps at a time: a block's padded input, running maximum (or sum) and
# argmax stay in the CPU cache across the tap loop instead of streaming through memory once
# per tap (measured 1.5-2x faster than whole-batch passes on 3x3 windows).
_BLOCK_ELEMENTS = 1 << 18


def _as_maps(x: np.ndarray, spatial: int) -> np.ndarray:
    """(N, C, *S) or (C, *S) -> (maps, *S), a view for contiguous inputs."""
    return x.reshape((-1,) + x.shape[-spatial:])


def _map_blocks(count: int, elements_per_map: int) -> list[slice]:
    per_block = max(1, _BLOCK_ELEMENTS // max(1, elements_per_map))
    return [slice(start, min(start + per_block, count)) for start in range(0, count, per_block)]


def _run_blocks(work: Callable[[slice], T], blocks: list[slice]) -> list[T]:
    """``[work(block) for block in blocks]``: on every core (``map_blocks``) when there are at
    least two blocks per core, else one after another. Max pooling's blocks (a dozen passes per
    tap loop) gain from the second core once there are enough of them: 8 blocks of 16x32x32
    maps, 3x3 stride 2, fwd+bwd 1.49-1.51x (2x2: 0.97-1.19x); LeNet-5's 3 blocks were 0.81x.
    Average pooling's blocks (one "+=" per tap) did not gain (2x2: 0.92x) and stay serial.
    The blocks are the same either way (``_map_blocks``: the shapes alone decide them) and each
    writes only its own maps, so the core count decides where they run, never the bits."""
    if len(blocks) > 1 and len(blocks) >= 2 * worker_count():  # (one block: no syscall)
        return map_blocks(work, blocks, blas=False)
    return [work(block) for block in blocks]


class _Geometry(NamedTuple):
    """Where the windows of a pool sit: output ``o`` tap ``k`` reads padded ``o S + k D``."""

    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]
    in_size: tuple[int, ...]
    out_size: tuple[int, ...]
    pads: tuple[tuple[int, int], ...]  # (left, right) actually materialised

    @property
    def padded_size(self) -> tuple[int, ...]:
        return tuple(
            n + left + right for n, (left, right) in zip(self.in_size, self.pads, strict=True)
        )

    @property
    def is_padded(self) -> bool:
        return any(left or right for left, right in self.pads)

    def tap_slice(self, tap: Sequence[int]) -> tuple[Any, ...]:
        """Tap ``tap`` of every window in the padded maps: one strided slice per axis."""
        return (Ellipsis,) + tuple(
            slice(k * d, k * d + (o - 1) * s + 1, s)
            for k, o, s, d in zip(tap, self.out_size, self.stride, self.dilation, strict=True)
        )

    def inner(self) -> tuple[Any, ...]:
        """The unpadded input inside the padded maps (the notes' "remove the padding")."""
        return (Ellipsis,) + tuple(
            slice(left, left + n) for n, (left, _) in zip(self.in_size, self.pads, strict=True)
        )

    def tiles_exactly(self) -> bool:
        """Whether every input sample is in exactly one window (windows side by side, no
        padding, none left over), so a backward that writes every tap's slice writes every
        input gradient once and needs no zero-filled array first."""
        return not self.is_padded and all(
            d == 1 and s == k and o * s == n
            for k, s, d, o, n in zip(
                self.kernel, self.stride, self.dilation, self.out_size, self.in_size, strict=True
            )
        )

    def covers_once(self) -> bool:
        """Whether no sample is read by two windows (so backward may assign instead of add)."""
        return all(
            d == 1 and s >= k
            for k, s, d in zip(self.kernel, self.stride, self.dilation, strict=True)
        )


def _geometry(
    func: str,
    spatial: int,
    x: np.ndarray,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None,
    padding: IntOrTuple,
    dilation: IntOrTuple,
    ceil_mode: bool,
) -> _Geometry:
    _batched(x, spatial, func)
    kernel, strides, pads, dilations = _pool_arguments(
        func, spatial, kernel_size, stride, padding, dilation
    )
    in_size = tuple(x.shape[-spatial:])
    out_size = _pooled_size(func, in_size, kernel, strides, pads, dilations, bool(ceil_mode))
    window_pads = _window_pads(in_size, out_size, kernel, strides, pads, dilations)
    return _Geometry(kernel, strides, pads, dilations, in_size, out_size, window_pads)


# --------------------------------------------------------------------------- max pooling
class MaxPoolSaved(NamedTuple):
    """What max-pool backward needs: the argmax tap of every window (pidx) and the geometry.

    ``indices`` (int64 flat positions in the unpadded input) is filled only when the caller
    asked for ``return_indices``; backward does not use it.
    """

    argmax_tap: np.ndarray
    input_shape: tuple[int, ...]
    geometry: _Geometry
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
    geometry = _geometry(func, spatial, x, kernel_size, stride, padding, dilation, ceil_mode)
    maps = _as_maps(x, spatial)
    taps = _taps(geometry.kernel)
    best = np.empty((maps.shape[0],) + geometry.out_size, dtype=x.dtype)
    argmax_tap = np.empty(best.shape, dtype=_tap_dtype(len(taps)))
    blocks = _map_blocks(maps.shape[0], int(np.prod(geometry.padded_size)))

    def pool_block(block: slice) -> np.ndarray | None:
        padded = pad_spatial(maps[block], geometry.pads, value=-np.inf)
        windows = window_view(
            padded, geometry.kernel, geometry.stride, geometry.dilation, geometry.out_size
        )
        _max_over_taps(windows, taps, best[block], argmax_tap[block])
        # ">" cannot see NaNs (PyTorch selects the last NaN of a window) nor a window whose
        # valid samples are all -inf (PyTorch selects its first valid sample, never the
        # padding). Both leave a non-finite sum, so the exact fix-up runs only when it can
        # matter.
        with np.errstate(invalid="ignore", over="ignore"):
            suspicious = best[block].size and not np.isfinite(best[block].sum())
        if not suspicious:
            return None
        fixed: np.ndarray = _fix_max_pool_argmax(
            windows, taps, best[block], argmax_tap[block], geometry
        )
        return fixed

    all_minus_inf = None
    for block, block_minus_inf in zip(blocks, _run_blocks(pool_block, blocks), strict=True):
        if block_minus_inf is not None:
            if all_minus_inf is None:
                all_minus_inf = np.zeros(best.shape, dtype=bool)
            all_minus_inf[block] = block_minus_inf

    out_shape = x.shape[:-spatial] + geometry.out_size
    indices = None
    if return_indices:
        indices = _flat_indices(argmax_tap, all_minus_inf, geometry).reshape(out_shape)
    saved = MaxPoolSaved(argmax_tap, x.shape, geometry, indices)
    return best.reshape(out_shape), saved


def _max_over_taps(
    windows: np.ndarray, taps: list[tuple[int, ...]], best: np.ndarray, argmax_tap: np.ndarray
) -> None:
    """Running maximum over the taps in window order, and the tap it came from.

    A strict ">" keeps the first of equal maxima, as PyTorch does. Tap numbers only grow, so
    "argmax = t where larger" is max(argmax, t * larger): branch-free, unlike a masked copy
    (slow on random masks).
    """
    first = (Ellipsis,) + taps[0]
    best[...] = windows[first]
    argmax_tap.fill(0)
    larger = np.empty(best.shape, dtype=bool)
    tap_if_larger = np.empty(best.shape, dtype=argmax_tap.dtype)
    for tap_number, tap in enumerate(taps[1:], start=1):
        candidate = windows[(Ellipsis,) + tap]
        np.greater(candidate, best, out=larger)
        np.multiply(larger, argmax_tap.dtype.type(tap_number), out=tap_if_larger)
        np.maximum(argmax_tap, tap_if_larger, out=argmax_tap)
        np.maximum(best, candidate, out=best)


def _first_tap_in_input(geometry: _Geometry) -> list[np.ndarray]:
    """Per axis, the first tap k of each window with ``start + k D >= 0`` (start = oS - P);
    it may lie past the kernel or the input when dilation jumps over the whole input."""
    return [
        np.maximum(0, -(-(p - np.arange(o, dtype=np.int64) * s) // d))
        for o, s, p, d in zip(
            geometry.out_size, geometry.stride, geometry.padding, geometry.dilation, strict=True
        )
    ]


def _fix_max_pool_argmax(
    windows: np.ndarray,
    taps: list[tuple[int, ...]],
    best: np.ndarray,
    argmax_tap: np.ndarray,
    geometry: _Geometry,
) -> np.ndarray:
    """Exact argmax for NaN and all -inf windows; returns the mask of all -inf windows."""
    all_minus_inf: np.ndarray = best == -np.inf
    if all_minus_inf.any():
        first = _first_tap_in_input(geometry)
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
    for tap_number, tap in enumerate(taps):
        np.copyto(argmax_tap, tap_number, where=np.isnan(windows[(Ellipsis,) + tap]))
    return all_minus_inf


def _flat_indices(
    argmax_tap: np.ndarray, all_minus_inf: np.ndarray | None, geometry: _Geometry
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
            for tap in _taps(geometry.kernel)
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
                zip(_first_tap_in_input(geometry), geometry.dilation, plane_strides, strict=True)
            )
        )
        np.copyto(indices, np.broadcast_to(first_position, indices.shape), where=all_minus_inf)
    return indices


def max_pool_backward(grad_out: np.ndarray, saved: MaxPoolSaved, needs: Needs) -> Grads:
    """Gradient of max pooling: route each output's gradient to its argmax, "+=" on overlap.

    dL/dY(l-1)[pidx(m, n)] += dL/dY(l)[m, n], all other inputs get 0. Done per tap: the outputs
    whose argmax is tap t add their gradient into the strided slice of tap t (slice "+=", the
    adjoint of reading it); the padding region is then removed (an argmax is never there).
    """
    if not needs[0]:
        return (None,)
    argmax_tap, input_shape, geometry, _ = saved
    grad_maps = grad_out.reshape(argmax_tap.shape)
    taps = _taps(geometry.kernel)
    overlapping = not geometry.covers_once()
    # Where the windows tile the input, the tap loop below writes every entry (zeros where
    # the tap is not the argmax): no zero fill first (one pass over the input fewer).
    allocate = np.empty if geometry.tiles_exactly() else np.zeros
    grad_input = allocate((argmax_tap.shape[0],) + geometry.in_size, dtype=grad_out.dtype)

    def route_block(block: slice) -> None:
        grad_block, tap_block = grad_maps[block], argmax_tap[block]
        target = grad_input[block]
        if geometry.is_padded:
            target = np.zeros(grad_block.shape[:1] + geometry.padded_size, dtype=grad_out.dtype)
        selected = np.empty(grad_block.shape, dtype=bool)
        routed = np.empty(grad_block.shape, dtype=grad_out.dtype)
        # grad * [argmax is tap t] is branch-free and exact for finite gradients; an inf or
        # NaN gradient times 0 would leak into non-argmax inputs, so then select with where.
        with np.errstate(invalid="ignore", over="ignore"):
            finite = bool(np.isfinite(grad_block.sum()))
        for tap_number, tap in enumerate(taps):
            np.equal(tap_block, tap_number, out=selected)
            tap_target = target[geometry.tap_slice(tap)]
            if not finite:
                routed[...] = np.where(selected, grad_block, grad_out.dtype.type(0))
            elif overlapping:
                np.multiply(grad_block, selected, out=routed)
            else:
                np.multiply(grad_block, selected, out=tap_target)
                continue
            if overlapping:
                tap_target += routed
            else:
                tap_target[...] = routed
        if geometry.is_padded:
            grad_input[block] = target[geometry.inner()]

    _run_blocks(route_block, _map_blocks(argmax_tap.shape[0], int(np.prod(geometry.padded_size))))
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


# --------------------------------------------------------------------------- mean pooling
class AvgPoolSaved(NamedTuple):
    """What mean-pool backward needs: the divisor of every window and the geometry."""

    divisor: np.ndarray | float
    input_shape: tuple[int, ...]
    geometry: _Geometry


def _avg_divisor(geometry: _Geometry, count_include_pad: bool, dtype: np.dtype) -> np.ndarray:
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
    geometry = _geometry(func, spatial, x, kernel_size, stride, padding, 1, ceil_mode)
    if divisor_override is not None:
        if not isinstance(divisor_override, (int, np.integer)) or isinstance(
            divisor_override, bool
        ):
            raise TypeError(
                f"{func}: divisor_override must be an int or None, got {divisor_override!r}"
            )
        if divisor_override == 0:
            raise ValueError(f"{func}: divisor_override must not be zero, got 0")
        divisor: np.ndarray | float = x.dtype.type(divisor_override)
    else:
        divisor = _avg_divisor(geometry, bool(count_include_pad), x.dtype)
    maps = _as_maps(x, spatial)
    taps = _taps(geometry.kernel)
    total = np.empty((maps.shape[0],) + geometry.out_size, dtype=x.dtype)
    for block in _map_blocks(maps.shape[0], int(np.prod(geometry.padded_size))):
        padded = pad_spatial(maps[block], geometry.pads, value=0.0)
        windows = window_view(
            padded, geometry.kernel, geometry.stride, geometry.dilation, geometry.out_size
        )
        # Window sums accumulated tap by tap in window order (the padding adds exact zeros).
        block_total = total[block]
        block_total[...] = windows[(Ellipsis,) + taps[0]]
        for tap in taps[1:]:
            block_total += windows[(Ellipsis,) + tap]
        block_total /= divisor
    out_shape = x.shape[:-spatial] + geometry.out_size
    return total.reshape(out_shape), AvgPoolSaved(divisor, x.shape, geometry)


def avg_pool_backward(grad_out: np.ndarray, saved: AvgPoolSaved, needs: Needs) -> Grads:
    """Gradient of mean pooling: spread each output's gradient evenly over its window.

    dL/dY(l-1)[x + i, y + j] += dL/dY(l)[m, n] / divisor(m, n) for every tap (i, j) of window
    (m, n) (divisor = K^2 away from the borders); "+=" because adjacent windows may overlap.
    One strided slice "+=" per tap, then the padding region is removed.
    """
    if not needs[0]:
        return (None,)
    divisor, input_shape, geometry = saved
    grad_maps = grad_out.reshape((-1,) + geometry.out_size)
    taps = _taps(geometry.kernel)
    overlapping = not geometry.covers_once()
    # Where the windows tile the input every tap's slice is assigned below: no zero fill.
    allocate = np.empty if geometry.tiles_exactly() else np.zeros
    grad_input = allocate((grad_maps.shape[0],) + geometry.in_size, dtype=grad_out.dtype)
    for block in _map_blocks(grad_maps.shape[0], int(np.prod(geometry.padded_size))):
        share = grad_maps[block] / divisor
        target = grad_input[block]
        if geometry.is_padded:
            target = np.zeros(share.shape[:1] + geometry.padded_size, dtype=grad_out.dtype)
        for tap in taps:
            tap_target = target[geometry.tap_slice(tap)]
            if overlapping:
                tap_target += share
            else:
                tap_target[...] = share
        if geometry.is_padded:
            grad_input[block] = target[geometry.inner()]
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


# --------------------------------------------------------------------------- adaptive pooling
def _adaptive_arguments(
    func: str, spatial: int, x: np.ndarray, output_size: Any
) -> tuple[np.ndarray, tuple[int, ...]]:
    batched = _batched(x, spatial, func)
    # PyTorch: an int, or exactly one entry per spatial axis; None entries (2-D only) keep
    # that axis's size.
    if isinstance(output_size, (int, np.integer)) and not isinstance(output_size, bool):
        requested: tuple[Any, ...] = (output_size,) * spatial
    elif isinstance(output_size, Sequence) and not isinstance(output_size, str):
        requested = tuple(output_size)
    else:
        requested = ()
    allowed_none = spatial > 1
    if len(requested) != spatial or not all(
        (v is None and allowed_none)
        or (isinstance(v, (int, np.integer)) and not isinstance(v, bool))
        for v in requested
    ):
        entries = "ints or None" if allowed_none else "ints"
        raise TypeError(
            f"{func}: output_size must be an int or a sequence of {spatial} {entries}, "
            f"got {output_size!r}"
        )
    # None keeps the input's size along that axis.
    sizes = tuple(
        int(length if v is None else v)
        for v, length in zip(requested, batched.shape[2:], strict=True)
    )
    check_non_negative(sizes, func, "output_size")
    return batched, sizes


def _adaptive_bounds(length: int, out: int) -> tuple[np.ndarray, np.ndarray]:
    """PyTorch's windows: start = floor(i L / out), end = ceil((i + 1) L / out)."""
    i = np.arange(out, dtype=np.int64)
    return (i * length) // out, -((-(i + 1) * length) // out)


def _averaging_matrix(length: int, out: int, dtype: np.dtype) -> np.ndarray:
    """A (out, L) with A[i, l] = 1 / |window i| on window i: 1-D adaptive mean is A @ x."""
    start, end = _adaptive_bounds(length, out)
    positions = np.arange(length)
    inside = (positions >= start[:, None]) & (positions < end[:, None])
    matrix: np.ndarray = (inside / (end - start)[:, None]).astype(dtype)
    return matrix


class AdaptiveAvgSaved(NamedTuple):
    """The input shape and the pooled size: enough to rebuild the averaging matrices."""

    input_shape: tuple[int, ...]
    out_size: tuple[int, ...]


def _adaptive_avg_forward(
    func: str, spatial: int, x: np.ndarray, output_size: Any
) -> tuple[np.ndarray, AdaptiveAvgSaved]:
    batched, out_size = _adaptive_arguments(func, spatial, x, output_size)
    # The mean over a rectangle is the mean over its rows of the means over its columns, so
    # the pooling is one averaging matrix per axis (A[i, l] = 1 / |window i| on window i),
    # each applied as a single matrix product.
    result = batched
    for axis in range(-1, -spatial - 1, -1):
        if out_size[axis] != result.shape[axis]:
            averaging = _averaging_matrix(result.shape[axis], out_size[axis], x.dtype)
            result = matmul_along_axis(result, averaging, axis)
    return _unbatch(result, x.ndim == spatial + 2), AdaptiveAvgSaved(x.shape, out_size)


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
    grad = grad_out
    for axis in range(-spatial, 0):
        length = input_shape[axis]
        if grad.shape[axis] == 1 and length > 1:
            # Global pooling along this axis: every sample gets grad / L (a repeat is much
            # cheaper than the rank-1 product with the averaging matrix).
            grad = np.repeat(grad / grad.dtype.type(length), length, axis=axis)
        elif grad.shape[axis] != length:
            averaging = _averaging_matrix(length, grad.shape[axis], grad.dtype)
            grad = matmul_along_axis(grad, averaging.T, axis)
    return (np.ascontiguousarray(grad).reshape(input_shape),)


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
    """Flat argmax positions (int64, ``h * W + w``, shaped like the output), the input shape,
    and per axis a step g such that windows i and i + g never overlap."""

    indices: np.ndarray
    input_shape: tuple[int, ...]
    disjoint_step: tuple[int, ...]


def _adaptive_max_forward(
    func: str, spatial: int, x: np.ndarray, output_size: Any
) -> tuple[np.ndarray, AdaptiveMaxSaved]:
    batched, out_size = _adaptive_arguments(func, spatial, x, output_size)
    in_size = batched.shape[2:]
    kernel = tuple(length // o if o else 0 for length, o in zip(in_size, out_size, strict=True))
    if any(o == 0 for o in out_size):
        values = np.empty(batched.shape[:2] + out_size, dtype=x.dtype)
        indices = np.empty(values.shape, dtype=np.int64)
    elif all(k * o == length for k, o, length in zip(kernel, out_size, in_size, strict=True)):
        if int(np.prod(kernel)) <= 64:
            # Small windows that tile the input: max pooling with kernel = stride = L / out.
            values, pool_saved = _max_pool_forward(
                func, spatial, batched, kernel, kernel, 0, 1, False, True
            )
            assert pool_saved.indices is not None  # asked for with return_indices=True
            indices = pool_saved.indices
        else:
            values, indices = _tiled_max(batched, kernel, out_size)
    else:
        values, indices = _adaptive_max_separable(batched, out_size)
    batched_input = x.ndim == spatial + 2
    steps = tuple(_disjoint_step(length, o) for length, o in zip(in_size, out_size, strict=True))
    return _unbatch(values, batched_input), AdaptiveMaxSaved(
        _unbatch(indices, batched_input), x.shape, steps
    )


def _tiled_max(
    x: np.ndarray, kernel: tuple[int, ...], out_size: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Max and flat argmax over large windows that tile the input (e.g. global pooling).

    Each window's samples are laid out as one contiguous row in window (row-major) order
    (a view for global pooling), so NumPy's max/argmax run along rows; argmax returns the
    first maximum as PyTorch does. For rows holding a NaN PyTorch selects the last NaN.
    """
    n, c = x.shape[:2]
    if len(kernel) == 1:
        rows = x.reshape(n, c, out_size[0], kernel[0])
    else:
        rows = x.reshape(n, c, out_size[0], kernel[0], out_size[1], kernel[1])
        rows = rows.transpose(0, 1, 2, 4, 3, 5).reshape(n, c, out_size[0], out_size[1], -1)
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


def _disjoint_step(length: int, out: int) -> int:
    """Smallest g with window i + g starting at or after the end of window i, for every i
    (1 when the windows tile the axis, 2 when they overlap by one, more when out > L)."""
    start, end = _adaptive_bounds(length, out)
    for step in range(1, out):
        if np.all(start[step:] >= end[:-step]):
            return step
    return max(out, 1)


def _adaptive_max_along(x: np.ndarray, out: int, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Max over the adaptive windows along ``axis`` (positive), and where along it it was.

    Windows differ in length; tap k of window i reads ``min(start_i + k, end_i - 1)``: re-reading
    a window's last sample never changes its maximum (">" is strict, a repeated NaN is the same
    position), so every tap is one gather along the axis, vectorised over all windows.
    """
    best, position = _adaptive_max_pass(x, out, axis, nan_aware=False)
    with np.errstate(invalid="ignore", over="ignore"):
        has_nan = bool(np.isnan(best.sum()))
    if has_nan:
        best, position = _adaptive_max_pass(x, out, axis, nan_aware=True)
    return best, position


def _adaptive_max_pass(
    x: np.ndarray, out: int, axis: int, nan_aware: bool
) -> tuple[np.ndarray, np.ndarray]:
    start, end = _adaptive_bounds(x.shape[axis], out)
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


def _adaptive_max_separable(
    x: np.ndarray, out_size: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Adaptive max one axis at a time, last axis first.

    The maximum over a rectangle is the maximum over rows of the row maxima, and PyTorch's
    row-major scan (first maximum, or last NaN) picks the same element as "first row with the
    largest row maximum, and that row's first maximum" (resp. last row with a NaN, its last NaN).
    Each map is transposed first (cheap, map by map) so that a tap of the column windows
    gathers whole rows instead of single samples.
    """
    spatial = len(out_size)
    maps = _as_maps(x, spatial)
    if spatial == 1:
        values, positions = _adaptive_max_along(maps, out_size[0], 1)
        out_shape = x.shape[:-1] + out_size
        return values.reshape(out_shape), positions.astype(np.int64).reshape(out_shape)
    values = np.empty((maps.shape[0],) + out_size, dtype=x.dtype)
    indices = np.empty(values.shape, dtype=np.int64)
    width = np.int64(x.shape[-1])
    for block in _map_blocks(maps.shape[0], int(np.prod(maps.shape[1:]))):
        columns = np.ascontiguousarray(maps[block].transpose(0, 2, 1))  # (maps, W, H)
        row_max, column = _adaptive_max_along(columns, out_size[1], 1)  # (maps, ow, H)
        row_max = np.ascontiguousarray(row_max.transpose(0, 2, 1))  # (maps, H, ow)
        column = column.transpose(0, 2, 1)
        values[block], row = _adaptive_max_along(row_max, out_size[0], 1)  # (maps, oh, ow)
        indices[block] = row * width + np.take_along_axis(column, row, axis=1)
    return values.reshape(x.shape[:-spatial] + out_size), indices.reshape(
        x.shape[:-spatial] + out_size
    )


def adaptive_max_pool_backward(
    grad_out: np.ndarray, saved: AdaptiveMaxSaved, needs: Needs
) -> Grads:
    """Gradient of adaptive max pooling: dL/dx[pidx(i)] += dL/dy[i] ("+=": windows may overlap).

    Windows i, i + g, i + 2g, ... are disjoint, so within such a group every argmax position
    is distinct and the group's gradients go in with one fancy-index "+="; the g^d groups
    (1 when the windows tile the input, typically 2 per axis otherwise) accumulate.
    """
    if not needs[0]:
        return (None,)
    indices, input_shape, steps = saved
    spatial = len(steps)
    plane = int(np.prod(input_shape[-spatial:], dtype=np.int64))
    maps = int(np.prod(input_shape[:-spatial], dtype=np.int64))
    out_size = indices.shape[-spatial:]
    grad = np.zeros((maps, plane), dtype=grad_out.dtype)
    indices = indices.reshape((maps,) + out_size)
    grad_out = grad_out.reshape((maps,) + out_size)
    rows = np.arange(maps)[:, None]
    for offsets in itertools.product(*(range(step) for step in steps)):
        group = (slice(None),) + tuple(
            slice(o, None, step) for o, step in zip(offsets, steps, strict=True)
        )
        grad[rows, indices[group].reshape(maps, -1)] += grad_out[group].reshape(maps, -1)
    return (grad.reshape(input_shape),)


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


# --------------------------------------------------------------------------- max unpooling
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
    batched = _batched(x, spatial, func)
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
    kernel = to_tuple(kernel_size, spatial, func, "kernel_size")
    no_stride = stride is None or (isinstance(stride, Sequence) and len(stride) == 0)
    strides = kernel if no_stride or stride is None else to_tuple(stride, spatial, func, "stride")
    pads = to_tuple(padding, spatial, func, "padding")
    in_size = batched.shape[2:]
    # The size max pooling with these arguments maps back from: (in - 1) S - 2P + K.
    default = tuple(
        (n - 1) * s - 2 * p + k for n, s, p, k in zip(in_size, strides, pads, kernel, strict=True)
    )
    if output_size is None:
        out_size = default
    else:
        requested = tuple(output_size)
        if len(requested) == spatial + 2:
            requested = requested[2:]
        if len(requested) != spatial:
            raise ValueError(
                f"{func}: output_size should contain {spatial} or {spatial + 2} elements, got "
                f"{tuple(output_size)!r}"
            )
        for axis, (size, base, s) in enumerate(zip(requested, default, strides, strict=True)):
            if not base - s < size < base + s:
                raise ValueError(
                    f"{func}: invalid output_size {tuple(output_size)!r} (dimension {axis} must be "
                    f"strictly between {base - s} and {base + s})"
                )
        out_size = tuple(int(v) for v in requested)
    if any(size < 0 for size in out_size):
        raise ValueError(
            f"{func}: output size must be non-negative, got {out_size} (input size "
            f"{tuple(in_size)}, kernel_size={kernel}, stride={strides}, "
            f"padding={pads})"
        )
    plane = int(np.prod(out_size, dtype=np.int64))
    maps = batched.shape[0] * batched.shape[1]
    flat_indices = indices.reshape(maps, -1).astype(np.int64, copy=False)
    output = np.zeros((maps, plane), dtype=x.dtype)
    if plane and flat_indices.size:
        lowest, highest = int(flat_indices.min()), int(flat_indices.max())
        if lowest < 0 or highest >= plane:
            bad = lowest if lowest < 0 else highest
            raise ValueError(
                f"{func}: found an invalid max index {bad} (the output planes have size "
                f"{'x'.join(map(str, out_size))})"
            )
        # Y[pidx] = x: each value goes back to the position its maximum came from.
        np.put_along_axis(output, flat_indices, batched.reshape(maps, -1), axis=1)
    output = output.reshape(batched.shape[:2] + out_size)
    return _unbatch(output, x.ndim == spatial + 2), MaxUnpoolSaved(flat_indices, x.shape)


def max_unpool_backward(grad_out: np.ndarray, saved: MaxUnpoolSaved, needs: Needs) -> Grads:
    """Gradient of max unpooling: dL/dx[i] = dL/dY[pidx(i)] (a gather; indices get none)."""
    flat_indices, input_shape = saved
    grad_input = None
    if needs[0] and grad_out.size == 0:
        # An empty output (PyTorch allows (in - 1) S - 2P + K = 0) depends on nothing.
        grad_input = np.zeros(input_shape, dtype=grad_out.dtype)
    elif needs[0]:
        maps = flat_indices.shape[0]
        grad_input = np.take_along_axis(grad_out.reshape(maps, -1), flat_indices, axis=1)
        grad_input = grad_input.reshape(input_shape)
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


adaptive_avg_pool1d = OpPair(
    "adaptive_avg_pool1d", adaptive_avg_pool1d_forward, adaptive_avg_pool_backward
)
adaptive_avg_pool2d = OpPair(
    "adaptive_avg_pool2d", adaptive_avg_pool2d_forward, adaptive_avg_pool_backward
)
avg_pool1d = OpPair("avg_pool1d", avg_pool1d_forward, avg_pool_backward)
avg_pool2d = OpPair("avg_pool2d", avg_pool2d_forward, avg_pool_backward)
max_unpool1d = OpPair("max_unpool1d", max_unpool1d_forward, max_unpool_backward)
max_unpool2d = OpPair("max_unpool2d", max_unpool2d_forward, max_unpool_backward)
max_pool1d = OpPair("max_pool1d", max_pool1d_forward, max_pool_backward)
max_pool2d = OpPair("max_pool2d", max_pool2d_forward, max_pool_backward)
adaptive_max_pool1d = OpPair(
    "adaptive_max_pool1d", adaptive_max_pool1d_forward, adaptive_max_pool_backward
)
adaptive_max_pool2d = OpPair(
    "adaptive_max_pool2d", adaptive_max_pool2d_forward, adaptive_max_pool_backward
)
