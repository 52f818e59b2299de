"""gradcheck accepts correct backward passes and catches wrong ones."""

from __future__ import annotations

import numpy as np
import pytest

import convprop as cp
from convprop.autograd import GradcheckError, gradcheck, record


def _square_with_backward(scale: float):
    """x^2 whose backward is ``scale`` times the true derivative 2x."""

    def fn(x: cp.Tensor) -> cp.Tensor:
        data = x.data
        return record("square", data * data, (x,), lambda grad, needs: (scale * 2 * data * grad,))

    return fn


def test_gradcheck_accepts_a_correct_backward() -> None:
    x = cp.tensor(np.linspace(-1, 1, 6).reshape(2, 3), requires_grad=True)
    assert gradcheck(_square_with_backward(1.0), [x])


def test_gradcheck_reports_a_wrong_backward() -> None:
    x = cp.tensor(np.linspace(0.5, 1, 4), requires_grad=True)
    with pytest.raises(
        GradcheckError, match="Jacobian mismatch for output 0 with respect to input 0"
    ):
        gradcheck(_square_with_backward(1.1), [x])
    assert gradcheck(_square_with_backward(1.1), [x], raise_exception=False) is False


def test_gradcheck_covers_several_inputs_and_leaves_grads_clean() -> None:
    a = cp.tensor(np.array([[0.3, -0.7], [1.2, 0.4]]), requires_grad=True)
    b = cp.tensor(np.array([0.5, -1.5]), requires_grad=True)
    assert gradcheck(lambda a, b: ((a @ b).exp() * b).sum(), [a, b])
    assert a.grad is None and b.grad is None


def test_gradcheck_refuses_float32_and_inputs_without_grad() -> None:
    with pytest.raises(TypeError, match="use float64 inputs"):
        gradcheck(lambda x: x * 2, [cp.tensor([1.0], requires_grad=True)])
    with pytest.raises(ValueError, match="no input has requires_grad=True"):
        gradcheck(lambda x: x * 2, [cp.tensor(np.array([1.0]))])
