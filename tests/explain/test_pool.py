"""explain pool: routing to the argmax ("+=" where windows overlap) and the 1/K^2 spread,
against the engine's max_pool/avg_pool gradients."""

from __future__ import annotations

import numpy as np
import pytest
import sympy
from hypothesis import given
from hypothesis import strategies as st

import convprop.explain as explain
import convprop.nn.functional as F
from convprop import Tensor
from convprop.explain.base import TooLargeError
from tests.explain.helpers import S, flat, numeric


def engine_grad(mode, values, grad, kernel, stride, padding):
    x = Tensor(values[np.newaxis, np.newaxis].copy(), requires_grad=True)
    spatial = values.ndim
    pool = {
        ("max", 1): F.max_pool1d,
        ("max", 2): F.max_pool2d,
        ("mean", 1): F.avg_pool1d,
        ("mean", 2): F.avg_pool2d,
    }[(mode, spatial)]
    out = pool(x, kernel, stride, padding)
    out.backward(grad[np.newaxis, np.newaxis])
    return out.numpy()[0, 0], x.grad.numpy()[0, 0]


@st.composite
def pool_configs(draw):
    spatial = draw(st.sampled_from([1, 2]))
    kernel = draw(st.integers(1, 3))
    padding = draw(st.integers(0, kernel // 2))
    size = tuple(draw(st.integers(max(1, kernel - 2 * padding), 6)) for _ in range(spatial))
    stride = draw(st.integers(1, 3))
    # Few distinct values: ties happen, and must go to the first maximum as in the engine.
    values = draw(
        st.lists(st.integers(0, 3), min_size=int(np.prod(size)), max_size=int(np.prod(size)))
    )
    return dict(
        mode=draw(st.sampled_from(["max", "mean"])),
        input_size=size,
        kernel_size=kernel,
        stride=stride,
        padding=padding,
        values=values,
        seed=draw(st.integers(0, 100)),
    )


@given(pool_configs())
def test_routing_against_the_engine(config):
    e = explain.pool(**config)
    values = np.asarray(config["values"], dtype=np.float64).reshape(config["input_size"])
    out, grad = engine_grad(
        config["mode"],
        values,
        e.grad_values,
        config["kernel_size"],
        config["stride"],
        config["padding"],
    )
    symbol_values = {s: float(v) for s, v in zip(e.x.ravel(), values.ravel(), strict=True)}
    symbol_values.update(
        {s: float(v) for s, v in zip(e.dy.ravel(), e.grad_values.ravel(), strict=True)}
    )
    np.testing.assert_allclose(numeric(e.grad_input, symbol_values), grad, rtol=0, atol=1e-12)
    np.testing.assert_allclose(e.numeric_output, out, rtol=0, atol=1e-12)
    assert e.verification.passed


def test_max_overlapping_windows_add_up():
    e = explain.pool("max", (3, 3), 2, stride=1, values=[1, 2, 3, 4, 9, 5, 6, 7, 8])
    dy11, dy12, dy21, dy22 = S("dy11 dy12 dy21 dy22")
    x22 = sympy.Symbol("x22")
    # x22 = 9 is the maximum of all four windows: it collects every gradient ("+=").
    assert e.grad_input[1, 1] == dy11 + dy12 + dy21 + dy22
    assert all(e.grad_input[i] == 0 for i in np.ndindex(3, 3) if i != (1, 1))
    assert all(f == x22 for f in e.forward.ravel())
    text = flat(e.render())
    assert "y11 = max(x11, x12, x21, x22) = x22 = 9" in text
    assert "x22 <- dy11 + dy12 + dy21 + dy22" in text


def test_max_ties_go_to_the_first_maximum():
    e = explain.pool("max", (2, 2), 2, values=[5, 5, 5, 5])
    assert e.forward[0, 0] == sympy.Symbol("x11")
    assert e.verification.passed


def test_mean_spreads_one_over_k_squared():
    e = explain.pool("mean", (4, 4), 2)
    dy11 = sympy.Symbol("dy11")
    assert e.grad_input[0, 0] == dy11 / 4
    assert e.forward[0, 0] == sum(S("x11 x12 x21 x22"), sympy.S.Zero) / 4
    assert "y11 = (x11 + x12 + x21 + x22)/4" in e.render()


def test_seeded_values_are_a_shuffle():
    e = explain.pool("max", (4, 4), 2, seed=3)
    assert sorted(e.values.ravel().tolist()) == list(range(1, 17))
    assert np.array_equal(e.values, explain.pool("max", (4, 4), 2, seed=3).values)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (
            dict(mode="median"),
            ValueError,
            r"explain pool: mode must be one of 'max', 'mean', "
            r"got 'median'",
        ),
        (dict(mode="max", values=[1, 2, 3]), ValueError, r"values has 3 numbers but the 4x4 input"),
        (dict(mode="max", values=[float("nan")] * 16), ValueError, "values must be finite"),
        (
            dict(mode="max", input_size=(2, 2), kernel_size=3),
            ValueError,
            r"max_pool2d: .*(kernel|output size)",
        ),
        (
            dict(mode="mean", kernel_size=2, stride=0),
            ValueError,
            r"avg_pool2d: stride must be positive",
        ),
        (
            dict(mode="max", kernel_size=2, padding=2),
            ValueError,
            r"max_pool2d: padding should be at most half of kernel_size",
        ),
    ],
)
def test_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        explain.pool(**kwargs)


def test_too_large_is_refused():
    with pytest.raises(TooLargeError, match="too long to read"):
        explain.pool("max", (30, 30), 3, stride=1)
