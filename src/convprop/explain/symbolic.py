"""Symbolic arrays (NumPy object arrays of sympy expressions) and the notes' operations on them.

These are written independently of the engine, index by index, exactly as the notes define
them: zero padding, zero insertion (deck 004's upsampling), Rot180, and correlation with a
dilated kernel. The engine's fast kernels are never used here; the explanations compare
against them numerically instead.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import sympy

ZERO = sympy.S.Zero


def zeros(shape: Sequence[int]) -> np.ndarray:
    out = np.empty(tuple(shape), dtype=object)
    out.fill(ZERO)
    return out


def pad(array: np.ndarray, pads: Sequence[tuple[int, int]], value: sympy.Expr = ZERO) -> np.ndarray:
    """Pad the trailing ``len(pads)`` axes by (before, after) with ``value``."""
    lead = array.ndim - len(pads)
    shape = array.shape[:lead] + tuple(
        size + before + after
        for size, (before, after) in zip(array.shape[lead:], pads, strict=True)
    )
    out = np.empty(shape, dtype=object)
    out.fill(value)
    inner = (slice(None),) * lead + tuple(
        slice(before, before + size)
        for size, (before, _) in zip(array.shape[lead:], pads, strict=True)
    )
    out[inner] = array
    return out


def zero_insert(array: np.ndarray, factors: Sequence[int]) -> np.ndarray:
    """Insert ``factor - 1`` zeros between neighbouring entries of the trailing axes."""
    lead = array.ndim - len(factors)
    shape = array.shape[:lead] + tuple(
        (size - 1) * f + 1 for size, f in zip(array.shape[lead:], factors, strict=True)
    )
    out = zeros(shape)
    out[(slice(None),) * lead + tuple(slice(None, None, f) for f in factors)] = array
    return out


def rot180(array: np.ndarray, spatial: int) -> np.ndarray:
    """Flip the trailing ``spatial`` axes (a 180-degree rotation of each 2-D kernel)."""
    return array[(Ellipsis,) + (slice(None, None, -1),) * spatial]


def correlate(
    image: np.ndarray,
    kernel: np.ndarray,
    out_size: Sequence[int],
    stride: Sequence[int] | None = None,
    dilation: Sequence[int] | None = None,
) -> np.ndarray:
    """out[o] = sum_k kernel[k] * image[o * S + k * D] over the (1-D or 2-D) spatial axes."""
    spatial = kernel.ndim
    stride = stride or (1,) * spatial
    dilation = dilation or (1,) * spatial
    out = zeros(out_size)
    taps = list(itertools.product(*(range(k) for k in kernel.shape)))
    for o in itertools.product(*(range(n) for n in out_size)):
        terms = []
        for k in taps:
            index = tuple(o[i] * stride[i] + k[i] * dilation[i] for i in range(spatial))
            terms.append(kernel[k] * image[index])
        out[o] = sympy.Add(*terms)
    return out


def convolve(
    image: np.ndarray, kernel: np.ndarray, out_size: Sequence[int], dilation: Sequence[int]
) -> np.ndarray:
    """True convolution (decks 000/001): correlation with the kernel rotated by 180 degrees."""
    return correlate(image, rot180(kernel, kernel.ndim), out_size, None, dilation)


def expand_all(array: np.ndarray) -> np.ndarray:
    out = np.empty(array.shape, dtype=object)
    for index in np.ndindex(*array.shape):
        out[index] = sympy.expand(array[index])
    return out


def proven_equal(lhs: np.ndarray, rhs: np.ndarray) -> bool:
    """sympy's proof that two arrays of polynomials agree: expand(lhs - rhs) == 0 everywhere."""
    lhs, rhs = np.asarray(lhs, dtype=object), np.asarray(rhs, dtype=object)
    if lhs.shape != rhs.shape:
        return False
    return all(sympy.expand(a - b) == 0 for a, b in zip(lhs.ravel(), rhs.ravel(), strict=True))


class Polynomial:
    """An expanded polynomial indexed by symbol, so that each partial derivative touches only
    the monomials that contain the symbol.

    ``derivative(s)`` differentiates monomial by monomial, exactly (d/ds of c s^n m is
    c n s^(n-1) m); tests check it against ``sympy.diff``. Differentiating the whole sum with
    ``sympy.diff`` gives the same result but walks every term for every symbol.
    """

    def __init__(self, expr: sympy.Expr) -> None:
        self.expr = sympy.expand(expr)
        self._by_symbol: dict[sympy.Symbol, list[tuple[sympy.Expr, tuple[sympy.Expr, ...]]]] = {}
        for term in sympy.Add.make_args(self.expr):
            coefficient, rest = term.as_coeff_Mul()
            factors = sympy.Mul.make_args(rest)
            for factor in factors:
                base = factor.as_base_exp()[0]
                if isinstance(base, sympy.Symbol):
                    self._by_symbol.setdefault(base, []).append((coefficient, factors))

    def derivative(self, symbol: sympy.Symbol) -> sympy.Expr:
        terms = []
        for coefficient, factors in self._by_symbol.get(symbol, []):
            rest = []
            for factor in factors:
                base, exponent = factor.as_base_exp()
                if base == symbol:
                    coefficient = coefficient * exponent
                    if exponent != 1:
                        rest.append(base ** (exponent - 1))
                else:
                    rest.append(factor)
            terms.append(coefficient * sympy.Mul(*rest))
        return sympy.Add(*terms)


def value(expr: sympy.Expr, values: dict[sympy.Symbol, float]) -> float:
    """Float64 value of a polynomial (or Max/Min of them) with the symbols replaced."""
    if isinstance(expr, sympy.Symbol):
        return values[expr]
    if isinstance(expr, sympy.Number):
        return float(expr)
    if isinstance(expr, sympy.Add):
        total = 0.0
        for arg in expr.args:
            total += value(arg, values)
        return total
    if isinstance(expr, sympy.Mul):
        product = 1.0
        for arg in expr.args:
            product *= value(arg, values)
        return product
    if isinstance(expr, sympy.Pow):
        return value(expr.base, values) ** float(expr.exp)
    if isinstance(expr, sympy.Max):
        return max(value(arg, values) for arg in expr.args)
    if isinstance(expr, sympy.Min):
        return min(value(arg, values) for arg in expr.args)
    return float(expr.xreplace(values))


def evaluate(array: np.ndarray, values: dict[sympy.Symbol, float]) -> np.ndarray:
    """Numeric value of every entry (float64) with the symbols replaced by ``values``."""
    array = np.asarray(array, dtype=object)
    out = np.empty(array.shape, dtype=np.float64)
    for index in np.ndindex(*array.shape):
        out[index] = value(array[index], values)
    return out
