"""The fully connected layer (see ``convprop.ops.linear``)."""

from __future__ import annotations

from convprop.autograd import Tensor, apply
from convprop.ops import linear as linear_ops

__all__ = ["linear"]


def linear(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """y = x W^T + b, deck 002's Y = WX + b with the samples as rows.

    Backward: dL/dx = dL/dy W, dL/dW = (dL/dy)^T x and dL/db = sum of dL/dy, summed over every
    leading (sample) axis.

    Shape:
        input (*, in_features), weight (out_features, in_features), bias (out_features,)
        -> output (*, out_features). A 1-D weight (in_features,) gives output (*).
    """
    return apply(linear_ops.linear, (input, weight, bias))
