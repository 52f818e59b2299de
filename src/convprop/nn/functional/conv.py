"""Convolution and transposed convolution (see ``convprop.ops.conv`` for the derivations)."""

from __future__ import annotations

from collections.abc import Sequence

from convprop.autograd import Tensor, apply
from convprop.ops import conv

__all__ = ["conv1d", "conv2d", "conv_transpose1d", "conv_transpose2d"]

IntOrTuple = int | Sequence[int]


def conv1d(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: IntOrTuple = 1,
    padding: IntOrTuple | str = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
) -> Tensor:
    """1-D convolution (cross-correlation, as PyTorch) over an input of several channels.

    .. math::
        z[n, f, l] = b[f] + \\sum_{c \\in \\text{group}(f)} \\sum_{k=0}^{K-1}
                     w[f, c, k]\\, x_{pad}[n, c, l S + k D]

    Args:
        input: (N, C_in, L) or unbatched (C_in, L).
        weight: (C_out, C_in / groups, K).
        bias: optional (C_out,).
        stride: S, an int or a 1-tuple.
        padding: zeros added on both sides (int or 1-tuple), ``'valid'`` (none) or ``'same'``
            (output length = input length; needs stride 1; for an even effective kernel
            D (K - 1) + 1 the extra zero goes on the right, as PyTorch).
        dilation: D, the spacing between kernel taps.
        groups: input and output channels are split into this many independent groups.

    Shape:
        - Input: (N, C_in, L_in) or (C_in, L_in)
        - Output: (N, C_out, L_out) or (C_out, L_out), with
          L_out = floor((L_in + 2 P - D (K - 1) - 1) / S) + 1
    """
    return apply(
        conv.conv1d,
        (input, weight, bias),
        stride,
        padding,
        dilation,
        groups,
    )


def conv2d(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: IntOrTuple = 1,
    padding: IntOrTuple | str = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
) -> Tensor:
    """2-D convolution (cross-correlation, as PyTorch) over an input of several channels.

    .. math::
        z[n, f, i, j] = b[f] + \\sum_{c \\in \\text{group}(f)} \\sum_{p, q}
                        w[f, c, p, q]\\, x_{pad}[n, c, i S_h + p D_h, j S_w + q D_w]

    The notes' true convolution (decks 000, 001) is the same layer with the kernel rotated
    by 180 degrees. Backward (``convprop.ops.conv``): dL/dx is the full correlation of the
    (zero-inserted, k-1-padded) output gradient with the Rot180 channel-swapped kernel,
    dL/dw the correlation of the padded input with the output gradient, dL/db its sum.

    Args:
        input: (N, C_in, H, W) or unbatched (C_in, H, W).
        weight: (C_out, C_in / groups, kH, kW).
        bias: optional (C_out,).
        stride: an int or (S_h, S_w).
        padding: an int or (P_h, P_w) zeros on both sides, ``'valid'`` or ``'same'`` (stride 1
            only; an even effective kernel puts the extra zero at the bottom/right).
        dilation: an int or (D_h, D_w).
        groups: input and output channels are split into this many independent groups.

    Shape:
        - Input: (N, C_in, H_in, W_in) or (C_in, H_in, W_in)
        - Output: (N, C_out, H_out, W_out) or (C_out, H_out, W_out), with
          H_out = floor((H_in + 2 P_h - D_h (kH - 1) - 1) / S_h) + 1, W_out likewise.

    Examples:
        >>> import convprop as cp
        >>> import convprop.nn.functional as F
        >>> x, w = cp.zeros(2, 3, 8, 8), cp.zeros(4, 3, 3, 3)
        >>> F.conv2d(x, w, padding=1).shape
        (2, 4, 8, 8)
        >>> F.conv2d(x, w, stride=2).shape  # floor((8 - 3) / 2) + 1 = 3
        (2, 4, 3, 3)
        >>> F.conv2d(x[0], w, padding="same").shape  # unbatched input
        (4, 8, 8)
    """
    return apply(
        conv.conv2d,
        (input, weight, bias),
        stride,
        padding,
        dilation,
        groups,
    )


def conv_transpose1d(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: IntOrTuple = 1,
    padding: IntOrTuple = 0,
    output_padding: IntOrTuple = 0,
    groups: int = 1,
    dilation: IntOrTuple = 1,
) -> Tensor:
    """1-D transposed convolution: the adjoint of ``conv1d`` with the same weight.

    .. math::
        y[n, f, i] = b[f] + \\sum_{c \\in \\text{group}(f)} \\sum_{l, k:\\ l S + k D = i + P}
                     x[n, c, l]\\, w[c, f, k]

    Equivalently the notes' upsampling layer followed by a convolution: insert S - 1 zeros
    between input samples, pad by D (K - 1) - P, and correlate with the kernel rotated by
    180 degrees (in/out channels swapped).

    Args:
        input: (N, C_in, L) or unbatched (C_in, L).
        weight: (C_in, C_out / groups, K).
        bias: optional (C_out,).
        stride: the stride of the convolution this is the adjoint of.
        padding: the padding of the convolution this is the adjoint of.
        output_padding: extra samples on the right of the output (smaller than stride or
            dilation), to pick among the input sizes a strided convolution maps to L.
        groups: independent channel groups.
        dilation: the dilation of the convolution this is the adjoint of.

    Shape:
        - Input: (N, C_in, L_in) or (C_in, L_in)
        - Output: (N, C_out, L_out) or (C_out, L_out), with
          L_out = (L_in - 1) S - 2 P + D (K - 1) + output_padding + 1
    """
    return apply(
        conv.conv_transpose1d,
        (input, weight, bias),
        stride,
        padding,
        output_padding,
        groups,
        dilation,
    )


def conv_transpose2d(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: IntOrTuple = 1,
    padding: IntOrTuple = 0,
    output_padding: IntOrTuple = 0,
    groups: int = 1,
    dilation: IntOrTuple = 1,
) -> Tensor:
    """2-D transposed convolution ("fractionally strided"): the adjoint of ``conv2d``.

    .. math::
        y[n, f, i, j] = b[f] + \\sum_{c \\in \\text{group}(f)}
                        \\sum_{h S_h + p D_h = i + P_h,\\ w S_w + q D_w = j + P_w}
                        x[n, c, h, w]\\, \\text{weight}[c, f, p, q]

    Equivalently ``conv2d(pad(dilate(x, S), D (K - 1) - P), Rot180(weight) with in/out channels
    swapped, dilation=D)``: the notes' zero-insertion upsampling followed by a convolution.

    Args:
        input: (N, C_in, H, W) or unbatched (C_in, H, W).
        weight: (C_in, C_out / groups, kH, kW).
        bias: optional (C_out,).
        stride: int or pair, the stride of the convolution this is the adjoint of.
        padding: int or pair, the padding of the convolution this is the adjoint of.
        output_padding: extra rows/columns at the bottom/right of the output (each smaller
            than the stride or the dilation of its axis).
        groups: independent channel groups.
        dilation: int or pair, the dilation of the convolution this is the adjoint of.

    Shape:
        - Input: (N, C_in, H_in, W_in) or (C_in, H_in, W_in)
        - Output: (N, C_out, H_out, W_out) or (C_out, H_out, W_out), with
          H_out = (H_in - 1) S_h - 2 P_h + D_h (kH - 1) + output_padding_h + 1, W_out likewise.
    """
    return apply(
        conv.conv_transpose2d,
        (input, weight, bias),
        stride,
        padding,
        output_padding,
        groups,
        dilation,
    )
