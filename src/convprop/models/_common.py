"""Argument checks shared by the model builders."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast


def check_positive_int(func: str, **values: int) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{func}: {name} must be a positive int, got {value!r}")


def pair_size(func: str, size: int | Sequence[int]) -> tuple[int, int]:
    """An input size given as one int (square) or (height, width)."""
    if isinstance(size, int) and not isinstance(size, bool):
        size = (size, size)
    # Anything else is validated below (a bool, or a sequence of the wrong length or kind).
    values = tuple(cast(Sequence[int], size))
    if len(values) != 2 or not all(isinstance(v, int) and v > 0 for v in values):
        raise ValueError(
            f"{func}: input_size must be a positive int or (height, width), got {size!r}"
        )
    return values[0], values[1]
