"""Winograd's minimal filtering F(2x2, 3x3): the forward of 3x3 stride-1 convolutions.

A 3x3 correlation computes each output from 9 multiplications per input channel. Winograd's
algorithm (Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks", 2016) computes
a 2x2 tile of outputs from a 4x4 tile of inputs d with 16: for one channel and kernel g,

    Y = A^T [(G g G^T) * (B^T d B)] A            (* element-wise)

    B^T = [[1,  0, -1,  0],     G = [[1,    0,    0  ],     A^T = [[1, 1,  1,  0],
           [0,  1,  1,  0],          [1/2,  1/2,  1/2],            [0, 1, -1, -1]]
           [0, -1,  1,  0],          [1/2, -1/2,  1/2],
           [0,  1,  0, -1]]          [0,    0,    1  ]]

(check on one row: with d = (d0, d1, d2, d3) and g = (g0, g1, g2), the 1-D F(2, 3) gives
y0 = m0 + m1 + m2 = g0 d0 + g1 d1 + g2 d2 and y1 = m1 - m2 - m3 = g0 d1 + g1 d2 + g2 d3, with
m0 = (d0 - d2) g0, m1 = (d1 + d2)(g0 + g1 + g2)/2, m2 = (d2 - d1)(g0 - g1 + g2)/2,
m3 = (d1 - d3) g2; the 2-D form nests it along rows and columns.)

The sum over input channels commutes with A^T [.] A, so for output channel f and tile t

    z[f, tile t] = A^T [ sum_c U[f, c] * V[c, t] ] A,   U = G w G^T,  V[c, t] = B^T d[c, t] B,

and for each of the 16 positions xi of the 4x4 tiles, sum_c U_xi[f, c] V_xi[c, t] is one
matrix product (F x C) @ (C x tiles): 16 products with C-long contractions instead of one
with 9C-long ones, 16/4 = 4 multiply-adds per output and channel instead of 9 (2.25x fewer).
The tiles start every 2 samples and overlap by 2; the input is zero-padded (the layer's own
padding, plus zeros for the last tile of an odd-sized output, whose extra outputs are
dropped).

Only the arithmetic is reordered: the result equals the direct correlation up to rounding
(the transforms add and halve; the tests compare with PyTorch in float64). convprop uses it for
the forward contraction of 3x3 stride-1 layers with at least 16 input channels
(``conv._winograd_applies``); the backward keeps im2col, whose one set of columns serves both
gradients. Measured (BENCHMARKS.md, session 4): one core, 64 samples, against im2col and its
product: 16->16 at 32x32 3.6-3.9 ms against 4.75, 32->32 at 16x16 3.2 against 3.9, 64->64 at
8x8 3.0 against 3.5, 48->12 at 32x32 3.9 against 5.9; ResNet-20 inference at batch 128 1.08x
faster (10 alternating rounds).

The transforms are compiled loops (``_compiled``) over flat arrays with unsigned indices:
numba checks every signed index for negative values (Python's wrap-around), which kept LLVM
from vectorising these loops (5-10x slower, measured).
"""

from __future__ import annotations

import numpy as np

from convprop.ops._compiled import compiled
from convprop.ops._parallel import matmul

# G of F(2x2, 3x3): U = G w G^T turns a 3x3 kernel into its 4x4 tile of transformed taps.
_G = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]])
# The same as one linear map from a kernel's 9 taps (row-major) to its 16 tile entries.
_TILE_FROM_TAPS = np.kron(_G, _G)  # (16, 9)


def filter_transform(weight: np.ndarray) -> np.ndarray:
    """U_xi[f, c] = (G w[f, c] G^T)[xi] for the 16 positions xi = 4 i + j: (16, F, C)."""
    # (G w G^T)[i, j] = sum_{p, q} G[i, p] G[j, q] w[p, q]: the 9 taps times kron(G, G)^T, one
    # product for every kernel at once (einsum's path search or 4096 broadcast 4x3 products
    # cost 0.1-0.6 ms a call, more than a batch-1 layer).
    taps = weight.reshape(-1, 9)
    # (16, F C); through ``matmul`` so that OpenBLAS stays single-threaded (its idle threads
    # would spin under the pool's blocks).
    tiles = matmul(_TILE_FROM_TAPS.astype(weight.dtype, copy=False), taps.T)
    return tiles.reshape(16, *weight.shape[:2])


def correlate_block(
    x: np.ndarray, filters: np.ndarray, pads: tuple[int, int], out: np.ndarray
) -> None:
    """out[n, f] = the 3x3 correlation of x[n] (zero-padded by ``pads`` = (top, left) and
    enough after) with the kernels whose ``filter_transform`` is ``filters``.

    x (n, C, H, W) and out (n, F, Ho, Wo), C-contiguous; out is written in place. The samples
    go through in chunks whose transformed tiles (V and the products M) fit in a core's L2
    cache, so each chunk's data is written by one step and read by the next from there; the
    buffers are reused from chunk to chunk.
    """
    batch, channels = x.shape[:2]
    out_channels, out_h, out_w = out.shape[1:]
    tiles_h, tiles_w = -(-out_h // 2), -(-out_w // 2)
    tiles = tiles_h * tiles_w
    per_sample = 16 * (channels + out_channels) * tiles * x.itemsize
    chunk = max(1, min(batch, _CHUNK_BYTES // per_sample))
    transformed = np.empty(16 * channels * chunk * tiles, dtype=x.dtype)
    products = np.empty(16 * out_channels * chunk * tiles, dtype=out.dtype)
    whole = (2 * tiles_h, 2 * tiles_w) == (out_h, out_w)
    target = out if whole else np.empty((batch, out_channels, 2 * tiles_h, 2 * tiles_w), out.dtype)
    for start in range(0, batch, chunk):
        count = min(chunk, batch - start)
        # Contiguous (16, C, T) and (16, F, T) arrays at the start of the reused buffers.
        v = transformed[: 16 * channels * count * tiles].reshape(16, channels, -1)
        m = products[: 16 * out_channels * count * tiles].reshape(16, out_channels, -1)
        _input_transform(x[start : start + count], pads[0], pads[1], tiles_h, tiles_w, v)
        np.matmul(filters, v, out=m)  # (16, F, C) @ (16, C, T) -> (16, F, T)
        _output_transform(m, target[start : start + count], tiles_h, tiles_w)
    if not whole:
        out[...] = target[:, :, :out_h, :out_w]


# Budget for one chunk's transformed input and products: half of the benchmark machine's 1 MiB
# L2 per core. (Measured on one core: 0.5-4 MiB chunks within noise of each other, 128 KiB
# 5-30% slower; not tuned further.)
_CHUNK_BYTES = 512 * 1024


@compiled
def _input_transform(
    image: np.ndarray, top: int, left: int, tiles_h: int, tiles_w: int, out: np.ndarray
) -> None:
    """out[4 i + j, c, t] = (B^T d B)[i, j] for the 4x4 tile d at tile t of image[n, c]
    zero-padded by ``top`` rows and ``left`` columns (and zeros after).

    image (n, C, H, W); out (16, C, T), C-contiguous, tiles t = (n, tile row, tile column) in
    that order. B^T d B is taken as B^T (d B): first every padded row against B (the column
    combinations d0 - d2, d1 + d2, d2 - d1, d1 - d3 at every tile column), then those four
    planes' rows against B^T.
    """
    one, two, three = np.uint64(1), np.uint64(2), np.uint64(3)
    batch, channels, height, width = image.shape
    rows, cols = np.uint64(tiles_h), np.uint64(tiles_w)
    padded_h, padded_w = 2 * tiles_h + 2, 2 * tiles_w + 2
    copied = max(0, min(width, padded_w - left))  # image columns that some tile reads
    # One padded row: the image row at [left, left + copied), zeros around it (never written).
    line = np.zeros(padded_w, dtype=image.dtype)
    tiles = np.uint64(batch) * rows * cols
    plane_stride = np.uint64(channels) * tiles
    target = out.ravel()
    plane = np.uint64(padded_h) * cols
    combined = np.zeros(4 * padded_h * tiles_w, dtype=image.dtype)
    for n in range(batch):
        for c in range(channels):
            for r in range(padded_h):
                at = np.uint64(r) * cols
                row = r - top
                if row < 0 or row >= height:
                    for j in range(cols):
                        combined[at + j] = 0
                        combined[plane + at + j] = 0
                        combined[two * plane + at + j] = 0
                        combined[three * plane + at + j] = 0
                    continue
                for k in range(np.uint64(copied)):
                    line[np.uint64(left) + k] = image[n, c, row, k]
                for j in range(cols):
                    s = two * j
                    d0, d1, d2, d3 = line[s], line[s + one], line[s + two], line[s + three]
                    combined[at + j] = d0 - d2
                    combined[plane + at + j] = d1 + d2
                    combined[two * plane + at + j] = d2 - d1
                    combined[three * plane + at + j] = d1 - d3
            first_tile = np.uint64(c) * tiles + np.uint64(n) * rows * cols
            for k in range(np.uint64(4)):
                for i in range(rows):
                    top_row = k * plane + two * i * cols  # combined row 2i of combination k
                    at = first_tile + i * cols
                    for j in range(cols):
                        d0 = combined[top_row + j]
                        d1 = combined[top_row + cols + j]
                        d2 = combined[top_row + two * cols + j]
                        d3 = combined[top_row + three * cols + j]
                        target[k * plane_stride + at + j] = d0 - d2
                        target[(np.uint64(4) + k) * plane_stride + at + j] = d1 + d2
                        target[(np.uint64(8) + k) * plane_stride + at + j] = d2 - d1
                        target[(np.uint64(12) + k) * plane_stride + at + j] = d1 - d3


@compiled
def _output_transform(products: np.ndarray, out: np.ndarray, tiles_h: int, tiles_w: int) -> None:
    """out[n, f, 2i + a, 2j + b] = (A^T m A)[a, b] for the 4x4 tile m = products[:, f, t].

    products (16, F, T); out (n, F, 2 tiles_h, 2 tiles_w). A^T m A is taken as (A^T m) A:
    the two row combinations m0 + m1 + m2 and m1 - m2 - m3 of every tile column, then the
    same across columns.
    """
    one, two, three, four = np.uint64(1), np.uint64(2), np.uint64(3), np.uint64(4)
    batch, channels = np.uint64(out.shape[0]), np.uint64(out.shape[1])
    rows, cols = np.uint64(tiles_h), np.uint64(tiles_w)
    source = products.ravel()
    target = out.ravel()
    tiles = batch * rows * cols
    plane_stride = channels * tiles
    width = two * cols
    # (2 row combinations, 4 tile columns k, cols) for one tile row.
    combined = np.empty(8 * tiles_w, dtype=products.dtype)
    for n in range(batch):
        for f in range(channels):
            for i in range(rows):
                first = f * tiles + (n * rows + i) * cols
                for k in range(four):
                    for j in range(cols):
                        t = first + j
                        m0 = source[k * plane_stride + t]
                        m1 = source[(four + k) * plane_stride + t]
                        m2 = source[(np.uint64(8) + k) * plane_stride + t]
                        m3 = source[(np.uint64(12) + k) * plane_stride + t]
                        combined[k * cols + j] = m0 + m1 + m2
                        combined[(four + k) * cols + j] = m1 - m2 - m3
                row = ((n * channels + f) * two * rows + two * i) * width
                for a in range(two):
                    half = a * four * cols
                    at = row + a * width
                    for j in range(cols):
                        p0 = combined[half + j]
                        p1 = combined[half + cols + j]
                        p2 = combined[half + two * cols + j]
                        p3 = combined[half + three * cols + j]
                        target[at + two * j] = p0 + p1 + p2
                        target[at + two * j + one] = p1 - p2 - p3
