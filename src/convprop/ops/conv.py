"""Convolution and transposed convolution (1-D and 2-D, one N-d implementation).

Forward (cross-correlation, as PyTorch; decks 000/001 write the same layer as a true
convolution with the kernel rotated by 180 degrees), for output channel f in group g,
output position o, kernel tap k and the zero-padded input x_pad:

    z[n, f, o] = b[f] + sum_{c in g} sum_k w[f, c, k] x_pad[n, c, o * S + k * D]

Backward, with the local gradient delta = dL/dz = ``grad_out`` (decks 000, 001, 002, 004):

* dL/db[f] = sum_{n, o} delta[n, f, o]: the bias is shared by every position.
* dL/dw[f, c, k] = sum_{n, o} delta[n, f, o] x_pad[n, c, o * S + k * D]: the correlation of
  the (padded) input with delta, "weight sharing" summing over every position the kernel visited.
* dL/dx: the *full* correlation of delta -- zero-inserted (S - 1 zeros between samples, the
  notes' upsampling) when S > 1 and zero-padded by D (K - 1) on every side -- with the kernel
  rotated 180 degrees and its in/out channel axes swapped (within each group); the result has
  the padded input's shape, and the padding region is removed before backprop continues.

Transposed convolution is the adjoint of convolution: its forward *is* convolution's input
gradient (the notes' "upsampling followed by a convolution", a fractional stride 1/S), and its
backward uses convolution's forward (for dL/dx) and weight gradient (for dL/dw). The same three
kernels below serve both:

* ``_correlate``: the forward contraction (im2col, then one GEMM per sample and group; for
  3x3 stride-1 layers with enough channels Winograd's F(4x4, 3x3), ``winograd``, the same
  sum with 4x fewer multiplications);
* ``_correlate_weight``: the weight gradient (the same window view contracted with delta;
  a convolution's 3x3 stride-1 layers use Winograd's tiles instead,
  ``_winograd_weight_gradient``);
* ``_backproject``: the input gradient (full correlation with the Rot180 kernel, or its
  equal adjoint form, w^T delta scattered back onto the input, for strided layers).

Layouts: input (N, C, L) / (N, C, H, W), or unbatched (C, L) / (C, H, W); convolution weight
(out_channels, in_channels / groups, *kernel_size); transposed-convolution weight
(in_channels, out_channels / groups, *kernel_size), the same tensor as the convolution it is
the adjoint of.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from convprop.ops import winograd
from convprop.ops._parallel import (
    BLOCK_MULTIPLE,
    blas_runs_serially,
    map_blocks,
    split_evenly,
    sum_blocks,
)
from convprop.ops._util import (
    check_float,
    check_ndim,
    check_non_negative,
    check_positive,
    check_same_dtype,
    to_tuple,
)
from convprop.ops.elementwise import Grads, Needs
from convprop.ops.windows import (
    gather_windows_2d,
    output_size,
    pad_spatial,
    scatter_windows_2d,
)

IntOrTuple = int | Sequence[int]

_LAYOUTS = {1: "N, C, L", 2: "N, C, H, W"}
_UNBATCHED_LAYOUTS = {1: "C, L", 2: "C, H, W"}


@dataclass(frozen=True)
class ConvGeometry:
    """Everything about a (transposed) convolution but the arrays' values.

    ``pads`` are the (before, after) zero paddings of the convolution's input along each
    spatial axis; for a transposed convolution they are those of the convolution it is the
    adjoint of (so its output is that convolution's *unpadded* input).
    """

    kernel_size: tuple[int, ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    pads: tuple[tuple[int, int], ...]
    groups: int
    input_size: tuple[int, ...]  # spatial size of the convolution's (unpadded) input
    output_size: tuple[int, ...]  # spatial size of the convolution's output

    @property
    def padded_size(self) -> tuple[int, ...]:
        return tuple(
            size + before + after
            for size, (before, after) in zip(self.input_size, self.pads, strict=True)
        )


# --------------------------------------------------------------------------------------------
# The three kernels shared by convolution and transposed convolution.
# --------------------------------------------------------------------------------------------

# Columns of this many bytes (for a block of samples) stay in the L2/L3 cache between their
# copy and the GEMM that reads them; the whole batch's columns would make the GEMM read them
# back from memory (measured 1.6x slower on 32x32 images with 16 channels). 4 MiB blocks were
# ~10% faster on ResNet-20's 3x3 layers but, one block per core in flight, raised LeNet-5's
# peak step memory from 1.6x to 2.07x PyTorch's (issue 6 asks for at most 2x).
_BLOCK_BYTES = 2 * 1024 * 1024


def _sample_blocks(batch: int, bytes_per_sample: int) -> list[slice]:
    """Split the batch into blocks whose im2col columns fit in ``_BLOCK_BYTES``; when that
    takes more than one block, into a multiple of ``BLOCK_MULTIPLE`` equal blocks
    (``map_blocks``), so that no core is left idle at the end (64 TDNN samples in 5 blocks kept
    one of two cores waiting for a fifth of the op) while the split, which decides how the
    weight gradient's partial sums are formed, stays the same on every machine (``_parallel``).
    A batch that fits in one block stays one block, run in the calling thread: handing its
    pieces to the pool cost more than it saved on ops of 1-3 ms (ResNet-20's 1x1 projections).

    This is cache blocking of one big contraction, not a loop over samples: each block is a
    single batched GEMM, and small inputs are one block.
    """
    batch = max(batch, 1)
    if batch * bytes_per_sample <= _BLOCK_BYTES:
        return [slice(0, batch)]
    per_block = max(1, _BLOCK_BYTES // max(1, bytes_per_sample))
    count = -(-batch // per_block)
    return split_evenly(batch, -(-count // BLOCK_MULTIPLE) * BLOCK_MULTIPLE)


def _row_wrapped(
    x: np.ndarray,
    kernel_size: Sequence[int],
    stride: Sequence[int],
    dilation: Sequence[int],
    pads: Sequence[tuple[int, int]],
    out_size: Sequence[int],
) -> bool:
    """Whether ``_row_wrapped_columns`` applies: a 2-D stride-1 convolution whose output rows
    are as wide as the input's ("same" width: left + right padding = D (K - 1)) and whose
    output has every complete window."""
    if len(kernel_size) != 2 or tuple(stride) != (1, 1):
        return False
    (top, bottom), (left, right) = pads
    height, width = x.shape[-2:]
    return (
        left + right == dilation[1] * (kernel_size[1] - 1)
        and out_size[1] == width
        and out_size[0] == height + top + bottom - dilation[0] * (kernel_size[0] - 1)
    )


def _row_wrapped_columns(
    x: np.ndarray,
    kernel_size: Sequence[int],
    dilation: Sequence[int],
    pads: Sequence[tuple[int, int]],
    out_size: Sequence[int],
) -> np.ndarray:
    """im2col of a "same-width" stride-1 2-D convolution: (n, C, Kh, Kw, Ho * W).

    With the output as wide as the input (W), output position m = i W + j and tap (p, q) read
    input row i + p Dh - top, column j + q Dw - left, i.e. flat input index
    m + p Dh W + q Dw - (top W + left): for a fixed tap, a *contiguous* run of the flattened
    image. So each sample's image is copied once into a flat buffer with ``top`` zero rows
    (and ``left`` zeros) before it and enough zeros after, and the columns are one copy of a
    strided view whose innermost runs are Ho W long (the general window copy's are only W
    long: ~2.5x slower per byte on 32x32 images). The reads that left the image horizontally
    wrapped round to the neighbouring row instead of into padding; those entries (the first
    -d or last d output columns of a tap shifted by d = q Dw - left) are then set to zero.
    Rows above and below the image read the zero margins, as zero padding would.
    """
    batch, channels, height, width = x.shape
    (kernel_h, kernel_w), (dilation_h, dilation_w) = kernel_size, dilation
    (top, _), (left, _) = pads
    positions = out_size[0] * width
    lead = top * width + left
    length = positions + (kernel_h - 1) * dilation_h * width + (kernel_w - 1) * dilation_w
    flat = np.empty((batch, channels, length), dtype=x.dtype)
    if lead:
        flat[:, :, :lead] = 0
    flat[:, :, lead : lead + height * width].reshape(batch, channels, height, width)[...] = x
    if lead + height * width < length:
        flat[:, :, lead + height * width :] = 0
    item = flat.itemsize
    # A strided view of the fresh contiguous buffer, built directly (as_strided's Python
    # bookkeeping held the GIL for ~4 us a block, which the other core waited on).
    taps = np.ndarray(
        (batch, channels, kernel_h, kernel_w, positions),
        flat.dtype,
        flat,
        0,
        (*flat.strides[:2], dilation_h * width * item, dilation_w * item, item),
    )
    columns = np.ascontiguousarray(taps)
    rows = columns.reshape(batch, channels, kernel_h, kernel_w, out_size[0], width)
    for q in range(kernel_w):
        shift = q * dilation_w - left
        if shift < 0:
            rows[:, :, :, q, :, : min(-shift, width)] = 0
        elif shift > 0:
            rows[:, :, :, q, :, max(width - shift, 0) :] = 0
    return columns


def _as_2d(values: Sequence[Any], fill: Any) -> tuple[Any, Any]:
    """A 1-D layer's sizes, strides or paddings as a 2-D layer's with a single row: ``fill``
    for the row axis (1 for sizes and strides, (0, 0) for paddings)."""
    both = (fill,) * (2 - len(values)) + tuple(values)
    return both[0], both[1]


def _columns(
    x: np.ndarray,
    kernel_size: Sequence[int],
    stride: Sequence[int],
    dilation: Sequence[int],
    pads: Sequence[tuple[int, int]],
    out_size: Sequence[int],
    groups: int,
) -> np.ndarray:
    """The windows of ``x`` zero-padded by ``pads``, laid out for a GEMM:
    (N, G, C/G * prod(K), prod(O)).

    The general case pads this block of samples and makes the one copy of im2col
    (``windows.gather_windows_2d``), putting taps next to channels so a single matrix product
    per sample and group contracts over both; "same-width" stride-1 2-D convolutions (most 3x3
    layers, their input gradients) build the same array faster from the flattened image
    (``_row_wrapped_columns``). Output positions stay last, so the product lands directly in
    NCHW order with no copy of the output. Padding per block keeps it in cache and avoids a
    padded copy of the whole batch.
    """
    batch, channels = x.shape[:2]
    shape = (batch, groups, channels // groups * math.prod(kernel_size), math.prod(out_size))
    pointwise = math.prod(kernel_size) == 1 and all(s == 1 for s in stride)
    if pointwise and not any(sum(pads, ())) and tuple(out_size) == x.shape[2:]:
        # A 1x1 stride-1 unpadded convolution that reads every sample (a transposed one with
        # output_padding does not) is a plain product with the input: its columns are the
        # input itself (a view; callers only read columns).
        return x.reshape(shape)
    if _row_wrapped(x, kernel_size, stride, dilation, pads, out_size):
        return _row_wrapped_columns(x, kernel_size, dilation, pads, out_size).reshape(shape)
    # Valid and strided layers (and every 1-D one, as a 2-D one with a single row): one
    # compiled gather. (NumPy's copy of the transposed window view paid a setup per output
    # row of 5-16 values: LeNet-5's conv2 2x slower.)
    padded = np.ascontiguousarray(pad_spatial(x, pads))
    kernel_2d, out_2d = _as_2d(kernel_size, 1), _as_2d(out_size, 1)
    columns = np.empty((batch, channels, *kernel_2d, *out_2d), dtype=x.dtype)
    gather_windows_2d(
        padded.reshape(batch, channels, *_as_2d(padded.shape[2:], 1)),
        *_as_2d(stride, 1),
        *_as_2d(dilation, 1),
        columns,
    )
    return columns.reshape(shape)


def _column_bytes(x: np.ndarray, kernel_size: Sequence[int], out_size: Sequence[int]) -> int:
    return int(x.shape[1] * math.prod(kernel_size) * math.prod(out_size) * x.itemsize)


def _correlate(
    x: np.ndarray,
    weight: np.ndarray,
    stride: Sequence[int],
    dilation: Sequence[int],
    pads: Sequence[tuple[int, int]],
    groups: int,
    out_size: Sequence[int],
) -> np.ndarray:
    """z[n, f, o] = sum_{c in group(f)} sum_k w[f, c, k] x_pad[n, c, o * S + k * D].

    ``x_pad`` is ``x`` zero-padded by ``pads``; ``weight`` is (F, C/G, *K); the result is
    (N, F, *out_size). Blocks of samples on every core; each block either im2col and one GEMM
    per sample and group, or (``_winograd_applies``) Winograd's F(4x4, 3x3).
    """
    batch = x.shape[0]
    out_channels = weight.shape[0]
    kernel_size = weight.shape[2:]
    if _winograd_applies(x, kernel_size, stride, dilation, groups):
        filters = winograd.filter_transform(weight)
        result = np.empty((batch, out_channels, *out_size), dtype=np.result_type(x, weight))
        pads_before = (pads[0][0], pads[1][0])

        def winograd_block(block: slice) -> None:
            winograd.correlate_block(x[block], filters, pads_before, result[block])

        map_blocks(winograd_block, _winograd_blocks(x, out_channels, out_size))
        return result
    blocks = _sample_blocks(batch, _column_bytes(x, kernel_size, out_size))
    kernels = weight.reshape(groups, out_channels // groups, -1)
    out = np.empty(
        (batch, groups, out_channels // groups, math.prod(out_size)),
        dtype=np.result_type(x, weight),
    )

    def correlate_block(block: slice) -> None:
        columns = _columns(x[block], kernel_size, stride, dilation, pads, out_size, groups)
        # (G, F/G, C/G K) @ (n, G, C/G K, O) -> (n, G, F/G, O)
        np.matmul(kernels, columns, out=out[block])

    # One product per sample and group; OpenBLAS keeps small ones (LeNet-5's) on one thread
    # anyway, so those need no switch of its thread count.
    serial = blas_runs_serially(kernels.shape[1], kernels.shape[2], math.prod(out_size))
    map_blocks(correlate_block, blocks, blas=not serial)
    return out.reshape(batch, out_channels, *out_size)


# Winograd's F(4x4, 3x3) needs 4x fewer multiply-adds, but its 36 products contract over the
# input channels only (OpenBLAS runs short contractions slowly), and its filter transform is a
# fixed cost per call. Forward, two cores, against im2col: batch 128 at 32x32, 3 -> 16
# channels 0.67x, 8 -> 16 1.10x, 12 -> 12 1.17x, 16 -> 16 1.36x, 48 -> 12 1.54x; 32 -> 32 at
# 16x16 1.95x, 64 -> 64 at 8x8 2.45x. Small inputs (64 -> 64 channels at 8x8): batch 1 0.68x,
# 2 0.98x, 4 1.42x; 256 positions at batch 1: 16 -> 16 at 16x16 0.96x, 32 -> 32 1.13x.
_WINOGRAD_MIN_CHANNELS = 8
_WINOGRAD_MIN_POSITIONS = 256  # samples times input height times width


def _winograd_applies(
    x: np.ndarray,
    kernel_size: Sequence[int],
    stride: Sequence[int],
    dilation: Sequence[int],
    groups: int,
) -> bool:
    """Whether the forward contraction runs as Winograd F(4x4, 3x3) (``winograd``): a 2-D
    3x3 stride-1 undilated ungrouped correlation with enough input channels and positions."""
    return (
        tuple(kernel_size) == (3, 3)
        and tuple(stride) == (1, 1)
        and tuple(dilation) == (1, 1)
        and groups == 1
        and x.shape[1] >= _WINOGRAD_MIN_CHANNELS
        and x.shape[0] * x.shape[2] * x.shape[3] >= _WINOGRAD_MIN_POSITIONS
    )


def _winograd_blocks(x: np.ndarray, out_channels: int, out_size: Sequence[int]) -> list[slice]:
    """Blocks of samples for the Winograd passes, sized by their tiles (not im2col's columns)
    so that a block is one of ``winograd``'s chunks."""
    per_sample = winograd.bytes_per_sample(x.shape[1], out_channels, out_size, x.itemsize)
    return _sample_blocks(x.shape[0], per_sample)


def _correlate_weight(
    x: np.ndarray,
    grad_out: np.ndarray,
    kernel_size: Sequence[int],
    stride: Sequence[int],
    dilation: Sequence[int],
    pads: Sequence[tuple[int, int]],
    groups: int,
) -> np.ndarray:
    """dL/dw[f, c, k] = sum_{n, o} delta[n, f, o] x_pad[n, c, o * S + k * D].

    The correlation of the padded input with the local gradient ``grad_out`` (N, F, *O): the
    same windows the forward read, contracted with delta instead of with the weight. The
    result is (F, C/G, *K).
    """
    batch, out_channels = grad_out.shape[:2]
    out_size = grad_out.shape[2:]
    in_per_group = x.shape[1] // groups
    delta = grad_out.reshape(batch, groups, out_channels // groups, math.prod(out_size))

    def correlate_block(block: slice) -> np.ndarray:
        columns = _columns(x[block], kernel_size, stride, dilation, pads, out_size, groups)
        # (n, G, F/G, O) @ (n, G, O, C/G K), summed over the block -> (G, F/G, C/G K)
        partial: np.ndarray = np.matmul(delta[block], columns.swapaxes(-1, -2)).sum(axis=0)
        return partial

    grad_weight = sum_blocks(
        correlate_block, _sample_blocks(batch, _column_bytes(x, kernel_size, out_size))
    )
    return grad_weight.reshape(out_channels, in_per_group, *kernel_size)


def _winograd_weight_gradient(
    x: np.ndarray, grad_out: np.ndarray, geometry: ConvGeometry
) -> np.ndarray:
    """dL/dw of a 3x3 stride-1 layer by Winograd's F(4x4, 3x3)
    (``winograd.tile_weight_gradient``), the blocks' tile gradients summed, then taken back
    to the kernels once."""
    pads_before = (geometry.pads[0][0], geometry.pads[1][0])

    def block_gradient(block: slice) -> np.ndarray:
        return winograd.tile_weight_gradient(x[block], grad_out[block], pads_before)

    blocks = _winograd_blocks(x, grad_out.shape[1], geometry.output_size)
    return winograd.weight_from_tile_gradient(sum_blocks(block_gradient, blocks))


def _rot180_channel_swapped(weight: np.ndarray, groups: int) -> np.ndarray:
    """Rot180 of every kernel, with in/out channel axes swapped within each group.

    (F, C/G, *K) -> (C, F/G, *K): the kernel of the full correlation that maps delta back to
    the input (deck 004: "the transposed and flipped filter").
    """
    out_channels, in_per_group = weight.shape[:2]
    kernel_size = weight.shape[2:]
    grouped = weight.reshape(groups, out_channels // groups, in_per_group, *kernel_size)
    swapped = grouped.swapaxes(1, 2)
    reversed_taps: tuple[Any, ...] = (Ellipsis, *(slice(None, None, -1),) * len(kernel_size))
    flipped = swapped[reversed_taps]
    return np.ascontiguousarray(flipped).reshape(
        groups * in_per_group, out_channels // groups, *kernel_size
    )


def _padded_delta(
    grad_out: np.ndarray, geometry: ConvGeometry, channels: int, out_channels: int
) -> tuple[np.ndarray, list[tuple[int, int]]] | None:
    """delta and the padding that make dL/dx a stride-1 full correlation (``_backproject``), or
    None where the adjoint form is used (stride > 1, or few input channels).

    The padding is D (K - 1) - pad_before before and enough after to reach every input sample;
    where that is negative delta is cropped instead (the returned array is then a view).
    """
    groups = geometry.groups
    scattered_values = channels // groups * math.prod(geometry.output_size)
    correlated_values = out_channels // groups * math.prod(geometry.input_size)
    if any(s != 1 for s in geometry.stride) or 2 * scattered_values <= correlated_values:
        return None
    crop: list[slice] = []
    delta_pads = []
    for i, (before, _) in enumerate(geometry.pads):
        full = geometry.dilation[i] * (geometry.kernel_size[i] - 1)
        # = D (K - 1) - pad_after, plus a zero for each trailing input sample that no
        # window reached (stride 1 leaves none; output_padding of a transposed conv does).
        after = geometry.input_size[i] - geometry.output_size[i] + before
        pad_before, pad_after = full - before, after
        crop.append(slice(max(0, -pad_before), grad_out.shape[2 + i] - max(0, -pad_after)))
        delta_pads.append((max(0, pad_before), max(0, pad_after)))
    return grad_out[(slice(None), slice(None), *crop)], delta_pads


def _backproject_and_correlate_weight(
    delta: np.ndarray,
    delta_pads: Sequence[tuple[int, int]],
    x: np.ndarray,
    weight: np.ndarray,
    geometry: ConvGeometry,
) -> tuple[np.ndarray, np.ndarray]:
    """dL/dx and dL/dw of a stride-1 convolution from one set of im2col columns.

    dL/dx's columns (``_backproject``) hold delta_pad[n, f, i + D k] for every input position
    i and tap k. The weight gradient reads the same numbers: substituting i = o + D k - pad in
    dL/dw[f, c, k] = sum_{n, o} delta[n, f, o] x_pad[n, c, o + D k] gives

        dL/dw[f, c, k] = sum_{n, i} x[n, c, i] delta_pad[n, f, i + D (K - 1 - k)],

    the product of those columns with x^T (the unpadded input itself, no columns of its
    own), read with the taps flipped back. So the backward makes one im2col copy, not two.
    ``delta``/``delta_pads`` are ``_padded_delta``'s.
    """
    groups, kernel_size = geometry.groups, geometry.kernel_size
    batch, channels = x.shape[:2]
    out_channels = weight.shape[0]
    spatial = len(kernel_size)
    positions = math.prod(geometry.input_size)
    kernels = _rot180_channel_swapped(weight, groups).reshape(groups, channels // groups, -1)
    inputs = x.reshape(batch, groups, channels // groups, positions)
    grad_input = np.empty(
        (batch, groups, channels // groups, positions), dtype=np.result_type(delta, weight)
    )

    def block_grads(block: slice) -> np.ndarray:
        columns = _columns(
            delta[block],
            kernel_size,
            (1,) * spatial,
            geometry.dilation,
            delta_pads,
            geometry.input_size,
            groups,
        )  # (n, G, F/G prod(K), positions)
        # (G, C/G, F/G K) @ (n, G, F/G K, P) -> (n, G, C/G, P)
        np.matmul(kernels, columns, out=grad_input[block])
        # (n, G, F/G K, P) @ (n, G, P, C/G), summed over the block -> (G, F/G K, C/G)
        partial: np.ndarray = np.matmul(columns, inputs[block].swapaxes(-1, -2)).sum(axis=0)
        return partial

    flipped = sum_blocks(
        block_grads, _sample_blocks(batch, _column_bytes(delta, kernel_size, geometry.input_size))
    )
    # (G, F/G, *K flipped, C/G) -> (F, C/G, *K)
    taps: tuple[Any, ...] = (slice(None), slice(None), *(slice(None, None, -1),) * spatial)
    grad_weight = np.moveaxis(
        flipped.reshape(groups, out_channels // groups, *kernel_size, channels // groups)[taps],
        -1,
        2,
    )
    return (
        grad_input.reshape(batch, channels, *geometry.input_size),
        np.ascontiguousarray(grad_weight).reshape(out_channels, channels // groups, *kernel_size),
    )


def _backproject(
    grad_out: np.ndarray, weight: np.ndarray, geometry: ConvGeometry, channels: int
) -> np.ndarray:
    """dL/dx of z = conv(x, w): (N, F, *O) -> (N, C, *input_size).

    The notes' formula: dL/dx_pad = full correlation of delta, zero-inserted (S - 1 zeros
    between samples) and padded by D (K - 1) on every side, with Rot180(w) channel-swapped;
    then the padding region is removed. Component-wise (deck 004),
    dL/dx_pad[n, c, i] = sum_f sum_{o, k: o S + k D = i} delta[n, f, o] w[f, c, k].

    Stride 1: computed literally as that full correlation (``_correlate`` with the flipped
    kernel), whose columns hold F/G prod(K) values per *input* position. Only the part of the
    result that survives the removal of the padding region is computed, by padding delta with
    D (K - 1) - pad_before instead of D (K - 1) (cropping where that is negative).

    Stride > 1, or a layer that widens few channels into many (LeNet-5's 6 -> 16 5x5, valid):
    the zero-inserted delta would make S^d - 1 of every S^d products multiply a zero, and the
    full correlation's columns would be several times larger than the input, so the same sum
    is computed in its adjoint form: the product w^T delta gives every (position, tap)
    contribution, C/G prod(K) values per *output* position, and ``scatter_windows_2d`` (a
    compiled col2im; a 1-D layer is a 2-D one with one row) adds ("+=", windows overlap) each
    one onto the input sample o S + k D it came from, dropping those that fall in the padding.
    At stride 1 it is used when it moves at most half as many values as the full correlation
    would copy: on layers with as many input as output channels the full correlation was about
    as fast or faster (two cores, dL/dx alone: the dilated 32 -> 32 4.7 ms against 4.6
    scattered, the grouped 64 -> 64 2.8 against 3.2, ResNet-20's 32 -> 32 2.0 against 4.5),
    and at stride 1 with both gradients it shares its columns with dL/dw. LeNet-5's conv2
    dL/dx at batch 128: 11.3 ms as a full correlation, 1.3 ms scattered by NumPy's "+=" per
    tap, 0.75 ms by the compiled scatter. Tests check both forms against PyTorch.
    """
    stride, dilation, groups = geometry.stride, geometry.dilation, geometry.groups
    spatial = len(stride)
    padded_delta = _padded_delta(grad_out, geometry, channels, weight.shape[0])
    if padded_delta is not None:
        delta, delta_pads = padded_delta
        return _correlate(
            delta,
            _rot180_channel_swapped(weight, groups),
            (1,) * spatial,
            dilation,
            delta_pads,
            groups,
            geometry.input_size,
        )
    batch, out_channels = grad_out.shape[:2]
    kernels = weight.reshape(groups, out_channels // groups, -1)
    positions = math.prod(geometry.output_size)
    delta = grad_out.reshape(batch, groups, out_channels // groups, positions)
    # A 1-D layer is a 2-D one with a single row.
    kernel_size, out_size = _as_2d(geometry.kernel_size, 1), _as_2d(geometry.output_size, 1)
    (top, _), (left, _) = _as_2d(geometry.pads, (0, 0))
    grad_input = np.empty(
        (batch, channels, *_as_2d(geometry.input_size, 1)), dtype=np.result_type(grad_out, weight)
    )

    def backproject_block(block: slice) -> None:
        # (G, C/G K, F/G) @ (n, G, F/G, O): every (position, tap) contribution w^T delta.
        contributions = np.matmul(kernels.swapaxes(-1, -2), delta[block])
        samples = contributions.shape[0]
        scatter_windows_2d(
            contributions.reshape(samples, channels, *kernel_size, *out_size),
            *_as_2d(stride, 1),
            *_as_2d(dilation, 1),
            top,
            left,
            grad_input[block],
        )

    blocks = _sample_blocks(
        batch, channels * math.prod(kernel_size) * positions * grad_out.itemsize
    )
    # (C/G K, F/G) @ (F/G, O) per sample and group
    serial = blas_runs_serially(kernels.shape[2], kernels.shape[1], positions)
    map_blocks(backproject_block, blocks, blas=not serial)
    return grad_input.reshape(batch, channels, *geometry.input_size)


def _sum_over_batch_and_positions(grad_out: np.ndarray) -> np.ndarray:
    """dL/db[f] = sum_{n, o} delta[n, f, o]."""
    grad_bias: np.ndarray = grad_out.sum(axis=(0, *range(2, grad_out.ndim)))
    return grad_bias


def _add_bias(out: np.ndarray, bias: np.ndarray | None) -> None:
    if bias is not None:
        out += bias.reshape(-1, *(1,) * (out.ndim - 2))


# --------------------------------------------------------------------------------------------
# Validation: one place, so every caller gets the same errors.
# --------------------------------------------------------------------------------------------


def _check_arrays(
    func: str,
    spatial: int,
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None,
    weight_layout: str,
) -> None:
    for name, array in (("input", x), ("weight", weight), ("bias", bias)):
        if array is not None and not isinstance(array, np.ndarray):
            raise TypeError(f"{func}: {name} must be an ndarray, got {type(array).__name__}")
    check_float(x, func, "input")
    check_float(weight, func, "weight")
    if bias is not None:
        check_float(bias, func, "bias")
    check_same_dtype({"input": x, "weight": weight, "bias": bias}, func)
    check_ndim(
        x,
        (spatial + 1, spatial + 2),
        func,
        "input",
        f"{_LAYOUTS[spatial]}, or unbatched {_UNBATCHED_LAYOUTS[spatial]}",
    )
    check_ndim(weight, (spatial + 2,), func, "weight", weight_layout)
    if 0 in weight.shape:
        raise ValueError(
            f"{func}: weight must have no zero-size dimension (channels and kernel size must be "
            f"positive), got weight shape {tuple(weight.shape)}"
        )


def _check_groups(func: str, groups: Any) -> int:
    if not isinstance(groups, (int, np.integer)) or isinstance(groups, bool):
        raise TypeError(f"{func}: groups must be an int, got {groups!r}")
    if groups <= 0:
        raise ValueError(f"{func}: groups must be positive, got {groups}")
    return int(groups)


def _check_bias(func: str, bias: np.ndarray | None, channels: int, weight: np.ndarray) -> None:
    if bias is not None and (bias.ndim != 1 or bias.shape[0] != channels):
        raise ValueError(
            f"{func}: bias must be 1-D with {channels} elements (one per output channel of "
            f"weight shape {tuple(weight.shape)}), got shape {tuple(bias.shape)}"
        )


def _as_batched(x: np.ndarray, spatial: int) -> tuple[np.ndarray, bool]:
    unbatched = x.ndim == spatial + 1
    return (x[np.newaxis] if unbatched else x), unbatched


def _conv_geometry(
    func: str,
    spatial: int,
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None,
    stride: IntOrTuple,
    padding: IntOrTuple | str,
    dilation: IntOrTuple,
    groups: int,
) -> ConvGeometry:
    """Validate a convolution's arguments (``x`` batched) and work out its geometry."""
    groups = _check_groups(func, groups)
    strides = to_tuple(stride, spatial, func, "stride")
    check_positive(strides, func, "stride")
    dilations = to_tuple(dilation, spatial, func, "dilation")
    check_positive(dilations, func, "dilation")
    out_channels, in_per_group = weight.shape[:2]
    kernel_size = tuple(weight.shape[2:])
    if out_channels % groups:
        raise ValueError(
            f"{func}: groups={groups} must divide the weight's {out_channels} output channels "
            f"(weight shape {tuple(weight.shape)})"
        )
    channels = x.shape[1]
    if channels != in_per_group * groups:
        raise ValueError(
            f"{func}: input has {channels} channels but weight expects "
            f"{in_per_group * groups} (weight shape {tuple(weight.shape)}, groups={groups})"
        )
    _check_bias(func, bias, out_channels, weight)

    effective_kernel = tuple(d * (k - 1) + 1 for k, d in zip(kernel_size, dilations, strict=True))
    if isinstance(padding, str):
        if padding == "valid":
            pads = ((0, 0),) * spatial
        elif padding == "same":
            if any(s != 1 for s in strides):
                raise ValueError(
                    f"{func}: padding='same' is not supported for strided convolutions, got "
                    f"stride={strides}"
                )
            # PyTorch's rule: the odd sample of an even effective kernel goes after.
            pads = tuple(((e - 1) // 2, (e - 1) - (e - 1) // 2) for e in effective_kernel)
        else:
            raise ValueError(
                f"{func}: padding must be an int, a tuple of ints, 'valid' or 'same', "
                f"got {padding!r}"
            )
    else:
        amounts = to_tuple(padding, spatial, func, "padding")
        check_non_negative(amounts, func, "padding")
        pads = tuple((p, p) for p in amounts)

    input_size = tuple(x.shape[2:])
    padded_size = tuple(
        size + before + after for size, (before, after) in zip(input_size, pads, strict=True)
    )
    if any(p < e for p, e in zip(padded_size, effective_kernel, strict=True)):
        raise ValueError(
            f"{func}: kernel size can't be greater than the padded input: effective kernel "
            f"size {effective_kernel} (kernel {kernel_size}, dilation {dilations}) but padded "
            f"input size {padded_size} (input {input_size}, padding "
            f"{tuple(p for p in pads)})"
        )
    out_size = tuple(
        output_size(size, k, s, before + after, d)
        for size, k, s, (before, after), d in zip(
            input_size, kernel_size, strides, pads, dilations, strict=True
        )
    )
    return ConvGeometry(kernel_size, strides, dilations, pads, groups, input_size, out_size)


def _conv_transpose_geometry(
    func: str,
    spatial: int,
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None,
    stride: IntOrTuple,
    padding: IntOrTuple,
    output_padding: IntOrTuple,
    groups: int,
    dilation: IntOrTuple,
) -> ConvGeometry:
    """Validate a transposed convolution's arguments (``x`` batched); returns the geometry of
    the convolution it is the adjoint of (whose output has x's size)."""
    groups = _check_groups(func, groups)
    strides = to_tuple(stride, spatial, func, "stride")
    check_positive(strides, func, "stride")
    dilations = to_tuple(dilation, spatial, func, "dilation")
    check_positive(dilations, func, "dilation")
    if isinstance(padding, str):
        raise TypeError(
            f"{func}: padding must be an int or a tuple of ints (no 'same'/'valid' for "
            f"transposed convolutions), got {padding!r}"
        )
    amounts = to_tuple(padding, spatial, func, "padding")
    check_non_negative(amounts, func, "padding")
    extra = to_tuple(output_padding, spatial, func, "output_padding")
    check_non_negative(extra, func, "output_padding")
    if any(e >= max(s, d) for e, s, d in zip(extra, strides, dilations, strict=True)):
        raise ValueError(
            f"{func}: output_padding must be smaller than either stride or dilation in every "
            f"dimension, got output_padding={extra}, stride={strides}, dilation={dilations}"
        )
    in_channels, out_per_group = weight.shape[:2]
    kernel_size = tuple(weight.shape[2:])
    if in_channels % groups:
        raise ValueError(
            f"{func}: groups={groups} must divide the weight's {in_channels} input channels "
            f"(weight shape {tuple(weight.shape)})"
        )
    channels = x.shape[1]
    if channels != in_channels:
        raise ValueError(
            f"{func}: input has {channels} channels but weight expects {in_channels} "
            f"(weight shape {tuple(weight.shape)}, groups={groups})"
        )
    _check_bias(func, bias, out_per_group * groups, weight)

    in_size = tuple(x.shape[2:])
    out_size = tuple(
        (size - 1) * s - 2 * p + d * (k - 1) + e + 1
        for size, s, p, d, k, e in zip(
            in_size, strides, amounts, dilations, kernel_size, extra, strict=True
        )
    )
    if any(size <= 0 for size in out_size):
        raise ValueError(
            f"{func}: output size (L - 1) * stride - 2 * padding + dilation * (kernel - 1) + "
            f"output_padding + 1 must be positive, got {out_size} for input size {in_size}, "
            f"stride {strides}, padding {amounts}, dilation {dilations}, kernel "
            f"{kernel_size}, output_padding {extra}"
        )
    pads = tuple((p, p) for p in amounts)
    return ConvGeometry(kernel_size, strides, dilations, pads, groups, out_size, in_size)


# --------------------------------------------------------------------------------------------
# Convolution.
# --------------------------------------------------------------------------------------------


def _conv_forward(
    func: str,
    spatial: int,
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None,
    stride: IntOrTuple,
    padding: IntOrTuple | str,
    dilation: IntOrTuple,
    groups: int,
) -> tuple[np.ndarray, Any]:
    _check_arrays(func, spatial, x, weight, bias, "out_channels, in_channels/groups, *kernel")
    batched, unbatched = _as_batched(x, spatial)
    geometry = _conv_geometry(
        func, spatial, batched, weight, bias, stride, padding, dilation, groups
    )
    out = _correlate(
        batched,
        weight,
        geometry.stride,
        geometry.dilation,
        geometry.pads,
        geometry.groups,
        geometry.output_size,
    )
    _add_bias(out, bias)
    # The input itself (held by its tensor anyway) rather than its padded copy.
    saved = (batched, weight, geometry, unbatched)
    return (out[0] if unbatched else out), saved


def conv_backward(grad_out: np.ndarray, saved: Any, needs_input_grad: Needs) -> Grads:
    """Gradients of convolution, delta = grad_out = dL/dz:

    dL/db[f]       = sum_{n, o} delta[n, f, o]
    dL/dw[f, c, k] = sum_{n, o} delta[n, f, o] x_pad[n, c, o S + k D]
                     (correlation of the padded input with delta)
    dL/dx          = full correlation of delta (zero-inserted for S > 1, padded by D (K - 1))
                     with the Rot180, in/out-channel-swapped kernel; padding region removed.
    """
    x, weight, geometry, unbatched = saved
    if unbatched:
        grad_out = grad_out[np.newaxis]
    grad_input: np.ndarray | None = None
    grad_weight: np.ndarray | None = None
    grad_bias: np.ndarray | None = None
    # Winograd's weight gradient where its forward applies and x has no more channels than
    # delta; dL/dx then goes on its own (``_backproject``: Winograd again, or im2col)
    # instead of sharing delta's columns. Backward at batch 128, two cores, shared columns
    # against Winograd dL/dx + dL/dw: 16 -> 16 at 32x32 10.2 against 4.5 + 4.5 ms, 32 -> 32
    # at 16x16 8.4 against 2.2 + 2.2; DenseNet-BC's 48 -> 12 (b64) 8.7 against 4.0 + 5.6.
    winograd_weight = (
        needs_input_grad[1]
        and x.shape[1] <= grad_out.shape[1]
        and _winograd_applies(
            x, geometry.kernel_size, geometry.stride, geometry.dilation, geometry.groups
        )
    )
    padded_delta = None
    if needs_input_grad[0] and needs_input_grad[1] and not winograd_weight:
        padded_delta = _padded_delta(grad_out, geometry, x.shape[1], weight.shape[0])
    if padded_delta is not None:
        grad_input, grad_weight = _backproject_and_correlate_weight(
            *padded_delta, x, weight, geometry
        )
    elif needs_input_grad[0]:
        grad_input = _backproject(grad_out, weight, geometry, x.shape[1])
    if grad_input is not None and unbatched:
        grad_input = grad_input[0]
    if winograd_weight:
        grad_weight = _winograd_weight_gradient(x, grad_out, geometry)
    elif needs_input_grad[1] and grad_weight is None:
        grad_weight = _correlate_weight(
            x,
            grad_out,
            geometry.kernel_size,
            geometry.stride,
            geometry.dilation,
            geometry.pads,
            geometry.groups,
        )
    if len(needs_input_grad) > 2 and needs_input_grad[2]:
        grad_bias = _sum_over_batch_and_positions(grad_out)
    return grad_input, grad_weight, grad_bias


def conv1d_forward(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    stride: IntOrTuple = 1,
    padding: IntOrTuple | str = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
) -> tuple[np.ndarray, Any]:
    """z[n, f, l] = b[f] + sum_{c in group(f)} sum_k w[f, c, k] x_pad[n, c, l S + k D]."""
    return _conv_forward("conv1d", 1, x, weight, bias, stride, padding, dilation, groups)


conv1d_backward = conv_backward


def conv2d_forward(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    stride: IntOrTuple = 1,
    padding: IntOrTuple | str = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
) -> tuple[np.ndarray, Any]:
    """z[n, f, i, j] = b[f] + sum_{c in group(f)} sum_{p, q} w[f, c, p, q]
    x_pad[n, c, i S_h + p D_h, j S_w + q D_w]."""
    return _conv_forward("conv2d", 2, x, weight, bias, stride, padding, dilation, groups)


conv2d_backward = conv_backward


# --------------------------------------------------------------------------------------------
# Transposed convolution: the adjoint of convolution.
# --------------------------------------------------------------------------------------------


def _conv_transpose_forward(
    func: str,
    spatial: int,
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None,
    stride: IntOrTuple,
    padding: IntOrTuple,
    output_padding: IntOrTuple,
    groups: int,
    dilation: IntOrTuple,
) -> tuple[np.ndarray, Any]:
    _check_arrays(func, spatial, x, weight, bias, "in_channels, out_channels/groups, *kernel")
    batched, unbatched = _as_batched(x, spatial)
    geometry = _conv_transpose_geometry(
        func, spatial, batched, weight, bias, stride, padding, output_padding, groups, dilation
    )
    out_channels = weight.shape[1] * geometry.groups
    # y = conv's dL/dx with delta = x: the zero-inserted (upsampled) input, padded by
    # D (K - 1), correlated with the Rot180 channel-swapped kernel, padding region removed.
    out = _backproject(batched, weight, geometry, out_channels)
    _add_bias(out, bias)
    saved = (batched, weight, geometry, unbatched)
    return (out[0] if unbatched else out), saved


def conv_transpose_backward(grad_out: np.ndarray, saved: Any, needs_input_grad: Needs) -> Grads:
    """Gradients of the transposed convolution y = C^T x (C: the convolution with this weight):

    dL/dx = C dL/dy: convolution's forward applied to grad_out (padded, strided, dilated);
    dL/dw[c, f, k] = sum_{n, o} x[n, c, o] dL/dy_pad[n, f, o S + k D]: convolution's weight
                     gradient with the roles swapped (grad_out as input, x as delta);
    dL/db[f] = sum_{n, o} dL/dy[n, f, o].
    """
    x, weight, geometry, unbatched = saved
    if unbatched:
        grad_out = grad_out[np.newaxis]
    grad_input = grad_weight = grad_bias = None
    if needs_input_grad[0]:
        grad_input = _correlate(
            grad_out,
            weight,
            geometry.stride,
            geometry.dilation,
            geometry.pads,
            geometry.groups,
            geometry.output_size,
        )
        if unbatched:
            grad_input = grad_input[0]
    if needs_input_grad[1]:
        grad_weight = _correlate_weight(
            grad_out,
            x,
            geometry.kernel_size,
            geometry.stride,
            geometry.dilation,
            geometry.pads,
            geometry.groups,
        )
    if len(needs_input_grad) > 2 and needs_input_grad[2]:
        grad_bias = _sum_over_batch_and_positions(grad_out)
    return grad_input, grad_weight, grad_bias


def conv_transpose1d_forward(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    stride: IntOrTuple = 1,
    padding: IntOrTuple = 0,
    output_padding: IntOrTuple = 0,
    groups: int = 1,
    dilation: IntOrTuple = 1,
) -> tuple[np.ndarray, Any]:
    """y = conv1d's input gradient with delta = x, plus bias (output (L - 1) S - 2 P + D (K - 1)
    + output_padding + 1)."""
    return _conv_transpose_forward(
        "conv_transpose1d", 1, x, weight, bias, stride, padding, output_padding, groups, dilation
    )


conv_transpose1d_backward = conv_transpose_backward


def conv_transpose2d_forward(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    stride: IntOrTuple = 1,
    padding: IntOrTuple = 0,
    output_padding: IntOrTuple = 0,
    groups: int = 1,
    dilation: IntOrTuple = 1,
) -> tuple[np.ndarray, Any]:
    """y = conv2d's input gradient with delta = x, plus bias (output per axis (L - 1) S - 2 P
    + D (K - 1) + output_padding + 1)."""
    return _conv_transpose_forward(
        "conv_transpose2d", 2, x, weight, bias, stride, padding, output_padding, groups, dilation
    )


conv_transpose2d_backward = conv_transpose_backward
