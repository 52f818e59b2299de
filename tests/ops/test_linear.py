"""The fully connected layer against PyTorch, finite differences and deck 002's matrix form."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given
from hypothesis import strategies as st

import convprop as cp
import convprop.nn.functional as F
from convprop.autograd import gradcheck
from convprop.ops import linear as linear_ops
from convprop.ops.algorithm import kernels_used, use_algorithm
from tests.reference import assert_close, grad_of, pair


def compare_linear(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, seed: int) -> None:
    ours_x, torch_x = pair(x)
    ours_w, torch_w = pair(weight)
    ours_b, torch_b = (None, None) if bias is None else pair(bias)
    ours_out = F.linear(ours_x, ours_w, ours_b)
    torch_out = TF.linear(torch_x, torch_w, torch_b)
    assert_close(ours_out.numpy(), torch_out, what="forward")
    grad = np.asarray(np.random.default_rng(seed + 1).standard_normal(torch_out.shape))
    ours_out.backward(grad)
    torch_out.backward(torch.tensor(grad))
    assert_close(grad_of(ours_x), grad_of(torch_x), what="input gradient")
    assert_close(grad_of(ours_w), grad_of(torch_w), what="weight gradient")
    if bias is not None:
        assert_close(grad_of(ours_b), grad_of(torch_b), what="bias gradient")


@given(
    leading=st.lists(st.integers(1, 4), min_size=0, max_size=3).map(tuple),
    in_features=st.integers(1, 6),
    out_features=st.integers(1, 5),
    with_bias=st.booleans(),
    seed=st.integers(0, 2**31),
)
def test_linear_matches_torch(
    leading: tuple[int, ...], in_features: int, out_features: int, with_bias: bool, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(leading + (in_features,))
    weight = rng.standard_normal((out_features, in_features))
    bias = rng.standard_normal(out_features) if with_bias else None
    compare_linear(x, weight, bias, seed)


@given(leading=st.lists(st.integers(1, 4), max_size=2).map(tuple), seed=st.integers(0, 2**31))
def test_linear_with_vector_weight_matches_torch(leading: tuple[int, ...], seed: int) -> None:
    rng = np.random.default_rng(seed)
    compare_linear(rng.standard_normal(leading + (5,)), rng.standard_normal(5), None, seed)


def test_linear_with_scalar_bias_and_empty_batch_match_torch() -> None:
    rng = np.random.default_rng(0)
    compare_linear(
        rng.standard_normal((4, 3)),
        rng.standard_normal((2, 3)),
        np.asarray(rng.standard_normal(())),
        0,
    )
    compare_linear(np.zeros((0, 3)), rng.standard_normal((2, 3)), rng.standard_normal(2), 0)


def test_linear_is_deck_002_matrix_form() -> None:
    """Deck 002: Y = WX + b with samples as columns; dL/dX = W^T dL/dY, dL/dW = dL/dY X^T."""
    rng = np.random.default_rng(1)
    samples_as_columns = rng.standard_normal((4, 6))  # X: 4 features, 6 samples
    weight, bias = rng.standard_normal((3, 4)), rng.standard_normal(3)
    x = cp.tensor(samples_as_columns.T.copy(), requires_grad=True)
    w = cp.tensor(weight, requires_grad=True)
    b = cp.tensor(bias, requires_grad=True)
    y = F.linear(x, w, b)
    np.testing.assert_allclose(y.numpy().T, weight @ samples_as_columns + bias[:, None], rtol=1e-13)
    grad_y_columns = rng.standard_normal((3, 6))
    y.backward(grad_y_columns.T.copy())
    np.testing.assert_allclose(x.grad.numpy().T, weight.T @ grad_y_columns, rtol=1e-13)
    np.testing.assert_allclose(w.grad.numpy(), grad_y_columns @ samples_as_columns.T, rtol=1e-13)
    np.testing.assert_allclose(b.grad.numpy(), grad_y_columns.sum(axis=1), rtol=1e-13)


def test_linear_gradcheck() -> None:
    rng = np.random.default_rng(2)
    inputs = [
        cp.tensor(rng.standard_normal(shape), requires_grad=True)
        for shape in [(2, 2, 3), (4, 3), (4,)]
    ]
    assert gradcheck(F.linear, inputs)
    assert gradcheck(F.linear, inputs[:2])


def test_linear_keeps_float32() -> None:
    rng = np.random.default_rng(3)
    x, w, b = (
        cp.tensor(rng.standard_normal(s).astype(np.float32), requires_grad=True)
        for s in [(5, 3), (2, 3), (2,)]
    )
    out = F.linear(x, w, b)
    assert out.dtype == np.float32
    out.sum().backward()
    assert x.grad.dtype == w.grad.dtype == b.grad.dtype == np.float32


def test_linear_errors() -> None:
    x = cp.tensor(np.ones((4, 3)))
    with pytest.raises(
        ValueError,
        match=r"linear: input has 3 features \(last axis of shape "
        r"\(4, 3\)\) but weight expects 5 "
        r"\(weight shape \(2, 5\)\)",
    ):
        F.linear(x, cp.tensor(np.ones((2, 5))))
    with pytest.raises(ValueError, match=r"linear: weight must be 2-D .* got shape \(2, 3, 1\)"):
        F.linear(x, cp.tensor(np.ones((2, 3, 1))))
    with pytest.raises(ValueError, match=r"linear: input must be at least 1-D"):
        F.linear(cp.tensor(np.array(1.0)), cp.tensor(np.ones((2, 1))))
    with pytest.raises(
        ValueError,
        match=r"linear: bias of shape \(3,\) does not broadcast to the "
        r"output shape \(4, 2\)",
    ):
        F.linear(x, cp.tensor(np.ones((2, 3))), cp.tensor(np.ones(3)))
    with pytest.raises(
        TypeError,
        match=r"linear: all inputs must have the same dtype, but input "
        r"is float64, weight is float32",
    ):
        F.linear(x, cp.tensor(np.ones((2, 3), dtype=np.float32)))
    with pytest.raises(TypeError, match=r"linear: weight must have a floating-point dtype"):
        F.linear(x, cp.tensor(np.ones((2, 3), dtype=np.int64)))


# --------------------------------------------------------------- every kernel, the plan
@pytest.mark.parametrize("kernel", sorted(linear_ops.FORWARD_KERNELS))
@given(
    samples=st.integers(0, 6),
    in_features=st.integers(1, 6),
    out_features=st.integers(1, 5),
    seed=st.integers(0, 2**31),
)
def test_every_kernel_matches_torch_and_the_reference(
    kernel: str, samples: int, in_features: int, out_features: int, seed: int
) -> None:
    """Each product of the tables, called directly on (samples, features) matrices."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((samples, in_features))
    weight = rng.standard_normal((out_features, in_features))
    grad = rng.standard_normal((samples, out_features))
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(weight, requires_grad=True)
    out = TF.linear(tx, tw)
    out.backward(torch.tensor(grad))
    ours = {
        "forward": linear_ops.FORWARD_KERNELS[kernel](x, weight),
        "dL/dx": linear_ops.INPUT_GRAD_KERNELS[kernel](grad, weight),
        "dL/dW": linear_ops.WEIGHT_GRAD_KERNELS[kernel](grad, x),
    }
    reference = {
        "forward": linear_ops.reference_forward(x, weight),
        "dL/dx": linear_ops.reference_input_grad(grad, weight),
        "dL/dW": linear_ops.reference_weight_grad(grad, x),
    }
    theirs = {"forward": out, "dL/dx": tx.grad, "dL/dW": tw.grad}
    for what, value in ours.items():
        assert_close(value, theirs[what], what=f"{kernel} {what} vs torch")
        assert_close(value, reference[what], what=f"{kernel} {what} vs reference")


def test_the_plan_picks_row_blocks_and_the_reference_on_request() -> None:
    with use_algorithm("fast"):
        assert linear_ops.plan_linear() == "row_blocks"
    with use_algorithm("reference"):
        assert linear_ops.plan_linear() == "reference"


def test_the_reference_path_is_really_taken() -> None:
    rng = np.random.default_rng(11)
    x, weight, bias = rng.standard_normal((6, 5)), rng.standard_normal((4, 5)), np.ones(4)

    def run() -> tuple[np.ndarray, ...]:
        inputs, w, b = (cp.tensor(a, requires_grad=True) for a in (x, weight, bias))
        out = F.linear(F.linear(inputs, w, b), w.T)
        (out * out).sum().backward()
        return out.numpy(), inputs.grad.numpy(), w.grad.numpy(), b.grad.numpy()

    with use_algorithm("reference"), kernels_used() as used:
        reference = run()
    assert dict(used) == {
        "linear.forward.reference": 2,
        "linear.input_grad.reference": 2,
        "linear.weight_grad.reference": 2,
    }
    with use_algorithm("fast"), kernels_used() as used:
        fast = run()
    assert used and not any(name.endswith(".reference") for name in used), used
    for a, b in zip(reference, fast, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
