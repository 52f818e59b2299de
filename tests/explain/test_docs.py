"""docs/derivations.md is what the tool generates now."""

from __future__ import annotations

from convprop.explain.docs import DOCS_PATH, derivations_markdown


def test_derivations_are_up_to_date():
    expected = derivations_markdown()
    assert DOCS_PATH.read_text(encoding="utf-8") == expected, (
        "docs/derivations.md is out of date: run python -m convprop.explain.docs"
    )


def test_derivations_cover_the_notes_examples():
    text = DOCS_PATH.read_text(encoding="utf-8")
    for phrase in (
        "h_{11} = x_{11} w_{22} + x_{12} w_{21} + x_{21} w_{12} + x_{22} w_{11} + b",
        "y_{1} = w_{1} x_{1} + w_{2} x_{2} + b",
        r"\begin{pmatrix} w_{22} & w_{23}",
        "zero-inserted",
        "Max pooling",
        "Mean pooling",
        "A tiny CNN",
    ):
        assert phrase in text
    assert "DISAGREE" not in text and "FAILS" not in text
