"""Sliding windows and their adjoint, shared by convolution, pooling, unfold and fold.

A layer that scans a K-tap window over its input with stride S and dilation D reads, for
output position o and tap k, the (padded) input at ``o * S + k * D``. ``window_view`` exposes
all those reads at once as a zero-copy view; ``scatter_windows`` is its adjoint: it sends a
value per (position, tap) back to the input sample it was read from, adding ("+=") where
windows overlap, which is exactly how the notes route gradients back through a scan.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
from numpy.lib.stride_tricks import as_strided


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


def scatter_windows(
    values: np.ndarray,
    input_shape: Sequence[int],
    stride: Sequence[int],
    dilation: Sequence[int],
) -> np.ndarray:
    """Adjoint of ``window_view``: sum every window entry back onto the sample it was read from.

    ``values`` has shape ``lead + out_size + kernel_size``; the result has ``input_shape``
    (the padded input's shape). One strided slice ``+=`` per kernel tap (no loop over pixels).
    """
    spatial = len(stride)
    lead = values.ndim - 2 * spatial
    out_size = values.shape[lead : lead + spatial]
    kernel_size = values.shape[lead + spatial :]
    result = np.zeros(tuple(input_shape), dtype=values.dtype)
    head = (slice(None),) * lead
    for tap in itertools.product(*(range(k) for k in kernel_size)):
        target = head + tuple(
            slice(
                tap[i] * dilation[i],
                tap[i] * dilation[i] + (out_size[i] - 1) * stride[i] + 1,
                stride[i],
            )
            for i in range(spatial)
        )
        result[target] += values[head + (slice(None),) * spatial + tap]
    return result
