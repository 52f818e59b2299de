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
block is the same as a serial loop would do, so for a given split into blocks the results do
not depend on which thread ran which block (each block writes its own slice of the output;
partial sums are added in block order). Large batches are split into a multiple of the core
count of blocks, so the bits of a sum can differ between machines with different core counts,
as they do with a multi-threaded BLAS; on one machine every run gives the same bits.

Every BLAS product of the ops runs this way, with one BLAS thread, even a product that is a
single block: OpenBLAS's own threads, once used, spin on a core for ~0.1 s before sleeping,
under whatever the pool runs next (see ``map_blocks``).
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any, TypeVar

import numpy as np  # noqa: F401 - loads NumPy's BLAS before threadpoolctl looks for it
from threadpoolctl import ThreadpoolController

T = TypeVar("T")

_blas_libraries = ThreadpoolController().select(user_api="blas").lib_controllers
_pool: ThreadPoolExecutor | None = None


class _OneBlasThread:
    """``with _OneBlasThread():`` runs its body with every BLAS library single-threaded and
    restores the thread counts after. threadpoolctl's ``limit()`` did the same in ~11 us (it
    re-reads every library's information); this costs ~3 us, and nothing when BLAS is already
    single-threaded. Small ops pay it on every call (a LeNet-5 layer at batch 1 takes ~20 us).
    """

    __slots__ = ("_restore",)

    def __enter__(self) -> None:
        self._restore = []
        for library in _blas_libraries:
            threads = library.get_num_threads()
            if threads is not None and threads != 1:
                library.set_num_threads(1)
                self._restore.append((library, threads))

    def __exit__(self, *exc_info: object) -> None:
        for library, threads in self._restore:
            library.set_num_threads(threads)


def _forget_pool() -> None:
    """A forked child has none of the parent's threads: it starts its own pool when needed."""
    global _pool
    _pool = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def worker_count() -> int:
    """The number of cores this process may run on (the pool's size)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


# Element-wise passes over fewer bytes than this run whole in the calling thread: sharing
# LeNet-5's 2.4 MB ReLU maps made its step slower; with this threshold batch norm and ReLU in
# blocks made ResNet-20's step ~7% and DenseNet-BC's ~11% faster (measured interleaved).
_SHARE_BYTES = 4 << 20


def batch_blocks(batch: int, bytes_per_sample: int) -> list[slice]:
    """Blocks of samples for an element-wise pass: one per core when the pass is large enough
    to be worth sharing, else the whole batch."""
    if batch < 2 or batch * bytes_per_sample < _SHARE_BYTES:
        return [slice(None)]
    workers = worker_count()
    if workers == 1:
        return [slice(None)]
    size = -(-batch // workers)
    return [slice(start, start + size) for start in range(0, batch, size)]


# Matrix products below this many multiply-adds (~0.3 ms on one core) run in one block: with
# 2^22, LeNet-5's 400 -> 120 layer (6.1M) went to two blocks, and its training step and
# inference were 1-8% slower than with the layer in one (waking the pool's thread cost about
# what half the product saved).
_SHARE_MACS = 1 << 24
# OpenBLAS runs a GEMM of at most this many multiply-adds on one thread by itself (its
# SMP_THRESHOLD_MIN * GEMM_MULTITHREAD_THRESHOLD, 65536 * 4): such products need no guard.
_SERIAL_BLAS_MACS = 1 << 18


def blas_runs_serially(macs: int) -> bool:
    """Whether OpenBLAS keeps a product of ``macs`` multiply-adds on one thread by itself, so
    calling it needs no switch to one BLAS thread (~3 us saved per call on small ops)."""
    return macs <= _SERIAL_BLAS_MACS


def _row_blocks(rows: int, macs: int) -> list[slice]:
    workers = worker_count()
    if workers == 1 or rows < 2 or macs < _SHARE_MACS:
        return [slice(None)]
    size = -(-rows // workers)
    return [slice(start, start + size) for start in range(0, rows, size)]


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` for a (rows, k) and b (k, m), blocks of rows on every core when it is large
    (each block one GEMM with one BLAS thread, as every op of convprop: see ``map_blocks``)."""
    macs = a.shape[0] * a.shape[1] * b.shape[1]
    if blas_runs_serially(macs):
        product: np.ndarray = np.matmul(a, b)
        return product
    out = np.empty((a.shape[0], b.shape[1]), dtype=np.result_type(a, b))
    blocks = _row_blocks(a.shape[0], macs)
    map_blocks(lambda block: np.matmul(a[block], b, out=out[block]), blocks)
    return out


def matmul_over_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a.T @ b`` for a (rows, k) and b (rows, m): the sum over rows of their outer products,
    partial sums over blocks of rows added in block order when it is large."""
    macs = a.shape[0] * a.shape[1] * b.shape[1]
    if blas_runs_serially(macs):
        summed: np.ndarray = a.T @ b
        return summed
    blocks = _row_blocks(a.shape[0], macs)
    result: np.ndarray = sum_blocks(lambda block: a[block].T @ b[block], blocks)
    return result


def matmul_along_axis(array: np.ndarray, matrix: np.ndarray, axis: int) -> np.ndarray:
    """result[..., p, ...] = sum_q matrix[p, q] array[..., q, ...] along ``axis``, by BLAS.

    When nothing follows the axis, one product over all the rows (``matmul``); else one
    product per leading index, broadcast, with one BLAS thread as every product of the ops.
    """
    shape = array.shape
    axis %= array.ndim
    lead, trail = math.prod(shape[:axis]), math.prod(shape[axis + 1 :])
    if trail == 1:
        result = matmul(array.reshape(lead, shape[axis]), matrix.T)
    else:
        with _OneBlasThread():
            result = np.matmul(matrix, array.reshape(lead, shape[axis], trail))
    contracted: np.ndarray = result.reshape(shape[:axis] + (matrix.shape[0],) + shape[axis + 1 :])
    return contracted


def sum_blocks(work: Callable[[slice], T], blocks: Sequence[slice], *, blas: bool = True) -> T:
    """The sum of ``work(block)`` over the blocks (in block order), computed in parallel."""
    parts = map_blocks(work, blocks, blas=blas)
    total = parts[0]
    for part in parts[1:]:
        total = total + part  # type: ignore[operator]
    return total


def map_blocks(
    work: Callable[[slice], T], blocks: Sequence[slice], *, blas: bool = True
) -> list[T]:
    """``[work(block) for block in blocks]``, the blocks spread over the cores.

    BLAS runs single-threaded meanwhile (the parallelism is across blocks); ``blas=False``
    says ``work`` makes no BLAS call (element-wise passes), which spares that switch (a few
    microseconds, a fifth of a small ReLU's time).
    The calling thread and one pool thread per other core each take the next block not yet
    taken until none is left, so a thread that loses its core delays only the block it holds.
    (One future per block instead cost ~17 us of bookkeeping per block, 0.7 ms for the 43
    blocks of a ResNet-20 3x3 layer, paid three times per layer and step.) A single block (a
    small op) runs in the calling thread, also with one BLAS thread: an op that let OpenBLAS
    start its own threads left them spinning on a core for ~0.1 s after it (OpenBLAS's wait
    before sleeping), under the next ops' blocks; a ResNet-20 step took 590 ms that way and
    473 ms with OpenBLAS single-threaded throughout.
    """
    global _pool
    if len(blocks) == 1:
        if not blas:
            return [work(blocks[0])]
        with _OneBlasThread():
            return [work(blocks[0])]
    guard = _OneBlasThread() if blas else contextlib.nullcontext()
    results: list[Any] = [None] * len(blocks)
    taken = itertools.count()
    lock = threading.Lock()
    failed = threading.Event()

    def drain() -> None:
        while not failed.is_set():
            with lock:
                index = next(taken)
            if index >= len(blocks):
                return
            try:
                results[index] = work(blocks[index])
            except BaseException:
                failed.set()
                raise

    with guard:
        helpers = min(worker_count(), len(blocks)) - 1
        if helpers == 0:
            drain()
            return results
        if _pool is None:
            _pool = ThreadPoolExecutor(worker_count(), thread_name_prefix="convprop")
        futures = [_pool.submit(drain) for _ in range(helpers)]
        try:
            drain()
        finally:
            wait(futures)
        for future in futures:
            future.result()  # re-raises a helper's exception
    return results
