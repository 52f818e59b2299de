"""The notes' names for symbols, and sums of products written in the notes' order.

Symbols are plain ``sympy.Symbol`` objects (no assumptions) whose *names* carry everything
needed to print them, so an expression parsed back from its string form (``sympy.sympify``)
is equal to the original and prints the same way:

* ``x11``, ``w21``, ``h12``, ``delta22``, ``dy3``: base name and 1-based spatial indices, as
  decks 000 and 001 write them (``x_{11}``, ``\\delta_{22}``);
* ``x1_12``: the indices joined by ``_`` when some size exceeds 9 (row 1, column 12);
* ``x_s2_c1_11``, ``w_f1_c2_11``, ``b_f2``: sample ``s``, input channel ``c`` and output
  channel (filter) ``f`` when there are several (deck 002's x_(s,i), w_(j,i));
  LaTeX ``x_{11}^{(s2,c1)}``.

``sympy``'s own printers sort the factors and terms of a sum alphabetically; the notes write
them in a fixed order (deck 000: ``h11 = x11 w22 + x12 w21 + ...``, deck 001:
``y1 = w1 x1 + w2 x2 + b``, ``dx2 = w2 dy1 + w1 dy2``). ``Order`` says which factor comes
first in a product and by which factor the terms are sorted; ``text``, ``latex`` and
``source`` print an expression accordingly (``source`` is valid sympy input).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
import sympy

_NAME = re.compile(r"^(?P<base>[a-z]+?)(?P<groups>(?:_[a-z]\d+)*)(?:_?(?P<spatial>\d+(?:_\d+)*))?$")
_LATEX_BASES = {"delta": r"\delta"}


@dataclass(frozen=True)
class SymbolName:
    """A parsed symbol name: ``base``, channel/sample ``groups`` like ('s', 2), ``spatial``."""

    base: str
    groups: tuple[tuple[str, int], ...]
    spatial: tuple[int, ...]

    @property
    def latex(self) -> str:
        base = _LATEX_BASES.get(self.base, self.base)
        out = base
        if self.spatial:
            joiner = "" if all(i <= 9 for i in self.spatial) else ","
            out += "_{" + joiner.join(str(i) for i in self.spatial) + "}"
        if self.groups:
            out += "^{(" + ",".join(f"{letter}{i}" for letter, i in self.groups) + ")}"
        return out

    def sort_key(self) -> tuple:
        return (tuple(i for _, i in self.groups), self.spatial)


@cache
def parse_name(name: str) -> SymbolName:
    match = _NAME.match(name)
    if match is None:
        return SymbolName(name, (), ())
    groups = tuple((part[0], int(part[1:])) for part in match.group("groups").split("_") if part)
    spatial_text = match.group("spatial")
    spatial = tuple(int(i) for i in spatial_text.split("_")) if spatial_text else ()
    return SymbolName(match.group("base"), groups, spatial)


def symbol_name(
    base: str, groups: Sequence[tuple[str, int]], spatial: Sequence[int], wide: bool
) -> str:
    """``base`` with 1-based ``groups`` (e.g. [('c', 2)]) and ``spatial`` indices.

    ``wide``: some spatial size exceeds 9, so the indices are separated by ``_``.
    """
    spatial_text = ("_" if wide else "").join(str(i) for i in spatial)
    if not groups:
        return base + spatial_text
    group_text = "".join(f"_{letter}{i}" for letter, i in groups)
    return base + group_text + ("_" + spatial_text if spatial_text else "")


def symbol_array(
    base: str,
    shape: Sequence[int],
    group_letters: Sequence[str | None],
) -> np.ndarray:
    """An object array of symbols; the leading ``len(group_letters)`` axes are channel-like
    (named by their letter, or left out of the name when the letter is None), the rest spatial.
    """
    lead = len(group_letters)
    spatial_shape = tuple(shape[lead:])
    wide = any(size > 9 for size in spatial_shape)
    out = np.empty(tuple(shape), dtype=object)
    for index in np.ndindex(*shape):
        groups = [
            (letter, i + 1)
            for letter, i in zip(group_letters, index[:lead], strict=True)
            if letter is not None
        ]
        spatial = [i + 1 for i in index[lead:]]
        out[index] = sympy.Symbol(symbol_name(base, groups, spatial, wide))
    return out


# ------------------------------------------------------------------------------- ordering
@dataclass(frozen=True)
class Order:
    """How the notes write a sum of products.

    ``factors``: bases in the order they appear within a product (deck 000 writes ``x11 w22``,
    deck 001 ``w1 x1``); ``sort_by``: bases by which the terms are sorted (deck 001's
    ``dx2 = w2 dy1 + w1 dy2`` shows w first but sorts by dy). Bases not listed come after.
    """

    factors: tuple[str, ...] = ()
    sort_by: tuple[str, ...] | None = None

    def factor_rank(self, base: str) -> int:
        return self.factors.index(base) if base in self.factors else len(self.factors)

    def sort_rank(self, base: str) -> int:
        keys = self.sort_by if self.sort_by is not None else self.factors
        return keys.index(base) if base in keys else len(keys)


NATURAL = Order()


def _factor_base(factor: sympy.Expr) -> SymbolName:
    symbol = factor.base if isinstance(factor, sympy.Pow) else factor
    if isinstance(symbol, sympy.Symbol):
        return parse_name(symbol.name)
    return SymbolName("~" + str(symbol), (), ())


def _terms(expr: sympy.Expr, order: Order) -> list[tuple[sympy.Rational, list[sympy.Expr]]]:
    """(coefficient, factors) of every term, factors and terms in the notes' order."""
    if not _is_expanded(expr):
        expr = sympy.expand(expr)
    terms = []
    for term in sympy.Add.make_args(expr):
        coefficient, rest = term.as_coeff_Mul()
        factors = [f for f in sympy.Mul.make_args(rest) if f != 1]
        factors.sort(key=lambda f: (order.factor_rank(_factor_base(f).base), str(f)))
        terms.append((coefficient, factors))

    def term_key(item: tuple[sympy.Rational, list[sympy.Expr]]) -> tuple:
        _, factors = item
        if not factors:
            return ((len(order.factors) + 2,),)
        names = sorted((_factor_base(f) for f in factors), key=lambda n: order.sort_rank(n.base))
        return tuple((order.sort_rank(n.base), n.base, n.sort_key()) for n in names)

    terms.sort(key=term_key)
    return terms


def _is_monomial(expr: sympy.Expr) -> bool:
    if isinstance(expr, (sympy.Symbol, sympy.Number)):
        return True
    if isinstance(expr, sympy.Pow):
        return isinstance(expr.base, sympy.Symbol) and isinstance(expr.exp, sympy.Integer)
    if isinstance(expr, sympy.Mul):
        return all(_is_monomial(arg) and not isinstance(arg, sympy.Mul) for arg in expr.args)
    return False


def _is_expanded(expr: sympy.Expr) -> bool:
    """A sum of monomials already (what the explanations build): no need for sympy.expand."""
    return all(_is_monomial(term) for term in sympy.Add.make_args(expr))


def _is_plain(expr: sympy.Expr) -> bool:
    """Polynomials in symbols with rational coefficients: printed by ``_terms``."""
    return all(
        isinstance(atom, (sympy.Symbol, sympy.Rational)) for atom in expr.atoms()
    ) and not expr.has(sympy.Max, sympy.Min)


def _factor_text(factor: sympy.Expr, style: str) -> str:
    if isinstance(factor, sympy.Pow):
        base, exponent = factor.as_base_exp()
        inner = _factor_text(base, style)
        if style == "latex":
            return f"{inner}^{{{sympy.latex(exponent)}}}"
        return f"{inner}**{exponent}" if style == "source" else f"{inner}^{exponent}"
    if isinstance(factor, sympy.Symbol):
        return parse_name(factor.name).latex if style == "latex" else factor.name
    return sympy.latex(factor) if style == "latex" else str(factor)


def _render(expr: sympy.Expr, order: Order, style: str) -> str:
    expr = sympy.sympify(expr)
    if isinstance(expr, (sympy.Max, sympy.Min)):
        name = {"text": "max", "source": "Max", "latex": r"\max"}[style]
        if isinstance(expr, sympy.Min):
            name = {"text": "min", "source": "Min", "latex": r"\min"}[style]
        args = sorted(expr.args, key=lambda a: _factor_base(a).sort_key())
        return f"{name}(" + ", ".join(_render(a, order, style) for a in args) + ")"
    if not _is_plain(expr):
        return sympy.latex(expr) if style == "latex" else str(expr)
    terms = _terms(expr, order)
    if not terms or expr == 0:
        return "0"
    joiner = {"text": " ", "source": "*", "latex": " "}[style]
    pieces = []
    for coefficient, factors in terms:
        negative = coefficient < 0
        magnitude = -coefficient if negative else coefficient
        numerator, denominator = magnitude.p, magnitude.q
        body = joiner.join(_factor_text(f, style) for f in factors)
        if not body:
            if style == "latex" and denominator != 1:
                body = rf"\frac{{{numerator}}}{{{denominator}}}"
            else:
                body = str(numerator) + (f"/{denominator}" if denominator != 1 else "")
        else:
            if numerator != 1:
                body = f"{numerator}{joiner}{body}"
            if denominator != 1:
                body = (
                    rf"\frac{{{body}}}{{{denominator}}}"
                    if style == "latex"
                    else f"{body}/{denominator}"
                )
        pieces.append((negative, body))
    out = ("-" if pieces[0][0] else "") + pieces[0][1]
    for negative, body in pieces[1:]:
        out += (" - " if negative else " + ") + body
    return out


def text(expr: sympy.Expr, order: Order = NATURAL) -> str:
    """Terminal form: ``x11 w22 + x12 w21 + b``."""
    return _render(expr, order, "text")


def latex(expr: sympy.Expr, order: Order = NATURAL) -> str:
    """LaTeX: ``x_{11} w_{22} + x_{12} w_{21} + b``."""
    return _render(expr, order, "latex")


def source(expr: sympy.Expr, order: Order = NATURAL) -> str:
    """A string ``sympy.sympify`` reads back to an equal expression: ``x11*w22 + b``."""
    return _render(expr, order, "source")


def term_count(expr: sympy.Expr) -> int:
    return len(sympy.Add.make_args(expr)) if expr != 0 else 0


def symbols_of(arrays: Iterable[np.ndarray]) -> list[sympy.Symbol]:
    return [s for array in arrays if array is not None for s in np.asarray(array).ravel()]
