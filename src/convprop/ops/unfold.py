"""Window extraction: ``unfold`` (im2col) and its adjoint ``fold`` (col2im).

``unfold`` lays every K_h x K_w window of the (zero-padded) input out as one column:

    cols[n, (c K_h + i) K_w + j, o_h W_o + o_w] = x_pad[n, c, o_h S_h + i D_h, o_w S_w + j D_w]

with W_o, H_o = floor((size + 2 P - D (K - 1) - 1) / S) + 1 and L = H_o W_o columns. This is
the "segment" of the notes' pseudocode, for every position at once; a convolution is then one
matrix product with the flattened filters.

``fold`` is the transpose of that linear map: every column entry is sent back to the pixel it
was read from, adding ("+=") where windows overlap, and the padding region is removed at the
end (the notes' deletion of the zero-padding region before further backprop). The two are
adjoint, <unfold(x), c> = <x, fold(c)>, so each one's backward is the other:

* unfold: dL/dx = fold(dL/dcols);
* fold: dL/dcols = unfold(dL/dy).

The reference (``reference_im2col``, ``reference_col2im``) reads the windows off a zero-copy
window view and adds them back with ``np.add.at``; the fast kernels are convolution's own
compiled im2col and col2im (``convprop.ops.kernels.im2col.unfold_2d`` and ``fold_2d``).
``plan_unfold`` picks; ``convprop.ops.use_algorithm("reference")`` runs the reference.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from convprop.ops import algorithm
from convprop.ops.checks import check_float, check_non_negative, check_positive
from convprop.ops.contract import Grads, Needs, OpPair
from convprop.ops.geometry import conv_output_size as window_count
from convprop.ops.geometry import to_tuple
from convprop.ops.kernels.im2col import fold_2d, unfold_2d
from convprop.ops.windows import pad_spatial, unpad_spatial, window_view

Pair = tuple[int, int]


def _window_params(
    func: str, kernel_size: Any, dilation: Any, padding: Any, stride: Any
) -> tuple[Pair, Pair, Pair, Pair]:
    kernel, dilations, pads, strides = (
        _pair(to_tuple(value, 2, func, name))
        for value, name in (
            (kernel_size, "kernel_size"),
            (dilation, "dilation"),
            (padding, "padding"),
            (stride, "stride"),
        )
    )
    check_positive(kernel, func, "kernel_size")
    check_positive(dilations, func, "dilation")
    check_non_negative(pads, func, "padding")
    check_positive(strides, func, "stride")
    return kernel, dilations, pads, strides


def _pair(values: Sequence[int]) -> Pair:
    return values[0], values[1]


def _block_counts(
    spatial: Sequence[int], kernel: Pair, dilation: Pair, padding: Pair, stride: Pair
) -> Pair:
    return _pair(
        [
            window_count(spatial[i], kernel[i], stride[i], 2 * padding[i], dilation[i])
            for i in range(2)
        ]
    )


# 1. The reference: the window view and "+=" with np.add.at, as the formulas above read.
def reference_im2col(
    x: np.ndarray, kernel: Pair, dilation: Pair, padding: Pair, stride: Pair, blocks: Pair
) -> np.ndarray:
    """cols[n, (c K_h + i) K_w + j, o_h W_o + o_w] = x_pad[n, c, o_h S_h + i D_h, o_w S_w + j D_w].

    The window view holds x_pad[n, c, o_h S_h + i D_h, o_w S_w + j D_w] at [n, c, o_h, o_w, i, j];
    moving the taps (i, j) before the positions and flattening gives the columns.
    """
    batch, channels = x.shape[:2]
    padded = pad_spatial(x, [(p, p) for p in padding])
    windows = window_view(padded, kernel, stride, dilation, blocks)  # (N, C, H_o, W_o, K_h, K_w)
    columns = windows.transpose(0, 1, 4, 5, 2, 3)  # (N, C, K_h, K_w, H_o, W_o)
    return columns.reshape(batch, channels * kernel[0] * kernel[1], blocks[0] * blocks[1])


def reference_col2im(
    columns: np.ndarray,
    spatial: Sequence[int],
    kernel: Pair,
    dilation: Pair,
    padding: Pair,
    stride: Pair,
    blocks: Pair,
) -> np.ndarray:
    """x_pad[n, c, o_h S_h + i D_h, o_w S_w + j D_w] += cols[n, (c K_h + i) K_w + j, o_h W_o + o_w]
    (``np.add.at`` adds every entry, also where windows overlap), then the padding region is
    removed."""
    batch = columns.shape[0]
    channels = columns.shape[1] // (kernel[0] * kernel[1])
    per_window = columns.reshape(batch, channels, *kernel, *blocks)
    padded_size = [size + 2 * p for size, p in zip(spatial, padding, strict=True)]
    padded = np.zeros((batch, channels, *padded_size), dtype=columns.dtype)
    # The padded row and column that tap (i, j) reads at position (o_h, o_w): o S + k D,
    # broadcast to (K_h, K_w, H_o, W_o); the add runs on a view with the pixels first.
    rows = np.arange(kernel[0])[:, None] * dilation[0] + np.arange(blocks[0]) * stride[0]
    cols = np.arange(kernel[1])[:, None] * dilation[1] + np.arange(blocks[1]) * stride[1]
    pixels_first = padded.transpose(2, 3, 0, 1)  # (H_pad, W_pad, N, C), a view of padded
    taps = (rows[:, None, :, None], cols[None, :, None, :])
    np.add.at(pixels_first, taps, per_window.transpose(2, 3, 4, 5, 0, 1))
    return np.ascontiguousarray(unpad_spatial(padded, [(p, p) for p in padding]))


# 2. The plan: the reference, or the compiled gather and scatter of ``kernels.im2col``.
IM2COL_KERNELS: dict[str, Callable[[np.ndarray, Pair, Pair, Pair, Pair, Pair], np.ndarray]] = {
    "reference": reference_im2col,
    "compiled": unfold_2d,
}
COL2IM_KERNELS: dict[
    str, Callable[[np.ndarray, Sequence[int], Pair, Pair, Pair, Pair, Pair], np.ndarray]
] = {
    "reference": reference_col2im,
    "compiled": lambda columns, spatial, *window: fold_2d(columns, _pair(spatial), *window),
}


def plan_unfold() -> str:
    """The compiled loops (one pass over the windows each way), or the reference."""
    return "reference" if algorithm.reference() else "compiled"


def _im2col(
    x: np.ndarray, kernel: Pair, dilation: Pair, padding: Pair, stride: Pair, blocks: Pair
) -> np.ndarray:
    kernel_name = plan_unfold()
    algorithm.ran(f"unfold.im2col.{kernel_name}")
    return IM2COL_KERNELS[kernel_name](x, kernel, dilation, padding, stride, blocks)


def _col2im(
    columns: np.ndarray,
    spatial: Sequence[int],
    kernel: Pair,
    dilation: Pair,
    padding: Pair,
    stride: Pair,
    blocks: Pair,
) -> np.ndarray:
    kernel_name = plan_unfold()
    algorithm.ran(f"unfold.col2im.{kernel_name}")
    return COL2IM_KERNELS[kernel_name](columns, spatial, kernel, dilation, padding, stride, blocks)


# 3. The public pairs.
def unfold_forward(
    x: np.ndarray,
    kernel_size: int | Sequence[int],
    dilation: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
    stride: int | Sequence[int] = 1,
) -> tuple[np.ndarray, Any]:
    """Extract sliding K_h x K_w blocks of an (N, C, H, W) or (C, H, W) input as columns."""
    func = "unfold"
    check_float(x, func, "input")
    if x.ndim not in (3, 4):
        raise ValueError(
            f"{func}: input must be 3-D (C, H, W) or 4-D (N, C, H, W), got {x.ndim}-D with "
            f"shape {tuple(x.shape)}"
        )
    kernel, dilations, pads, strides = _window_params(func, kernel_size, dilation, padding, stride)
    batched = x.ndim == 4
    images = x if batched else x[None]
    if any(size == 0 for size in images.shape[1:]):
        raise ValueError(
            f"{func}: input must be non-empty apart from the batch, got shape {tuple(x.shape)}"
        )
    blocks = _block_counts(images.shape[2:], kernel, dilations, pads, strides)
    if any(b < 1 for b in blocks):
        raise ValueError(
            f"{func}: given input with spatial size {tuple(images.shape[2:])}, "
            f"kernel_size={kernel}, dilation={dilations}, padding={pads}, the array of sliding "
            f"blocks has shape {blocks}, but each must be at least one (the dilated kernel "
            f"does not fit in the padded input)"
        )
    columns = _im2col(images, kernel, dilations, pads, strides, blocks)
    saved = (images.shape[2:], kernel, dilations, pads, strides, blocks, batched)
    return (columns if batched else columns[0]), saved


def unfold_backward(grad_out: np.ndarray, saved: Any, needs: Needs) -> Grads:
    """dL/dx = fold(dL/dcols): each column gradient goes back to the pixel it was read from,
    "+=" where windows overlap, then the padding region is removed."""
    spatial, kernel, dilation, padding, stride, blocks, batched = saved
    columns = grad_out if batched else grad_out[None]
    grad = _col2im(columns, spatial, kernel, dilation, padding, stride, blocks)
    return (grad if batched else grad[0],)


def fold_forward(
    x: np.ndarray,
    output_size: int | Sequence[int],
    kernel_size: int | Sequence[int],
    dilation: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
    stride: int | Sequence[int] = 1,
) -> tuple[np.ndarray, Any]:
    """Sum (N, C K_h K_w, L) or (C K_h K_w, L) columns into an (N, C, H, W) image."""
    func = "fold"
    check_float(x, func, "input")
    if x.ndim not in (2, 3):
        raise ValueError(
            f"{func}: input must be 2-D (C*kh*kw, L) or 3-D (N, C*kh*kw, L), got {x.ndim}-D "
            f"with shape {tuple(x.shape)}"
        )
    spatial = to_tuple(output_size, 2, func, "output_size")
    kernel, dilations, pads, strides = _window_params(func, kernel_size, dilation, padding, stride)
    batched = x.ndim == 3
    columns = x if batched else x[None]
    if any(size == 0 for size in columns.shape[1:]):
        raise ValueError(
            f"{func}: input must be non-empty apart from the batch, got shape {tuple(x.shape)}"
        )
    area = kernel[0] * kernel[1]
    if columns.shape[1] % area:
        raise ValueError(
            f"{func}: input.size(-2) = {columns.shape[1]} must be divisible by the product of "
            f"kernel_size {kernel} = {area} (it holds C*kh*kw values per block)"
        )
    blocks = _block_counts(spatial, kernel, dilations, pads, strides)
    if any(b < 1 for b in blocks) or columns.shape[2] != blocks[0] * blocks[1]:
        raise ValueError(
            f"{func}: given output_size={spatial}, kernel_size={kernel}, dilation={dilations}, "
            f"padding={pads}, stride={strides}, input.size(-1) must match the number of "
            f"sliding blocks {blocks[0]} * {blocks[1]} = {blocks[0] * blocks[1]}, but got "
            f"input.size(-1)={columns.shape[2]}"
        )
    image = _col2im(columns, spatial, kernel, dilations, pads, strides, blocks)
    saved = (kernel, dilations, pads, strides, blocks, batched)
    return (image if batched else image[0]), saved


def fold_backward(grad_out: np.ndarray, saved: Any, needs: Needs) -> Grads:
    """dL/dcols = unfold(dL/dy): each column entry receives the gradient of the pixel it was
    added to (zero in the padding region)."""
    kernel, dilation, padding, stride, blocks, batched = saved
    images = grad_out if batched else grad_out[None]
    grad = _im2col(images, kernel, dilation, padding, stride, blocks)
    return (grad if batched else grad[0],)


fold = OpPair("fold", fold_forward, fold_backward)
unfold = OpPair("unfold", unfold_forward, unfold_backward)
