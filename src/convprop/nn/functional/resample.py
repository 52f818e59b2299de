"""Resampling, padding and window-extraction functions.

The math lives in ``convprop.ops.resample`` (dilate, decimate, interpolate, pixel shuffle),
``convprop.ops.padding`` (pad) and ``convprop.ops.unfold`` (unfold, fold).
"""

from __future__ import annotations

from collections.abc import Sequence

from convprop.autograd import Tensor, apply
from convprop.ops import padding as padding_ops
from convprop.ops import resample
from convprop.ops import unfold as unfold_ops

__all__ = [
    "decimate",
    "dilate",
    "fold",
    "interpolate",
    "pad",
    "pixel_shuffle",
    "pixel_unshuffle",
    "unfold",
]


def dilate(input: Tensor, factor: int | Sequence[int]) -> Tensor:
    """The notes' up-sampling layer: insert ``factor - 1`` zeros between samples.

    Shape: (N, C, L) -> (N, C, (L - 1) * factor + 1); likewise on H and W for (N, C, H, W).
    """
    return apply(resample.dilate, (input,), factor)


def decimate(input: Tensor, factor: int | Sequence[int]) -> Tensor:
    """The notes' down-sampling layer: keep every ``factor``-th sample.

    Shape: (N, C, L) -> (N, C, ceil(L / factor)); likewise on H and W for (N, C, H, W).
    """
    return apply(resample.decimate, (input,), factor)


def pad(
    input: Tensor, pad: Sequence[int], mode: str = "constant", value: float | None = None
) -> Tensor:
    """Pad (or, with negative amounts in constant mode, crop) the trailing dimensions.

    ``pad`` lists (before, after) amounts starting from the last dimension:
    ``(left, right)``, ``(left, right, top, bottom)``, ``(left, right, top, bottom, front,
    back)``. Modes:

    * ``'constant'``: fill with ``value`` (0 when None); any number of trailing dimensions;
      negative amounts crop. Backward: crop the gradient (remove the padding region).
    * ``'reflect'``: mirror without repeating the edge sample (pad < size).
    * ``'replicate'``: repeat the edge sample.
    * ``'circular'``: wrap around (pad <= size).

    The last three pad the last 1, 2 or 3 dimensions of an unbatched or batched input; their
    backward adds the gradient of every border sample onto the sample it copies.

    Shape: each padded dimension grows from ``size`` to ``size + before + after``.
    """
    return apply(padding_ops.pad, (input,), pad, mode, value)


def interpolate(
    input: Tensor,
    size: int | Sequence[int] | None = None,
    scale_factor: float | Sequence[float] | None = None,
    mode: str = "nearest",
    align_corners: bool | None = None,
    recompute_scale_factor: bool | None = None,
    antialias: bool = False,
) -> Tensor:
    """Resize the spatial dimensions (``'nearest'``, ``'nearest-exact'``, ``'linear'``,
    ``'bilinear'``, ``'trilinear'``).

    Along each axis the source position of output sample d is ``d (n - 1) / (m - 1)`` with
    ``align_corners=True`` and ``max(s (d + 0.5) - 0.5, 0)`` otherwise, where ``s`` is
    ``1 / scale_factor`` when a scale factor is given (and not recomputed) and ``n / m``
    otherwise; linear modes blend the two neighbouring samples, nearest takes
    ``x[min(floor(s d), n - 1)]``. The backward scatters each output gradient back onto the
    samples it was interpolated from with the same weights (the transpose of the forward).

    Shape: (N, C, L_in) -> (N, C, L_out) (nearest, linear), (N, C, H, W) (nearest, bilinear),
    (N, C, D, H, W) (nearest, trilinear), with ``out = size`` or
    ``out = floor(in * scale_factor)``.
    """
    return apply(
        resample.interpolate,
        (input,),
        size,
        scale_factor,
        mode,
        align_corners,
        recompute_scale_factor,
        antialias,
    )


def pixel_shuffle(input: Tensor, upscale_factor: int) -> Tensor:
    """Rearrange channels into space: ``y[c, h r + i, w r + j] = x[c r^2 + i r + j, h, w]``.

    Shape: (*, C r^2, H, W) -> (*, C, H r, W r).
    """
    return apply(resample.pixel_shuffle, (input,), upscale_factor)


def pixel_unshuffle(input: Tensor, downscale_factor: int) -> Tensor:
    """Rearrange space into channels, the inverse of :func:`pixel_shuffle`.

    Shape: (*, C, H r, W r) -> (*, C r^2, H, W).
    """
    return apply(
        resample.pixel_unshuffle,
        (input,),
        downscale_factor,
    )


def unfold(
    input: Tensor,
    kernel_size: int | Sequence[int],
    dilation: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
    stride: int | Sequence[int] = 1,
) -> Tensor:
    """Extract sliding blocks as columns (im2col).

    ``cols[n, (c K_h + i) K_w + j, l] = x_pad[n, c, o_h S_h + i D_h, o_w S_w + j D_w]`` with
    ``l = o_h W_out + o_w``. Backward: :func:`fold` of the gradient ("+=" where windows overlap,
    padding removed).

    Shape: (N, C, H, W) -> (N, C K_h K_w, L) (or unbatched (C, H, W) -> (C K_h K_w, L)) with
    ``L = H_out W_out``, ``H_out = floor((H + 2 P_h - D_h (K_h - 1) - 1) / S_h) + 1``.
    """
    return apply(
        unfold_ops.unfold,
        (input,),
        kernel_size,
        dilation,
        padding,
        stride,
    )


def fold(
    input: Tensor,
    output_size: int | Sequence[int],
    kernel_size: int | Sequence[int],
    dilation: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
    stride: int | Sequence[int] = 1,
) -> Tensor:
    """Sum columns of sliding blocks back into an image (col2im), the adjoint of :func:`unfold`.

    Entries of overlapping blocks are added ("+="); the padding region is removed. Backward:
    :func:`unfold` of the gradient.

    Shape: (N, C K_h K_w, L) -> (N, C, H, W) (or unbatched (C K_h K_w, L) -> (C, H, W)) with
    ``(H, W) = output_size`` and ``L`` equal to the number of blocks ``H_out W_out``.
    """
    return apply(
        unfold_ops.fold,
        (input,),
        output_size,
        kernel_size,
        dilation,
        padding,
        stride,
    )
