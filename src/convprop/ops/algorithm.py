"""Which implementation runs: the notes' reference code, or the fast kernels a plan picks.

Every op family keeps, beside its public forward/backward pair, a *reference
implementation* written as the lecture notes write the math, and *fast kernels*
(``convprop.ops.kernels``) chosen by one plan function per family. By default the plans pick;
``use_algorithm("reference")`` (or the environment variable ``CONVPROP_ALGORITHM=reference``,
read when convprop is imported) makes every op run its reference instead, so a learner can
step through the notes' formulas in a debugger on a real network, and the test suite can check
every comparison both ways.

>>> import numpy as np
>>> from convprop.ops import conv
>>> x, w = np.ones((1, 1, 4, 4)), np.ones((1, 1, 3, 3))
>>> with use_algorithm("reference"), kernels_used() as used:
...     out, _ = conv.conv2d_forward(x, w)
>>> dict(used)
{'conv.forward.reference': 1}

``kernels_used()`` records which implementation each op ran, by name: what a test uses to
prove a path was taken, and a learner to see what computed a gradient.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections import Counter
from collections.abc import Iterator

ALGORITHMS = ("fast", "reference")


def _from_environment() -> str:
    name = os.environ.get("CONVPROP_ALGORITHM", "fast").strip().lower() or "fast"
    if name not in ALGORITHMS:
        raise ValueError(f"CONVPROP_ALGORITHM must be one of {', '.join(ALGORITHMS)}, got {name!r}")
    return name


_DEFAULT = _from_environment()
_algorithm: contextvars.ContextVar[str] = contextvars.ContextVar(
    "convprop_algorithm", default=_DEFAULT
)
_used: contextvars.ContextVar[Counter[str] | None] = contextvars.ContextVar(
    "convprop_kernels_used", default=None
)


def algorithm() -> str:
    """The algorithm in force: ``"fast"`` (the plans choose) or ``"reference"``."""
    return _algorithm.get()


def reference() -> bool:
    """Whether ops run their reference implementations."""
    return _algorithm.get() == "reference"


@contextlib.contextmanager
def use_algorithm(name: str) -> Iterator[None]:
    """Run the ops in the ``with`` block by ``"reference"`` or ``"fast"`` (the default)."""
    if name not in ALGORITHMS:
        raise ValueError(
            f"use_algorithm: name must be one of {', '.join(ALGORITHMS)}, got {name!r}"
        )
    token = _algorithm.set(name)
    try:
        yield
    finally:
        _algorithm.reset(token)


@contextlib.contextmanager
def kernels_used() -> Iterator[Counter[str]]:
    """Count, by name, the implementations the ops run in the ``with`` block."""
    counter: Counter[str] = Counter()
    token = _used.set(counter)
    try:
        yield counter
    finally:
        _used.reset(token)


def ran(kernel: str) -> None:
    """Note that ``kernel`` (``family.part.name``) ran; free when nobody is counting."""
    counter = _used.get()
    if counter is not None:
        counter[kernel] += 1
