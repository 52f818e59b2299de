"""Where the windows of a convolution or a pool sit: every size rule, once.

Arguments come as PyTorch takes them (an int or a tuple per spatial axis, ``'same'`` or
``'valid'`` padding, a pool's stride defaulting to its kernel size); this module turns them
into tuples, checks them, and works out the sizes. The ops, the layers (which validate their
arguments when they are built) and ``convprop explain`` all call it, so one rule gives one
answer and one error message everywhere.

The size rules, per spatial axis, with input length L, kernel K, stride S, dilation D, padding
P on each side (P_total for both together) and the effective kernel D (K - 1) + 1:

* convolution: O = floor((L + P_total - D (K - 1) - 1) / S) + 1;
* ``'same'`` (stride 1): P_total = D (K - 1), the odd one after (PyTorch's rule);
* transposed convolution: O = (L - 1) S - 2 P + D (K - 1) + output_padding + 1, the input
  length of the convolution it is the adjoint of;
* pooling: as convolution, rounded up instead of down with ``ceil_mode`` (a last window must
  start inside the input or the left padding);
* adaptive pooling to O samples: window i is [floor(i L / O), ceil((i + 1) L / O));
* max unpooling: (L - 1) S - 2 P + K, the input size of the max pooling it undoes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

IntOrTuple = int | Sequence[int]
Pads = tuple[tuple[int, int], ...]


def to_tuple(value: IntOrTuple, n: int, func: str, name: str) -> tuple[int, ...]:
    """Normalise an int-or-sequence argument to a tuple of ``n`` Python ints."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return (int(value),) * n
    if isinstance(value, Sequence) and not isinstance(value, str):
        items = tuple(value)
        if len(items) == 1 and n > 1:
            items = items * n
        if len(items) == n and all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in items
        ):
            return tuple(int(v) for v in items)
    raise TypeError(f"{func}: {name} must be an int or a sequence of {n} ints, got {value!r}")


def _show(values: Any) -> str:
    return repr(values)


def positive(value: IntOrTuple, n: int, func: str, name: str) -> tuple[int, ...]:
    """``to_tuple``, every entry > 0 (kernel sizes, strides, dilations)."""
    values = to_tuple(value, n, func, name)
    if any(v <= 0 for v in values):
        raise ValueError(f"{func}: {name} must be positive, got {_show(values)}")
    return values


def non_negative(value: IntOrTuple, n: int, func: str, name: str) -> tuple[int, ...]:
    """``to_tuple``, every entry >= 0 (paddings)."""
    values = to_tuple(value, n, func, name)
    if any(v < 0 for v in values):
        raise ValueError(f"{func}: {name} must be non-negative, got {_show(values)}")
    return values


def groups_count(groups: Any, func: str) -> int:
    if not isinstance(groups, (int, np.integer)) or isinstance(groups, bool):
        raise TypeError(f"{func}: groups must be an int, got {groups!r}")
    if groups <= 0:
        raise ValueError(f"{func}: groups must be positive, got {groups}")
    return int(groups)


def effective_kernel(kernel_size: Sequence[int], dilation: Sequence[int]) -> tuple[int, ...]:
    """D (K - 1) + 1 per axis: the extent a dilated kernel covers."""
    return tuple(d * (k - 1) + 1 for k, d in zip(kernel_size, dilation, strict=True))


def conv_padding(
    padding: IntOrTuple | str,
    kernel_size: Sequence[int],
    stride: Sequence[int],
    dilation: Sequence[int],
    func: str,
) -> Pads:
    """(before, after) zero padding per axis for an int, a tuple, ``'valid'`` or ``'same'``."""
    spatial = len(kernel_size)
    if not isinstance(padding, str):
        return tuple((p, p) for p in non_negative(padding, spatial, func, "padding"))
    if padding == "valid":
        return ((0, 0),) * spatial
    if padding == "same":
        if any(s != 1 for s in stride):
            raise ValueError(
                f"{func}: padding='same' is not supported for strided convolutions, got "
                f"stride={tuple(stride)}"
            )
        # PyTorch's rule: the odd sample of an even effective kernel goes after.
        totals = [e - 1 for e in effective_kernel(kernel_size, dilation)]
        return tuple((total // 2, total - total // 2) for total in totals)
    raise ValueError(
        f"{func}: padding must be an int, a tuple of ints, 'valid' or 'same', got {padding!r}"
    )


def conv_output_size(
    length: int, kernel: int, stride: int, padding_total: int, dilation: int, ceil: bool = False
) -> int:
    """floor (or ceil) ((L + P_total - D (K - 1) - 1) / S) + 1: the number of windows."""
    span = length + padding_total - dilation * (kernel - 1) - 1
    return (-(-span // stride) if ceil else span // stride) + 1


def conv_transpose_output_size(
    length: int, kernel: int, stride: int, padding: int, dilation: int, output_padding: int
) -> int:
    """(L - 1) S - 2 P + D (K - 1) + output_padding + 1."""
    return (length - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1


def padded_size(size: Sequence[int], pads: Pads) -> tuple[int, ...]:
    return tuple(n + before + after for n, (before, after) in zip(size, pads, strict=True))


@dataclass(frozen=True)
class ConvGeometry:
    """Everything about a (transposed) convolution but the arrays' values.

    ``pads`` are the (before, after) zero paddings of the convolution's input along each
    spatial axis; for a transposed convolution they are those of the convolution it is the
    adjoint of (so its output is that convolution's *unpadded* input).
    """

    kernel_size: tuple[int, ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    pads: Pads
    groups: int
    input_size: tuple[int, ...]  # spatial size of the convolution's (unpadded) input
    output_size: tuple[int, ...]  # spatial size of the convolution's output

    @property
    def spatial(self) -> int:
        return len(self.kernel_size)

    @property
    def padded_size(self) -> tuple[int, ...]:
        return padded_size(self.input_size, self.pads)

    @property
    def taps(self) -> int:
        return math.prod(self.kernel_size)


def conv_geometry(
    func: str,
    input_size: Sequence[int],
    kernel_size: Sequence[int],
    stride: IntOrTuple,
    padding: IntOrTuple | str,
    dilation: IntOrTuple,
    groups: int,
) -> ConvGeometry:
    """Check a convolution's window arguments and work out its output size."""
    spatial = len(kernel_size)
    strides = positive(stride, spatial, func, "stride")
    dilations = positive(dilation, spatial, func, "dilation")
    pads = conv_padding(padding, kernel_size, strides, dilations, func)
    extent = effective_kernel(kernel_size, dilations)
    padded = padded_size(input_size, pads)
    if any(p < e for p, e in zip(padded, extent, strict=True)):
        raise ValueError(
            f"{func}: kernel size can't be greater than the padded input: effective kernel "
            f"size {extent} (kernel {tuple(kernel_size)}, dilation {dilations}) but padded "
            f"input size {padded} (input {tuple(input_size)}, padding {pads})"
        )
    out_size = tuple(
        conv_output_size(n, k, s, before + after, d)
        for n, k, s, (before, after), d in zip(
            input_size, kernel_size, strides, pads, dilations, strict=True
        )
    )
    return ConvGeometry(
        tuple(kernel_size), strides, dilations, pads, groups, tuple(input_size), out_size
    )


def conv_transpose_geometry(
    func: str,
    input_size: Sequence[int],
    kernel_size: Sequence[int],
    stride: IntOrTuple,
    padding: IntOrTuple,
    output_padding: IntOrTuple,
    dilation: IntOrTuple,
    groups: int,
) -> ConvGeometry:
    """Check a transposed convolution's arguments; the geometry of the convolution it is the
    adjoint of (whose *output* has the transposed convolution's input size)."""
    spatial = len(kernel_size)
    strides = positive(stride, spatial, func, "stride")
    dilations = positive(dilation, spatial, func, "dilation")
    if isinstance(padding, str):
        raise TypeError(
            f"{func}: padding must be an int or a tuple of ints (no 'same'/'valid' for "
            f"transposed convolutions), got {padding!r}"
        )
    amounts = non_negative(padding, spatial, func, "padding")
    extra = non_negative(output_padding, spatial, func, "output_padding")
    if any(e >= max(s, d) for e, s, d in zip(extra, strides, dilations, strict=True)):
        raise ValueError(
            f"{func}: output_padding must be smaller than either stride or dilation in every "
            f"dimension, got output_padding={extra}, stride={strides}, dilation={dilations}"
        )
    out_size = tuple(
        conv_transpose_output_size(n, k, s, p, d, e)
        for n, k, s, p, d, e in zip(
            input_size, kernel_size, strides, amounts, dilations, extra, strict=True
        )
    )
    if any(size <= 0 for size in out_size):
        raise ValueError(
            f"{func}: output size (L - 1) * stride - 2 * padding + dilation * (kernel - 1) + "
            f"output_padding + 1 must be positive, got {out_size} for input size "
            f"{tuple(input_size)}, stride {strides}, padding {amounts}, dilation {dilations}, "
            f"kernel {tuple(kernel_size)}, output_padding {extra}"
        )
    pads = tuple((p, p) for p in amounts)
    return ConvGeometry(
        tuple(kernel_size), strides, dilations, pads, groups, out_size, tuple(input_size)
    )


@dataclass(frozen=True)
class PoolGeometry:
    """Where the windows of a pool sit: output ``o`` tap ``k`` reads padded ``o S + k D``.

    ``pads`` are the (left, right) paddings the windows actually reach: ``padding`` on the
    left, on the right only what the last window reads (less in floor mode, possibly more in
    ceil mode)."""

    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]
    in_size: tuple[int, ...]
    out_size: tuple[int, ...]
    pads: Pads

    @property
    def padded_size(self) -> tuple[int, ...]:
        return padded_size(self.in_size, self.pads)

    @property
    def is_padded(self) -> bool:
        return any(left or right for left, right in self.pads)

    def tap_slice(self, tap: Sequence[int]) -> tuple[Any, ...]:
        """Tap ``tap`` of every window in the padded maps: one strided slice per axis."""
        return (Ellipsis,) + tuple(
            slice(k * d, k * d + (o - 1) * s + 1, s)
            for k, o, s, d in zip(tap, self.out_size, self.stride, self.dilation, strict=True)
        )

    def inner(self) -> tuple[Any, ...]:
        """The unpadded input inside the padded maps (the notes' "remove the padding")."""
        return (Ellipsis,) + tuple(
            slice(left, left + n) for n, (left, _) in zip(self.in_size, self.pads, strict=True)
        )

    def tiles_exactly(self) -> bool:
        """Whether every input sample is in exactly one window (windows side by side, no
        padding, none left over)."""
        return not self.is_padded and all(
            d == 1 and s == k and o * s == n
            for k, s, d, o, n in zip(
                self.kernel, self.stride, self.dilation, self.out_size, self.in_size, strict=True
            )
        )

    def covers_once(self) -> bool:
        """Whether no sample is read by two windows (so backward may assign instead of add)."""
        return all(
            d == 1 and s >= k
            for k, s, d in zip(self.kernel, self.stride, self.dilation, strict=True)
        )


def no_stride(stride: IntOrTuple | None) -> bool:
    """Whether a pool's ``stride`` is left out: None or empty (PyTorch then takes the kernel
    size)."""
    return stride is None or (isinstance(stride, Sequence) and len(stride) == 0)


def pool_arguments(
    func: str,
    spatial: int,
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None,
    padding: IntOrTuple,
    dilation: IntOrTuple,
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """Kernel, stride (the kernel size when None or empty, as PyTorch), padding (at most half
    the kernel) and dilation of a pool, checked."""
    kernel = positive(kernel_size, spatial, func, "kernel_size")
    strides = kernel
    if stride is not None and not no_stride(stride):
        strides = positive(stride, spatial, func, "stride")
    pads = non_negative(padding, spatial, func, "padding")
    dilations = positive(dilation, spatial, func, "dilation")
    if any(p > k // 2 for p, k in zip(pads, kernel, strict=True)):
        raise ValueError(
            f"{func}: padding should be at most half of kernel_size (padding <= kernel_size // 2), "
            f"got padding={pads} and kernel_size={kernel}"
        )
    return kernel, strides, pads, dilations


def pool_geometry(
    func: str,
    in_size: Sequence[int],
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None,
    padding: IntOrTuple,
    dilation: IntOrTuple,
    ceil_mode: bool,
) -> PoolGeometry:
    """Check a pool's arguments and work out its output size and the paddings it reads."""
    kernel, strides, pads, dilations = pool_arguments(
        func, len(in_size), kernel_size, stride, padding, dilation
    )
    sizes = []
    for length, k, s, p, d in zip(in_size, kernel, strides, pads, dilations, strict=True):
        count = conv_output_size(length, k, s, 2 * p, d, bool(ceil_mode))
        if ceil_mode and (count - 1) * s >= length + p:
            count -= 1  # a ceil-mode window must start inside the input or the left padding
        sizes.append(count)
    if any(size < 1 for size in sizes):
        raise ValueError(
            f"{func}: output size is too small: input size {tuple(in_size)} with "
            f"kernel_size={kernel}, stride={strides}, padding={pads}, dilation={dilations}, "
            f"ceil_mode={ceil_mode} gives {tuple(sizes)}"
        )
    window_pads = tuple(
        (p, max(0, (o - 1) * s + d * (k - 1) + 1 - n - p))
        for n, o, k, s, p, d in zip(in_size, sizes, kernel, strides, pads, dilations, strict=True)
    )
    return PoolGeometry(kernel, strides, pads, dilations, tuple(in_size), tuple(sizes), window_pads)


def adaptive_bounds(length: int, out: int) -> tuple[np.ndarray, np.ndarray]:
    """The windows of adaptive pooling from ``length`` samples to ``out`` (PyTorch's rule):
    window i is [floor(i L / out), ceil((i + 1) L / out)), so the windows cover the axis,
    overlap by at most one sample, and repeat samples when out > L."""
    i = np.arange(out, dtype=np.int64)
    return (i * length) // out, -((-(i + 1) * length) // out)


def adaptive_output_size(func: str, output_size: Any, in_size: Sequence[int]) -> tuple[int, ...]:
    """An adaptive pool's output size as PyTorch takes it: an int, or exactly one entry per
    spatial axis, where None (2-D and up) keeps that axis's input size; non-negative."""
    spatial = len(in_size)
    if isinstance(output_size, (int, np.integer)) and not isinstance(output_size, bool):
        requested: tuple[Any, ...] = (output_size,) * spatial
    elif isinstance(output_size, Sequence) and not isinstance(output_size, str):
        requested = tuple(output_size)
    else:
        requested = ()
    allowed_none = spatial > 1
    if len(requested) != spatial or not all(
        (v is None and allowed_none)
        or (isinstance(v, (int, np.integer)) and not isinstance(v, bool))
        for v in requested
    ):
        entries = "ints or None" if allowed_none else "ints"
        raise TypeError(
            f"{func}: output_size must be an int or a sequence of {spatial} {entries}, "
            f"got {output_size!r}"
        )
    sizes = tuple(
        int(length if v is None else v) for v, length in zip(requested, in_size, strict=True)
    )
    if any(v < 0 for v in sizes):
        raise ValueError(f"{func}: output_size must be non-negative, got {_show(sizes)}")
    return sizes


def unpool_output_size(
    func: str,
    in_size: Sequence[int],
    kernel_size: IntOrTuple,
    stride: IntOrTuple | None,
    padding: IntOrTuple,
    output_size: Sequence[int] | None,
) -> tuple[int, ...]:
    """Max unpooling's output size: (L - 1) S - 2 P + K, the size max pooling with these
    arguments maps back from, or ``output_size`` (spatial, or with N and C) strictly within
    one stride of it, as PyTorch."""
    spatial = len(in_size)
    kernel = to_tuple(kernel_size, spatial, func, "kernel_size")
    strides = (
        kernel if no_stride(stride) or stride is None else to_tuple(stride, spatial, func, "stride")
    )
    pads = to_tuple(padding, spatial, func, "padding")
    default = tuple(
        (n - 1) * s - 2 * p + k for n, s, p, k in zip(in_size, strides, pads, kernel, strict=True)
    )
    out_size = default
    if output_size is not None:
        requested = tuple(output_size)
        if len(requested) == spatial + 2:
            requested = requested[2:]
        if len(requested) != spatial:
            raise ValueError(
                f"{func}: output_size should contain {spatial} or {spatial + 2} elements, got "
                f"{tuple(output_size)!r}"
            )
        for axis, (size, base, s) in enumerate(zip(requested, default, strides, strict=True)):
            if not base - s < size < base + s:
                raise ValueError(
                    f"{func}: invalid output_size {tuple(output_size)!r} (dimension {axis} must be "
                    f"strictly between {base - s} and {base + s})"
                )
        out_size = tuple(int(v) for v in requested)
    if any(size < 0 for size in out_size):
        raise ValueError(
            f"{func}: output size must be non-negative, got {out_size} (input size "
            f"{tuple(in_size)}, kernel_size={kernel}, stride={strides}, padding={pads})"
        )
    return out_size


def as_batched(x: np.ndarray, spatial: int) -> tuple[np.ndarray, bool]:
    """``x`` with a batch axis, and whether it had none ((C, *S) is unbatched)."""
    unbatched = x.ndim == spatial + 1
    return (x[np.newaxis] if unbatched else x), unbatched


def unbatched(output: np.ndarray, was_unbatched: bool) -> np.ndarray:
    """Undo :func:`as_batched` on an output."""
    return output[0] if was_unbatched else output
