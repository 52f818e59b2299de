"""convprop: convolutional networks with hand-derived backpropagation, on NumPy alone.

Tensors record the operations applied to them; ``backward()`` walks the graph in reverse,
calling each op's hand-derived backward:

>>> import convprop as cp
>>> x = cp.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
>>> y = (x * x + 2 * x).sum()
>>> y
tensor(50., grad_fn=<SumBackward>)
>>> y.backward()
>>> x.grad  # d/dx (x^2 + 2x) = 2x + 2
tensor([[ 4.,  6.],
        [ 8., 10.]])
>>> x.dtype, x.shape  # Python floats become float32, as in PyTorch
(dtype('float32'), (2, 2))
"""

import numpy as np

from convprop import autograd
from convprop.autograd import Tensor, checked_tensor, enable_grad, is_grad_enabled, no_grad
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
    """Elementwise e^x (``input.exp()``)."""
    return checked_tensor("exp", "input", input).exp()


def log(input: Tensor) -> Tensor:
    """Elementwise natural logarithm (``input.log()``)."""
    return checked_tensor("log", "input", input).log()


def sqrt(input: Tensor) -> Tensor:
    """Elementwise square root (``input.sqrt()``)."""
    return checked_tensor("sqrt", "input", input).sqrt()


def abs(input: Tensor) -> Tensor:  # noqa: A001 - PyTorch's name
    """Elementwise absolute value (``input.abs()``)."""
    return checked_tensor("abs", "input", input).abs()


def clamp(input: Tensor, min: float | None = None, max: float | None = None) -> Tensor:  # noqa: A002
    """Elementwise ``min(max(input, min), max)``; either bound may be None.

    >>> import convprop as cp
    >>> cp.clamp(cp.tensor([-2.0, 0.5, 3.0]), min=0.0, max=1.0)
    tensor([0. , 0.5, 1. ])
    """
    return checked_tensor("clamp", "input", input).clamp(min, max)


def matmul(input: Tensor, other: Tensor) -> Tensor:
    """Matrix product with NumPy/PyTorch broadcasting (``input @ other``).

    >>> import convprop as cp
    >>> cp.matmul(cp.ones(2, 3), cp.ones(3, 4)).shape
    (2, 4)
    """
    return checked_tensor("matmul", "input", input) @ other


def flatten(input: Tensor, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    """Merge the axes ``start_dim`` to ``end_dim`` (inclusive) into one.

    >>> import convprop as cp
    >>> cp.flatten(cp.zeros(2, 3, 4, 5), start_dim=1).shape
    (2, 60)
    """
    return checked_tensor("flatten", "input", input).flatten(start_dim, end_dim)


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
