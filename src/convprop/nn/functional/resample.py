"""Resampling, padding and window-extraction functions (see ``convprop.ops.resample``)."""

from __future__ import annotations

from collections.abc import Sequence

from convprop.autograd import Tensor, apply
from convprop.ops import resample

__all__ = ["decimate", "dilate"]


def dilate(input: Tensor, factor: int | Sequence[int]) -> Tensor:
    """The notes' up-sampling layer: insert ``factor - 1`` zeros between samples.

    Shape: (N, C, L) -> (N, C, (L - 1) * factor + 1); likewise on H and W for (N, C, H, W).
    """
    return apply(resample.dilate_forward, resample.dilate_backward, (input,), factor)


def decimate(input: Tensor, factor: int | Sequence[int]) -> Tensor:
    """The notes' down-sampling layer: keep every ``factor``-th sample.

    Shape: (N, C, L) -> (N, C, ceil(L / factor)); likewise on H and W for (N, C, H, W).
    """
    return apply(resample.decimate_forward, resample.decimate_backward, (input,), factor)
