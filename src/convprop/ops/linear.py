"""The fully connected (affine) layer of the flat MLP that ends a CNN, as a forward/backward pair.

Deck 002 writes the layer as Y = WX + b with the samples as columns; PyTorch (and this library)
stores samples as rows, y = x W^T + b, which is the transpose of the same equation. The deck's
backward, transposed to rows:

* dL/dX = dL/dY W                 (deck: (dL/dX)^T = W^T (dL/dY)^T)
* dL/dW = (dL/dY)^T X             (deck: dL/dW = X dL/dY, summed over the samples)
* dL/db = sum of dL/dY over the samples

Every leading axis of x counts as a sample axis (a flattened batch), so the sums run over all of
them. Deck 004 feeds this layer the "flattened" maps of the last convolutional layer.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from convprop.ops.checks import check_float, check_same_dtype
from convprop.ops.contract import Grads, Needs, OpPair
from convprop.ops.elementwise import unbroadcast
from convprop.ops.kernels.parallel import matmul, matmul_over_rows


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
    out = matmul(samples, weight_matrix.T).reshape(out_shape)
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
    if needs[0]:
        grad_x = matmul(grad_matrix, weight_matrix).reshape(x.shape)
    if needs[1]:
        grad_weight = matmul_over_rows(grad_matrix, _as_rows(x)).reshape(weight.shape)
    if len(needs) > 2 and needs[2]:
        grad_bias = unbroadcast(grad_out, bias_shape)
    return grad_x, grad_weight, grad_bias


linear = OpPair("linear", linear_forward, linear_backward)
