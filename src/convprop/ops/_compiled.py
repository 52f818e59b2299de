"""Compiled loops (numba) for the memory-bound passes that NumPy can only make one at a time.

A batch-norm step in NumPy is a chain of whole-array operations (subtract the mean, square and
sum, scale, shift; in backward seven such passes), each reading and writing the whole map. A
loop that does all the arithmetic of one pass per element reads the map once: batch norm's
forward and backward became 2.5-5x faster this way on the benchmark's maps (BENCHMARKS.md,
session 4), where NumPy's passes were a quarter of a ResNet-20 training step.

``compiled`` turns such a loop, written in plain Python over arrays, into machine code with
numba, on its first call (numba's import costs ~0.3 s, so a program that never calls a
compiled loop never pays it). The machine code is cached on disk (``cache=True``: beside the
source, or in numba's cache directory when that is read-only), so only the first process on a
machine pays the ~0.5 s compilation per loop and dtype. The loops release the GIL, so the
pool's threads (``_parallel.map_blocks``) run them on every core at once.

Floating-point flags: ``reassoc`` lets LLVM reorder a sum into vector lanes (a sum of
float64 accumulators over float32 or float64 values: the order changes the last bits, not
the accuracy), ``contract`` lets it use fused multiply-adds. No flag that assumes the absence
of NaN or infinity is set: a NaN in the input propagates as in NumPy and PyTorch.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any, TypeVar

Function = TypeVar("Function", bound=Callable[..., Any])

_FLAGS = {"reassoc", "contract"}
_compile_lock = threading.Lock()


def compiled(loop: Function) -> Function:
    """``loop`` compiled with numba (nopython mode, GIL released, cached) on its first call."""
    machine_code: Callable[..., Any] | None = None

    @functools.wraps(loop)
    def call(*args: Any) -> Any:
        nonlocal machine_code
        if machine_code is None:
            with _compile_lock:
                if machine_code is None:
                    import numba

                    machine_code = numba.njit(nogil=True, cache=True, fastmath=_FLAGS)(loop)
        return machine_code(*args)

    return call  # type: ignore[return-value]
