"""Convolution as im2col and GEMM: the fast kernels of ``convprop.ops.conv``.

Each kernel computes one of the notes' sums (``convprop.ops.conv``'s reference implementation
writes them literally) by copying the windows into columns (``im2col``) and contracting them
with one matrix product per sample and group, on blocks of samples spread over the cores
(``parallel.map_blocks``; a block's columns stay in the CPU cache between their copy and the
product):

* :func:`correlate`: z[n, f, o] = sum_{c in group(f)} sum_k w[f, c, k] x_pad[n, c, o S + k D],
  the forward (and, with delta and the Rot180 channel-swapped kernel, the input gradient's
  full correlation, :func:`full_correlation`);
* :func:`correlate_weight`: dL/dw[f, c, k] = sum_{n, o} delta[n, f, o] x_pad[n, c, o S + k D];
* :func:`backproject_adjoint`: dL/dx in the adjoint form, every (position, tap) contribution
  w^T delta added back ("+=", col2im) onto the input sample o S + k D it came from, the
  padding region dropped; it never multiplies the zeros a zero-inserted delta would hold;
* :func:`shared_columns`: dL/dx and dL/dw of a stride-1 layer from one set of columns.

``convprop.ops.conv.plan_forward`` and ``plan_backward`` decide which one runs; why each exists
is measured in BENCHMARKS.md ("Kernels").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from convprop.ops.geometry import ConvGeometry
from convprop.ops.kernels.im2col import (
    as_2d,
    column_bytes,
    im2col,
    sample_blocks,
    scatter_windows_2d,
)
from convprop.ops.kernels.parallel import blas_runs_serially, map_blocks, sum_blocks
from convprop.ops.windows import rot180_channel_swapped


def correlate(
    x: np.ndarray,
    weight: np.ndarray,
    stride: Sequence[int],
    dilation: Sequence[int],
    pads: Sequence[tuple[int, int]],
    groups: int,
    out_size: Sequence[int],
) -> np.ndarray:
    """z[n, f, o] = sum_{c in group(f)} sum_k w[f, c, k] x_pad[n, c, o S + k D].

    ``x_pad`` is ``x`` zero-padded by ``pads``; ``weight`` is (F, C/G, *K); the result is
    (N, F, *out_size): im2col and one GEMM per sample and group, blocks of samples on every
    core.
    """
    batch = x.shape[0]
    out_channels = weight.shape[0]
    kernel_size = weight.shape[2:]
    blocks = sample_blocks(batch, column_bytes(x, kernel_size, out_size))
    kernels = weight.reshape(groups, out_channels // groups, -1)
    out = np.empty(
        (batch, groups, out_channels // groups, math.prod(out_size)),
        dtype=np.result_type(x, weight),
    )

    def correlate_block(block: slice) -> None:
        columns = im2col(x[block], kernel_size, stride, dilation, pads, out_size, groups)
        # (G, F/G, C/G K) @ (n, G, C/G K, O) -> (n, G, F/G, O)
        np.matmul(kernels, columns, out=out[block])

    # OpenBLAS keeps small products (LeNet-5's) on one thread anyway, so those need no switch
    # of its thread count.
    serial = blas_runs_serially(kernels.shape[1], kernels.shape[2], math.prod(out_size))
    map_blocks(correlate_block, blocks, blas=not serial)
    return out.reshape(batch, out_channels, *out_size)


def correlate_weight(
    x: np.ndarray,
    grad_out: np.ndarray,
    kernel_size: Sequence[int],
    stride: Sequence[int],
    dilation: Sequence[int],
    pads: Sequence[tuple[int, int]],
    groups: int,
) -> np.ndarray:
    """dL/dw[f, c, k] = sum_{n, o} delta[n, f, o] x_pad[n, c, o S + k D].

    The correlation of the padded input with the local gradient ``grad_out`` (N, F, *O): the
    same columns the forward read, contracted with delta instead of with the weight, the
    blocks' partial sums added in block order. The result is (F, C/G, *K).
    """
    batch, out_channels = grad_out.shape[:2]
    out_size = grad_out.shape[2:]
    in_per_group = x.shape[1] // groups
    delta = grad_out.reshape(batch, groups, out_channels // groups, math.prod(out_size))

    def correlate_block(block: slice) -> np.ndarray:
        columns = im2col(x[block], kernel_size, stride, dilation, pads, out_size, groups)
        # (n, G, F/G, O) @ (n, G, O, C/G K), summed over the block -> (G, F/G, C/G K)
        partial: np.ndarray = np.matmul(delta[block], columns.swapaxes(-1, -2)).sum(axis=0)
        return partial

    grad_weight = sum_blocks(
        correlate_block, sample_blocks(batch, column_bytes(x, kernel_size, out_size))
    )
    return grad_weight.reshape(out_channels, in_per_group, *kernel_size)


def padded_delta(
    grad_out: np.ndarray, geometry: ConvGeometry
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """delta and the padding that make dL/dx a stride-1 full correlation with the Rot180
    kernel whose output is exactly the *unpadded* input: D (K - 1) - pad_before before and
    enough after to reach every input sample, so only the part of dL/dx_pad that survives
    the removal of the padding region is computed. Where that is negative delta is cropped
    instead (the returned array is then a view). Stride 1 only (the plan's rule)."""
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


def full_correlation(
    grad_out: np.ndarray, weight: np.ndarray, geometry: ConvGeometry
) -> np.ndarray:
    """dL/dx of a stride-1 convolution, literally the notes' full correlation of the padded
    delta with Rot180(w), channel-swapped (im2col of the padded delta, whose columns hold
    F/G prod(K) values per *input* position)."""
    delta, delta_pads = padded_delta(grad_out, geometry)
    return correlate(
        delta,
        rot180_channel_swapped(weight, geometry.groups),
        (1,) * geometry.spatial,
        geometry.dilation,
        delta_pads,
        geometry.groups,
        geometry.input_size,
    )


def shared_columns(
    grad_out: np.ndarray, x: np.ndarray, weight: np.ndarray, geometry: ConvGeometry
) -> tuple[np.ndarray, np.ndarray]:
    """dL/dx and dL/dw of a stride-1 convolution from one set of im2col columns.

    dL/dx's columns (:func:`full_correlation`) hold delta_pad[n, f, i + D k] for every input
    position i and tap k. The weight gradient reads the same numbers: substituting
    i = o + D k - pad in dL/dw[f, c, k] = sum_{n, o} delta[n, f, o] x_pad[n, c, o + D k] gives

        dL/dw[f, c, k] = sum_{n, i} x[n, c, i] delta_pad[n, f, i + D (K - 1 - k)],

    the product of those columns with x^T (the unpadded input itself, no columns of its
    own), read with the taps flipped back. So the backward makes one im2col copy, not two.
    """
    delta, delta_pads = padded_delta(grad_out, geometry)
    groups, kernel_size = geometry.groups, geometry.kernel_size
    batch, channels = x.shape[:2]
    out_channels = weight.shape[0]
    spatial = len(kernel_size)
    positions = math.prod(geometry.input_size)
    kernels = rot180_channel_swapped(weight, groups).reshape(groups, channels // groups, -1)
    inputs = x.reshape(batch, groups, channels // groups, positions)
    grad_input = np.empty(
        (batch, groups, channels // groups, positions), dtype=np.result_type(delta, weight)
    )

    def block_grads(block: slice) -> np.ndarray:
        columns = im2col(
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
        block_grads, sample_blocks(batch, column_bytes(delta, kernel_size, geometry.input_size))
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


def backproject_adjoint(
    grad_out: np.ndarray, weight: np.ndarray, geometry: ConvGeometry, channels: int
) -> np.ndarray:
    """dL/dx of z = conv(x, w) in the adjoint form: (N, F, *O) -> (N, C, *input_size).

    The same sum as the notes' full correlation, dL/dx_pad[n, c, i] = sum_f sum_{o, k:
    o S + k D = i} delta[n, f, o] w[f, c, k] (deck 004), computed the other way round: the
    product w^T delta gives every (position, tap) contribution, C/G prod(K) values per
    *output* position, and ``scatter_windows_2d`` (col2im; a 1-D layer is a 2-D one with one
    row) adds ("+=", windows overlap) each one onto the input sample o S + k D it came from,
    dropping those that fall in the padding. A zero-inserted delta would make S^d - 1 of
    every S^d products of the full correlation multiply a zero; this form makes none of them.
    """
    stride, dilation, groups = geometry.stride, geometry.dilation, geometry.groups
    batch, out_channels = grad_out.shape[:2]
    kernels = weight.reshape(groups, out_channels // groups, -1)
    positions = math.prod(geometry.output_size)
    delta = grad_out.reshape(batch, groups, out_channels // groups, positions)
    kernel_size, out_size = as_2d(geometry.kernel_size, 1), as_2d(geometry.output_size, 1)
    (top, _), (left, _) = as_2d(geometry.pads, (0, 0))
    grad_input = np.empty(
        (batch, channels, *as_2d(geometry.input_size, 1)), dtype=np.result_type(grad_out, weight)
    )

    def backproject_block(block: slice) -> None:
        # (G, C/G K, F/G) @ (n, G, F/G, O): every (position, tap) contribution w^T delta.
        contributions = np.matmul(kernels.swapaxes(-1, -2), delta[block])
        samples = contributions.shape[0]
        scatter_windows_2d(
            contributions.reshape(samples, channels, *kernel_size, *out_size),
            *as_2d(stride, 1),
            *as_2d(dilation, 1),
            top,
            left,
            grad_input[block],
        )

    blocks = sample_blocks(batch, channels * math.prod(kernel_size) * positions * grad_out.itemsize)
    serial = blas_runs_serially(kernels.shape[2], kernels.shape[1], positions)
    map_blocks(backproject_block, blocks, blas=not serial)
    return grad_input.reshape(batch, channels, *geometry.input_size)
