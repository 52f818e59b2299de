"""Sliding windows and their adjoint, shared by convolution, pooling, unfold and fold.

A layer that scans a K-tap window over its input with stride S and dilation D reads, for
output position o and tap k, the (padded) input at ``o * S + k * D``. ``window_view`` exposes
all those reads at once as a zero-copy view; ``gather_windows_2d`` copies them into im2col's
columns (N, C, Kh, Kw, Ho, Wo), and ``scatter_windows_2d`` is its adjoint (col2im): it sends a
value per (position, tap) back to the input sample it was read from, adding ("+=") where
windows overlap and dropping what was read from the padding, which is exactly how the notes
route gradients back through a scan. The two are compiled loops (``_compiled``): their rows
of 5-16 values made NumPy's copies pay a setup per row. A 1-D scan is a 2-D one with a
single row.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.lib.stride_tricks import as_strided

from convprop.ops._compiled import compiled


def output_size(
    size: int, kernel: int, stride: int, pad_total: int, dilation: int, ceil_mode: bool = False
) -> int:
    """Number of window positions: floor((L + P - D (K - 1) - 1) / S) + 1 (ceil with ceil_mode)."""
    span = size + pad_total - dilation * (kernel - 1) - 1
    if ceil_mode:
        return -(-span // stride) + 1
    return span // stride + 1


def pad_spatial(x: np.ndarray, pads: Sequence[tuple[int, int]], value: float = 0.0) -> np.ndarray:
    """Pad the trailing ``len(pads)`` axes by ``(before, after)``; returns ``x`` if no padding."""
    if all(before == 0 and after == 0 for before, after in pads):
        return x
    lead = x.ndim - len(pads)
    shape = x.shape[:lead] + tuple(
        size + before + after for size, (before, after) in zip(x.shape[lead:], pads, strict=True)
    )
    # Written once: the core copied in, then only the border slabs filled (not the whole
    # array filled first and the core overwritten).
    padded = np.empty(shape, dtype=x.dtype)
    inner = (slice(None),) * lead + tuple(
        slice(before, before + size) for size, (before, _) in zip(x.shape[lead:], pads, strict=True)
    )
    padded[inner] = x
    for axis, (before, after) in enumerate(pads, start=lead):
        head = (slice(None),) * axis
        padded[(*head, slice(0, before))] = value
        padded[(*head, slice(shape[axis] - after, shape[axis]))] = value
    return padded


def unpad_spatial(x: np.ndarray, pads: Sequence[tuple[int, int]]) -> np.ndarray:
    """The adjoint of zero padding: drop the padded border (the notes' "remove the padding")."""
    lead = x.ndim - len(pads)
    inner = (slice(None),) * lead + tuple(
        slice(before, size - after)
        for size, (before, after) in zip(x.shape[lead:], pads, strict=True)
    )
    return x[inner]


def window_view(
    x: np.ndarray,
    kernel_size: Sequence[int],
    stride: Sequence[int],
    dilation: Sequence[int],
    out_size: Sequence[int] | None = None,
) -> np.ndarray:
    """Zero-copy view of shape ``x.shape[:-d] + out_size + kernel_size`` over the last d axes.

    ``view[..., o_1..o_d, k_1..k_d] = x[..., o_1 S_1 + k_1 D_1, ..., o_d S_d + k_d D_d]``.
    ``out_size`` may be smaller than the number of complete windows (never larger).
    """
    spatial = len(kernel_size)
    lead = x.ndim - spatial
    if out_size is None:
        out_size = tuple(
            output_size(x.shape[lead + i], kernel_size[i], stride[i], 0, dilation[i])
            for i in range(spatial)
        )
    strides = x.strides
    view_shape = x.shape[:lead] + tuple(out_size) + tuple(kernel_size)
    view_strides = (
        strides[:lead]
        + tuple(strides[lead + i] * stride[i] for i in range(spatial))
        + tuple(strides[lead + i] * dilation[i] for i in range(spatial))
    )
    return as_strided(x, view_shape, view_strides, writeable=False)


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

    Measured against NumPy's copy of the transposed window view (one core): LeNet-5's conv2
    (32 samples, 6 channels, 5x5 on 14x14) 0.20 -> 0.10 ms, ResNet-20's strided 3x3 layers
    0.13 -> 0.09 and 0.18 -> 0.12, the 1x1 stride-2 projection 0.055 -> 0.041. (The
    "same"-width stride-1 layers keep ``_row_wrapped_columns``, whose runs are whole images.)
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
    Measured against NumPy's "+=" per tap (one core, 32 samples): LeNet-5's conv2 (6 channels,
    5x5, 10x10 outputs) 0.27 -> 0.15 ms (against its former row-wrapped runs of Ho Wp values),
    ResNet-20's strided 3x3 layers 1.3 -> 0.50 and 1.5 -> 0.44 ms. Unsigned indices, as in
    ``winograd``: with signed ones the loop was not vectorised (0.47 ms on LeNet-5's conv2).
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
