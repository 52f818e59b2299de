"""The notes' array manipulations, shared by the reference implementations and the kernels.

A layer that scans a K-tap window over its input with stride S and dilation D reads, for
output position o and tap k, the (padded) input at ``o * S + k * D``. ``window_view`` exposes
all those reads at once as a zero-copy view (what the reference implementations contract);
``pad_spatial`` and ``unpad_spatial`` add and remove the zero padding (the notes' "the padding
region is removed before backprop continues"), ``zero_insert`` is deck 004's upsampling and
``rot180_channel_swapped`` the kernel of a convolution's input gradient. (The fast kernels
copy the windows into GEMM columns instead: ``convprop.ops.kernels.im2col``.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided

from convprop.ops.geometry import conv_output_size


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
            conv_output_size(x.shape[lead + i], kernel_size[i], stride[i], 0, dilation[i])
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


def zero_insert(x: np.ndarray, stride: Sequence[int]) -> np.ndarray:
    """Deck 004's upsampling: S - 1 zeros between neighbouring entries along each of the last
    ``len(stride)`` axes, (L - 1) S + 1 samples from L (what a strided layer's delta gets
    before the full correlation of its input gradient)."""
    spatial = len(stride)
    lead = x.ndim - spatial
    shape = x.shape[:lead] + tuple(
        (n - 1) * s + 1 for n, s in zip(x.shape[lead:], stride, strict=True)
    )
    out = np.zeros(shape, dtype=x.dtype)
    every_stride: tuple[Any, ...] = (Ellipsis, *(slice(None, None, s) for s in stride))
    out[every_stride] = x
    return out


def rot180_channel_swapped(weight: np.ndarray, groups: int) -> np.ndarray:
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
