"""im2col and col2im: the windows of a 2-D (or 1-D) layer copied into GEMM columns, and back.

A layer that scans a K-tap window over its input with stride S and dilation D reads, for
output position o and tap k, the (padded) input at ``o S + k D`` (``convprop.ops.windows``
shows those reads as a zero-copy view, which the reference implementations use). The fast
kernels copy them once into im2col's *columns* (N, C, Kh, Kw, Ho, Wo), so that one matrix
product per sample and group contracts over channels and taps together
(``convprop.ops.kernels.conv_gemm``); ``scatter_windows_2d`` is the adjoint (col2im): it sends
a value per (position, tap) back to the input sample it was read from, adding ("+=") where
windows overlap and dropping what was read from the padding, exactly how the notes route
gradients back through a scan. Both are compiled loops (``compiled``). A 1-D layer is a 2-D
one with a single row. Why each piece exists, measured: BENCHMARKS.md, "Kernels".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from convprop.ops.kernels.compiled import compiled
from convprop.ops.kernels.parallel import BLOCK_MULTIPLE, split_evenly
from convprop.ops.windows import pad_spatial

# Columns of this many bytes (for a block of samples) stay in the L2/L3 cache between their
# copy and the GEMM that reads them; larger blocks would make the GEMM read them back from
# memory, and raise the peak memory of a step (BENCHMARKS.md, "Kernels: im2col").
BLOCK_BYTES = 2 * 1024 * 1024


def sample_blocks(batch: int, bytes_per_sample: int) -> list[slice]:
    """Split the batch into blocks whose im2col columns fit in ``BLOCK_BYTES``; when that
    takes more than one block, into a multiple of ``BLOCK_MULTIPLE`` equal blocks
    (``map_blocks``), so that no core is left idle at the end, while the split, which decides
    how the weight gradient's partial sums are formed, stays the same on every machine
    (``parallel``). A batch that fits in one block stays one block, run in the calling thread
    (handing small ops' pieces to the pool costs more than it saves).

    This is cache blocking of one big contraction, not a loop over samples: each block is a
    single batched GEMM, and small inputs are one block.
    """
    batch = max(batch, 1)
    if batch * bytes_per_sample <= BLOCK_BYTES:
        return [slice(0, batch)]
    per_block = max(1, BLOCK_BYTES // max(1, bytes_per_sample))
    count = -(-batch // per_block)
    return split_evenly(batch, -(-count // BLOCK_MULTIPLE) * BLOCK_MULTIPLE)


def as_2d(values: Sequence[Any], fill: Any) -> tuple[Any, Any]:
    """A 1-D layer's sizes, strides or paddings as a 2-D layer's with a single row: ``fill``
    for the row axis (1 for sizes and strides, (0, 0) for paddings)."""
    both = (fill,) * (2 - len(values)) + tuple(values)
    return both[0], both[1]


def row_wrapped(
    x: np.ndarray,
    kernel_size: Sequence[int],
    stride: Sequence[int],
    dilation: Sequence[int],
    pads: Sequence[tuple[int, int]],
    out_size: Sequence[int],
) -> bool:
    """Whether ``row_wrapped_columns`` applies: a 2-D stride-1 convolution whose output rows
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


def row_wrapped_columns(
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
    long, and slower per byte). The reads that left the image horizontally
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


def im2col(
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
    (``gather_windows_2d``), putting taps next to channels so a single matrix product
    per sample and group contracts over both; "same-width" stride-1 2-D convolutions (most 3x3
    layers, their input gradients) build the same array faster from the flattened image
    (``row_wrapped_columns``). Output positions stay last, so the product lands directly in
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
    if row_wrapped(x, kernel_size, stride, dilation, pads, out_size):
        return row_wrapped_columns(x, kernel_size, dilation, pads, out_size).reshape(shape)
    # Valid and strided layers (and every 1-D one, as a 2-D one with a single row): one
    # compiled gather (NumPy's copy of the transposed window view pays a setup per output row
    # of 5-16 values).
    padded = np.ascontiguousarray(pad_spatial(x, pads))
    kernel_2d, out_2d = as_2d(kernel_size, 1), as_2d(out_size, 1)
    columns = np.empty((batch, channels, *kernel_2d, *out_2d), dtype=x.dtype)
    gather_windows_2d(
        padded.reshape(batch, channels, *as_2d(padded.shape[2:], 1)),
        *as_2d(stride, 1),
        *as_2d(dilation, 1),
        columns,
    )
    return columns.reshape(shape)


def unfold_2d(
    x: np.ndarray,
    kernel: tuple[int, int],
    dilation: tuple[int, int],
    padding: tuple[int, int],
    stride: tuple[int, int],
    blocks: tuple[int, int],
) -> np.ndarray:
    """(N, C, H, W) -> (N, C K_h K_w, L), ``torch.nn.functional.unfold``'s layout: the
    windows of the zero-padded input, one compiled copy (``gather_windows_2d``)."""
    batch, channels = x.shape[:2]
    padded = np.ascontiguousarray(pad_spatial(x, [(p, p) for p in padding]))
    columns = np.empty((batch, channels, *kernel, *blocks), dtype=x.dtype)
    gather_windows_2d(padded, *stride, *dilation, columns)
    return columns.reshape(batch, channels * kernel[0] * kernel[1], blocks[0] * blocks[1])


def fold_2d(
    columns: np.ndarray,
    spatial: tuple[int, int],
    kernel: tuple[int, int],
    dilation: tuple[int, int],
    padding: tuple[int, int],
    stride: tuple[int, int],
    blocks: tuple[int, int],
) -> np.ndarray:
    """(N, C K_h K_w, L) -> (N, C, H, W), the adjoint of ``unfold_2d``: "+=" of every window
    entry onto the pixel it was read from, entries of the padding region dropped, one compiled
    pass (``scatter_windows_2d``)."""
    batch = columns.shape[0]
    channels = columns.shape[1] // (kernel[0] * kernel[1])
    per_window = np.ascontiguousarray(columns).reshape(batch, channels, *kernel, *blocks)
    image = np.empty((batch, channels, *spatial), dtype=columns.dtype)
    scatter_windows_2d(per_window, *stride, *dilation, *padding, image)
    return image


def column_bytes(x: np.ndarray, kernel_size: Sequence[int], out_size: Sequence[int]) -> int:
    return int(x.shape[1] * math.prod(kernel_size) * math.prod(out_size) * x.itemsize)


@compiled
def gather_windows_2d(
    padded: np.ndarray,
    stride_h: int,
    stride_w: int,
    dilation_h: int,
    dilation_w: int,
    columns: np.ndarray,
) -> None:
    """columns[n, c, p, q, i, j] = padded[n, c, i Sh + p Dh, j Sw + q Dw]: im2col of a 2-D
    layer, one pass over the columns (N, C, Kh, Kw, Ho, Wo, C-contiguous: written through a
    flat view) in their memory order.

    (The "same"-width stride-1 layers keep ``row_wrapped_columns``, whose runs are whole
    images.)
    """
    u = np.uint64
    batch, channels, height, width = padded.shape
    kernel_h, kernel_w, out_h, out_w = columns.shape[2:]
    source = padded.ravel()
    target = columns.ravel()
    plane_size = u(height) * u(width)
    at = u(0)
    for plane in range(u(batch * channels)):
        first = plane * plane_size
        for p in range(u(kernel_h)):
            for q in range(u(kernel_w)):
                for i in range(u(out_h)):
                    row = (
                        first + (i * u(stride_h) + p * u(dilation_h)) * u(width) + q * u(dilation_w)
                    )
                    for j in range(u(out_w)):
                        target[at + j] = source[row + j * u(stride_w)]
                    at += u(out_w)


@compiled
def scatter_windows_2d(
    columns: np.ndarray,
    stride_h: int,
    stride_w: int,
    dilation_h: int,
    dilation_w: int,
    top: int,
    left: int,
    image: np.ndarray,
) -> None:
    """image[n, c, y, x] = sum of columns[n, c, p, q, i, j] over every (p, q, i, j) with
    i Sh + p Dh - top = y and j Sw + q Dw - left = x: the adjoint of ``gather_windows_2d``
    (col2im), each window entry added back onto the input sample it was read from, entries
    that were read from the zero padding dropped (the notes' "remove the padding region").
    ``columns`` is (N, C, Kh, Kw, Ho, Wo); every entry of ``image`` (N, C, H, W, C-contiguous:
    it is written through a flat view) is written.

    One plane at a time, zeroed first, stays in the L1 cache while its Kh Kw Ho runs of (at
    most) Wo values are added. Per tap, the columns j whose target lies inside the image are
    worked out once (j0 <= j < j1), so the innermost loop has no test and is vectorised.
    Indices are unsigned, as in ``winograd``: with signed ones LLVM does not vectorise the
    loop (BENCHMARKS.md, "Kernels: im2col").
    """
    u = np.uint64
    batch, channels, kernel_h, kernel_w, out_h, out_w = columns.shape
    height, width = image.shape[2:]
    source = columns.ravel()
    target = image.ravel()
    plane_size = height * width
    at = u(0)
    for plane in range(batch * channels):
        first = plane * plane_size
        for y in range(plane_size):
            target[first + y] = 0
        for p in range(kernel_h):
            for q in range(kernel_w):
                shift = q * dilation_w - left  # x = j Sw + shift
                j0 = -(shift // stride_w) if shift < 0 else 0
                j1 = min(out_w, max(0, (width - 1 - shift) // stride_w + 1))
                for i in range(out_h):
                    y = i * stride_h + p * dilation_h - top
                    if 0 <= y < height and j0 < j1:
                        row = u(first + y * width + shift)
                        for j in range(u(j0), u(j1)):
                            target[row + j * u(stride_w)] += source[at + j]
                    at += u(out_w)
