"""Resampling layers: the notes' up-sampling (zero insertion) and down-sampling (decimation).

Deck 004: "Downsampling: drop S-1 rows/columns between rows/columns"; "Upsampling: insert S-1
rows/columns of zeros between adjacent entries". The two are adjoint to each other, so each
one's backward is the other applied to the output gradient:

* ``dilate``: y[o * S] = x[o], zeros elsewhere (output (W - 1) S + 1);
  dL/dx[o] = dL/dy[o * S], i.e. decimation of the gradient.
* ``decimate``: y[o] = x[o * S] (output ceil(W / S));
  dL/dx = dL/dy with S - 1 zeros inserted after each entry (zero insertion), padded to W.

Both work on the spatial axes of NCL (1-D) and NCHW (2-D) inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from convprop.ops._util import check_ndim, check_positive, to_tuple
from convprop.ops.elementwise import Grads, Needs


def _spatial_setup(x: np.ndarray, factor: int | Sequence[int], func: str) -> tuple[int, ...]:
    check_ndim(x, (3, 4), func, "input", "N, C, L or N, C, H, W")
    factors = to_tuple(factor, x.ndim - 2, func, "factor")
    check_positive(factors, func, "factor")
    return factors


def _strided(factors: tuple[int, ...]) -> tuple[slice, ...]:
    return (slice(None), slice(None)) + tuple(slice(None, None, f) for f in factors)


def dilate_forward(x: np.ndarray, factor: int | Sequence[int]) -> tuple[np.ndarray, Any]:
    """Insert ``factor - 1`` zeros between neighbouring samples along every spatial axis."""
    factors = _spatial_setup(x, factor, "dilate")
    out_shape = x.shape[:2] + tuple(
        (size - 1) * f + 1 if size else 0 for size, f in zip(x.shape[2:], factors, strict=True)
    )
    out = np.zeros(out_shape, dtype=x.dtype)
    out[_strided(factors)] = x
    return out, factors


def dilate_backward(grad_out: np.ndarray, saved: Any, needs: Needs) -> Grads:
    """dL/dx[o] = dL/dy[o * S]: the gradient of the inserted zeros is dropped (decimation)."""
    return (np.ascontiguousarray(grad_out[_strided(saved)]),)


def decimate_forward(x: np.ndarray, factor: int | Sequence[int]) -> tuple[np.ndarray, Any]:
    """Keep every ``factor``-th sample along every spatial axis, starting with the first."""
    factors = _spatial_setup(x, factor, "decimate")
    return np.ascontiguousarray(x[_strided(factors)]), (x.shape, factors)


def decimate_backward(grad_out: np.ndarray, saved: Any, needs: Needs) -> Grads:
    """dL/dx: the output gradient at the kept samples, zero at the dropped ones (zero insertion)."""
    shape, factors = saved
    grad = np.zeros(shape, dtype=grad_out.dtype)
    grad[_strided(factors)] = grad_out
    return (grad,)
