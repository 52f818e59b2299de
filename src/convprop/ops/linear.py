"""The fully connected (affine) layer of the flat MLP that ends a CNN, as a forward/backward pair.

Deck 002 writes the layer as Y = WX + b with the samples as columns; PyTorch (and this library)
stores samples as rows, y = x W^T + b, which is the transpose of the same equation. The deck's
backward, transposed to rows:

* dL/dX = dL/dY W                 (deck: (dL/dX)^T = W^T (dL/dY)^T)
* dL/dW = (dL/dY)^T X             (deck: dL/dW = X dL/dY, summed over the samples)
* dL/db = sum of dL/dY over the samples

Every leading axis of x counts as a sample axis (a flattened batch), so the sums run over all of
them. Deck 004 feeds this layer the "flattened" maps of the last convolutional layer.

The reference (``reference_forward``, ``reference_input_grad``, ``reference_weight_grad``) is
those three products as written, with NumPy's ``@``; the fast kernels are the same products
in ``convprop.ops.kernels.parallel`` (blocks of rows on every core when a product is large,
each with one BLAS thread, so the bits do not depend on the core count). ``plan_linear``
picks; ``convprop.ops.use_algorithm("reference")`` runs the reference.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from convprop.ops import algorithm
from convprop.ops.checks import check_float, check_same_dtype
from convprop.ops.contract import Grads, Needs, OpPair
from convprop.ops.elementwise import unbroadcast
from convprop.ops.kernels.parallel import matmul, matmul_over_rows


# 1. The reference: deck 002's products, samples as rows (x: (samples, in), W: (out, in)).
def reference_forward(x: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """y = x W^T (the bias is added by the pair)."""
    out: np.ndarray = x @ weight.T
    return out


def reference_input_grad(grad_out: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """dL/dx = dL/dy W."""
    grad: np.ndarray = grad_out @ weight
    return grad


def reference_weight_grad(grad_out: np.ndarray, x: np.ndarray) -> np.ndarray:
    """dL/dW = (dL/dy)^T x: the outer products of every sample, summed."""
    grad: np.ndarray = grad_out.T @ x
    return grad


# 2. The plan: the reference, or the same products in blocks of rows ("row_blocks").
Product = Callable[[np.ndarray, np.ndarray], np.ndarray]
FORWARD_KERNELS: dict[str, Product] = {
    "reference": reference_forward,
    "row_blocks": lambda x, weight: matmul(x, weight.T),
}
INPUT_GRAD_KERNELS: dict[str, Product] = {
    "reference": reference_input_grad,
    "row_blocks": matmul,
}
WEIGHT_GRAD_KERNELS: dict[str, Product] = {
    "reference": reference_weight_grad,
    "row_blocks": matmul_over_rows,
}


def plan_linear() -> str:
    """The products' implementation: blocks of rows (``parallel.matmul``, which holds the
    thresholds: products too small to share run whole), or the reference."""
    return "reference" if algorithm.reference() else "row_blocks"


# 3. The public pair.
def _as_rows(array: np.ndarray) -> np.ndarray:
    """(*, features) as a (samples, features) matrix (explicit sizes, so empty axes work)."""
    return array.reshape(math.prod(array.shape[:-1]), array.shape[-1])


def _check_linear(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None) -> None:
    check_float(x, "linear", "input")
    check_float(weight, "linear", "weight")
    if bias is not None:
        check_float(bias, "linear", "bias")
    check_same_dtype({"input": x, "weight": weight, "bias": bias}, "linear")
    if x.ndim == 0:
        raise ValueError("linear: input must be at least 1-D (..., in_features), got a 0-D input")
    if weight.ndim not in (1, 2):
        raise ValueError(
            f"linear: weight must be 2-D (out_features, in_features) or 1-D (in_features,), "
            f"got shape {tuple(weight.shape)}"
        )
    if x.shape[-1] != weight.shape[-1]:
        raise ValueError(
            f"linear: input has {x.shape[-1]} features (last axis of shape {tuple(x.shape)}) "
            f"but weight expects {weight.shape[-1]} (weight shape {tuple(weight.shape)})"
        )


def linear_forward(
    x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None
) -> tuple[np.ndarray, Any]:
    """y = x W^T + b for x of shape (*, in_features), W (out_features, in_features).

    A 1-D weight (in_features,) gives y = x . w of shape (*); a 1-D input is one sample.
    """
    _check_linear(x, weight, bias)
    # One GEMM over all samples: (prod(*), in) @ (in, out). reshape is free for contiguous x.
    samples = _as_rows(x)
    weight_matrix = weight.reshape(1 if weight.ndim == 1 else weight.shape[0], weight.shape[-1])
    out_shape = x.shape[:-1] + weight.shape[:-1]
    kernel = plan_linear()
    algorithm.ran(f"linear.forward.{kernel}")
    out = FORWARD_KERNELS[kernel](samples, weight_matrix).reshape(out_shape)
    if bias is not None:
        try:
            broadcast = np.broadcast_shapes(bias.shape, out_shape)
        except ValueError:
            broadcast = None
        if broadcast != out_shape:
            raise ValueError(
                f"linear: bias of shape {tuple(bias.shape)} does not broadcast to the output "
                f"shape {out_shape} (bias should have out_features = "
                f"{weight.shape[0] if weight.ndim == 2 else 1} elements)"
            )
        out += bias
    return out, (x, weight, None if bias is None else bias.shape)


def linear_backward(grad_out: np.ndarray, saved: Any, needs: Needs) -> Grads:
    """dL/dx = dL/dy W; dL/dW = (dL/dy)^T x summed over samples; dL/db = sum of dL/dy."""
    x, weight, bias_shape = saved
    out_features = weight.shape[0] if weight.ndim == 2 else 1
    grad_matrix = grad_out.reshape(math.prod(x.shape[:-1]), out_features)
    weight_matrix = weight.reshape(out_features, weight.shape[-1])
    grad_x = grad_weight = grad_bias = None
    kernel = plan_linear()
    if needs[0]:
        algorithm.ran(f"linear.input_grad.{kernel}")
        grad_x = INPUT_GRAD_KERNELS[kernel](grad_matrix, weight_matrix).reshape(x.shape)
    if needs[1]:
        algorithm.ran(f"linear.weight_grad.{kernel}")
        grad_weight = WEIGHT_GRAD_KERNELS[kernel](grad_matrix, _as_rows(x)).reshape(weight.shape)
    if len(needs) > 2 and needs[2]:
        grad_bias = unbroadcast(grad_out, bias_shape)
    return grad_x, grad_weight, grad_bias


linear = OpPair("linear", linear_forward, linear_backward)
