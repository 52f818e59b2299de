"""Reductions (sum, mean, max) over some or all axes, as forward/backward pairs.

The backward of a reduction broadcasts ``grad_out`` back over the reduced axes: every input
element contributes to exactly one output element, so its gradient is that element's gradient
times the local derivative (1 for sum, 1/n for mean, the argmax indicator for max).

Each op has one implementation, the formula as written, which is its own reference:
``convprop.ops.use_algorithm("reference")`` changes nothing here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from convprop.ops.contract import Grads, Needs, OpPair

Dims = int | tuple[int, ...] | None


def normalize_dims(dim: Dims, ndim: int, func: str) -> tuple[int, ...]:
    """Turn ``dim`` (None, an int or a tuple, negatives allowed) into sorted positive axes."""
    if dim is None:
        return tuple(range(ndim))
    dims = (dim,) if isinstance(dim, (int, np.integer)) else tuple(dim)
    rank = max(ndim, 1)
    result = []
    for d in dims:
        if not -rank <= d < rank:
            raise IndexError(
                f"{func}: dim {d} is out of range for a tensor of {ndim} dimensions "
                f"(expected a value in [{-rank}, {rank - 1}])"
            )
        result.append(int(d) % rank)
    if len(set(result)) != len(result):
        raise ValueError(f"{func}: dim {dim!r} repeats an axis")
    return tuple(sorted(result)) if ndim else ()


def _expand_reduced(grad_out: np.ndarray, axes: tuple[int, ...], keepdim: bool) -> np.ndarray:
    return grad_out if keepdim else np.expand_dims(grad_out, axes)


def sum_forward(a: np.ndarray, dim: Dims = None, keepdim: bool = False) -> tuple[np.ndarray, Any]:
    axes = normalize_dims(dim, a.ndim, "sum")
    return np.sum(a, axis=axes, keepdims=keepdim), (a.shape, axes, keepdim)


def sum_backward(grad_out: np.ndarray, saved: Any, needs: Needs) -> Grads:
    """d(sum a)/da_i = 1: the output gradient broadcast over the summed axes."""
    shape, axes, keepdim = saved
    grad = _expand_reduced(grad_out, axes, keepdim)
    return (np.broadcast_to(grad, shape).copy(),)


def mean_forward(a: np.ndarray, dim: Dims = None, keepdim: bool = False) -> tuple[np.ndarray, Any]:
    axes = normalize_dims(dim, a.ndim, "mean")
    count = int(np.prod([a.shape[i] for i in axes])) if axes else 1
    return np.mean(a, axis=axes, keepdims=keepdim), (a.shape, axes, keepdim, count)


def mean_backward(grad_out: np.ndarray, saved: Any, needs: Needs) -> Grads:
    """d(mean a)/da_i = 1/n, n the number of elements averaged."""
    shape, axes, keepdim, count = saved
    grad = _expand_reduced(grad_out, axes, keepdim) / count
    return (np.broadcast_to(grad, shape).astype(grad_out.dtype),)


def amax_forward(a: np.ndarray, dim: Dims = None, keepdim: bool = False) -> tuple[np.ndarray, Any]:
    """Maximum over ``dim``; used for ``max()`` without a dim (ties share the gradient)."""
    axes = normalize_dims(dim, a.ndim, "max")
    if a.size == 0:
        raise ValueError("max: cannot reduce an empty tensor")
    out = np.max(a, axis=axes, keepdims=True)
    return (out if keepdim else np.squeeze(out, axis=axes)), (a, out, axes, keepdim)


def amax_backward(grad_out: np.ndarray, saved: Any, needs: Needs) -> Grads:
    """The gradient goes to the maximal elements, split evenly where several tie (PyTorch)."""
    a, out, axes, keepdim = saved
    is_max = (a == out) | (np.isnan(a) & np.isnan(out))
    count = is_max.sum(axis=axes, keepdims=True)
    grad = _expand_reduced(grad_out, axes, keepdim)
    return ((grad / count * is_max).astype(grad_out.dtype),)


def max_dim_forward(a: np.ndarray, dim: int, keepdim: bool = False) -> tuple[np.ndarray, Any]:
    """``max(dim)``: values and the index of the first maximum (NaN counts as the maximum)."""
    (axis,) = normalize_dims(dim, a.ndim, "max") or (0,)
    work = a.reshape(1) if a.ndim == 0 else a
    if work.shape[axis] == 0:
        raise ValueError(f"max: cannot reduce dimension {dim} of size 0 (shape {a.shape})")
    # np.argmax returns the first maximum, and the first NaN when there is one, as PyTorch does.
    indices = np.argmax(work, axis=axis, keepdims=True)
    values = np.take_along_axis(work, indices, axis=axis)
    if not keepdim or a.ndim == 0:
        values = values.reshape(a.shape) if a.ndim == 0 else np.squeeze(values, axis=axis)
        indices = indices.reshape(a.shape) if a.ndim == 0 else np.squeeze(indices, axis=axis)
    return values, (a.shape, axis, keepdim, indices)


def max_dim_backward(grad_out: np.ndarray, saved: Any, needs: Needs) -> Grads:
    """The gradient goes only to the element whose index was returned."""
    shape, axis, keepdim, indices = saved
    if not shape:
        return (grad_out.copy(),)
    if not keepdim:
        indices = np.expand_dims(indices, axis)
        grad_out = np.expand_dims(grad_out, axis)
    grad = np.zeros(shape, dtype=grad_out.dtype)
    np.put_along_axis(grad, indices, grad_out, axis=axis)
    return (grad,)


amax = OpPair("amax", amax_forward, amax_backward)
mean = OpPair("mean", mean_forward, mean_backward)
sum = OpPair("sum", sum_forward, sum_backward)
