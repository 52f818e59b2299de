"""Compiled loops (numba) for the memory-bound passes that NumPy can only make one at a time.

A batch-norm step in NumPy is a chain of whole-array operations (subtract the mean, square and
sum, scale, shift; in backward seven such passes), each reading and writing the whole map. A
loop that does all the arithmetic of one pass per element reads the map once
(``kernels.batch_norm``; BENCHMARKS.md, "Kernels: batch norm").

``compiled`` turns such a loop, written in plain Python over arrays, into machine code with
numba, on its first call (numba's import is slow, so a program that never calls a compiled
loop never pays it). The machine code is cached on disk (``cache=True``: beside the source, or
in numba's cache directory when that is read-only), so only the first process on a machine
pays the compilation per loop and dtype (BENCHMARKS.md, "Kernels: compiled loops"). Where
numba finds no directory it can write (a user whose HOME and site-packages are read-only), or
cannot read or write its cache (a directory that became read-only, a corrupt file), the loop
is compiled again without a cache, in every process: slower to start, never an error. The
loops release the GIL, so the pool's threads (``parallel.map_blocks``) run them on every core
at once.

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


def _machine_code(loop: Callable[..., Any], *, cache: bool) -> Callable[..., Any]:
    import numba

    dispatcher: Callable[..., Any] = numba.njit(nogil=True, cache=cache, fastmath=_FLAGS)(loop)
    return dispatcher


def compiled(loop: Function) -> Function:
    """``loop`` compiled with numba (nopython mode, GIL released, cached) on its first call."""
    machine_code: Callable[..., Any] | None = None
    uncached = False  # compiled without numba's disk cache, which failed

    def compile_loop(*, cache: bool) -> Callable[..., Any]:
        """The machine code to call, compiled once with the disk cache, or once without it
        (``cache=False``, or where numba finds no directory to cache in)."""
        nonlocal machine_code, uncached
        with _compile_lock:
            if machine_code is not None and (cache or uncached):
                return machine_code
            code = None
            if cache:
                try:
                    code = _machine_code(loop, cache=True)
                except RuntimeError:
                    # "cannot cache function ...: no locator available": no writable
                    # directory beside the source, in NUMBA_CACHE_DIR or the user's cache.
                    pass
            if code is None:
                code, uncached = _machine_code(loop, cache=False), True
            machine_code = code
            return code

    @functools.wraps(loop)
    def call(*args: Any) -> Any:
        code = compile_loop(cache=True) if machine_code is None else machine_code
        if uncached:
            return code(*args)
        try:
            return code(*args)
        except Exception:
            # The first call for each dtype loads the machine code from the cache, or compiles
            # and saves it. A cache that cannot be read or written (an OSError from a
            # directory that turned read-only or a full disk, pickle's errors from a corrupt
            # file) says nothing about the loop: compiled without the cache, it runs, and an
            # error of the loop's own (a typing error) comes back from that compilation.
            pass
        return compile_loop(cache=False)(*args)

    return call  # type: ignore[return-value]
