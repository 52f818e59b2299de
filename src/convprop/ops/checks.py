"""Argument normalisation and validation shared by every op.

Every error names the function, the argument, the value received and the rule it broke, e.g.
``conv2d: stride must be positive, got (0, 1)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def check_positive(values: tuple[int, ...], func: str, name: str) -> None:
    if any(v <= 0 for v in values):
        raise ValueError(f"{func}: {name} must be positive, got {_show(values)}")


def check_non_negative(values: tuple[int, ...], func: str, name: str) -> None:
    if any(v < 0 for v in values):
        raise ValueError(f"{func}: {name} must be non-negative, got {_show(values)}")


def check_float(array: np.ndarray, func: str, name: str) -> None:
    """float32 or float64 inputs only: integer, bool and object arrays are refused, and so are
    float16 and long double, which the compiled loops (``_compiled``) are not built for."""
    if array.dtype not in (np.float32, np.float64):
        raise TypeError(
            f"{func}: {name} must have a floating-point dtype (float32 or float64), "
            f"got {array.dtype}"
        )


def check_ndim(
    array: np.ndarray, allowed: Sequence[int], func: str, name: str, layout: str
) -> None:
    if array.ndim not in allowed:
        expected = " or ".join(f"{n}-D" for n in allowed)
        raise ValueError(
            f"{func}: {name} must be {expected} ({layout}), got {array.ndim}-D with shape "
            f"{tuple(array.shape)}"
        )


def check_same_dtype(arrays: dict[str, np.ndarray | None], func: str) -> None:
    present = {name: a for name, a in arrays.items() if a is not None}
    dtypes = {a.dtype for a in present.values()}
    if len(dtypes) > 1:
        listing = ", ".join(f"{name} is {a.dtype}" for name, a in present.items())
        raise TypeError(f"{func}: all inputs must have the same dtype, but {listing}")


def _show(values: Any) -> str:
    if isinstance(values, tuple) and len(set(values)) == 1:
        return f"{values!r}"
    return repr(values)
