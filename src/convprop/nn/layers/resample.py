"""Resampling layers: PyTorch's ``Upsample``/``PixelShuffle`` and the notes' own
``Dilate1d/2d`` (zero-insertion up-sampling) and ``Decimate1d/2d`` (down-sampling)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from convprop.autograd import Tensor
from convprop.nn import functional as F
from convprop.nn.module import Module


class Upsample(Module):
    """Resizes by interpolation (``nearest``, ``linear``, ``bilinear``), as ``F.interpolate``."""

    def __init__(
        self,
        size: Any = None,
        scale_factor: Any = None,
        mode: str = "nearest",
        align_corners: bool | None = None,
        recompute_scale_factor: bool | None = None,
    ) -> None:
        super().__init__()
        self.size = size
        # PyTorch stores (and prints) the factors as floats.
        if isinstance(scale_factor, (tuple, list)):
            self.scale_factor: Any = tuple(float(f) for f in scale_factor)
        else:
            self.scale_factor = None if scale_factor is None else float(scale_factor)
        self.recompute_scale_factor = recompute_scale_factor
        self.mode = mode
        self.align_corners = align_corners

    def forward(self, input: Tensor) -> Tensor:
        return F.interpolate(input, self.size, self.scale_factor, self.mode, self.align_corners)

    def extra_repr(self) -> str:
        what = f"size={self.size}" if self.size is not None else f"scale_factor={self.scale_factor}"
        return f"{what}, mode={self.mode!r}"


class PixelShuffle(Module):
    """(N, C r^2, H, W) -> (N, C, H r, W r)."""

    def __init__(self, upscale_factor: int) -> None:
        super().__init__()
        self.upscale_factor = upscale_factor

    def forward(self, input: Tensor) -> Tensor:
        return F.pixel_shuffle(input, self.upscale_factor)

    def extra_repr(self) -> str:
        return f"upscale_factor={self.upscale_factor}"


class PixelUnshuffle(Module):
    """(N, C, H r, W r) -> (N, C r^2, H, W)."""

    def __init__(self, downscale_factor: int) -> None:
        super().__init__()
        self.downscale_factor = downscale_factor

    def forward(self, input: Tensor) -> Tensor:
        return F.pixel_unshuffle(input, self.downscale_factor)

    def extra_repr(self) -> str:
        return f"downscale_factor={self.downscale_factor}"


class _Resample(Module):
    _spatial_dims: int

    def __init__(self, factor: int | Sequence[int]) -> None:
        super().__init__()
        self.factor = factor

    def _check(self, input: Tensor) -> None:
        if input.ndim != self._spatial_dims + 2:
            layout = "(N, C, L)" if self._spatial_dims == 1 else "(N, C, H, W)"
            raise ValueError(
                f"{type(self).__name__}: expected a {self._spatial_dims + 2}-D input {layout}, "
                f"got shape {tuple(input.shape)}"
            )

    def extra_repr(self) -> str:
        return f"factor={self.factor}"


class _Dilate(_Resample):
    def forward(self, input: Tensor) -> Tensor:
        self._check(input)
        return F.dilate(input, self.factor)


class _Decimate(_Resample):
    def forward(self, input: Tensor) -> Tensor:
        self._check(input)
        return F.decimate(input, self.factor)


class Dilate1d(_Dilate):
    """The notes' up-sampling layer: factor - 1 zeros between samples, L -> (L - 1) factor + 1."""

    _spatial_dims = 1


class Dilate2d(_Dilate):
    """The notes' up-sampling layer on H and W: factor - 1 zero rows/columns between entries."""

    _spatial_dims = 2


class Decimate1d(_Decimate):
    """The notes' down-sampling layer: keeps every factor-th sample, L -> ceil(L / factor)."""

    _spatial_dims = 1


class Decimate2d(_Decimate):
    """The notes' down-sampling layer on H and W: keeps every factor-th row and column."""

    _spatial_dims = 2
