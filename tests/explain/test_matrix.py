"""explain matrix: deck 002's 9x9 matrix, its transpose and Q, exactly; other shapes proven and
checked against the engine."""

from __future__ import annotations

import numpy as np
import pytest
import sympy

import convprop.explain as explain
from convprop.explain.base import TooLargeError
from tests.explain.helpers import flat, matrix_of

# Deck 002, "Back Propagation as a matrix multiplication" (inputs a..i are x11..x33 here).
DECK_M = matrix_of(
    [
        "w22 w23 0 w32 w33 0 0 0 0",
        "w21 w22 w23 w31 w32 w33 0 0 0",
        "0 w21 w22 0 w31 w32 0 0 0",
        "w12 w13 0 w22 w23 0 w32 w33 0",
        "w11 w12 w13 w21 w22 w23 w31 w32 w33",
        "0 w11 w12 0 w21 w22 0 w31 w32",
        "0 0 0 w12 w13 0 w22 w23 0",
        "0 0 0 w11 w12 w13 w21 w22 w23",
        "0 0 0 0 w11 w12 0 w21 w22",
    ]
)
# Deck 002, "Backward pass as a convolution": the transpose, written out.
DECK_M_T = matrix_of(
    [
        "w22 w21 0 w12 w11 0 0 0 0",
        "w23 w22 w21 w13 w12 w11 0 0 0",
        "0 w23 w22 0 w13 w12 0 0 0",
        "w32 w31 0 w22 w21 0 w12 w11 0",
        "w33 w32 w31 w23 w22 w21 w13 w12 w11",
        "0 w33 w32 0 w23 w22 0 w13 w12",
        "0 0 0 w32 w31 0 w22 w21 0",
        "0 0 0 w33 w32 w31 w23 w22 w21",
        "0 0 0 0 w33 w32 0 w23 w22",
    ]
)
# Deck 002, "Matrix representation": Y = Q M with a..i -> x11..x33.
DECK_Q = matrix_of(
    [
        "0 0 0 0 x11 x12 0 x21 x22",
        "0 0 0 x11 x12 x13 x21 x22 x23",
        "0 0 0 x12 x13 0 x22 x23 0",
        "0 x11 x12 0 x21 x22 0 x31 x32",
        "x11 x12 x13 x21 x22 x23 x31 x32 x33",
        "x12 x13 0 x22 x23 0 x32 x33 0",
        "0 x21 x22 0 x31 x32 0 0 0",
        "x21 x22 x23 x31 x32 x33 0 0 0",
        "x22 x23 0 x32 x33 0 0 0 0",
    ]
)


def same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and all(
        sympy.expand(p - q) == 0 for p, q in zip(a.ravel(), b.ravel(), strict=True)
    )


@pytest.fixture(scope="module")
def deck002():
    return explain.matrix((3, 3), (3, 3), padding="same")


def test_deck002_matrix_transpose_and_q(deck002):
    assert same(deck002.M, DECK_M)
    assert same(deck002.M_T, DECK_M_T)
    assert same(deck002.R, DECK_M_T)  # "just another convolution" with the flipped kernel
    assert same(deck002.Q, DECK_Q)
    assert all(deck002.proofs.values())
    assert deck002.verification.passed


def test_deck002_text(deck002):
    text = deck002.render()
    assert "h11 [ w22 w23   0 w32 w33   0   0   0   0 ]" in text
    assert "Deck 002 names the inputs a, b, ..., i" in flat(text)
    markdown = deck002.render("markdown")
    assert r"\begin{pmatrix} w_{22} & w_{23} & 0 & w_{32}" in markdown


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(input_size=(3, 4), kernel_size=(2, 3), stride=2, padding=1),
        dict(input_size=5, kernel_size=3, dilation=2, convention="convolution"),
        dict(input_size=(4, 4), kernel_size=2, padding="same"),
    ],
)
def test_other_shapes_are_proven_and_match_the_engine(kwargs):
    e = explain.matrix(**kwargs)
    assert all(e.proofs.values()), e.proofs
    assert e.verification.passed
    assert e.M.shape == (e.h.size, e.x.size)
    assert e.Q.shape == (e.h.size, e.m.size)


def test_matrix_errors():
    with pytest.raises(TooLargeError, match="explain matrix: the matrix's larger side"):
        explain.matrix((6, 6), 3, padding=1)
    with pytest.raises(ValueError, match="conv2d: stride must be positive"):
        explain.matrix((3, 3), 2, stride=0)
