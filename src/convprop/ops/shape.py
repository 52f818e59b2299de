"""Shape ops (reshape, permute, indexing, concatenation, stacking) as forward/backward pairs.

None of these changes a value, so each backward only moves the output gradient back to where
its element came from: reshape it back, apply the inverse permutation, scatter it into the
indexed positions ("+=" where an index repeats), or split it into the concatenated pieces.

Each op has one implementation, the formula as written, which is its own reference:
``convprop.ops.use_algorithm("reference")`` changes nothing here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from convprop.ops.contract import Grads, Needs, OpPair
from convprop.ops.elementwise import unbroadcast


def reshape_forward(a: np.ndarray, shape: tuple[int, ...]) -> tuple[np.ndarray, Any]:
    try:
        out = a.reshape(shape)
    except ValueError:
        raise ValueError(
            f"reshape: shape {tuple(shape)} is invalid for an input of shape {a.shape} "
            f"({a.size} elements)"
        ) from None
    return out, a.shape


def reshape_backward(grad_out: np.ndarray, saved: Any, needs: Needs) -> Grads:
    return (grad_out.reshape(saved),)


def permute_forward(a: np.ndarray, dims: tuple[int, ...]) -> tuple[np.ndarray, Any]:
    if sorted(d % max(a.ndim, 1) for d in dims) != list(range(a.ndim)):
        raise ValueError(
            f"permute: dims {tuple(dims)} is not a permutation of the {a.ndim} axes of shape "
            f"{a.shape}"
        )
    axes = tuple(d % a.ndim for d in dims)
    return np.transpose(a, axes), axes


def permute_backward(grad_out: np.ndarray, saved: Any, needs: Needs) -> Grads:
    """The inverse permutation puts every gradient back on its input axis."""
    return (np.transpose(grad_out, np.argsort(saved)),)


def getitem_forward(a: np.ndarray, index: Any) -> tuple[np.ndarray, Any]:
    out = a[index]
    return out, (a.shape, index, _is_basic_index(index))


def getitem_backward(grad_out: np.ndarray, saved: Any, needs: Needs) -> Grads:
    """Scatter the gradient back; with advanced (array) indices repeated positions add up."""
    shape, index, basic = saved
    grad = np.zeros(shape, dtype=grad_out.dtype)
    if basic:
        grad[index] = grad_out
    else:
        np.add.at(grad, index, grad_out)
    return (grad,)


def _is_basic_index(index: Any) -> bool:
    parts = index if isinstance(index, tuple) else (index,)
    return all(p is None or p is Ellipsis or isinstance(p, (slice, int, np.integer)) for p in parts)


def cat_forward(arrays: Sequence[np.ndarray], dim: int) -> tuple[np.ndarray, Any]:
    if not arrays:
        raise ValueError("cat: expected a non-empty sequence of tensors")
    ndim = arrays[0].ndim
    if not -ndim <= dim < ndim:
        raise IndexError(f"cat: dim {dim} is out of range for {ndim}-D tensors")
    axis = dim % ndim
    for i, a in enumerate(arrays):
        if a.ndim != ndim or any(
            a.shape[k] != arrays[0].shape[k] for k in range(ndim) if k != axis
        ):
            raise ValueError(
                f"cat: tensor {i} has shape {a.shape}, which does not match tensor 0's shape "
                f"{arrays[0].shape} outside dim {dim}"
            )
    sizes = [a.shape[axis] for a in arrays]
    return np.concatenate(arrays, axis=axis), (axis, sizes)


def cat_backward(grad_out: np.ndarray, saved: Any, needs: Needs) -> Grads:
    """Each input gets back its own slice of the output gradient."""
    axis, sizes = saved
    bounds = np.cumsum(sizes)[:-1]
    pieces = np.split(grad_out, bounds, axis=axis)
    return tuple(p if need else None for p, need in zip(pieces, needs, strict=True))


def stack_forward(arrays: Sequence[np.ndarray], dim: int) -> tuple[np.ndarray, Any]:
    if not arrays:
        raise ValueError("stack: expected a non-empty sequence of tensors")
    for i, a in enumerate(arrays):
        if a.shape != arrays[0].shape:
            raise ValueError(
                f"stack: tensor {i} has shape {a.shape} but tensor 0 has shape {arrays[0].shape}"
            )
    ndim = arrays[0].ndim + 1
    if not -ndim <= dim < ndim:
        raise IndexError(f"stack: dim {dim} is out of range for the {ndim}-D result")
    axis = dim % ndim
    return np.stack(arrays, axis=axis), (axis, len(arrays))


def stack_backward(grad_out: np.ndarray, saved: Any, needs: Needs) -> Grads:
    """Input i gets the output gradient's i-th slice along the stacking axis."""
    axis, count = saved
    return tuple(np.take(grad_out, i, axis=axis) if needs[i] else None for i in range(count))


def expand_forward(a: np.ndarray, shape: tuple[int, ...]) -> tuple[np.ndarray, Any]:
    target = tuple(
        a.shape[i - (len(shape) - a.ndim)] if s == -1 else s for i, s in enumerate(shape)
    )
    try:
        out = np.broadcast_to(a, target)
    except ValueError:
        raise ValueError(f"expand: cannot expand shape {a.shape} to {tuple(shape)}") from None
    return out, a.shape


def expand_backward(grad_out: np.ndarray, saved: Any, needs: Needs) -> Grads:
    return (unbroadcast(grad_out, saved),)


expand = OpPair("expand", expand_forward, expand_backward)
getitem = OpPair("getitem", getitem_forward, getitem_backward)
permute = OpPair("permute", permute_forward, permute_backward)
reshape = OpPair("reshape", reshape_forward, reshape_backward)
cat = OpPair("cat", cat_forward, cat_backward)
stack = OpPair("stack", stack_forward, stack_backward)
