"""explain conv: the notes' worked examples exactly, random configurations against the engine,
the identities proven by sympy, and the engine's errors."""

from __future__ import annotations

import numpy as np
import pytest
import sympy
from hypothesis import event, given
from hypothesis import strategies as st

import convprop.explain as explain
import convprop.nn.functional as F
from convprop import Tensor
from convprop.explain.base import TooLargeError
from convprop.explain.symbolic import rot180
from tests.explain.helpers import S, flat, numeric


def expand(array):
    return np.vectorize(sympy.expand, otypes=[object])(np.asarray(array, dtype=object))


def assert_same(actual, expected):
    """Equal as sympy expressions, entry by entry (not as strings)."""
    actual, expected = expand(actual), expand(expected)
    assert actual.shape == expected.shape
    for a, e in zip(actual.ravel(), expected.ravel(), strict=True):
        assert a == e, f"{a} != {e}"


# --------------------------------------------------------------------------- deck 000
x11, x12, x13, x21, x22, x23, x31, x32, x33 = S("x11 x12 x13 x21 x22 x23 x31 x32 x33")
w11, w12, w21, w22, b = S("w11 w12 w21 w22 b")
d11, d12, d21, d22 = S("delta11 delta12 delta21 delta22")


@pytest.fixture(scope="module")
def deck000():
    return explain.conv((3, 3), (2, 2), convention="convolution")


def test_deck000_forward(deck000):
    assert_same(
        deck000.forward[0, 0],
        [
            [
                x11 * w22 + x12 * w21 + x21 * w12 + x22 * w11 + b,
                x12 * w22 + x13 * w21 + x22 * w12 + x23 * w11 + b,
            ],
            [
                x21 * w22 + x22 * w21 + x31 * w12 + x32 * w11 + b,
                x22 * w22 + x23 * w21 + x32 * w12 + x33 * w11 + b,
            ],
        ],
    )
    # The engine's correlation kernel is the deck's kernel rotated by 180 degrees.
    assert_same(deck000.kernel[0, 0], [[w22, w21], [w12, w11]])


def test_deck000_backward_grid(deck000):
    expected = [
        [d11 * w22, d11 * w21 + d12 * w22, d12 * w21],
        [
            d11 * w12 + d21 * w22,
            d11 * w11 + d12 * w12 + d21 * w21 + d22 * w22,
            d12 * w11 + d22 * w21,
        ],
        [d21 * w12, d21 * w11 + d22 * w12, d22 * w11],
    ]
    assert_same(deck000.grad_input[0, 0], expected)
    # The slide's cell dL/dx23 reads delta12 w21 + delta12 w22: a typo, named in the text.
    assert sympy.expand(deck000.grad_input[0, 0][1, 2] - (d12 * w21 + d12 * w22)) != 0
    text = flat(deck000.render())
    assert "typo" in text and "delta12 w21 + delta12 w22" in text
    assert "delta12 w11 + delta22 w21" in text


def test_deck000_identity_grids(deck000):
    assert_same(
        deck000.padded_delta[0, 0], [[0, 0, 0, 0], [0, d11, d12, 0], [0, d21, d22, 0], [0, 0, 0, 0]]
    )
    assert_same(deck000.rotated_kernel[0, 0], [[w22, w21], [w12, w11]])
    assert all(identity.proven for identity in deck000.identities)
    # dL/dw = Rot180(x correlated with delta) in the convolution convention
    assert_same(
        deck000.grad_weight[0, 0],
        [
            [
                d11 * x22 + d12 * x23 + d21 * x32 + d22 * x33,
                d11 * x21 + d12 * x22 + d21 * x31 + d22 * x32,
            ],
            [
                d11 * x12 + d12 * x13 + d21 * x22 + d22 * x23,
                d11 * x11 + d12 * x12 + d21 * x21 + d22 * x22,
            ],
        ],
    )
    assert deck000.grad_bias[0] == d11 + d12 + d21 + d22


def test_deck000_text_in_the_notes_order(deck000):
    text = deck000.render()
    for line in (
        "h11 = x11 w22 + x12 w21 + x21 w12 + x22 w11 + b",
        "h12 = x12 w22 + x13 w21 + x22 w12 + x23 w11 + b",
        "h21 = x21 w22 + x22 w21 + x31 w12 + x32 w11 + b",
        "h22 = x22 w22 + x23 w21 + x32 w12 + x33 w11 + b",
    ):
        assert line in text


def test_differentiation_matches_sympy_diff(deck000):
    """The monomial-by-monomial derivative equals sympy.diff of the whole loss."""
    for array, grads in (
        (deck000.x, deck000.grad_input),
        (deck000.w, deck000.grad_weight),
        (deck000.b, deck000.grad_bias),
    ):
        for symbol, grad in zip(array.ravel(), grads.ravel(), strict=True):
            assert sympy.expand(sympy.diff(deck000.loss, symbol) - grad) == 0


# --------------------------------------------------------------------------- deck 001
def test_deck001_one_dimensional_example():
    e = explain.conv(4, 2)
    x1, x2, x3, x4, w1, w2, dy1, dy2, dy3 = S("x1 x2 x3 x4 w1 w2 dy1 dy2 dy3")
    assert_same(
        e.forward[0, 0], [w1 * x1 + w2 * x2 + b, w1 * x2 + w2 * x3 + b, w1 * x3 + w2 * x4 + b]
    )
    assert_same(e.grad_bias, [dy1 + dy2 + dy3])
    assert_same(
        e.grad_weight[0, 0], [x1 * dy1 + x2 * dy2 + x3 * dy3, x2 * dy1 + x3 * dy2 + x4 * dy3]
    )
    assert_same(e.grad_input[0, 0], [w1 * dy1, w2 * dy1 + w1 * dy2, w2 * dy2 + w1 * dy3, w2 * dy3])
    # dx = [0, dy1, dy2, dy3, 0] full-correlated with the flipped filter [w2, w1]
    assert_same(e.padded_delta[0, 0], [0, dy1, dy2, dy3, 0])
    assert_same(e.rotated_kernel[0, 0], [w2, w1])
    assert all(identity.proven for identity in e.identities)
    text = flat(e.render())
    for line in (
        "y1 = w1 x1 + w2 x2 + b",
        "db = dy1 + dy2 + dy3",
        "dw1 = x1 dy1 + x2 dy2 + x3 dy3",
        "dw2 = x2 dy1 + x3 dy2 + x4 dy3",
        "dx2 = w2 dy1 + w1 dy2",
        "dx4 = w2 dy3",
    ):
        assert line in text
    assert "deck 001's example" in text


# --------------------------------------------------------------------------- random configurations
@st.composite
def configurations(draw):
    spatial = draw(st.sampled_from([1, 2, 2]))
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(spatial))
    dilation = draw(st.integers(1, 2))
    padding = draw(st.integers(0, 2))
    size = tuple(draw(st.integers(max(1, dilation * (k - 1) + 1 - 2 * padding), 5)) for k in kernel)
    groups = draw(st.sampled_from([1, 2]))
    in_channels = groups * draw(st.integers(1, 2))
    out_channels = groups * draw(st.integers(1, 2 // groups if groups == 2 else 2))
    return dict(
        input_size=size,
        kernel_size=kernel,
        stride=draw(st.integers(1, 3)),
        padding=padding,
        dilation=dilation,
        in_channels=in_channels,
        out_channels=out_channels,
        batch=draw(st.integers(1, 2)),
        groups=groups,
        convention=draw(st.sampled_from(["correlation", "convolution"])),
        bias=draw(st.booleans()),
        seed=draw(st.integers(0, 1000)),
    )


@given(configurations())
def test_random_configurations_against_the_engine(config):
    try:
        e = explain.conv(**config)
    except TooLargeError:
        event("refused as too large")
        return
    event(f"{e.config.spatial}-D")
    assert all(identity.proven for identity in e.identities)
    values = e.values()

    def arr(symbols):
        return np.vectorize(lambda s: values[s], otypes=[np.float64])(symbols)

    # The engine, called here directly: its weight is the kernel that slides (Rot180 of the
    # named kernel in the convolution convention).
    weight = arr(e.w)
    if config["convention"] == "convolution":
        weight = rot180(weight, e.config.spatial)
    x = Tensor(arr(e.x), requires_grad=True)
    w = Tensor(weight.copy(), requires_grad=True)
    bias = Tensor(arr(e.b), requires_grad=True) if config["bias"] else None
    conv = F.conv1d if e.config.spatial == 1 else F.conv2d
    out = conv(
        x, w, bias, config["stride"], config["padding"], config["dilation"], config["groups"]
    )
    out.backward(arr(e.delta))
    grad_weight = w.grad.numpy()
    if config["convention"] == "convolution":
        grad_weight = rot180(grad_weight, e.config.spatial)
    np.testing.assert_allclose(numeric(e.forward, values), out.numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(numeric(e.grad_input, values), x.grad.numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(numeric(e.grad_weight, values), grad_weight, rtol=0, atol=1e-12)
    if config["bias"]:
        np.testing.assert_allclose(
            numeric(e.grad_bias, values), bias.grad.numpy(), rtol=0, atol=1e-12
        )
    assert e.verification.passed and e.verification.max_difference <= 1e-12


def test_identity_can_fail():
    """The proof is a real check: a wrong right-hand side is not 'proven'."""
    from convprop.explain.symbolic import proven_equal

    e = explain.conv((3, 3), (2, 2), stride=2)
    wrong = e.identities[0].rhs.copy()
    wrong[0, 0, 0, 0] = wrong[0, 0, 0, 0] + d11
    assert not proven_equal(e.grad_input, wrong)
    assert proven_equal(e.grad_input, e.identities[0].rhs)


def test_stride_zero_insertion_and_padding_text():
    e = explain.conv((4, 4), (3, 3), stride=2, padding=1)
    assert e.zero_inserted_delta.shape[2:] == (3, 3)
    assert e.zero_inserted_delta[0, 0, 1, 1] == 0
    text = flat(e.render())
    assert "zero-inserted delta" in text
    assert "Dropped from the 6x6 dL/dx_pad: rows 1 and 6; columns 1 and 6" in text
    assert "no window reached" in text  # (6 - 3) is odd: the last row/column is never read


def test_same_padding_with_even_kernel_matches_engine():
    e = explain.conv((4, 5), (2, 2), padding="same", dilation=1)
    assert e.config.pads == ((0, 1), (0, 1))
    assert e.forward.shape[2:] == (4, 5)
    assert e.verification.passed


def test_multichannel_formulas_are_stated():
    e = explain.conv((3, 3), (2, 2), in_channels=2, out_channels=2, batch=2)
    text = flat(e.render())
    assert "Deck 002's formulas" in text and "summed over the minibatch" in text
    assert "x_s2_c1_11" in text and "w_f2_c1_22" in text
    # dL/dx of channel c sums over the filters f: Rot180 kernels with swapped channel axes
    s1 = sympy.Symbol
    assert s1("delta_s1_f2_11") * s1("w_f2_c1_11") in sympy.Add.make_args(e.grad_input[0, 0, 0, 0])


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (
            dict(input_size=(3, 3), kernel_size=(4, 4)),
            ValueError,
            r"conv2d: kernel size can't be greater than the padded input",
        ),
        (
            dict(input_size=(3, 3), kernel_size=2, stride=0),
            ValueError,
            r"conv2d: stride must be positive, got \(0, 0\)",
        ),
        (
            dict(input_size=4, kernel_size=2, padding=-1),
            ValueError,
            r"conv1d: padding must be non-negative",
        ),
        (
            dict(input_size=(3, 3), kernel_size=2, stride=2, padding="same"),
            ValueError,
            r"conv2d: padding='same' is not supported for strided convolutions",
        ),
        (
            dict(input_size=(3, 3), kernel_size=2, in_channels=3, groups=2),
            ValueError,
            r"explain conv: groups=2 must divide in_channels=3",
        ),
        (
            dict(input_size=(3, 3), kernel_size=2, convention="flipped"),
            ValueError,
            r"explain conv: convention must be one of 'correlation', 'convolution'",
        ),
        (
            dict(input_size=(3, 3, 3), kernel_size=2),
            TypeError,
            r"explain conv: input_size must have 1 or 2 int entries",
        ),
        (
            dict(input_size=(0, 3), kernel_size=2),
            ValueError,
            r"explain conv: input_size must be positive",
        ),
        (
            dict(input_size=(3, 3), kernel_size=2, stride=1.5),
            TypeError,
            r"conv2d: stride must be an int or a sequence of 2 ints",
        ),
    ],
)
def test_errors_are_the_engines(kwargs, error, match):
    with pytest.raises(error, match=match):
        explain.conv(**kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(input_size=(30, 30), kernel_size=3),
        dict(input_size=(8, 8), kernel_size=3, in_channels=4, out_channels=4),
        dict(input_size=(5000,), kernel_size=3),
    ],
)
def test_large_configurations_are_refused_quickly(kwargs):
    with pytest.raises(TooLargeError, match=r"too long to read"):
        explain.conv(**kwargs)
