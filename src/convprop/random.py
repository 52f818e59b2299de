"""The random number generator behind initialisation, dropout and data shuffling.

One NumPy ``Generator`` for the whole library: ``manual_seed(n)`` makes every later draw
reproducible (same seed, same weights, same dropout masks).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

# NumPy's bit generators, the kinds of state ``set_state`` accepts.
BIT_GENERATORS = ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")
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


def get_state() -> dict[str, Any]:
    """The generator's state as plain data (JSON-serialisable), for a checkpoint."""
    return dict(_generator.bit_generator.state)


def set_state(state: Mapping[str, Any]) -> None:
    """Restore a state from :func:`get_state`: the next draws repeat those that followed it.

    Raises:
        ValueError: ``state`` is not a state of the generator's kind.
    """
    global _generator
    kind = state.get("bit_generator") if isinstance(state, Mapping) else None
    if kind not in BIT_GENERATORS:
        raise ValueError(f"set_state: unknown bit generator {kind!r} (expected {BIT_GENERATORS})")
    if type(_generator.bit_generator).__name__ == kind:
        _generator.bit_generator.state = dict(state)  # in place: holders of it see the change
        return
    bit_generator = getattr(np.random, kind)()
    bit_generator.state = dict(state)
    _generator = np.random.Generator(bit_generator)
