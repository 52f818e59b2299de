"""Keep freed array memory in the process for the next step (glibc only).

Every op returns fresh arrays, and a training step frees and re-allocates the same large
buffers (activations, gradients, im2col columns: megabytes each) step after step. glibc's
malloc serves blocks above its mmap threshold (128 KiB at first, growing to at most 32 MiB)
with a fresh ``mmap`` and gives them back to the kernel on ``free``; trims the top of the heap
above its trim threshold likewise. Each re-allocation then page-faults its memory in again,
so writing a fresh array costs much more than writing a reused one (BENCHMARKS.md, "Kernels:
memory").

Raising both thresholds to 1 GiB makes ``free`` keep the memory in the heap, where the next
step's arrays of the same sizes find it. The process's resident memory then stays at its peak
instead of shrinking between steps (the peak itself is unchanged). This is a process-wide
setting, as with the ``MALLOC_MMAP_THRESHOLD_``/``MALLOC_TRIM_THRESHOLD_`` environment
variables, so importing the library never applies it: the ``convprop train`` command
and the benchmarks call ``keep_freed_memory()``, and a user may call it in their own training
script. It is skipped when either variable is set (the user's choice wins) or when
``CONVPROP_NO_MALLOC_TUNING=1``, and on systems without glibc's ``mallopt``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_THRESHOLD = 1 << 30


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds; whether it was done."""
    if os.environ.get("CONVPROP_NO_MALLOC_TUNING") == "1" or any(
        name in os.environ for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")
    ):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, _THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, _THRESHOLD)
    )
