"""Helpers shared by the explain tests: symbols by name, and sympy's own numeric evaluation."""

from __future__ import annotations

import numpy as np
import sympy


def S(names: str) -> list[sympy.Symbol]:  # noqa: N802 - reads like sympy.symbols
    return [sympy.Symbol(n) for n in names.split()]


def matrix_of(rows: list[str]) -> np.ndarray:
    """A symbolic matrix from rows of space-separated names ('0' for zero)."""
    return np.array([[sympy.sympify(v) for v in row.split()] for row in rows], dtype=object)


def numeric(array: np.ndarray, values: dict[sympy.Symbol, float]) -> np.ndarray:
    """sympy's own substitution (independent of convprop.explain's evaluator)."""
    replacement = {s: sympy.Float(v, 30) for s, v in values.items()}
    array = np.asarray(array, dtype=object)
    out = np.empty(array.shape)
    for index in np.ndindex(*array.shape):
        out[index] = float(sympy.sympify(array[index]).xreplace(replacement))
    return out


def flat(text: str) -> str:
    """Text with every run of whitespace (wrapping, alignment) collapsed to one space."""
    return " ".join(text.split())
