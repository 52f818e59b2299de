"""Interpolation's fast paths: whole-number nearest upscaling as one broadcast copy, the
adjoint of a gather as products, linear interpolation as one BLAS product per axis.

The reference (``convprop.ops.resample``) gathers x[i(d)] for nearest and scatters the
gradient back with ``np.add.at``; it contracts each axis' interpolation matrix with
``tensordot`` for linear modes. Here:

* ``nearest``: where every axis repeats each sample r times in a row (index = d // r, whole-
  number upscaling), one broadcast copy instead of a gather; otherwise the gather;
* ``nearest_grad``: per axis, a reshape and a sum where the index repeats, else the product
  with the one-hot (n x m) matrix (BLAS, no scatter with its per-element bookkeeping);
* ``linear``/``linear_grad``: one product per axis (``parallel.matmul_along_axis``, blocks of
  rows on every core), shrinking axes first so that the intermediate results stay small.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from convprop.ops.kernels.parallel import matmul_along_axis


def repeat_factor(index: np.ndarray, in_size: int) -> int:
    """r if ``index`` repeats every input sample r times in a row (index = d // r), else 0."""
    out_size = index.shape[0]
    if out_size % in_size == 0:
        repeat = out_size // in_size
        if np.array_equal(index, np.arange(out_size) // repeat):
            return int(repeat)
    return 0


def nearest(x: np.ndarray, indices: Sequence[np.ndarray]) -> np.ndarray:
    """y[n, c, d_1, ...] = x[n, c, i_1(d_1), ...]."""
    in_sizes = x.shape[2:]
    repeats = [repeat_factor(index, n) for index, n in zip(indices, in_sizes, strict=True)]
    if not all(repeats):
        gathered: np.ndarray = x[(slice(None), slice(None)) + np.ix_(*indices)]
        return gathered
    out = np.empty(x.shape[:2] + tuple(index.shape[0] for index in indices), dtype=x.dtype)
    # (N, C, n_1, r_1, n_2, r_2, ...) view of the output; x broadcast along every r_k.
    pairs = zip(in_sizes, repeats, strict=True)
    blocks = out.reshape(x.shape[:2] + tuple(v for n, r in pairs for v in (n, r)))
    blocks[...] = x.reshape(x.shape[:2] + tuple(v for n in in_sizes for v in (n, 1)))
    return out


def _gather_adjoint(grad: np.ndarray, index: np.ndarray, in_size: int, axis: int) -> np.ndarray:
    """Adjoint of ``take(x, index, axis)``: sum the gradient of every copy of a sample."""
    repeat = repeat_factor(index, in_size)
    if repeat == 1:
        return grad
    if repeat:
        # Each sample was copied ``repeat`` times in a row: a reshape and a sum.
        shape = grad.shape[:axis] + (in_size, repeat) + grad.shape[axis + 1 :]
        summed: np.ndarray = grad.reshape(shape).sum(axis=axis + 1)
        return summed
    out_size = index.shape[0]
    one_hot = np.zeros((in_size, out_size), dtype=grad.dtype)
    one_hot[index, np.arange(out_size)] = 1.0
    return matmul_along_axis(grad, one_hot, axis)


def nearest_grad(
    grad_out: np.ndarray, indices: Sequence[np.ndarray], input_shape: tuple[int, ...]
) -> np.ndarray:
    """dL/dx: every output gradient added onto the one input sample it copies, axis by axis."""
    grad = grad_out
    for k in reversed(range(len(indices))):
        grad = _gather_adjoint(grad, indices[k], input_shape[2 + k], 2 + k)
    return np.ascontiguousarray(grad)


def _shrinking_first(matrices: Sequence[np.ndarray]) -> list[int]:
    """The axes in the order that keeps intermediate results smallest: shrinking ones first."""
    return sorted(range(len(matrices)), key=lambda k: matrices[k].shape[0] / matrices[k].shape[1])


def linear(x: np.ndarray, matrices: Sequence[np.ndarray]) -> np.ndarray:
    """y = A_1 x A_2^T ...: one product per axis."""
    out = x
    for k in _shrinking_first(matrices):
        out = matmul_along_axis(out, matrices[k], 2 + k)
    return out


def linear_grad(grad_out: np.ndarray, matrices: Sequence[np.ndarray]) -> np.ndarray:
    """dL/dx = A_1^T (dL/dy) A_2 ...: the transposed products in the reverse order."""
    grad = grad_out
    for k in reversed(_shrinking_first(matrices)):
        grad = matmul_along_axis(grad, matrices[k].T, 2 + k)
    return grad
