"""Finite-difference checking of analytical gradients, as ``torch.autograd.gradcheck``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from convprop.autograd.tensor import Tensor


class GradcheckError(RuntimeError):
    """The analytical and numerical gradients disagree."""


def _outputs(fn: Callable[..., Any], inputs: Sequence[Any]) -> list[Tensor]:
    result = fn(*inputs)
    items = result if isinstance(result, (tuple, list)) else [result]
    return [t for t in items if isinstance(t, Tensor) and np.issubdtype(t.dtype, np.floating)]


def gradcheck(
    fn: Callable[..., Any],
    inputs: Sequence[Any],
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    raise_exception: bool = True,
) -> bool:
    """Check the backward of ``fn`` against float64 central differences.

    For every floating output y, every input x with ``requires_grad`` and every element x_j,
    the numerical column (y(x + eps e_j) - y(x - eps e_j)) / (2 eps) of the Jacobian must
    equal the analytical one, obtained by backpropagating unit vectors through y, within
    ``|analytical - numerical| <= atol + rtol * |numerical|``. Inputs should be float64.
    """
    inputs = list(inputs)
    differentiable = [i for i, x in enumerate(inputs) if isinstance(x, Tensor) and x.requires_grad]
    if not differentiable:
        raise ValueError("gradcheck: no input has requires_grad=True")
    for i in differentiable:
        if inputs[i].dtype != np.float64:
            raise TypeError(
                f"gradcheck: input {i} has dtype {inputs[i].dtype}; use float64 inputs, "
                "float32 central differences are too coarse to compare"
            )
    outputs = _outputs(fn, inputs)
    for out_index, output in enumerate(outputs):
        out_size = output.data.size
        for i in differentiable:
            x = inputs[i]
            numerical = np.zeros((x.data.size, out_size))
            flat = x.data.reshape(-1)
            for j in range(flat.size):
                original = flat[j]
                flat[j] = original + eps
                plus = _outputs(fn, inputs)[out_index].data.reshape(-1).copy()
                flat[j] = original - eps
                minus = _outputs(fn, inputs)[out_index].data.reshape(-1).copy()
                flat[j] = original
                numerical[j] = (plus - minus) / (2 * eps)
            analytical = np.zeros_like(numerical)
            for k in range(out_size):
                for t in inputs:
                    if isinstance(t, Tensor):
                        t.grad = None
                fresh = _outputs(fn, inputs)[out_index]
                seed = np.zeros(out_size, dtype=fresh.dtype)
                seed[k] = 1.0
                fresh.backward(seed.reshape(fresh.shape))
                grad = x.grad
                analytical[:, k] = 0.0 if grad is None else grad.data.reshape(-1)
            for t in inputs:
                if isinstance(t, Tensor):
                    t.grad = None
            close = np.abs(analytical - numerical) <= atol + rtol * np.abs(numerical)
            bad = ~(close | (np.isnan(analytical) & np.isnan(numerical)))
            if bad.any():
                j, k = np.argwhere(bad)[0]
                message = (
                    f"gradcheck: Jacobian mismatch for output {out_index} with respect to input "
                    f"{i}: d out[{k}] / d in[{j}] is {analytical[j, k]!r} analytically but "
                    f"{numerical[j, k]!r} numerically ({int(bad.sum())} of {bad.size} entries "
                    f"differ; max abs difference {np.abs(analytical - numerical).max():.3e})"
                )
                if raise_exception:
                    raise GradcheckError(message)
                return False
    return True
