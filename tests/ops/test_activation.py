"""Activations, softmax, dropout and the erf behind gelu, against PyTorch and finite differences."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given
from hypothesis import strategies as st

import convprop as cp
import convprop.nn.functional as F
from convprop.autograd import gradcheck
from convprop.ops import activation
from convprop.ops.algorithm import kernels_used, use_algorithm
from tests.reference import assert_close, grad_of, pair

# (name, convprop function, torch function); each takes only the input.
POINTWISE: list[tuple[str, Callable[[Any], Any], Callable[[Any], Any]]] = [
    ("relu", F.relu, TF.relu),
    ("leaky_relu", F.leaky_relu, TF.leaky_relu),
    ("leaky_relu_0.3", lambda x: F.leaky_relu(x, 0.3), lambda x: TF.leaky_relu(x, 0.3)),
    ("elu", F.elu, TF.elu),
    ("elu_alpha", lambda x: F.elu(x, alpha=0.4), lambda x: TF.elu(x, alpha=0.4)),
    ("gelu", F.gelu, TF.gelu),
    (
        "gelu_tanh",
        lambda x: F.gelu(x, approximate="tanh"),
        lambda x: TF.gelu(x, approximate="tanh"),
    ),
    ("sigmoid", F.sigmoid, TF.sigmoid),
    ("tanh", F.tanh, TF.tanh),
    ("silu", F.silu, TF.silu),
]
POINTWISE_IDS = [case[0] for case in POINTWISE]


def random_input(seed: int, shape: tuple[int, ...], scale: float = 3.0) -> np.ndarray:
    """Normal values with some exact zeros (the kinks) and a few large magnitudes."""
    rng = np.random.default_rng(seed)
    x = np.asarray(rng.standard_normal(shape) * scale)
    x[rng.random(shape) < 0.15] = 0.0
    x[rng.random(shape) < 0.05] *= 10.0
    return x


def compare_unary(ours_fn: Callable, torch_fn: Callable, x: np.ndarray, seed: int = 0) -> None:
    """Forward values and input gradient of one single-input function, convprop vs torch."""
    ours_in, torch_in = pair(x)
    ours_out, torch_out = ours_fn(ours_in), torch_fn(torch_in)
    assert_close(ours_out.numpy(), torch_out, what="forward")
    grad = np.random.default_rng(seed + 1).standard_normal(torch_out.shape)
    ours_out.backward(grad)
    torch_out.backward(torch.tensor(grad))
    assert_close(grad_of(ours_in), grad_of(torch_in), what="input gradient")


shapes = st.lists(st.integers(1, 5), min_size=0, max_size=4).map(tuple)


# ------------------------------------------------------------------------------------------ erf
def test_erf_matches_math_erf_to_1e14_relative() -> None:
    grid = np.concatenate(
        [
            np.linspace(-7, 7, 20001),
            np.geomspace(1e-300, 1e-3, 500),
            -np.geomspace(1e-300, 1e-3, 500),
            [0.0, -0.0, 0.999999999, 1.0, 1.0000001, 5.99999, 6.0, 6.5, 30.0, 1e300],
            np.random.default_rng(0).standard_normal(5000) * 2.5,
        ]
    )
    expected = np.array([math.erf(v) for v in grid])
    actual = activation.erf(grid)
    relative = np.abs(actual - expected) / np.maximum(np.abs(expected), np.finfo(float).tiny)
    assert relative.max() <= 1e-14, grid[np.argmax(relative)]


def test_erf_special_values_and_dtype() -> None:
    values = activation.erf(np.array([np.inf, -np.inf, np.nan, 0.0, -0.0]))
    assert values[0] == 1.0 and values[1] == -1.0 and np.isnan(values[2])
    assert values[3] == 0.0 and np.signbit(values[4])
    single = activation.erf(np.linspace(-4, 4, 101, dtype=np.float32))
    assert single.dtype == np.float32
    expected = np.array([math.erf(v) for v in np.linspace(-4, 4, 101, dtype=np.float32)])
    np.testing.assert_allclose(single, expected, rtol=0, atol=2e-7)


def test_erf_chebyshev_coefficients_are_reproducible() -> None:
    """Recompute the erfcx Chebyshev coefficients at 50 digits (how they were generated)."""
    mpmath = pytest.importorskip("mpmath")
    mp = mpmath.mp.clone() if hasattr(mpmath.mp, "clone") else mpmath.mp
    mp.dps = 50
    coefficients = activation._ERFCX_CHEBYSHEV
    n = len(coefficients)
    low, high = activation._ERFCX_SPLIT, activation._ERFCX_END
    angles = [mp.pi * (k + mp.mpf(1) / 2) / n for k in range(n)]
    values = []
    for angle in angles:
        x = mp.mpf(low + high) / 2 + mp.mpf(high - low) / 2 * mp.cos(angle)
        values.append(mp.exp(x * x) * mp.erfc(x))
    for j, coefficient in enumerate(coefficients):
        exact = 2 * sum(v * mp.cos(j * a) for v, a in zip(values, angles, strict=True)) / n
        if j == 0:
            exact /= 2
        assert coefficient == float(exact), j


# ----------------------------------------------------------------------- point-wise vs PyTorch
@pytest.mark.parametrize(("name", "ours_fn", "torch_fn"), POINTWISE, ids=POINTWISE_IDS)
@given(shape=shapes, seed=st.integers(0, 2**31))
def test_pointwise_matches_torch(
    name: str, ours_fn: Callable, torch_fn: Callable, shape: tuple[int, ...], seed: int
) -> None:
    compare_unary(ours_fn, torch_fn, random_input(seed, shape), seed)


@pytest.mark.parametrize(("name", "ours_fn", "torch_fn"), POINTWISE, ids=POINTWISE_IDS)
def test_pointwise_extreme_values_match_torch(
    name: str, ours_fn: Callable, torch_fn: Callable
) -> None:
    x = np.array([-800.0, -40.0, -6.0, -1e-8, 0.0, 1e-8, 6.0, 40.0, 800.0])
    compare_unary(ours_fn, torch_fn, x)


@pytest.mark.parametrize(("name", "ours_fn", "torch_fn"), POINTWISE, ids=POINTWISE_IDS)
def test_pointwise_nan_and_infinity_as_torch(
    name: str, ours_fn: Callable, torch_fn: Callable
) -> None:
    x = np.array([np.nan, -np.inf, np.inf, 0.0, -1.5, 2.0])
    ours_in, torch_in = pair(x)
    ours_out, torch_out = ours_fn(ours_in), torch_fn(torch_in)
    np.testing.assert_allclose(ours_out.numpy(), torch_out.detach().numpy(), rtol=1e-14, atol=0)
    ours_out.backward(np.ones(6))
    torch_out.backward(torch.ones(6, dtype=torch.float64))
    np.testing.assert_allclose(grad_of(ours_in), grad_of(torch_in), rtol=1e-14, atol=0)


@pytest.mark.parametrize(
    ("name", "local_gradient_at_zero"),
    [("relu", 0.0), ("leaky_relu_0.3", 0.3), ("elu_alpha", 0.4)],
)
def test_gradient_at_the_kink_is_pytorchs(name: str, local_gradient_at_zero: float) -> None:
    ours_fn = dict((case[0], case[1]) for case in POINTWISE)[name]
    x = cp.tensor(np.zeros(3), requires_grad=True)
    ours_fn(x).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.full(3, local_gradient_at_zero))


@pytest.mark.parametrize(("name", "ours_fn", "torch_fn"), POINTWISE, ids=POINTWISE_IDS)
def test_pointwise_gradcheck(name: str, ours_fn: Callable, torch_fn: Callable) -> None:
    # Away from the kink at 0, where finite differences straddle two slopes.
    x = np.array([[-2.1, -0.7, 0.4], [1.3, -0.2, 2.6]])
    assert gradcheck(ours_fn, [cp.tensor(x, requires_grad=True)])


@pytest.mark.parametrize(("name", "ours_fn", "torch_fn"), POINTWISE, ids=POINTWISE_IDS)
def test_pointwise_keeps_float32(name: str, ours_fn: Callable, torch_fn: Callable) -> None:
    x = random_input(3, (2, 3, 4)).astype(np.float32)
    ours_in = cp.tensor(x, requires_grad=True)
    out = ours_fn(ours_in)
    assert out.dtype == np.float32
    out.sum().backward()
    assert ours_in.grad.dtype == np.float32
    expected = torch_fn(torch.tensor(x))
    np.testing.assert_allclose(out.numpy(), expected.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["relu", "leaky_relu", "elu", "gelu", "sigmoid", "tanh", "silu"])
def test_pointwise_refuses_integer_input(name: str) -> None:
    with pytest.raises(TypeError, match=rf"{name}: input must have a floating-point dtype.*int64"):
        getattr(F, name)(cp.tensor(np.array([1, -2])))


def test_gelu_refuses_unknown_approximation() -> None:
    with pytest.raises(ValueError, match=r"gelu: approximate must be 'none' or 'tanh', got 'erf'"):
        F.gelu(cp.tensor(np.ones(2)), approximate="erf")


# ------------------------------------------------------------------------------------- softmax
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@given(shape=shapes, seed=st.integers(0, 2**31), data=st.data())
def test_softmax_matches_torch(name: str, shape: tuple[int, ...], seed: int, data: Any) -> None:
    rank = max(len(shape), 1)
    dim = data.draw(st.integers(-rank, rank - 1), label="dim")
    x = random_input(seed, shape, scale=data.draw(st.sampled_from([1.0, 30.0, 400.0])))
    compare_unary(lambda t: getattr(F, name)(t, dim), lambda t: getattr(TF, name)(t, dim), x, seed)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_gradcheck_and_float32(name: str) -> None:
    x = np.random.default_rng(0).standard_normal((2, 3, 2))
    assert gradcheck(lambda t: getattr(F, name)(t, 1), [cp.tensor(x, requires_grad=True)])
    out = getattr(F, name)(cp.tensor(x.astype(np.float32)), -1)
    assert out.dtype == np.float32
    expected = getattr(TF, name)(torch.tensor(x.astype(np.float32)), -1).numpy()
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_dtype_argument_casts_first(name: str) -> None:
    x = cp.tensor(np.random.default_rng(1).standard_normal((2, 3)), requires_grad=True)
    out = getattr(F, name)(x, dim=1, dtype=np.float32)
    assert out.dtype == np.float32
    out.sum().backward()
    assert x.grad.dtype == np.float64


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_errors(name: str) -> None:
    x = cp.tensor(np.ones((2, 3)))
    with pytest.raises(ValueError, match=rf"{name}: dim must be given .* implicit choice of dim"):
        getattr(F, name)(x)
    with pytest.raises(ValueError, match=rf"{name}: dim must be in \[-2, 1\] .* \(2, 3\), got 2"):
        getattr(F, name)(x, 2)
    with pytest.raises(TypeError, match=rf"{name}: dim must be an int, got 1.0"):
        getattr(F, name)(x, 1.0)
    with pytest.raises(TypeError, match=rf"{name}: input must have a floating-point dtype"):
        getattr(F, name)(cp.tensor(np.array([1, 2])), 0)


# ------------------------------------------------------------------------------------- dropout
def test_dropout_mask_statistics() -> None:
    cp.manual_seed(0)
    p = 0.3
    x = cp.tensor(np.ones((200, 500)))
    out = F.dropout(x, p).numpy()
    dropped = out == 0
    assert abs(dropped.mean() - p) < 0.005  # 100000 draws: standard error 0.0015
    np.testing.assert_allclose(out[~dropped], 1 / (1 - p), rtol=1e-15)
    assert abs(out.mean() - 1.0) < 0.01  # inverted dropout keeps the expectation


@given(p=st.floats(0.05, 0.95), seed=st.integers(0, 2**31))
def test_dropout_same_seed_same_mask_and_gradient_is_mask(p: float, seed: int) -> None:
    x_values = np.random.default_rng(seed).standard_normal((3, 4, 5))
    cp.manual_seed(seed)
    first = F.dropout(cp.tensor(x_values), p)
    cp.manual_seed(seed)
    x = cp.tensor(x_values, requires_grad=True)
    second = F.dropout(x, p)
    np.testing.assert_array_equal(first.numpy(), second.numpy())
    grad = np.random.default_rng(seed + 1).standard_normal(x_values.shape)
    second.backward(grad)
    kept = second.numpy() != 0
    scaled_mask = np.where(kept, 1 / (1 - p), 0.0)
    np.testing.assert_allclose(second.numpy(), x_values * scaled_mask, rtol=1e-15)
    np.testing.assert_allclose(x.grad.numpy(), grad * scaled_mask, rtol=1e-15)


def test_dropout_different_draws_differ() -> None:
    cp.manual_seed(5)
    x = cp.tensor(np.ones(1000))
    assert not np.array_equal(F.dropout(x).numpy(), F.dropout(x).numpy())


def test_dropout_eval_is_identity() -> None:
    x = cp.tensor(np.arange(6.0), requires_grad=True)
    assert F.dropout(x, 0.5, training=False) is x
    assert F.dropout2d(cp.tensor(np.ones((2, 3, 4, 4))), 0.5, training=False).shape == (2, 3, 4, 4)
    out = F.dropout(x, 0.0)
    np.testing.assert_array_equal(out.numpy(), x.numpy())


def test_dropout_p_one_gives_zeros_and_zero_gradient() -> None:
    x = cp.tensor(np.random.default_rng(0).standard_normal((3, 4)), requires_grad=True)
    out = F.dropout(x, 1.0)
    np.testing.assert_array_equal(out.numpy(), np.zeros((3, 4)))
    out.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.zeros((3, 4)))


def test_dropout_keeps_float32() -> None:
    x = cp.tensor(np.ones((10, 10), dtype=np.float32), requires_grad=True)
    out = F.dropout(x, 0.5)
    assert out.dtype == np.float32
    out.sum().backward()
    assert x.grad.dtype == np.float32
    assert set(np.unique(out.numpy())) <= {0.0, 2.0}


def test_dropout2d_drops_whole_channels() -> None:
    cp.manual_seed(1)
    x = cp.tensor(np.ones((8, 16, 3, 4)), requires_grad=True)
    out = F.dropout2d(x, 0.5)
    per_channel = out.numpy().reshape(8, 16, -1)
    assert np.all((per_channel == 0).all(axis=2) | (per_channel == 2.0).all(axis=2))
    assert 0 < (per_channel == 0).all(axis=2).sum() < 128
    out.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), out.numpy())
    unbatched = F.dropout1d(cp.tensor(np.ones((6, 5))), 0.5).numpy()
    assert np.all((unbatched == 0).all(axis=1) | (unbatched == 2.0).all(axis=1))


def test_dropout_errors() -> None:
    x = cp.tensor(np.ones(3))
    for p in (1.5, -0.1):
        with pytest.raises(
            ValueError,
            match=rf"dropout: p is a dropout probability and must be "
            rf"in \[0, 1\], got {p}",
        ):
            F.dropout(x, p)
    with pytest.raises(ValueError, match=r"dropout: p .* got 2"):
        F.dropout(x, 2, training=False)
    with pytest.raises(TypeError, match=r"dropout: p must be a float, got '0.5'"):
        F.dropout(x, "0.5")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"dropout: input must have a floating-point dtype"):
        F.dropout(cp.tensor(np.array([1, 2])))
    with pytest.raises(ValueError, match=r"dropout1d: input must be 2-D \(C, L\) or 3-D"):
        F.dropout1d(cp.tensor(np.ones((2, 3, 4, 5))))


# ------------------------------------------------------------------- relu's plan and reference
def test_the_relu_plans_pick_the_fast_passes_and_the_reference_on_request() -> None:
    with use_algorithm("fast"):
        assert (activation.plan_relu_forward(), activation.plan_relu_backward()) == (
            "blocked",
            "compiled",
        )
    with use_algorithm("reference"):
        assert (activation.plan_relu_forward(), activation.plan_relu_backward()) == (
            "reference",
            "reference",
        )


def test_the_relu_reference_path_is_really_taken() -> None:
    """Under ``use_algorithm("reference")`` ReLU runs the notes' rule and only reference
    kernels are counted; the results equal the fast passes'."""
    x = random_input(9, (3, 4, 5))

    def run() -> tuple[np.ndarray, np.ndarray]:
        inputs = cp.tensor(x, requires_grad=True)
        out = F.relu(F.relu(inputs) - 0.5)
        (out * out).sum().backward()
        return out.numpy(), inputs.grad.numpy()

    with use_algorithm("reference"), kernels_used() as used:
        reference = run()
    assert dict(used) == {"relu.forward.reference": 2, "relu.backward.reference": 2}
    with use_algorithm("fast"), kernels_used() as used:
        fast = run()
    assert dict(used) == {"relu.forward.blocked": 2, "relu.backward.compiled": 2}
    for a, b in zip(reference, fast, strict=True):
        np.testing.assert_array_equal(a, b)
