"""Pooling layers: max, average, adaptive and unpooling, 1-D and 2-D (PyTorch's names).

Each layer checks its window arguments when it is built, with ``convprop.ops.geometry``'s
rules and messages (``MaxPool2d: kernel_size must be positive, got (0, 0)``), and keeps them
as given, as PyTorch does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from convprop.autograd import Tensor
from convprop.nn import functional as F
from convprop.nn.module import Module
from convprop.ops.geometry import no_stride, pool_arguments, to_tuple

Size = int | Sequence[int]


class _MaxPoolNd(Module):
    _spatial_dims: int

    def __init__(
        self,
        kernel_size: Size,
        stride: Size | None = None,
        padding: Size = 0,
        dilation: Size = 1,
        return_indices: bool = False,
        ceil_mode: bool = False,
    ) -> None:
        super().__init__()
        pool_arguments(
            type(self).__name__, self._spatial_dims, kernel_size, stride, padding, dilation
        )
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size
        self.padding = padding
        self.dilation = dilation
        self.return_indices = return_indices
        self.ceil_mode = ceil_mode

    def forward(self, input: Tensor) -> Any:
        max_pool = F.max_pool1d if self._spatial_dims == 1 else F.max_pool2d
        return max_pool(
            input,
            self.kernel_size,
            self.stride,
            self.padding,
            self.dilation,
            ceil_mode=self.ceil_mode,
            return_indices=self.return_indices,
        )

    def extra_repr(self) -> str:
        return (
            f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
            f"dilation={self.dilation}, ceil_mode={self.ceil_mode}"
        )


class MaxPool1d(_MaxPoolNd):
    """Max over each window of (N, C, L); the gradient goes to each window's argmax ("+=" where
    windows overlap). Shape: L_out = floor((L + 2p - d (k - 1) - 1) / s) + 1 (ceil with
    ceil_mode)."""

    _spatial_dims = 1


class MaxPool2d(_MaxPoolNd):
    """Max over each window of (N, C, H, W); the gradient goes to each window's argmax ("+=" where
    windows overlap). Shape: H_out = floor((H + 2p - d (k - 1) - 1) / s) + 1, likewise W_out."""

    _spatial_dims = 2


class AvgPool1d(Module):
    """Mean over each window of (N, C, L); each input gets grad / K from every window it is in."""

    def __init__(
        self,
        kernel_size: Size,
        stride: Size | None = None,
        padding: Size = 0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
    ) -> None:
        super().__init__()
        pool_arguments("AvgPool1d", 1, kernel_size, stride, padding, 1)
        # PyTorch stores AvgPool1d's sizes as 1-tuples (and prints them so).
        self.kernel_size = to_tuple(kernel_size, 1, "AvgPool1d", "kernel_size")
        self.stride = to_tuple(
            stride if stride is not None else kernel_size, 1, "AvgPool1d", "stride"
        )
        self.padding = to_tuple(padding, 1, "AvgPool1d", "padding")
        self.ceil_mode = ceil_mode
        self.count_include_pad = count_include_pad

    def forward(self, input: Tensor) -> Tensor:
        return F.avg_pool1d(
            input,
            self.kernel_size,
            self.stride,
            self.padding,
            self.ceil_mode,
            self.count_include_pad,
        )

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AvgPool2d(Module):
    """Mean over each window of (N, C, H, W); each input gets grad / K^2 from every window."""

    def __init__(
        self,
        kernel_size: Size,
        stride: Size | None = None,
        padding: Size = 0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
        divisor_override: int | None = None,
    ) -> None:
        super().__init__()
        pool_arguments("AvgPool2d", 2, kernel_size, stride, padding, 1)
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size
        self.padding = padding
        self.ceil_mode = ceil_mode
        self.count_include_pad = count_include_pad
        self.divisor_override = divisor_override

    def forward(self, input: Tensor) -> Tensor:
        return F.avg_pool2d(
            input,
            self.kernel_size,
            self.stride,
            self.padding,
            self.ceil_mode,
            self.count_include_pad,
            self.divisor_override,
        )

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class _AdaptivePool(Module):
    def __init__(self, output_size: Any) -> None:
        super().__init__()
        self.output_size = output_size

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class AdaptiveAvgPool1d(_AdaptivePool):
    """Average pooling to a fixed output length (PyTorch's window rule)."""

    def forward(self, input: Tensor) -> Tensor:
        return F.adaptive_avg_pool1d(input, self.output_size)


class AdaptiveAvgPool2d(_AdaptivePool):
    """Average pooling to a fixed output size (PyTorch's window rule)."""

    def forward(self, input: Tensor) -> Tensor:
        return F.adaptive_avg_pool2d(input, self.output_size)


class _AdaptiveMaxPool(_AdaptivePool):
    def __init__(self, output_size: Any, return_indices: bool = False) -> None:
        super().__init__(output_size)
        self.return_indices = return_indices


class AdaptiveMaxPool1d(_AdaptiveMaxPool):
    """Max pooling to a fixed output length (PyTorch's window rule)."""

    def forward(self, input: Tensor) -> Any:
        return F.adaptive_max_pool1d(input, self.output_size, self.return_indices)


class AdaptiveMaxPool2d(_AdaptiveMaxPool):
    """Max pooling to a fixed output size (PyTorch's window rule)."""

    def forward(self, input: Tensor) -> Any:
        return F.adaptive_max_pool2d(input, self.output_size, self.return_indices)


class _MaxUnpool(Module):
    _spatial_dims: int

    def __init__(self, kernel_size: Size, stride: Size | None = None, padding: Size = 0) -> None:
        super().__init__()
        # As max_unpool: sizes must be ints (the output size decides the rest); no stride (None
        # or empty) is the kernel size.
        name, n = type(self).__name__, self._spatial_dims
        to_tuple(kernel_size, n, name, "kernel_size")
        if stride is not None and not no_stride(stride):
            to_tuple(stride, n, name, "stride")
        to_tuple(padding, n, name, "padding")
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size
        self.padding = padding

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class MaxUnpool1d(_MaxUnpool):
    """Puts each value back at the index its max pooling took it from; zeros elsewhere."""

    _spatial_dims = 1

    def forward(
        self, input: Tensor, indices: Tensor, output_size: Sequence[int] | None = None
    ) -> Tensor:
        return F.max_unpool1d(
            input, indices, self.kernel_size, self.stride, self.padding, output_size
        )


class MaxUnpool2d(_MaxUnpool):
    """Puts each value back at the index its max pooling took it from; zeros elsewhere."""

    _spatial_dims = 2

    def forward(
        self, input: Tensor, indices: Tensor, output_size: Sequence[int] | None = None
    ) -> Tensor:
        return F.max_unpool2d(
            input, indices, self.kernel_size, self.stride, self.padding, output_size
        )
