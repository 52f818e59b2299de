"""Winograd's minimal filtering F(4x4, 3x3): the forward of 3x3 stride-1 convolutions.

A 3x3 correlation computes each output from 9 multiplications per input channel. Winograd's
algorithm (Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks", 2016) computes
a 4x4 tile of outputs from a 6x6 tile of inputs d with 36: for one channel and kernel g,

    Y = A^T [(G g G^T) * (B^T d B)] A            (* element-wise)

    B^T = [[4,  0, -5,  0, 1, 0],    G = [[ 1/4,     0,    0],    A^T = [[1, 1,  1, 1,  1, 0],
           [0, -4, -4,  1, 1, 0],         [-1/6, -1/6, -1/6],           [0, 1, -1, 2, -2, 0],
           [0,  4, -4, -1, 1, 0],         [-1/6,  1/6, -1/6],           [0, 1,  1, 4,  4, 0],
           [0, -2, -1,  2, 1, 0],         [1/24, 1/12,  1/6],           [0, 1, -1, 8, -8, 1]]
           [0,  2, -1, -2, 1, 0],         [1/24, -1/12, 1/6],
           [0,  4,  0, -5, 0, 1]]         [   0,     0,    1]]

These are the Toom-Cook matrices of the points 0, 1, -1, 2, -2 and infinity. In 1-D, the four
outputs y_i = sum_k g_k d_{i+k} are the coefficients of x^2..x^5 in the product of the kernel
polynomial g(x) = g0 + g1 x + g2 x^2 (read backwards) with the data polynomial; a product of
degree 5 is fixed by its values at 6 points, and at each point it is one multiplication of the
two factors' values. G evaluates the kernel at the points (scaled by the Lagrange denominators),
B^T evaluates the data, A^T interpolates the product's coefficients back; row 0 of the
identity, for example, is y0 = m0 + m1 + m2 + m3 + m4 with m = (G g) * (B^T d). The 2-D form
nests the 1-D one along rows and columns. (The tests check the three matrices against the direct
tile sum to 1e-13.)

The sum over input channels commutes with A^T [.] A, so for output channel f and tile t

    z[f, tile t] = A^T [ sum_c U[c, f] * V[t, c] ] A,   U = G w G^T,  V[t, c] = B^T d[c, t] B,

and for each of the 36 positions xi of the 6x6 tiles, sum_c V_xi[t, c] U_xi[c, f] is one matrix
product (tiles x C) @ (C x F): 36/16 = 2.25 multiply-adds per output and channel instead of 9
(4x fewer). The tiles start every 4 samples and overlap by 2; the input is zero-padded (the
layer's own padding, plus zeros for the last tile of an output whose size is not a multiple of
4, whose extra outputs are dropped).

The weight gradient runs through the same tiles (``tile_weight_gradient``): with
M_xi = V_xi U_xi and z's tile A^T M A, the chain rule gives dL/dM = A (dL/dz's tile) A^T,
dL/dU_xi = V_xi^T dL/dM_xi (one product per xi contracting over every tile of the batch) and
dL/dw = G^T dL/dU G. The input gradient is itself a 3x3 stride-1 correlation (of delta with the
flipped kernel), which ``conv`` sends through ``correlate_block``.

Only the arithmetic is reordered: the result equals the direct correlation up to rounding. The
transforms multiply by up to 8 and add up to 36 terms, so in float32 the forward is a few 1e-6
of the output's largest magnitude off the exact one, against a few 1e-7 for im2col, and the
weight gradient ~4e-6 of its largest magnitude (PyTorch's ~1e-6); the tests compare with
PyTorch in float64 and bound the float32 errors. convprop uses it for 3x3 stride-1 layers with
at least 8 input channels and 256 positions (``conv.plan_forward``), and for their weight
gradient where the input has no more channels than the output (``conv.plan_backward``).

Layout. Every step runs on the lanes of a chunk of samples: lane p = (sample, channel), the
lanes of one pixel next to each other (channels last). A tile's 36 values are then computed for
all lanes in one contiguous loop, which the compiler turns into vector instructions; along an
image row there are only 2-8 tiles in ResNet-20 (8x8 to 32x32 maps), too few for a vector
(what held back an earlier F(2x2, 3x3) laid out along rows). A
chunk goes through five passes whose data stays in a core's L2 cache: the samples transposed
into a zero-padded channels-last image, the input transform (36 planes of tiles x lanes), the
36 products, the output transform (4x4 outputs per tile, channels last), and the transpose back
into (N, F, H, W) (BENCHMARKS.md, "Kernels: Winograd", for what this layout gained).

The passes are compiled loops (``compiled``) over flat arrays with unsigned indices: numba
checks every signed index for negative values (Python's wrap-around), which keeps LLVM from
vectorising; constants are of the array's dtype (a float32 times a Python int is a float64 in
numba, which doubled the work).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from convprop.ops.geometry import ConvGeometry
from convprop.ops.kernels.compiled import compiled
from convprop.ops.kernels.conv_gemm import padded_delta
from convprop.ops.kernels.im2col import sample_blocks
from convprop.ops.kernels.parallel import map_blocks, matmul, sum_blocks
from convprop.ops.windows import rot180_channel_swapped

B_T = np.array(
    [
        [4, 0, -5, 0, 1, 0],
        [0, -4, -4, 1, 1, 0],
        [0, 4, -4, -1, 1, 0],
        [0, -2, -1, 2, 1, 0],
        [0, 2, -1, -2, 1, 0],
        [0, 4, 0, -5, 0, 1],
    ],
    dtype=np.float64,
)
G = np.array(
    [
        [1 / 4, 0, 0],
        [-1 / 6, -1 / 6, -1 / 6],
        [-1 / 6, 1 / 6, -1 / 6],
        [1 / 24, 1 / 12, 1 / 6],
        [1 / 24, -1 / 12, 1 / 6],
        [0, 0, 1],
    ]
)
A_T = np.array(
    [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]],
    dtype=np.float64,
)
# U = G w G^T as one linear map from a kernel's 9 taps (row-major) to its 36 tile entries.
_TILE_FROM_TAPS = np.kron(G, G)  # (36, 9)

# Budget for one chunk's transformed input and products: large enough to keep the products'
# row count up on small maps (BENCHMARKS.md, "Kernels: Winograd").
CHUNK_BYTES = 2 * 1024 * 1024
# Spacing added between the 36 planes of a chunk's buffers, so that they do not start at
# multiples of 4 KiB (the same L1 cache set for every plane).
_PLANE_GAP = 16


def filter_transform(weight: np.ndarray) -> np.ndarray:
    """U_xi[c, f] = (G w[f, c] G^T)[xi] for the 36 positions xi = 6 i + j: (36, C, F).

    A view of a (36, F, C) array: each U_xi is the transpose of a contiguous (F, C) matrix,
    which BLAS takes as it is (a copy into (36, C, F) cost 60 us for 64x64 kernels, as much
    as a batch-1 layer's whole Winograd pass).
    """
    # (G w G^T)[i, j] = sum_{p, q} G[i, p] G[j, q] w[p, q]: the 9 taps times kron(G, G)^T, one
    # product for every kernel at once, through ``matmul`` so that OpenBLAS stays
    # single-threaded (its idle threads would spin under the pool's blocks).
    taps = weight.reshape(-1, 9)
    tiles = matmul(_TILE_FROM_TAPS.astype(weight.dtype, copy=False), taps.T)  # (36, F C)
    return tiles.reshape(36, *weight.shape[:2]).transpose(0, 2, 1)


def bytes_per_sample(
    channels: int, out_channels: int, out_size: Sequence[int], itemsize: int
) -> int:
    """A sample's share of a chunk's transformed input and products (36 values per tile and
    channel, in and out)."""
    tiles = -(-out_size[0] // 4) * -(-out_size[1] // 4)
    return 36 * tiles * (channels + out_channels) * itemsize


class _Chunks:
    """The tile grid, the chunk size and the reused buffers of ``correlate_block`` and
    ``tile_weight_gradient``, which walk the same chunks of samples: the input side (the
    zero-padded channels-last image and its 36 transformed planes V), the 36 planes of the
    output side (the products M, or dL/dM), and the channels-last grid of 4x4 output tiles."""

    def __init__(
        self,
        x: np.ndarray,
        out_channels: int,
        out_size: Sequence[int],
        out_dtype: np.dtype,
        chunk_bytes: int,
    ) -> None:
        self.batch, self.channels = x.shape[:2]
        self.out_channels = out_channels
        self.tiles_h, self.tiles_w = -(-out_size[0] // 4), -(-out_size[1] // 4)
        self.tiles = self.tiles_h * self.tiles_w
        per_sample = bytes_per_sample(self.channels, out_channels, out_size, x.itemsize)
        self.size = max(1, min(self.batch, chunk_bytes // per_sample))
        self.padded_w = 4 * self.tiles_w + 2
        self.padded_size = (4 * self.tiles_h + 2) * self.padded_w * self.channels
        self.padded = np.empty(self.padded_size * self.size, dtype=x.dtype)
        self.in_plane = self.tiles * self.size * self.channels + _PLANE_GAP
        self.transformed = np.empty(36 * self.in_plane, dtype=x.dtype)
        self.out_plane = self.tiles * self.size * out_channels + _PLANE_GAP
        self.out_planes = np.empty(36 * self.out_plane, dtype=out_dtype)
        self.grid_size = 16 * self.tiles * out_channels  # a sample's 4x4 output tiles
        self.grid = np.empty(self.grid_size * self.size, dtype=out_dtype)

    def __iter__(self) -> Iterator[slice]:
        for start in range(0, self.batch, self.size):
            yield slice(start, min(start + self.size, self.batch))

    def input_tiles(self, x: np.ndarray, pads: tuple[int, int]) -> np.ndarray:
        """V of a chunk's samples x: (36, tiles n, C), a view of ``transformed``."""
        count = x.shape[0]
        padded = self.padded[: self.padded_size * count]
        _to_channels_last(np.ascontiguousarray(x), *pads, self.padded_w, padded)
        _input_transform(
            self.padded,
            self.padded_w,
            self.tiles_h,
            self.tiles_w,
            count * self.channels,
            self.transformed,
            self.in_plane,
        )
        rows = self.tiles * count
        planes = self.transformed.reshape(36, self.in_plane)[:, : rows * self.channels]
        return planes.reshape(36, rows, self.channels)

    def output_planes(self, count: int) -> np.ndarray:
        """The first ``count`` samples' part of ``out_planes``: (36, tiles n, F), a view."""
        rows = self.tiles * count
        planes = self.out_planes.reshape(36, self.out_plane)[:, : rows * self.out_channels]
        return planes.reshape(36, rows, self.out_channels)


def correlate_block(
    x: np.ndarray,
    filters: np.ndarray,
    pads: tuple[int, int],
    out: np.ndarray,
    chunk_bytes: int = CHUNK_BYTES,
) -> None:
    """out[n, f] = the 3x3 correlation of x[n] (zero-padded by ``pads`` = (top, left) and
    enough after) with the kernels whose ``filter_transform`` is ``filters``.

    x (n, C, H, W) and out (n, F, Ho, Wo), out C-contiguous and written in place. The samples
    go through in chunks of ``chunk_bytes`` (``bytes_per_sample``); the buffers are reused
    from chunk to chunk.
    """
    out_channels = out.shape[1]
    chunks = _Chunks(x, out_channels, out.shape[2:], out.dtype, chunk_bytes)
    for chunk in chunks:
        count = chunk.stop - chunk.start
        v = chunks.input_tiles(x[chunk], pads)
        np.matmul(v, filters, out=chunks.output_planes(count))  # (36, tiles n, F)
        _output_transform(
            chunks.out_planes,
            chunks.out_plane,
            chunks.tiles_h,
            chunks.tiles_w,
            count * out_channels,
            chunks.grid,
        )
        _to_channels_first(chunks.grid, 4 * chunks.tiles_w, out[chunk])


def tile_weight_gradient(
    x: np.ndarray, delta: np.ndarray, pads: tuple[int, int], chunk_bytes: int = CHUNK_BYTES
) -> np.ndarray:
    """dL/dU_xi[c, f] = sum_t V_xi[t, c] dM_xi[t, f] over the tiles of x (n, C, H, W) and of
    delta = dL/dz (n, F, Ho, Wo), for z the correlation of ``correlate_block``: (36, C, F).

    In the forward, M_xi[t, f] = sum_c V_xi[t, c] U_xi[c, f] and z's tile is A^T M A, so
    dL/dM = A dL/dz_tile A^T (the output transform's adjoint, ``_output_gradient_transform``;
    delta's tiles past (Ho, Wo) are zero, as the forward dropped those outputs) and
    dL/dU_xi = V_xi^T dL/dM_xi: one product per position xi that contracts over all the tiles
    of the samples, 2.25 multiply-adds per output position and channel pair instead of 9.
    ``weight_from_tile_gradient`` takes it back to the kernels.
    """
    out_channels = delta.shape[1]
    chunks = _Chunks(x, out_channels, delta.shape[2:], delta.dtype, chunk_bytes)
    grid_w = 4 * chunks.tiles_w
    total = np.zeros((36, x.shape[1], out_channels), dtype=np.result_type(x, delta))
    for chunk in chunks:
        count = chunk.stop - chunk.start
        v = chunks.input_tiles(x[chunk], pads)
        grid = chunks.grid[: chunks.grid_size * count]
        _to_channels_last(np.ascontiguousarray(delta[chunk]), 0, 0, grid_w, grid)
        _output_gradient_transform(
            chunks.grid,
            grid_w,
            chunks.tiles_h,
            chunks.tiles_w,
            count * out_channels,
            chunks.out_planes,
            chunks.out_plane,
        )
        # (36, C, tiles n) @ (36, tiles n, F), added up over the chunks.
        total += np.matmul(v.transpose(0, 2, 1), chunks.output_planes(count))
    return total


def weight_from_tile_gradient(tile_gradient: np.ndarray) -> np.ndarray:
    """dL/dw[f, c] = G^T dL/dU[c, f] G, the filter transform's adjoint: (36, C, F) ->
    (F, C, 3, 3), i.e. dL/dw[f, c, k] = sum_xi kron(G, G)[xi, k] dL/dU_xi[c, f]."""
    _, channels, out_channels = tile_gradient.shape
    taps = matmul(
        _TILE_FROM_TAPS.T.astype(tile_gradient.dtype), tile_gradient.reshape(36, -1)
    )  # (9, C F)
    return np.ascontiguousarray(taps.reshape(3, 3, channels, out_channels).transpose(3, 2, 0, 1))


@compiled
def _to_channels_last(
    image: np.ndarray, top: int, left: int, padded_w: int, padded: np.ndarray
) -> None:
    """padded[((top + h) padded_w + left + w) P + p] = image[n, c, h, w] for the lane
    p = n C + c of the P = N C lanes, and zeros around: the zero-padded image, channels last.

    A transpose of the (P, H W) matrix ``image`` into rows of ``padded``, in 8x8 blocks (each
    block's 8 reads and 8 writes are runs of 8 contiguous values; one element at a time along
    either axis left the other axis a stride-P or stride-HW access for every element).
    """
    u = np.uint64
    batch, channels, height, width = image.shape
    lanes, h_count, w_count = u(batch * channels), u(height), u(width)
    plane = h_count * w_count
    source = image.ravel()
    zero = padded.dtype.type(0)
    row_size = u(padded_w) * lanes
    # The border: whole rows above and below the image, the columns left and right of it.
    for position in range(u(top) * row_size):
        padded[position] = zero
    for position in range((u(top) + h_count) * row_size, u(padded.size)):
        padded[position] = zero
    right = (u(left) + w_count) * lanes
    for h in range(h_count):
        row = (u(top) + h) * row_size
        for position in range(u(left) * lanes):
            padded[row + position] = zero
        for position in range(right, row_size):
            padded[row + position] = zero
    eight = u(8)
    full_lanes = lanes - lanes % eight
    full_w = w_count - w_count % eight
    for h in range(h_count):
        row = ((u(top) + h) * u(padded_w) + u(left)) * lanes
        first = h * w_count
        for w0 in range(u(0), full_w, eight):
            for p0 in range(u(0), full_lanes, eight):
                for w in range(eight):
                    for p in range(eight):
                        at = row + (w0 + w) * lanes + p0 + p
                        padded[at] = source[(p0 + p) * plane + first + w0 + w]
            for w in range(eight):
                for p in range(full_lanes, lanes):
                    padded[row + (w0 + w) * lanes + p] = source[p * plane + first + w0 + w]
        for w in range(full_w, w_count):
            for p in range(lanes):
                padded[row + w * lanes + p] = source[p * plane + first + w]


@compiled
def _input_transform(
    padded: np.ndarray,
    padded_w: int,
    tiles_h: int,
    tiles_w: int,
    lanes: int,
    out: np.ndarray,
    plane: int,
) -> None:
    """out[xi plane + t P + p] = (B^T d B)[xi] for the 6x6 window d of lane p at tile
    t = i tiles_w + j (rows 4i..4i+5, columns 4j..4j+5 of ``padded``), P = ``lanes``.

    (B^T d) B: first the six row combinations B^T d of every window column s (into ``rows``,
    6 x 6 planes of P lanes), then the six column combinations of each of those rows.
    """
    u = np.uint64
    k2, k4, k5 = out.dtype.type(2), out.dtype.type(4), out.dtype.type(5)
    p_count, width, plane_size = u(lanes), u(padded_w), u(plane)
    down = width * p_count  # one padded row further
    rows = np.empty(36 * lanes, dtype=out.dtype)
    for i in range(u(tiles_h)):
        for j in range(u(tiles_w)):
            tile = i * u(tiles_w) + j
            corner = (u(4) * i * width + u(4) * j) * p_count
            for s in range(u(6)):
                at = corner + s * p_count
                for p in range(p_count):
                    d0 = padded[at + p]
                    d1 = padded[at + down + p]
                    d2 = padded[at + u(2) * down + p]
                    d3 = padded[at + u(3) * down + p]
                    d4 = padded[at + u(4) * down + p]
                    d5 = padded[at + u(5) * down + p]
                    rows[s * p_count + p] = k4 * d0 - k5 * d2 + d4
                    rows[(u(6) + s) * p_count + p] = d3 + d4 - k4 * (d1 + d2)
                    rows[(u(12) + s) * p_count + p] = k4 * (d1 - d2) + d4 - d3
                    rows[(u(18) + s) * p_count + p] = k2 * (d3 - d1) + d4 - d2
                    rows[(u(24) + s) * p_count + p] = k2 * (d1 - d3) + d4 - d2
                    rows[(u(30) + s) * p_count + p] = k4 * d1 - k5 * d3 + d5
            for a in range(u(6)):
                source = u(6) * a * p_count
                target = u(6) * a * plane_size + tile * p_count
                for p in range(p_count):
                    e0 = rows[source + p]
                    e1 = rows[source + p_count + p]
                    e2 = rows[source + u(2) * p_count + p]
                    e3 = rows[source + u(3) * p_count + p]
                    e4 = rows[source + u(4) * p_count + p]
                    e5 = rows[source + u(5) * p_count + p]
                    out[target + p] = k4 * e0 - k5 * e2 + e4
                    out[target + plane_size + p] = e3 + e4 - k4 * (e1 + e2)
                    out[target + u(2) * plane_size + p] = k4 * (e1 - e2) + e4 - e3
                    out[target + u(3) * plane_size + p] = k2 * (e3 - e1) + e4 - e2
                    out[target + u(4) * plane_size + p] = k2 * (e1 - e3) + e4 - e2
                    out[target + u(5) * plane_size + p] = k4 * e1 - k5 * e3 + e5


@compiled
def _output_transform(
    products: np.ndarray, plane: int, tiles_h: int, tiles_w: int, lanes: int, out: np.ndarray
) -> None:
    """out[((4i + a) 4 tiles_w + 4j + b) Q + q] = (A^T m A)[a, b] for the 6x6 tile
    m[xi] = products[xi plane + t Q + q] of lane q at tile t = i tiles_w + j, Q = ``lanes``.

    (A^T m) A: the four row combinations of every tile column k (into ``rows``), then the four
    column combinations of each.
    """
    u = np.uint64
    k2, k4, k8 = out.dtype.type(2), out.dtype.type(4), out.dtype.type(8)
    q_count, plane_size = u(lanes), u(plane)
    width = u(4) * u(tiles_w)
    rows = np.empty(24 * lanes, dtype=out.dtype)
    for i in range(u(tiles_h)):
        for j in range(u(tiles_w)):
            tile = i * u(tiles_w) + j
            for k in range(u(6)):
                at = k * plane_size + tile * q_count
                for q in range(q_count):
                    m0 = products[at + q]
                    m1 = products[at + u(6) * plane_size + q]
                    m2 = products[at + u(12) * plane_size + q]
                    m3 = products[at + u(18) * plane_size + q]
                    m4 = products[at + u(24) * plane_size + q]
                    m5 = products[at + u(30) * plane_size + q]
                    sum12, diff12 = m1 + m2, m1 - m2
                    sum34, diff34 = m3 + m4, m3 - m4
                    rows[k * q_count + q] = m0 + sum12 + sum34
                    rows[(u(6) + k) * q_count + q] = diff12 + k2 * diff34
                    rows[(u(12) + k) * q_count + q] = sum12 + k4 * sum34
                    rows[(u(18) + k) * q_count + q] = diff12 + k8 * diff34 + m5
            for a in range(u(4)):
                source = u(6) * a * q_count
                target = ((u(4) * i + a) * width + u(4) * j) * q_count
                for q in range(q_count):
                    e0 = rows[source + q]
                    e1 = rows[source + q_count + q]
                    e2 = rows[source + u(2) * q_count + q]
                    e3 = rows[source + u(3) * q_count + q]
                    e4 = rows[source + u(4) * q_count + q]
                    e5 = rows[source + u(5) * q_count + q]
                    sum12, diff12 = e1 + e2, e1 - e2
                    sum34, diff34 = e3 + e4, e3 - e4
                    out[target + q] = e0 + sum12 + sum34
                    out[target + q_count + q] = diff12 + k2 * diff34
                    out[target + u(2) * q_count + q] = sum12 + k4 * sum34
                    out[target + u(3) * q_count + q] = diff12 + k8 * diff34 + e5


@compiled
def _to_channels_first(outputs: np.ndarray, outputs_w: int, out: np.ndarray) -> None:
    """out[n, f, h, w] = outputs[(h outputs_w + w) Q + n F + f], Q = N F lanes: the transpose
    back, in 8x8 blocks, dropping the rows and columns beyond out's (H, W)."""
    u = np.uint64
    batch, channels, height, width = out.shape
    lanes, h_count, w_count = u(batch * channels), u(height), u(width)
    plane = h_count * w_count
    target = out.ravel()
    eight = u(8)
    full_lanes = lanes - lanes % eight
    full_w = w_count - w_count % eight
    for h in range(h_count):
        row = h * u(outputs_w) * lanes
        first = h * w_count
        for q0 in range(u(0), full_lanes, eight):
            for w0 in range(u(0), full_w, eight):
                for q in range(eight):
                    for w in range(eight):
                        at = (q0 + q) * plane + first + w0 + w
                        target[at] = outputs[row + (w0 + w) * lanes + q0 + q]
            for q in range(eight):
                for w in range(full_w, w_count):
                    target[(q0 + q) * plane + first + w] = outputs[row + w * lanes + q0 + q]
        for q in range(full_lanes, lanes):
            for w in range(w_count):
                target[q * plane + first + w] = outputs[row + w * lanes + q]


@compiled
def _output_gradient_transform(
    grid: np.ndarray,
    grid_w: int,
    tiles_h: int,
    tiles_w: int,
    lanes: int,
    out: np.ndarray,
    plane: int,
) -> None:
    """out[xi plane + t Q + q] = (A g A^T)[xi] for the 4x4 tile g of lane q at tile
    t = i tiles_w + j (rows 4i..4i+3, columns 4j..4j+3 of ``grid``, channels last), Q =
    ``lanes``: the adjoint of ``_output_transform``, a 4x4 gradient spread onto 6x6.

    A g A^T as (A g) A^T: the six row combinations of every tile column b (A = (A^T)^T has
    rows (1, 0, 0, 0), (1, 1, 1, 1), (1, -1, 1, -1), (1, 2, 4, 8), (1, -2, 4, -8),
    (0, 0, 0, 1)), then the same six combinations of each resulting row.
    """
    u = np.uint64
    k2, k4, k8 = out.dtype.type(2), out.dtype.type(4), out.dtype.type(8)
    q_count, width, plane_size = u(lanes), u(grid_w), u(plane)
    down = width * q_count
    rows = np.empty(24 * lanes, dtype=out.dtype)
    for i in range(u(tiles_h)):
        for j in range(u(tiles_w)):
            tile = i * u(tiles_w) + j
            corner = (u(4) * i * width + u(4) * j) * q_count
            for b in range(u(4)):
                at = corner + b * q_count
                for q in range(q_count):
                    g0 = grid[at + q]
                    g1 = grid[at + down + q]
                    g2 = grid[at + u(2) * down + q]
                    g3 = grid[at + u(3) * down + q]
                    sum02, sum13 = g0 + g2, g1 + g3
                    rows[b * q_count + q] = g0
                    rows[(u(4) + b) * q_count + q] = sum02 + sum13
                    rows[(u(8) + b) * q_count + q] = sum02 - sum13
                    plus = g0 + k4 * g2
                    minus = k2 * g1 + k8 * g3
                    rows[(u(12) + b) * q_count + q] = plus + minus
                    rows[(u(16) + b) * q_count + q] = plus - minus
                    rows[(u(20) + b) * q_count + q] = g3
            for a in range(u(6)):
                source = u(4) * a * q_count
                target = u(6) * a * plane_size + tile * q_count
                for q in range(q_count):
                    e0 = rows[source + q]
                    e1 = rows[source + q_count + q]
                    e2 = rows[source + u(2) * q_count + q]
                    e3 = rows[source + u(3) * q_count + q]
                    sum02, sum13 = e0 + e2, e1 + e3
                    plus = e0 + k4 * e2
                    minus = k2 * e1 + k8 * e3
                    out[target + q] = e0
                    out[target + plane_size + q] = sum02 + sum13
                    out[target + u(2) * plane_size + q] = sum02 - sum13
                    out[target + u(3) * plane_size + q] = plus + minus
                    out[target + u(4) * plane_size + q] = plus - minus
                    out[target + u(5) * plane_size + q] = e3


# --------------------------------------------------------------------------- the kernels
def applies(
    kernel_size: Sequence[int], stride: Sequence[int], dilation: Sequence[int], groups: int
) -> bool:
    """Whether a layer has Winograd's shape: 2-D, 3x3, stride 1, undilated, one group. (When
    it also pays is ``convprop.ops.conv``'s plan.)"""
    return (
        tuple(kernel_size) == (3, 3)
        and tuple(stride) == (1, 1)
        and tuple(dilation) == (1, 1)
        and groups == 1
    )


def sample_blocks_for(x: np.ndarray, out_channels: int, out_size: Sequence[int]) -> list[slice]:
    """Blocks of samples sized by their tiles (not im2col's columns), one chunk each."""
    per_sample = bytes_per_sample(x.shape[1], out_channels, out_size, x.itemsize)
    return sample_blocks(x.shape[0], per_sample)


def correlate(
    x: np.ndarray,
    weight: np.ndarray,
    pads: Sequence[tuple[int, int]],
    out_size: Sequence[int],
) -> np.ndarray:
    """z[n, f, i, j] = sum_c sum_{p, q} w[f, c, p, q] x_pad[n, c, i + p, j + q] of a 3x3
    stride-1 layer by F(4x4, 3x3), on blocks of samples over the cores; (N, F, *out_size)."""
    batch, out_channels = x.shape[0], weight.shape[0]
    filters = filter_transform(weight)
    result = np.empty((batch, out_channels, *out_size), dtype=np.result_type(x, weight))
    pads_before = (pads[0][0], pads[1][0])

    def winograd_block(block: slice) -> None:
        correlate_block(x[block], filters, pads_before, result[block])

    map_blocks(winograd_block, sample_blocks_for(x, out_channels, out_size))
    return result


def weight_gradient(
    x: np.ndarray, grad_out: np.ndarray, pads: Sequence[tuple[int, int]]
) -> np.ndarray:
    """dL/dw of a 3x3 stride-1 layer through the tiles (``tile_weight_gradient``), the
    blocks' tile gradients summed in block order, then taken back to the kernels once."""
    pads_before = (pads[0][0], pads[1][0])

    def block_gradient(block: slice) -> np.ndarray:
        return tile_weight_gradient(x[block], grad_out[block], pads_before)

    blocks = sample_blocks_for(x, grad_out.shape[1], grad_out.shape[2:])
    return weight_from_tile_gradient(sum_blocks(block_gradient, blocks))


def full_correlation(
    grad_out: np.ndarray, weight: np.ndarray, geometry: ConvGeometry
) -> np.ndarray:
    """dL/dx of a 3x3 stride-1 layer: the notes' full correlation of the padded delta with
    Rot180(w), channel-swapped (itself a 3x3 stride-1 correlation) by F(4x4, 3x3)."""
    delta, delta_pads = padded_delta(grad_out, geometry)
    return correlate(
        delta, rot180_channel_swapped(weight, geometry.groups), delta_pads, geometry.input_size
    )
