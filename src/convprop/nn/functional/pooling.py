"""Pooling functions with PyTorch's names and arguments (the math: ``convprop.ops.pooling``,
``convprop.ops.adaptive_pooling``).

Max pooling keeps the argmax of every window (the notes' ``pidx``) and its backward sends each
output gradient there; mean pooling spreads it evenly over the window; both add ("+=") where
windows overlap.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from convprop.autograd import Tensor, apply, checked_tensor, record
from convprop.ops import adaptive_pooling, pooling
from convprop.ops.contract import OpPair

__all__ = [
    "adaptive_avg_pool1d",
    "adaptive_avg_pool2d",
    "adaptive_max_pool1d",
    "adaptive_max_pool2d",
    "avg_pool1d",
    "avg_pool2d",
    "max_pool1d",
    "max_pool2d",
    "max_unpool1d",
    "max_unpool2d",
]

IntOrTuple = int | Sequence[int]


def _with_indices(
    op: OpPair, input: Tensor, return_indices: bool, *params: Any
) -> Tensor | tuple[Tensor, Tensor]:
    """Record an op whose forward also produces argmax indices (returned when asked for)."""
    output, saved = op.forward(checked_tensor(op.name, "input", input).data, *params)
    result = record(
        op.name, output, (input,), lambda grad, needs: op.backward(grad, saved, needs), params
    )
    if return_indices:
        return result, Tensor(saved.indices)
    return result


def max_pool1d(
    input: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    r"""1-D max pooling: :math:`y[n, c, m] = \max_{k<K} x_{pad}[n, c, mS + kD]`.

    Padding is implicit -inf (at most ``kernel_size // 2``); ``stride`` defaults to
    ``kernel_size``. Ties go to the first maximum, a NaN is the maximum. With
    ``return_indices`` also returns the argmax position in the unpadded input (int64).

    Shape: (N, C, L) or (C, L) -> (N, C, L_out) with
    :math:`L_{out} = \lfloor (L + 2P - D(K-1) - 1) / S \rfloor + 1` (``ceil`` with
    ``ceil_mode``, the last window starting inside the input or the left padding).
    """
    return _with_indices(
        pooling.max_pool1d,
        input,
        return_indices,
        kernel_size,
        stride,
        padding,
        dilation,
        ceil_mode,
        return_indices,
    )


def max_pool2d(
    input: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    r"""2-D max pooling: :math:`y[n, c, m, n'] = \max_{i, j} x_{pad}[n, c, mS_h + iD_h,
    n'S_w + jD_w]`, the argmax (``pidx``) remembered for backward.

    Padding is implicit -inf (at most ``kernel_size // 2``); ``stride`` defaults to
    ``kernel_size``. Ties go to the first maximum in row-major window order; a NaN is the
    maximum. With ``return_indices`` also returns ``h * W + w`` of each argmax (int64).

    Shape: (N, C, H, W) or (C, H, W) -> (N, C, H_out, W_out) with
    :math:`H_{out} = \lfloor (H + 2P_h - D_h(K_h-1) - 1) / S_h \rfloor + 1` (``ceil`` with
    ``ceil_mode``, the last window starting inside the input or the top padding), likewise W.
    """
    return _with_indices(
        pooling.max_pool2d,
        input,
        return_indices,
        kernel_size,
        stride,
        padding,
        dilation,
        ceil_mode,
        return_indices,
    )


def avg_pool1d(
    input: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
) -> Tensor:
    r"""1-D mean pooling: :math:`y[n, c, m] = \frac{1}{\mathrm{div}_m} \sum_{k<K} x_{pad}[n, c,
    mS + k]`.

    The divisor counts the zero padding when ``count_include_pad`` (never the ceil-mode
    overhang beyond it), else only the input samples in the window.

    Shape: (N, C, L) or (C, L) -> (N, C, L_out),
    :math:`L_{out} = \lfloor (L + 2P - K) / S \rfloor + 1` (``ceil`` with ``ceil_mode``).
    """
    return apply(
        pooling.avg_pool1d,
        (input,),
        kernel_size,
        stride,
        padding,
        ceil_mode,
        count_include_pad,
    )


def avg_pool2d(
    input: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
) -> Tensor:
    r"""2-D mean pooling: :math:`y[n, c, m, n'] = \frac{1}{\mathrm{div}_{m n'}} \sum_{i, j}
    x_{pad}[n, c, mS_h + i, n'S_w + j]`.

    The divisor is ``divisor_override`` if given; else the window's area clipped to the padded
    input when ``count_include_pad``, or the number of input samples in the window.

    Shape: (N, C, H, W) or (C, H, W) -> (N, C, H_out, W_out),
    :math:`H_{out} = \lfloor (H + 2P_h - K_h) / S_h \rfloor + 1` (``ceil`` with ``ceil_mode``),
    likewise W.
    """
    return apply(
        pooling.avg_pool2d,
        (input,),
        kernel_size,
        stride,
        padding,
        ceil_mode,
        count_include_pad,
        divisor_override,
    )


def adaptive_avg_pool1d(input: Tensor, output_size: int | Sequence[int | None]) -> Tensor:
    r"""Adaptive mean pooling: output ``i`` averages :math:`x[\lfloor iL/O \rfloor :
    \lceil (i+1)L/O \rceil]`.

    Shape: (N, C, L) or (C, L) -> (N, C, O).
    """
    return apply(
        adaptive_pooling.adaptive_avg_pool1d,
        (input,),
        output_size,
    )


def adaptive_avg_pool2d(input: Tensor, output_size: int | None | Sequence[int | None]) -> Tensor:
    r"""Adaptive mean pooling over windows :math:`[\lfloor iH/O_h \rfloor, \lceil (i+1)H/O_h
    \rceil) \times [\lfloor jW/O_w \rfloor, \lceil (j+1)W/O_w \rceil)`.

    ``output_size`` is an int or a pair whose entries may be None (keep that size).

    Shape: (N, C, H, W) or (C, H, W) -> (N, C, O_h, O_w).
    """
    return apply(
        adaptive_pooling.adaptive_avg_pool2d,
        (input,),
        output_size,
    )


def adaptive_max_pool1d(
    input: Tensor, output_size: int | Sequence[int | None], return_indices: bool = False
) -> Tensor | tuple[Tensor, Tensor]:
    r"""Adaptive max pooling over windows :math:`[\lfloor iL/O \rfloor, \lceil (i+1)L/O \rceil)`;
    with ``return_indices`` also the argmax positions (int64).

    Shape: (N, C, L) or (C, L) -> (N, C, O).
    """
    return _with_indices(
        adaptive_pooling.adaptive_max_pool1d,
        input,
        return_indices,
        output_size,
    )


def adaptive_max_pool2d(
    input: Tensor, output_size: int | None | Sequence[int | None], return_indices: bool = False
) -> Tensor | tuple[Tensor, Tensor]:
    r"""Adaptive max pooling over windows :math:`[\lfloor iH/O_h \rfloor, \lceil (i+1)H/O_h
    \rceil) \times [\lfloor jW/O_w \rfloor, \lceil (j+1)W/O_w \rceil)`; with
    ``return_indices`` also ``h * W + w`` of each argmax (int64).

    Shape: (N, C, H, W) or (C, H, W) -> (N, C, O_h, O_w).
    """
    return _with_indices(
        adaptive_pooling.adaptive_max_pool2d,
        input,
        return_indices,
        output_size,
    )


def max_unpool1d(
    input: Tensor,
    indices: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    output_size: Sequence[int] | None = None,
) -> Tensor:
    r"""Partial inverse of :func:`max_pool1d`: each value goes to its index, zeros elsewhere.

    Shape: (N, C, L) or (C, L) -> (N, C, L_out), :math:`L_{out} = (L - 1) S - 2P + K` unless
    ``output_size`` (strictly within ``S`` of that) is given.
    """
    return apply(
        pooling.max_unpool1d,
        (input, indices),
        kernel_size,
        stride,
        padding,
        output_size,
    )


def max_unpool2d(
    input: Tensor,
    indices: Tensor,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    output_size: Sequence[int] | None = None,
) -> Tensor:
    r"""Partial inverse of :func:`max_pool2d`: each value goes to ``indices`` (``h * W + w``).

    Shape: (N, C, H, W) or (C, H, W) -> (N, C, H_out, W_out),
    :math:`H_{out} = (H - 1) S_h - 2P_h + K_h` unless ``output_size`` is given; likewise W.
    """
    return apply(
        pooling.max_unpool2d,
        (input, indices),
        kernel_size,
        stride,
        padding,
        output_size,
    )
