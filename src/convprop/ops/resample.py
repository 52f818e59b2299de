"""Resampling layers: the notes' zero insertion and decimation, interpolation, pixel shuffle.

Deck 004: "Downsampling: drop S-1 rows/columns between rows/columns"; "Upsampling: insert S-1
rows/columns of zeros between adjacent entries". The two are adjoint to each other, so each
one's backward is the other applied to the output gradient:

* ``dilate``: y[o * S] = x[o], zeros elsewhere (output (W - 1) S + 1);
  dL/dx[o] = dL/dy[o * S], i.e. decimation of the gradient.
* ``decimate``: y[o] = x[o * S] (output ceil(W / S));
  dL/dx = dL/dy with S - 1 zeros inserted after each entry (zero insertion), padded to W.

Both work on the spatial axes of NCL (1-D) and NCHW (2-D) inputs.

``interpolate`` resamples each spatial axis separately with PyTorch's source-index formulas.
Along an axis of input length n and output length m the source position of output sample d is

* align_corners=True: src = d (n - 1) / (m - 1) (0 when m = 1);
* otherwise: src = max(s (d + 0.5) - 0.5, 0), with s = 1 / scale_factor when a scale factor
  was given (and not recomputed), else s = n / m.

``linear`` takes y[d] = (1 - t) x[i0] + t x[i1] with i0 = floor(src), i1 = min(i0 + 1, n - 1),
t = src - i0; ``nearest`` takes x[min(floor(s d), n - 1)] and ``nearest-exact``
x[min(floor(s (d + 0.5)), n - 1)]. Each axis is thus a fixed (m x n) matrix A (two non-zeros
per row for linear, one for nearest) and the whole op is y = A_1 x A_2^T ... (one contraction
per axis). The backward is the transpose: dL/dx = A_1^T (dL/dy) A_2 ..., i.e. every output
gradient is scattered back onto the samples it was interpolated from with the same weights,
adding ("+=") where several outputs read one sample.

Nearest indices mirror PyTorch's arithmetic: the scale is held in the input's precision, the
product rounded to float32 before ``floor``, and 2-D nearest short-cuts m = n and m = 2n as
PyTorch's 2-D kernel does. Where s d lands within float32 rounding of an integer (only for
outputs of more than ~80 samples) PyTorch itself rounds differently in different kernels.
Our nearest backward is the exact adjoint of the forward; PyTorch's 1-D and 3-D nearest
backward short-cuts m = n and m = 2n even where its forward does not, so with such scale
factors its gradient is not the derivative of its output (finite differences reject it).
Linear modes copy an axis whose length does not change, whatever the scale factor, as PyTorch.

``pixel_shuffle`` rearranges (*, C r^2, H, W) into (*, C, H r, W r):
y[c, h r + i, w r + j] = x[c r^2 + i r + j, h, w]; ``pixel_unshuffle`` is its inverse. Both are
permutations, so each one's backward is the other applied to the output gradient.

Implementations: dilate, decimate and pixel (un)shuffle have one each, the formula as written
(a strided assignment or slice, a reshape and transpose), which is its own reference.
Interpolation has a reference (``reference_nearest``/``reference_nearest_grad``: the gather
and its "+=" with ``np.add.at``; ``reference_linear``/``reference_linear_grad``: the matrices
contracted with ``tensordot``) and fast paths in ``convprop.ops.kernels.interpolate``, chosen
by ``plan_interpolate``; ``convprop.ops.use_algorithm("reference")`` runs the reference.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from convprop.ops import algorithm
from convprop.ops.checks import check_float, check_ndim, check_positive
from convprop.ops.contract import Grads, Needs, OpPair
from convprop.ops.geometry import to_tuple
from convprop.ops.kernels import interpolate as interpolate_kernels


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


# ---------------------------------------------------------------------------------------------
# interpolate

_INTERPOLATING = {"linear": 1, "bilinear": 2, "trilinear": 3}
_NEAREST = ("nearest", "nearest-exact")
_KNOWN_TORCH_MODES = ("bicubic", "area", "lanczos")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _per_axis(
    value: Any, spatial: int, name: str, input_shape: tuple[int, ...], kind: str
) -> tuple[Any, ...]:
    """``size`` or ``scale_factor`` as one entry per spatial axis (PyTorch's broadcasting)."""
    if isinstance(value, (list, tuple)):
        if len(value) != spatial:
            raise ValueError(
                f"interpolate: input and {name} must have the same number of spatial "
                f"dimensions, but got input with spatial dimensions of {list(input_shape[2:])} "
                f"and {name} of {tuple(value)} (input is (N, C, d1, ..., dK), {name} "
                f"is (v1, ..., vK))"
            )
        items = tuple(value)
    else:
        items = (value,) * spatial
    if kind == "int":
        if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in items):
            raise TypeError(f"interpolate: size must be an int or a tuple of ints, got {value!r}")
        return tuple(int(v) for v in items)
    if not all(_is_number(v) for v in items):
        raise TypeError(
            f"interpolate: scale_factor must be a float or a tuple of floats, got {value!r}"
        )
    return tuple(float(v) for v in items)


def _nearest_indices(
    in_size: int,
    out_size: int,
    scale: float | None,
    exact: bool,
    precision: type,
    fast_paths: bool,
) -> np.ndarray:
    """Source index of every output sample of one axis, with PyTorch's rounding."""
    if fast_paths and out_size == in_size:
        return np.arange(out_size)
    if fast_paths and out_size == 2 * in_size:
        return np.arange(out_size) // 2
    if scale is not None and scale > 0:
        step = precision(1.0 / scale)
    else:
        step = precision(in_size) / precision(out_size)
    position: np.ndarray = np.arange(out_size).astype(precision)
    if exact:
        real = np.maximum(step * (position + precision(0.5)) - precision(0.5), precision(0))
        index = np.floor(real.astype(np.float32) + np.float32(0.5))
    else:
        index = np.floor((step * position).astype(np.float32))
    source_index: np.ndarray = np.minimum(index.astype(np.int64), in_size - 1)
    return source_index


def _linear_matrix(
    in_size: int, out_size: int, scale: float | None, align_corners: bool, dtype: np.dtype
) -> np.ndarray:
    """The (out_size x in_size) matrix of linear interpolation along one axis."""
    if out_size == in_size:
        # PyTorch copies an axis whose length does not change, whatever the scale factor.
        return np.eye(in_size, dtype=dtype)
    position = np.arange(out_size, dtype=np.float64)
    if align_corners:
        step = (in_size - 1) / (out_size - 1) if out_size > 1 else 0.0
        source = step * position
    else:
        step = 1.0 / scale if scale is not None and scale > 0 else in_size / out_size
        source = np.maximum(step * (position + 0.5) - 0.5, 0.0)
    lower = np.minimum(np.floor(source).astype(np.int64), in_size - 1)
    upper = lower + (lower < in_size - 1)
    weight_upper = np.clip(source - lower, 0.0, 1.0)
    rows = np.arange(out_size)
    matrix = np.zeros((out_size, in_size))
    matrix[rows, lower] = 1.0 - weight_upper
    # At the last sample lower == upper and the two weights add up to 1 on the same entry.
    matrix[rows, upper] += weight_upper
    result: np.ndarray = matrix.astype(dtype, copy=False)
    return result


# The reference: the formulas as written (a gather and "+=" for nearest, the matrices for
# linear modes); the fast paths are in ``convprop.ops.kernels.interpolate``.
def _spatial_first(array: np.ndarray) -> np.ndarray:
    """A view of (N, C, d_1, ..., d_K) as (d_1, ..., d_K, N, C)."""
    return np.moveaxis(array, (0, 1), (-2, -1))


def reference_nearest(x: np.ndarray, indices: Sequence[np.ndarray]) -> np.ndarray:
    """y[n, c, d_1, ..., d_K] = x[n, c, i_1(d_1), ..., i_K(d_K)]: each output copies one sample."""
    copied: np.ndarray = _spatial_first(x)[np.ix_(*indices)]
    return np.ascontiguousarray(np.moveaxis(copied, (-2, -1), (0, 1)))


def reference_nearest_grad(
    grad_out: np.ndarray, indices: Sequence[np.ndarray], input_shape: tuple[int, ...]
) -> np.ndarray:
    """dL/dx[n, c, i_1(d_1), ...] += dL/dy[n, c, d_1, ...]: every output gradient is added onto
    the sample it copies (``np.add.at`` adds each one, also where outputs share a sample)."""
    grad = np.zeros(input_shape, dtype=grad_out.dtype)
    np.add.at(_spatial_first(grad), np.ix_(*indices), _spatial_first(grad_out))
    return grad


def reference_linear(x: np.ndarray, matrices: Sequence[np.ndarray]) -> np.ndarray:
    """y = A_1 x A_2^T ...: y[..., p, ...] = sum_q A_k[p, q] x[..., q, ...] along each axis k."""
    out = x
    for k, matrix in enumerate(matrices):
        out = np.moveaxis(np.tensordot(matrix, out, axes=(1, 2 + k)), 0, 2 + k)
    return np.ascontiguousarray(out)


def reference_linear_grad(grad_out: np.ndarray, matrices: Sequence[np.ndarray]) -> np.ndarray:
    """dL/dx = A_1^T (dL/dy) A_2 ...: each output gradient split between the samples it was
    interpolated from with the forward weights, summed where outputs share a sample."""
    return reference_linear(grad_out, [matrix.T for matrix in matrices])


# The plan: the reference, or the fast paths of ``kernels.interpolate`` for each mode.
NearestKernel = Callable[[np.ndarray, Sequence[np.ndarray]], np.ndarray]
NearestGradKernel = Callable[[np.ndarray, Sequence[np.ndarray], tuple[int, ...]], np.ndarray]
LinearKernel = Callable[[np.ndarray, Sequence[np.ndarray]], np.ndarray]
NEAREST_KERNELS: dict[str, NearestKernel] = {
    "reference": reference_nearest,
    "index_copy": interpolate_kernels.nearest,
}
NEAREST_GRAD_KERNELS: dict[str, NearestGradKernel] = {
    "reference": reference_nearest_grad,
    "index_copy": interpolate_kernels.nearest_grad,
}
LINEAR_KERNELS: dict[str, LinearKernel] = {
    "reference": reference_linear,
    "axis_products": interpolate_kernels.linear,
}
LINEAR_GRAD_KERNELS: dict[str, LinearKernel] = {
    "reference": reference_linear_grad,
    "axis_products": interpolate_kernels.linear_grad,
}


def plan_interpolate(kind: str) -> str:
    """The implementation for ``kind`` 'nearest' (both nearest modes) or 'linear' (the
    interpolating modes): the reference, or that mode's fast path."""
    if algorithm.reference():
        return "reference"
    return "index_copy" if kind == "nearest" else "axis_products"


def _check_mode(x: np.ndarray, mode: str, align_corners: bool | None, antialias: bool) -> None:
    func = "interpolate"
    if not isinstance(mode, str) or mode not in _NEAREST + tuple(_INTERPOLATING):
        extra = (
            f" ({mode!r} exists in PyTorch but is not implemented in convprop)"
            if mode in _KNOWN_TORCH_MODES
            else ""
        )
        raise ValueError(
            f"{func}: mode must be one of 'nearest', 'nearest-exact', 'linear', 'bilinear', "
            f"'trilinear', got {mode!r}{extra}"
        )
    if mode in _NEAREST and align_corners is not None:
        raise ValueError(
            f"{func}: align_corners can only be set with the interpolating modes linear, "
            f"bilinear, trilinear; got align_corners={align_corners!r} with mode={mode!r}"
        )
    if align_corners is not None and not isinstance(align_corners, (bool, np.bool_)):
        raise TypeError(f"{func}: align_corners must be a bool or None, got {align_corners!r}")
    check_float(x, func, "input")
    check_ndim(x, (3, 4, 5), func, "input", "N, C, L or N, C, H, W or N, C, D, H, W")
    if mode in _INTERPOLATING and _INTERPOLATING[mode] != x.ndim - 2:
        needed = _INTERPOLATING[mode] + 2
        raise ValueError(
            f"{func}: mode {mode!r} needs a {needed}-D input, got {x.ndim}-D with shape "
            f"{tuple(x.shape)}"
        )
    if antialias:
        raise ValueError(
            f"{func}: antialias=True is not supported (PyTorch restricts it to bilinear and "
            f"bicubic; convprop implements neither antialiased variant)"
        )


def _output_sizes(
    x: np.ndarray,
    size: int | Sequence[int] | None,
    scale_factor: float | Sequence[float] | None,
    recompute_scale_factor: bool | None,
) -> tuple[tuple[int, ...], tuple[float | None, ...]]:
    """The output size of every spatial axis, and the scale its source index uses (None: the
    ratio of the sizes)."""
    func, spatial = "interpolate", x.ndim - 2
    if size is not None and scale_factor is not None:
        raise ValueError(
            f"{func}: only one of size or scale_factor should be defined, got size={size!r} "
            f"and scale_factor={scale_factor!r}"
        )
    if size is None and scale_factor is None:
        raise ValueError(f"{func}: either size or scale_factor should be defined")
    in_sizes = tuple(x.shape[2:])
    scales: tuple[float | None, ...] = (None,) * spatial
    if size is not None:
        if recompute_scale_factor:
            raise ValueError(
                f"{func}: recompute_scale_factor is not meaningful with an explicit size"
            )
        out_sizes = _per_axis(size, spatial, "size", x.shape, "int")
    else:
        factors = _per_axis(scale_factor, spatial, "scale_factor", x.shape, "float")
        if not all(np.isfinite(f) for f in factors):
            raise ValueError(f"{func}: scale_factor must be finite, got {scale_factor!r}")
        out_sizes = tuple(int(np.floor(n * f)) for n, f in zip(in_sizes, factors, strict=True))
        if not recompute_scale_factor:
            scales = factors
    if any(n <= 0 for n in in_sizes) or any(m <= 0 for m in out_sizes):
        raise ValueError(
            f"{func}: input and output sizes should be greater than 0, but got input "
            f"{in_sizes} and output {out_sizes}"
        )
    if x.shape[1] == 0:
        raise ValueError(
            f"{func}: input must be non-empty apart from the batch, got shape {tuple(x.shape)}"
        )
    return out_sizes, scales


def interpolate_forward(
    x: np.ndarray,
    size: int | Sequence[int] | None = None,
    scale_factor: float | Sequence[float] | None = None,
    mode: str = "nearest",
    align_corners: bool | None = None,
    recompute_scale_factor: bool | None = None,
    antialias: bool = False,
) -> tuple[np.ndarray, Any]:
    """Resize the spatial axes of an (N, C, d1, ..., dK) input, K = 1, 2 or 3: y = A_1 x A_2^T
    ..., A_k the (out x in) matrix of axis k (one-hot rows for the nearest modes)."""
    _check_mode(x, mode, align_corners, antialias)
    out_sizes, scales = _output_sizes(x, size, scale_factor, recompute_scale_factor)
    axes = list(zip(x.shape[2:], out_sizes, scales, strict=True))
    if mode in _NEAREST:
        precision = np.float32 if x.dtype == np.float32 else np.float64
        # 2-D nearest short-cuts m = n and m = 2n, as PyTorch's 2-D kernel does.
        fast_paths = mode == "nearest" and x.ndim == 4
        exact = mode == "nearest-exact"
        indices = tuple(_nearest_indices(n, m, s, exact, precision, fast_paths) for n, m, s in axes)
        kernel = plan_interpolate("nearest")
        algorithm.ran(f"interpolate.forward.{kernel}")
        return NEAREST_KERNELS[kernel](x, indices), ("nearest", x.shape, indices)
    matrices = tuple(_linear_matrix(n, m, s, bool(align_corners), x.dtype) for n, m, s in axes)
    kernel = plan_interpolate("linear")
    algorithm.ran(f"interpolate.forward.{kernel}")
    return LINEAR_KERNELS[kernel](x, matrices), ("linear", x.shape, matrices)


def interpolate_backward(grad_out: np.ndarray, saved: Any, needs: Needs) -> Grads:
    """dL/dx = A_1^T (dL/dy) A_2 ...: the transpose of each axis' interpolation matrix.

    nearest: the gradient of every output sample is added ("+=") onto the one input sample it
    copies. linear: every output gradient is split between the two neighbours it was
    interpolated from with the forward weights (1 - t) and t, summed where outputs share a
    neighbour.
    """
    kind, input_shape, data = saved
    kernel = plan_interpolate(kind)
    algorithm.ran(f"interpolate.backward.{kernel}")
    if kind == "nearest":
        return (NEAREST_GRAD_KERNELS[kernel](grad_out, data, input_shape),)
    return (LINEAR_GRAD_KERNELS[kernel](grad_out, data),)


# ---------------------------------------------------------------------------------------------
# pixel shuffle


def _check_factor(x: np.ndarray, factor: Any, func: str, name: str) -> int:
    if not isinstance(factor, (int, np.integer)) or isinstance(factor, bool):
        raise TypeError(f"{func}: {name} must be an int, got {factor!r}")
    if factor <= 0:
        raise ValueError(f"{func}: {name} must be positive, got {factor}")
    if x.ndim < 3:
        raise ValueError(
            f"{func}: input must have at least 3 dimensions (*, C, H, W), got {x.ndim}-D with "
            f"shape {tuple(x.shape)}"
        )
    return int(factor)


def _shuffle(x: np.ndarray, factor: int) -> np.ndarray:
    """(*, C r^2, H, W) -> (*, C, H r, W r)."""
    *batch, channels, height, width = x.shape
    lead = len(batch)
    blocks = x.reshape(*batch, channels // factor**2, factor, factor, height, width)
    # (*, C, r_h, r_w, H, W) -> (*, C, H, r_h, W, r_w)
    axes = tuple(range(lead)) + tuple(lead + a for a in (0, 3, 1, 4, 2))
    return blocks.transpose(axes).reshape(
        *batch, channels // factor**2, height * factor, width * factor
    )


def _unshuffle(x: np.ndarray, factor: int) -> np.ndarray:
    """(*, C, H r, W r) -> (*, C r^2, H, W)."""
    *batch, channels, height, width = x.shape
    lead = len(batch)
    blocks = x.reshape(*batch, channels, height // factor, factor, width // factor, factor)
    # (*, C, H, r_h, W, r_w) -> (*, C, r_h, r_w, H, W)
    axes = tuple(range(lead)) + tuple(lead + a for a in (0, 2, 4, 1, 3))
    return blocks.transpose(axes).reshape(
        *batch, channels * factor**2, height // factor, width // factor
    )


def pixel_shuffle_forward(x: np.ndarray, upscale_factor: int) -> tuple[np.ndarray, Any]:
    """y[..., c, h r + i, w r + j] = x[..., c r^2 + i r + j, h, w]."""
    factor = _check_factor(x, upscale_factor, "pixel_shuffle", "upscale_factor")
    if x.shape[-3] % (factor * factor):
        raise ValueError(
            f"pixel_shuffle: the channel dimension must be divisible by upscale_factor**2 = "
            f"{factor * factor}, but input.size(-3)={x.shape[-3]} (input shape "
            f"{tuple(x.shape)})"
        )
    return _shuffle(x, factor), factor


def pixel_shuffle_backward(grad_out: np.ndarray, saved: Any, needs: Needs) -> Grads:
    """A permutation's adjoint is its inverse: dL/dx = pixel_unshuffle(dL/dy)."""
    return (_unshuffle(grad_out, saved),)


def pixel_unshuffle_forward(x: np.ndarray, downscale_factor: int) -> tuple[np.ndarray, Any]:
    """y[..., c r^2 + i r + j, h, w] = x[..., c, h r + i, w r + j]."""
    factor = _check_factor(x, downscale_factor, "pixel_unshuffle", "downscale_factor")
    for axis, name in ((-2, "height"), (-1, "width")):
        if x.shape[axis] % factor:
            raise ValueError(
                f"pixel_unshuffle: {name} must be divisible by downscale_factor={factor}, but "
                f"input.size({axis})={x.shape[axis]} (input shape {tuple(x.shape)})"
            )
    return _unshuffle(x, factor), factor


def pixel_unshuffle_backward(grad_out: np.ndarray, saved: Any, needs: Needs) -> Grads:
    """A permutation's adjoint is its inverse: dL/dx = pixel_shuffle(dL/dy)."""
    return (_shuffle(grad_out, saved),)


decimate = OpPair("decimate", decimate_forward, decimate_backward)
dilate = OpPair("dilate", dilate_forward, dilate_backward)
interpolate = OpPair("interpolate", interpolate_forward, interpolate_backward)
pixel_shuffle = OpPair("pixel_shuffle", pixel_shuffle_forward, pixel_shuffle_backward)
pixel_unshuffle = OpPair("pixel_unshuffle", pixel_unshuffle_forward, pixel_unshuffle_backward)
