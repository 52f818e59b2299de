"""convprop: convolutional networks with hand-derived backpropagation, on NumPy alone."""

import numpy as np

from convprop import autograd
from convprop.autograd import Tensor, enable_grad, is_grad_enabled, no_grad
from convprop.autograd.tensor import (
    arange,
    cat,
    from_numpy,
    full,
    ones,
    ones_like,
    stack,
    tensor,
    where,
    zeros,
    zeros_like,
)
from convprop.random import manual_seed

__version__ = "0.1.0"

float32 = np.dtype(np.float32)
float64 = np.dtype(np.float64)
int64 = np.dtype(np.int64)


def exp(input: Tensor) -> Tensor:
    return input.exp()


def log(input: Tensor) -> Tensor:
    return input.log()


def sqrt(input: Tensor) -> Tensor:
    return input.sqrt()


def abs(input: Tensor) -> Tensor:  # noqa: A001 - PyTorch's name
    return input.abs()


def clamp(input: Tensor, min: float | None = None, max: float | None = None) -> Tensor:  # noqa: A002
    return input.clamp(min, max)


def matmul(input: Tensor, other: Tensor) -> Tensor:
    return input @ other


def flatten(input: Tensor, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    return input.flatten(start_dim, end_dim)


from convprop import nn, optim  # noqa: E402  (after the tensor API they build on)
from convprop.summary import summary  # noqa: E402

__all__ = [
    "Tensor",
    "abs",
    "arange",
    "autograd",
    "cat",
    "clamp",
    "enable_grad",
    "exp",
    "flatten",
    "float32",
    "float64",
    "from_numpy",
    "full",
    "int64",
    "is_grad_enabled",
    "log",
    "manual_seed",
    "matmul",
    "nn",
    "optim",
    "no_grad",
    "ones",
    "ones_like",
    "sqrt",
    "stack",
    "summary",
    "tensor",
    "where",
    "zeros",
    "zeros_like",
]
