"""A small document model for explanations, printed as terminal text or as Markdown + LaTeX.

An explanation is a list of blocks (headings, paragraphs, equations, grids, matrices, the
verification line); ``to_text`` and ``to_markdown`` print them. Cells and right-hand sides are
*items*: sympy expressions (printed in the notes' order, see ``notation.Order``), numbers,
strings or ``Label``s. JSON is produced by each explanation from its own data instead.
"""

from __future__ import annotations

import math
import re
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import numpy as np
import sympy

from convprop.explain import notation
from convprop.explain.notation import NATURAL, Order

FORMATS = ("text", "markdown", "json")
WIDTH = 96  # prose is wrapped to this many characters in the terminal


@dataclass(frozen=True)
class Label:
    """Something printed differently in the terminal and in LaTeX (``dL/dx11`` vs a fraction)."""

    text: str
    latex: str

    @property
    def key(self) -> str:
        return self.text


def label(symbol: sympy.Symbol) -> Label:
    return Label(symbol.name, notation.parse_name(symbol.name).latex)


def grad_label(symbol: sympy.Symbol, short: bool = False, loss: str = "L") -> Label:
    """``dL/dx11`` (``\\partial L / \\partial x_{11}``), or deck 001's ``dx1`` when ``short``."""
    name = notation.parse_name(symbol.name)
    if short:
        return Label("d" + symbol.name, "d" + name.latex)
    return Label(f"d{loss}/d{symbol.name}", rf"\frac{{\partial {loss}}}{{\partial {name.latex}}}")


Item: TypeAlias = sympy.Expr | float | int | str | Label


@dataclass
class Heading:
    title: str
    level: int = 2


@dataclass
class Para:
    """Prose; ``markdown`` (with $...$ math) replaces ``text`` in Markdown when given."""

    text: str
    markdown: str | None = None


@dataclass
class Formula:
    """A displayed formula: ``text`` indented in the terminal, ``latex`` as $$...$$."""

    text: str
    latex: str


@dataclass
class Equations:
    """Lines ``lhs = rhs_1 = rhs_2 ...``."""

    rows: list[tuple[Item, list[Item]]]
    order: Order = NATURAL


@dataclass
class Grid:
    """A 1-D or 2-D array of items shown as a grid (deck 000's slides), with optional shading
    (e.g. the padding region) explained by ``note``."""

    title: Item
    cells: np.ndarray
    order: Order = NATURAL
    shaded: np.ndarray | None = None
    note: str | None = None


@dataclass
class Matrix:
    """A matrix with labelled rows and columns (deck 002's unrolled convolution)."""

    title: Item
    cells: np.ndarray
    row_labels: Sequence[Item]
    col_labels: Sequence[Item]
    order: Order = NATURAL


@dataclass
class Verification:
    """The closing line: symbolic values and the engine's agree to ``max_difference``."""

    what: str
    engine: str
    max_difference: float
    tolerance: float = 1e-12
    seed: int = 0
    details: dict[str, float] = field(default_factory=dict)
    at: str | None = None  # where they were evaluated; default: random numbers of the seed

    @property
    def passed(self) -> bool:
        return bool(self.max_difference <= self.tolerance)

    def sentence(self, stable: bool) -> str:
        verdict = "agree" if self.passed else "DISAGREE"
        if stable:
            # Summation order (BLAS, platform) moves the last bits; docs stay reproducible.
            amount = f"max |difference| <= {self.tolerance:g}"
        else:
            amount = f"max |difference| = {self.max_difference:.3g}"
        at = self.at or f"at random numbers (seed {self.seed})"
        return (
            f"Verification: {self.what}, evaluated {at}, and {self.engine} on the same "
            f"float64 numbers {verdict}: {amount}."
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "what": self.what,
            "engine": self.engine,
            "seed": self.seed,
            "max_abs_difference": float(self.max_difference),
            "tolerance": self.tolerance,
            "passed": self.passed,
            "details": {k: float(v) for k, v in self.details.items()},
        }


Block = Heading | Para | Formula | Equations | Grid | Matrix | Verification


# ------------------------------------------------------------------------------- items
def number(value: float | np.floating | np.integer) -> str:
    value = float(value)
    if math.isnan(value) or math.isinf(value):
        return str(value)
    if value == int(value) and abs(value) < 1e6:
        return str(int(value))
    text = f"{value:.4g}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def item_text(item: Item, order: Order = NATURAL) -> str:
    if isinstance(item, Label):
        return item.text
    if isinstance(item, str):
        return item
    if isinstance(item, (float, int, np.floating, np.integer)) and not isinstance(item, bool):
        return number(item)
    return notation.text(item, order)


def item_latex(item: Item, order: Order = NATURAL) -> str:
    if isinstance(item, Label):
        return item.latex
    if isinstance(item, str):
        return r"\text{" + item + "}"
    if isinstance(item, (float, int, np.floating, np.integer)) and not isinstance(item, bool):
        return number(item)
    return notation.latex(item, order)


def _as_2d(cells: np.ndarray) -> np.ndarray:
    cells = np.asarray(cells, dtype=object)
    return cells.reshape(1, -1) if cells.ndim == 1 else cells


# ------------------------------------------------------------------------------- text
_SPLIT = re.compile(r" (?=[+-] )")


def _cell_lines(item: Item, order: Order, width: int) -> list[str]:
    """One cell's lines: long sums are broken before each '+' (one term per line)."""
    text = item_text(item, order)
    if len(text) <= width:
        return [text]
    return _SPLIT.split(text)


def _box(cells: np.ndarray, order: Order, shaded: np.ndarray | None) -> list[str]:
    cells = _as_2d(cells)
    shade = None if shaded is None else np.asarray(shaded).reshape(cells.shape)
    rows, cols = cells.shape
    width = max(16, 60 // max(cols, 1))
    content = []
    for r in range(rows):
        line_cells = []
        for c in range(cols):
            lines = _cell_lines(cells[r, c], order, width)
            if shade is not None and shade[r, c]:
                lines = list(lines)
                lines[0] = "(" + lines[0]
                lines[-1] = lines[-1] + ")"
            line_cells.append(lines)
        content.append(line_cells)
    widths = [max(len(line) for r in range(rows) for line in content[r][c]) for c in range(cols)]
    numeric = all(isinstance(v, (float, int, np.floating, np.integer)) for v in cells.ravel())
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    out = [rule]
    for r in range(rows):
        height = max(len(lines) for lines in content[r])
        for k in range(height):
            parts = []
            for c in range(cols):
                line = content[r][c][k] if k < len(content[r][c]) else ""
                parts.append(line.rjust(widths[c]) if numeric else line.ljust(widths[c]))
            out.append("| " + " | ".join(parts) + " |")
        out.append(rule)
    return out


def _hang(line: str, indent: int) -> list[str]:
    """Break a long equation before its '+'/'-' terms, continuing under the right-hand side."""
    if len(line) <= WIDTH:
        return [line]
    lines, current = [], ""
    for piece in _SPLIT.split(line):
        candidate = piece if not current else current + " " + piece
        if current and len(candidate) > WIDTH:
            lines.append(current)
            current = " " * indent + piece
        else:
            current = candidate
    return lines + [current]


def _matrix_text(block: Matrix) -> list[str]:
    cells = _as_2d(block.cells)
    rows = [[item_text(v, block.order) for v in row] for row in cells]
    col_heads = [item_text(v) for v in block.col_labels]
    row_heads = [item_text(v) for v in block.row_labels]
    widths = [
        max(len(col_heads[c]), *(len(rows[r][c]) for r in range(len(rows))))
        for c in range(len(col_heads))
    ]
    head_width = max(len(h) for h in row_heads)
    out = [
        " " * (head_width + 3)
        + " ".join(h.rjust(w) for h, w in zip(col_heads, widths, strict=True))
    ]
    for r, row in enumerate(rows):
        body = " ".join(v.rjust(w) for v, w in zip(row, widths, strict=True))
        out.append(f"{row_heads[r].rjust(head_width)} [ {body} ]")
    return out


def to_text(blocks: Sequence[Block], stable: bool = False) -> str:
    out: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            underline = "=" if block.level == 1 else "-"
            out += ["", block.title, underline * len(block.title)]
        elif isinstance(block, Para):
            out += [""] + textwrap.wrap(block.text, WIDTH, break_on_hyphens=False)
        elif isinstance(block, Formula):
            out += ["", "    " + block.text]
        elif isinstance(block, Equations):
            out.append("")
            for lhs, rhs in block.rows:
                line = "  " + " = ".join(
                    [item_text(lhs)] + [item_text(r, block.order) for r in rhs]
                )
                out += _hang(line, len(item_text(lhs)) + 5)
        elif isinstance(block, Grid):
            out += ["", f"{item_text(block.title)}:"]
            out += ["  " + line for line in _box(block.cells, block.order, block.shaded)]
            if block.note:
                out.append("  " + block.note)
        elif isinstance(block, Matrix):
            out += ["", f"{item_text(block.title)}:"]
            out += ["  " + line for line in _matrix_text(block)]
        elif isinstance(block, Verification):
            out += [""] + textwrap.wrap(block.sentence(stable), WIDTH, break_on_hyphens=False)
        else:  # pragma: no cover - every block type is handled above
            raise TypeError(f"unknown block {block!r}")
    return "\n".join(out).strip("\n") + "\n"


# ------------------------------------------------------------------------------- markdown
def _md_cell(item: Item, order: Order) -> str:
    if isinstance(item, str):
        return item
    return f"${item_latex(item, order)}$"


def _md_title(title: Item) -> str:
    """Titles: plain words in bold; labels and expressions as math."""
    if isinstance(title, str):
        return f"**{title}**"
    return f"${item_latex(title)}$"


def _grid_markdown(block: Grid) -> list[str]:
    cells = _as_2d(block.cells)
    shade = None if block.shaded is None else np.asarray(block.shaded).reshape(cells.shape)
    rows, cols = cells.shape
    one_d = np.asarray(block.cells).ndim == 1
    head = "| |" if not one_d else "|"
    head += "".join(f" {c + 1} |" for c in range(cols))
    rule = "|---|" if not one_d else "|"
    rule += "---|" * cols
    out = [head, rule]
    for r in range(rows):
        line = f"| **{r + 1}** |" if not one_d else "|"
        for c in range(cols):
            cell = _md_cell(cells[r, c], block.order)
            if shade is not None and shade[r, c]:
                cell = f"~~{cell}~~"
            line += f" {cell} |"
        out.append(line)
    return out


def _matrix_latex(block: Matrix) -> str:
    cells = _as_2d(block.cells)
    body = r" \\ ".join(" & ".join(item_latex(v, block.order) for v in row) for row in cells)
    return r"\begin{pmatrix} " + body + r" \end{pmatrix}"


def to_markdown(blocks: Sequence[Block], stable: bool = False) -> str:
    out: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            out += ["#" * (block.level + 1) + " " + block.title, ""]
        elif isinstance(block, Para):
            out += [block.markdown if block.markdown is not None else block.text, ""]
        elif isinstance(block, Formula):
            out += ["$$" + block.latex + "$$", ""]
        elif isinstance(block, Equations):
            for lhs, rhs in block.rows:
                parts = [item_latex(lhs)] + [item_latex(r, block.order) for r in rhs]
                out.append(f"- ${' = '.join(parts)}$")
            out.append("")
        elif isinstance(block, Grid):
            out += [f"{_md_title(block.title)}:", ""]
            out += _grid_markdown(block)
            out.append("")
            if block.note:
                out += [block.note, ""]
        elif isinstance(block, Matrix):
            rows = ", ".join(item_latex(v) for v in block.row_labels)
            cols = ", ".join(item_latex(v) for v in block.col_labels)
            out += [
                f"{_md_title(block.title)} (rows ${rows}$; columns ${cols}$):",
                "",
                "$$" + _matrix_latex(block) + "$$",
                "",
            ]
        elif isinstance(block, Verification):
            out += [f"**{block.sentence(stable)}**", ""]
        else:  # pragma: no cover
            raise TypeError(f"unknown block {block!r}")
    return "\n".join(out).strip("\n") + "\n"


def check_format(format: str, func: str) -> str:
    if format not in FORMATS:
        raise ValueError(f"{func}: format must be one of {', '.join(FORMATS)}, got {format!r}")
    return format
