"""Convolution layers: ``Conv1d``, ``Conv2d``, ``ConvTranspose1d``, ``ConvTranspose2d``."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, cast

import numpy as np

from convprop.autograd import Tensor
from convprop.nn import functional as F
from convprop.nn import init
from convprop.nn.module import Module, Parameter
from convprop.ops.geometry import to_tuple

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


class _ConvNd(Module):
    """Shared constructor, initialisation and repr of the convolution layers."""

    _spatial_dims: int
    _transposed: bool

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int],
        stride: int | Sequence[int],
        padding: str | int | Sequence[int],
        dilation: int | Sequence[int],
        groups: int,
        bias: bool,
        padding_mode: str,
        output_padding: int | Sequence[int] = 0,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        n = self._spatial_dims
        for arg, value in (
            ("in_channels", in_channels),
            ("out_channels", out_channels),
            ("groups", groups),
        ):
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name}: {arg} must be a positive int, got {value!r}")
        if in_channels % groups:
            raise ValueError(
                f"{name}: in_channels ({in_channels}) must be divisible by groups ({groups})"
            )
        if out_channels % groups:
            raise ValueError(
                f"{name}: out_channels ({out_channels}) must be divisible by groups ({groups})"
            )
        if padding_mode not in PADDING_MODES:
            raise ValueError(
                f"{name}: padding_mode must be one of {', '.join(PADDING_MODES)}, "
                f"got {padding_mode!r}"
            )
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = to_tuple(kernel_size, n, name, "kernel_size")
        self.stride = to_tuple(stride, n, name, "stride")
        self.dilation = to_tuple(dilation, n, name, "dilation")
        self.output_padding = to_tuple(output_padding, n, name, "output_padding")
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise ValueError(
                    f"{name}: padding must be 'same', 'valid' or ints, got {padding!r}"
                )
            if padding == "same" and any(s != 1 for s in self.stride):
                raise ValueError(
                    f"{name}: padding='same' is not supported for strided convolutions"
                )
            self.padding: str | tuple[int, ...] = padding
        else:
            self.padding = to_tuple(padding, n, name, "padding")
        self.groups = groups
        self.padding_mode = padding_mode
        if self._transposed:
            shape = (in_channels, out_channels // groups, *self.kernel_size)
        else:
            shape = (out_channels, in_channels // groups, *self.kernel_size)
        dtype = np.dtype(dtype or np.float32)
        self.weight = Parameter(np.empty(shape, dtype=dtype))
        if bias:
            self.bias: Parameter | None = Parameter(np.empty(out_channels, dtype=dtype))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's default: kaiming_uniform(a=sqrt(5)) weights, bias U(-1/sqrt(fan_in), +)."""
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.weight.shape[1] * int(np.prod(self.kernel_size))
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
            init.uniform_(self.bias, -bound, bound)

    def _explicit_padding(self) -> list[int]:
        """The padding as F.pad's list (last axis first, (before, after) per axis)."""
        pads: list[int] = []
        for axis in reversed(range(self._spatial_dims)):
            if self.padding == "valid":
                before = after = 0
            elif self.padding == "same":
                total = self.dilation[axis] * (self.kernel_size[axis] - 1)
                before, after = total // 2, total - total // 2
            else:
                before = after = cast(tuple[int, ...], self.padding)[axis]
            pads += [before, after]
        return pads

    def extra_repr(self) -> str:
        text = (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}"
        )
        zeros = (0,) * self._spatial_dims
        if self.padding != zeros:
            text += f", padding={self.padding}"
        if self.dilation != (1,) * self._spatial_dims:
            text += f", dilation={self.dilation}"
        if self.output_padding != zeros:
            text += f", output_padding={self.output_padding}"
        if self.groups != 1:
            text += f", groups={self.groups}"
        if self.bias is None:
            text += ", bias=False"
        if self.padding_mode != "zeros":
            text += f", padding_mode={self.padding_mode}"
        return text


class _Conv(_ConvNd):
    _transposed = False

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int],
        stride: int | Sequence[int] = 1,
        padding: str | int | Sequence[int] = 0,
        dilation: int | Sequence[int] = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding,
            dilation,
            groups,
            bias,
            padding_mode,
            dtype=dtype,
        )

    def forward(self, input: Tensor) -> Tensor:
        conv = F.conv1d if self._spatial_dims == 1 else F.conv2d
        if self.padding_mode != "zeros":
            padded = F.pad(input, self._explicit_padding(), mode=self.padding_mode)
            return conv(padded, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)
        return conv(
            input, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups
        )


class Conv1d(_Conv):
    """1-D convolution (cross-correlation, as PyTorch) over (N, C_in, L) inputs.

    out[n, f, l] = b[f] + sum_{c, k} w[f, c, k] * x_pad[n, c, l * stride + k * dilation]

    Shape: L_out = floor((L + 2 padding - dilation (kernel_size - 1) - 1) / stride) + 1.
    """

    _spatial_dims = 1


class Conv2d(_Conv):
    """2-D convolution (cross-correlation, as PyTorch) over (N, C_in, H, W) inputs.

    out[n, f, i, j] = b[f] + sum_{c, p, q} w[f, c, p, q] x_pad[n, c, i s_h + p d_h, j s_w + q d_w]

    Shape: H_out = floor((H + 2 padding[0] - dilation[0] (kernel_size[0] - 1) - 1) / stride[0]) + 1,
    and likewise W_out.
    """

    _spatial_dims = 2


class _ConvTranspose(_ConvNd):
    _transposed = True

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int],
        stride: int | Sequence[int] = 1,
        padding: int | Sequence[int] = 0,
        output_padding: int | Sequence[int] = 0,
        groups: int = 1,
        bias: bool = True,
        dilation: int | Sequence[int] = 1,
        padding_mode: str = "zeros",
        device: Any = None,
        dtype: Any = None,
    ) -> None:
        if padding_mode != "zeros":
            raise ValueError(
                f'{type(self).__name__}: only "zeros" padding_mode is supported, '
                f"got {padding_mode!r}"
            )
        if isinstance(padding, str):
            raise ValueError(f"{type(self).__name__}: padding must be ints, got {padding!r}")
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding,
            dilation,
            groups,
            bias,
            padding_mode,
            output_padding=output_padding,
            dtype=dtype,
        )

    def _output_padding(self, input: Tensor, output_size: Sequence[int] | None) -> tuple[int, ...]:
        """The output_padding that makes the output ``output_size`` (PyTorch's rule)."""
        if output_size is None:
            return self.output_padding
        n = self._spatial_dims
        sizes = list(output_size)
        if len(sizes) == input.ndim:
            sizes = sizes[input.ndim - n :]
        if len(sizes) != n:
            raise ValueError(
                f"{type(self).__name__}: output_size must have {n} or {input.ndim} elements, "
                f"got {len(sizes)} ({tuple(output_size)})"
            )
        # A transposed convolution's padding is always ints (no 'same' or 'valid').
        padding = cast(tuple[int, ...], self.padding)
        result = []
        for axis in range(n):
            smallest = (
                (input.shape[input.ndim - n + axis] - 1) * self.stride[axis]
                - 2 * padding[axis]
                + self.dilation[axis] * (self.kernel_size[axis] - 1)
                + 1
            )
            largest = smallest + self.stride[axis] - 1
            if not smallest <= sizes[axis] <= largest:
                raise ValueError(
                    f"{type(self).__name__}: requested an output size of {tuple(sizes)}, but "
                    f"valid sizes along axis {axis} range from {smallest} to {largest} (for an "
                    f"input of {tuple(input.shape[input.ndim - n :])})"
                )
            result.append(sizes[axis] - smallest)
        return tuple(result)

    def forward(self, input: Tensor, output_size: Sequence[int] | None = None) -> Tensor:
        conv_transpose = F.conv_transpose1d if self._spatial_dims == 1 else F.conv_transpose2d
        return conv_transpose(
            input,
            self.weight,
            self.bias,
            self.stride,
            cast(tuple[int, ...], self.padding),
            self._output_padding(input, output_size),
            self.groups,
            self.dilation,
        )


class ConvTranspose1d(_ConvTranspose):
    """1-D transposed convolution: the adjoint of Conv1d (the notes' upsampling + convolution).

    Shape: L_out = (L - 1) stride - 2 padding + dilation (kernel_size - 1) + output_padding + 1.
    """

    _spatial_dims = 1


class ConvTranspose2d(_ConvTranspose):
    """2-D transposed convolution: the adjoint of Conv2d, i.e. a convolution of the
    zero-inserted (dilated) input with the flipped kernel.

    Shape: H_out = (H - 1) stride[0] - 2 padding[0] + dilation[0] (kernel_size[0] - 1)
    + output_padding[0] + 1, and likewise W_out.
    """

    _spatial_dims = 2
