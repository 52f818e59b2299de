"""Blocks of the batch on every core, each with a single-threaded BLAS.

OpenBLAS parallelises one matrix product at a time: its threads split the product and meet at
a barrier after it, spinning while they wait. The products of a convolution block are small
(a few MFLOP to ~100 MFLOP), so that barrier is crossed hundreds of times per training step,
and on a machine whose cores are shared with other jobs one descheduled thread stalls every
product. Measured on the 2-core benchmark machine under load (benchmarks/, BENCHMARKS.md): a
32->32 3x3 convolution forward at batch 128 took 661 ms with 2 OpenBLAS threads and 20 ms as
below; a whole ResNet-20 training step 11.3 s against 1.3 s.

So the ops split their work into independent blocks of samples (the cache blocks they use
anyway) and hand the blocks to a pool of Python threads, one per core, each running its
products with one BLAS thread. NumPy releases the GIL in its copies and in BLAS, so the blocks
really run in parallel; a thread that loses its core delays only the block it holds while the
other threads take the remaining blocks (no barrier until the op's end). The work of each
block is the same as a serial loop would do, so results do not depend on the thread count
(each block writes its own slice of the output; partial sums are added in block order).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numpy as np  # noqa: F401 - loads NumPy's BLAS before threadpoolctl looks for it
from threadpoolctl import ThreadpoolController

T = TypeVar("T")

_blas = ThreadpoolController().select(user_api="blas")
_pool: ThreadPoolExecutor | None = None


def worker_count() -> int:
    """The number of cores this process may run on (the pool's size)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def map_blocks(work: Callable[[slice], T], blocks: Sequence[slice]) -> list[T]:
    """``[work(block) for block in blocks]``, the blocks spread over the cores.

    Several blocks: BLAS runs single-threaded meanwhile (the parallelism is across blocks). A
    single block (a small op) runs in the calling thread with BLAS's own threads, as any
    NumPy code would: handing it to the pool would cost more than it saves.
    """
    global _pool
    if len(blocks) == 1:
        return [work(blocks[0])]
    with _blas.limit(limits=1):
        if worker_count() == 1:
            return [work(block) for block in blocks]
        if _pool is None:
            _pool = ThreadPoolExecutor(worker_count(), thread_name_prefix="convprop")
        return list(_pool.map(work, blocks))
