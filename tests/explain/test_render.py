"""Output formats: text has the formulas, Markdown has $...$ math, JSON parses and its
expression strings read back (sympy) to the very objects."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import sympy

import convprop.explain as explain
from convprop.explain import notation
from convprop.explain.render import grad_label
from tests.explain.helpers import flat


@pytest.fixture(scope="module")
def examples():
    return {
        "conv": explain.conv(
            (3, 3), (2, 2), stride=1, padding=1, in_channels=2, convention="convolution"
        ),
        "conv1d": explain.conv(5, 2, stride=2),
        "matrix": explain.matrix((3, 3), (2, 2)),
        "pool": explain.pool("mean", (4, 4), 2, stride=1),
        "network": explain.network(),
    }


def parse(text: str) -> sympy.Expr:
    return sympy.sympify(text)


def test_text_contains_the_formulas(examples):
    conv = examples["conv"]
    text = flat(conv.render("text"))
    h = conv.outputs[0, 0, 1, 1]
    assert f"{h.name} = {notation.text(conv.forward[0, 0, 1, 1], conv.style.forward)}" in text
    assert "Verification:" in text and "agree" in text
    assert conv.render("text") == str(conv)


def test_markdown_has_latex_math(examples):
    for e in examples.values():
        markdown = e.render("markdown")
        assert re.search(r"\$[^$]+\$", markdown)
        assert "**Verification:" in markdown
    conv = examples["conv1d"].render("markdown")
    assert "$y_{1} = w_{1} x_{1} + w_{2} x_{2} + b$" in conv
    assert r"$\frac{\partial L}{\partial" not in conv  # deck 001's short names in 1-D
    assert "$dx_{1} = w_{1} dy_{1}$" in conv


def test_json_expressions_parse_back_equal(examples):
    conv = examples["conv"]
    data = json.loads(conv.render("json"))
    for h, expr in zip(conv.outputs.ravel(), conv.forward.ravel(), strict=True):
        assert parse(data["forward"][h.name]) == expr
    for symbols, grads, key in (
        (conv.x, conv.grad_input, "input"),
        (conv.w, conv.grad_weight, "weight"),
        (conv.b, conv.grad_bias, "bias"),
    ):
        for s, g in zip(symbols.ravel(), grads.ravel(), strict=True):
            assert parse(data["backward"][key][grad_label(s).text]) == g
    for identity, entry in zip(conv.identities, data["identities"], strict=True):
        assert entry["proven"] is True
        symbols = {"input_gradient": conv.x, "weight_gradient": conv.w, "bias_gradient": conv.b}[
            identity.name
        ]
        for s, rhs in zip(symbols.ravel(), identity.rhs.ravel(), strict=True):
            assert sympy.expand(parse(entry["rhs"][grad_label(s).text]) - rhs) == 0
    padded = np.array(data["identities"][0]["padded_delta"], dtype=object)
    assert padded.shape == conv.padded_delta.shape
    assert parse(padded[0, 0, 1, 1]) == conv.padded_delta[0, 0, 1, 1]
    assert parse(data["loss"]) == sympy.expand(conv.loss)
    assert data["verification"]["passed"] is True


def test_json_of_matrix_pool_network(examples):
    matrix = examples["matrix"]
    data = json.loads(matrix.render("json"))
    m = np.vectorize(parse, otypes=[object])(np.array(data["M"], dtype=object))
    assert all(a == b for a, b in zip(m.ravel(), matrix.M.ravel(), strict=True))
    assert all(item["proven"] for item in data["identities"])

    pool = examples["pool"]
    data = json.loads(pool.render("json"))
    for s, g in zip(pool.x.ravel(), pool.grad_input.ravel(), strict=True):
        assert parse(data["backward"][grad_label(s).text]) == g
    assert parse(data["forward"]["y11"]["definition"]) == pool.definition[0, 0]

    network = examples["network"]
    data = json.loads(network.render("json"))
    np.testing.assert_array_equal(np.array(data["backward"]["dz"]), network.backward["dz"])
    assert data["loss_after"] < data["loss_before"]


def test_unknown_format():
    with pytest.raises(ValueError, match="explain conv: format must be one of text, markdown"):
        explain.conv(4, 2).render("html")


def test_notation_orders_and_names():
    x11, w22, dy1, w2 = (sympy.Symbol(n) for n in ("x11", "w22", "dy1", "w2"))
    assert notation.text(w22 * x11, notation.Order(("x", "w"))) == "x11 w22"
    assert notation.text(w2 * dy1, notation.Order(("w", "dy"), ("dy", "w"))) == "w2 dy1"
    assert notation.latex(sympy.Symbol("delta_s1_f2_3_12")) == r"\delta_{3,12}^{(s1,f2)}"
    expr = sympy.Rational(1, 4) * dy1 - 2 * x11
    assert notation.text(expr) == "dy1/4 - 2 x11"
    assert parse(notation.source(expr)) == expr
