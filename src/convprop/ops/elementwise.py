"""Element-wise arithmetic with NumPy broadcasting, each a forward/backward pair.

Each op is a forward/backward pair named by an ``OpPair`` (``convprop.ops.contract``).

Broadcasting rule for every backward here: when an input of shape ``s`` was broadcast to the
output's shape, its gradient is ``grad_out`` summed over the broadcast axes (``unbroadcast``).

Each op has one implementation, the formula as written, which is its own reference:
``convprop.ops.use_algorithm("reference")`` changes nothing here. (``matmul`` calls NumPy's
product through ``kernels.parallel.broadcast_matmul`` only to keep BLAS on one thread, so its
bits do not depend on the core count.)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from convprop.ops.contract import Grads, Needs, OpPair
from convprop.ops.kernels.parallel import broadcast_matmul


def unbroadcast(grad: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum ``grad`` over the axes along which an array of ``shape`` was broadcast."""
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    axes = tuple(range(extra)) + tuple(
        extra + i for i, size in enumerate(shape) if size == 1 and grad.shape[extra + i] != 1
    )
    reduced: np.ndarray = grad.sum(axis=axes, keepdims=True).reshape(shape)
    return reduced


def add_forward(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, Any]:
    return a + b, (a.shape, b.shape)


def add_backward(grad_out: np.ndarray, saved: Any, needs: Needs) -> Grads:
    """d(a+b)/da = d(a+b)/db = 1."""
    a_shape, b_shape = saved
    return (
        unbroadcast(grad_out, a_shape) if needs[0] else None,
        unbroadcast(grad_out, b_shape) if needs[1] else None,
    )


def sub_forward(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, Any]:
    return a - b, (a.shape, b.shape)


def sub_backward(grad_out: np.ndarray, saved: Any, needs: Needs) -> Grads:
    """d(a-b)/da = 1, d(a-b)/db = -1."""
    a_shape, b_shape = saved
    return (
        unbroadcast(grad_out, a_shape) if needs[0] else None,
        -unbroadcast(grad_out, b_shape) if needs[1] else None,
    )


def mul_forward(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, Any]:
    return a * b, (a, b)


def mul_backward(grad_out: np.ndarray, saved: Any, needs: Needs) -> Grads:
    """d(ab)/da = b, d(ab)/db = a."""
    a, b = saved
    return (
        unbroadcast(grad_out * b, a.shape) if needs[0] else None,
        unbroadcast(grad_out * a, b.shape) if needs[1] else None,
    )


def div_forward(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, Any]:
    return a / b, (a, b)


def div_backward(grad_out: np.ndarray, saved: Any, needs: Needs) -> Grads:
    """d(a/b)/da = 1/b, d(a/b)/db = -a/b^2."""
    a, b = saved
    return (
        unbroadcast(grad_out / b, a.shape) if needs[0] else None,
        unbroadcast(-grad_out * a / (b * b), b.shape) if needs[1] else None,
    )


def pow_forward(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, Any]:
    out = a**b
    return out, (a, b, out)


def pow_backward(grad_out: np.ndarray, saved: Any, needs: Needs) -> Grads:
    """d(a^b)/da = b a^(b-1); d(a^b)/db = a^b log(a) (taken as 0 where a = 0, as PyTorch)."""
    a, b, out = saved
    grad_a = grad_b = None
    if needs[0]:
        # b * a^(b-1) is 0 where b == 0 (PyTorch masks it so 0^-1 does not turn it into NaN).
        local = np.where(b == 0, 0.0, b * a ** (b - 1)).astype(out.dtype, copy=False)
        grad_a = unbroadcast(grad_out * local, a.shape)
    if needs[1]:
        with np.errstate(divide="ignore", invalid="ignore"):
            log_a = np.where((a == 0) & (b >= 0), 0.0, np.log(a)).astype(out.dtype, copy=False)
        grad_b = unbroadcast(grad_out * out * log_a, b.shape)
    return grad_a, grad_b


def neg_forward(a: np.ndarray) -> tuple[np.ndarray, Any]:
    return -a, None


def neg_backward(grad_out: np.ndarray, saved: Any, needs: Needs) -> Grads:
    return (-grad_out,)


def exp_forward(a: np.ndarray) -> tuple[np.ndarray, Any]:
    out = np.exp(a)
    return out, out


def exp_backward(grad_out: np.ndarray, saved: Any, needs: Needs) -> Grads:
    """d exp(a)/da = exp(a), the saved output."""
    return (grad_out * saved,)


def log_forward(a: np.ndarray) -> tuple[np.ndarray, Any]:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(a), a


def log_backward(grad_out: np.ndarray, saved: Any, needs: Needs) -> Grads:
    """d log(a)/da = 1/a."""
    with np.errstate(divide="ignore"):
        return (grad_out / saved,)


def sqrt_forward(a: np.ndarray) -> tuple[np.ndarray, Any]:
    with np.errstate(invalid="ignore"):
        out = np.sqrt(a)
    return out, out


def sqrt_backward(grad_out: np.ndarray, saved: Any, needs: Needs) -> Grads:
    """d sqrt(a)/da = 1 / (2 sqrt(a))."""
    with np.errstate(divide="ignore"):
        return (grad_out / (2 * saved),)


def abs_forward(a: np.ndarray) -> tuple[np.ndarray, Any]:
    return np.abs(a), a


def abs_backward(grad_out: np.ndarray, saved: Any, needs: Needs) -> Grads:
    """d|a|/da = sign(a), 0 at a = 0 (PyTorch's choice)."""
    return (grad_out * np.sign(saved),)


def clamp_forward(
    a: np.ndarray, min: float | None = None, max: float | None = None
) -> tuple[np.ndarray, Any]:
    if min is None and max is None:
        raise ValueError("clamp: at least one of min and max must be given, got neither")
    out = np.clip(a, min, max)
    # Gradient passes where the input lies inside [min, max], boundaries included (as PyTorch).
    passes = np.ones(a.shape, dtype=bool)
    if min is not None:
        passes &= a >= min
    if max is not None:
        passes &= a <= max
    return out, passes


def clamp_backward(grad_out: np.ndarray, saved: Any, needs: Needs) -> Grads:
    """d clamp(a)/da = 1 inside [min, max], 0 where clamped."""
    return (grad_out * saved,)


def where_forward(condition: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, Any]:
    return np.where(condition, a, b), (condition, a.shape, b.shape)


def where_backward(grad_out: np.ndarray, saved: Any, needs: Needs) -> Grads:
    """The gradient goes to ``a`` where the condition holds and to ``b`` elsewhere."""
    condition, a_shape, b_shape = saved
    zero = np.zeros((), dtype=grad_out.dtype)
    return (
        None,
        unbroadcast(np.where(condition, grad_out, zero), a_shape) if needs[1] else None,
        unbroadcast(np.where(condition, zero, grad_out), b_shape) if needs[2] else None,
    )


def matmul_forward(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, Any]:
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(
            f"matmul: both operands must be at least 1-D, got shapes {a.shape} and {b.shape}"
        )
    if a.shape[-1] != b.shape[-2 if b.ndim > 1 else 0]:
        raise ValueError(
            f"matmul: shapes {a.shape} and {b.shape} cannot be multiplied "
            f"({a.shape[-1]} != {b.shape[-2 if b.ndim > 1 else 0]})"
        )
    return broadcast_matmul(a, b), (a, b)


def matmul_backward(grad_out: np.ndarray, saved: Any, needs: Needs) -> Grads:
    """For C = A B: dL/dA = dL/dC B^T and dL/dB = A^T dL/dC (batched, with broadcasting).

    1-D operands are promoted to matrices (a row for A, a column for B) and the promoted axis
    is removed again from their gradients, as NumPy and PyTorch do in the forward pass.
    """
    a, b = saved
    a2 = a[None, :] if a.ndim == 1 else a
    b2 = b[:, None] if b.ndim == 1 else b
    promoted_out = np.broadcast_shapes(a2.shape[:-2], b2.shape[:-2]) + (a2.shape[-2], b2.shape[-1])
    grad = grad_out.reshape(promoted_out)
    grad_a = grad_b = None
    if needs[0]:
        product = broadcast_matmul(grad, np.swapaxes(b2, -1, -2))
        grad_a = unbroadcast(product, a2.shape).reshape(a.shape)
    if needs[1]:
        product = broadcast_matmul(np.swapaxes(a2, -1, -2), grad)
        grad_b = unbroadcast(product, b2.shape).reshape(b.shape)
    return grad_a, grad_b


abs = OpPair("abs", abs_forward, abs_backward)
clamp = OpPair("clamp", clamp_forward, clamp_backward)
exp = OpPair("exp", exp_forward, exp_backward)
log = OpPair("log", log_forward, log_backward)
neg = OpPair("neg", neg_forward, neg_backward)
sqrt = OpPair("sqrt", sqrt_forward, sqrt_backward)
where = OpPair("where", where_forward, where_backward)
add = OpPair("add", add_forward, add_backward)
div = OpPair("div", div_forward, div_backward)
matmul = OpPair("matmul", matmul_forward, matmul_backward)
mul = OpPair("mul", mul_forward, mul_backward)
pow = OpPair("pow", pow_forward, pow_backward)
sub = OpPair("sub", sub_forward, sub_backward)
