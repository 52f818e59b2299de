"""What every explanation shares: rendering, figures, argument checks, the size limit."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from convprop.explain import render
from convprop.explain.render import Verification

# Beyond this many products a derivation fills screens and teaches nothing; sympy's cost also
# grows with it. Users are told to pick a smaller configuration.
MAX_TERMS = 400


class Explanation:
    """Base class: ``blocks`` (for text and Markdown), ``to_dict`` (JSON), ``figure``."""

    kind = "explanation"

    def blocks(self) -> list[render.Block]:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def render(self, format: str = "text", stable: bool = False) -> str:
        """The explanation as ``text`` (terminal), ``markdown`` (LaTeX in $...$) or ``json``.

        ``stable`` prints the verification as a bound instead of the exact difference (which
        depends on the platform's summation order), for generated documents.
        """
        render.check_format(format, f"explain {self.kind}")
        if format == "json":
            return json.dumps(self.to_dict(), indent=2) + "\n"
        if format == "markdown":
            return render.to_markdown(self.blocks(), stable)
        return render.to_text(self.blocks(), stable)

    def figure(self, path: str | Path) -> Path:
        """Write a PNG of the explanation's grids to ``path``; returns the path."""
        from convprop.explain import figures

        return figures.write(self, Path(path))

    @property
    def verification(self) -> Verification:
        raise NotImplementedError

    def __str__(self) -> str:
        return self.render("text")

    def _repr_markdown_(self) -> str:  # notebooks show the Markdown form
        return self.render("markdown")


class TooLargeError(ValueError):
    """The configuration would give a symbolic derivation too long to read."""


def too_large(func: str, what: str, count: int, limit: int, advice: str) -> TooLargeError:
    return TooLargeError(
        f"{func}: {what} is {count}, more than the limit of {limit}: the symbolic derivation "
        f"would be too long to read (and slow to build); {advice}"
    )


def sizes(
    value: Any, func: str, name: str, allowed_dims: Sequence[int] = (1, 2)
) -> tuple[int, ...]:
    """An int or a sequence of positive ints (1-D or 2-D), e.g. (3, 3)."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        items: tuple[Any, ...] = (int(value),)
    elif isinstance(value, Sequence) and not isinstance(value, str):
        items = tuple(value)
    else:
        raise TypeError(f"{func}: {name} must be an int or a sequence of ints, got {value!r}")
    if len(items) not in allowed_dims or not all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in items
    ):
        dims = " or ".join(str(d) for d in allowed_dims)
        raise TypeError(f"{func}: {name} must have {dims} int entries, got {value!r}")
    if any(v <= 0 for v in items):
        raise ValueError(f"{func}: {name} must be positive, got {tuple(items)}")
    return tuple(int(v) for v in items)


def positive_int(value: Any, func: str, name: str) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
        raise TypeError(f"{func}: {name} must be an int, got {value!r}")
    if value <= 0:
        raise ValueError(f"{func}: {name} must be positive, got {value}")
    return int(value)


def choice(value: Any, options: Sequence[str], func: str, name: str) -> str:
    if value not in options:
        listing = ", ".join(repr(o) for o in options)
        raise ValueError(f"{func}: {name} must be one of {listing}, got {value!r}")
    return str(value)


def shape_text(size: Sequence[int]) -> str:
    return "x".join(str(s) for s in size)
