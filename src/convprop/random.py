"""The random number generator behind initialisation, dropout and data shuffling.

One NumPy ``Generator`` for the whole library: ``manual_seed(n)`` makes every later draw
reproducible (same seed, same weights, same dropout masks).
"""

from __future__ import annotations

import numpy as np

_generator = np.random.default_rng()


def manual_seed(seed: int) -> np.random.Generator:
    """Reseed the library's generator (as ``torch.manual_seed``) and return it."""
    global _generator
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"manual_seed: seed must be a non-negative int, got {seed!r}")
    _generator = np.random.default_rng(int(seed))
    return _generator


def default_generator() -> np.random.Generator:
    """The generator every random op draws from unless it is given one."""
    return _generator
