"""Blocks of the batch on every core, each with a single-threaded BLAS.

OpenBLAS parallelises one matrix product at a time: its threads split the product and meet at
a barrier after it, spinning while they wait. The products of a convolution block are small
(a few MFLOP to ~100 MFLOP), so that barrier is crossed hundreds of times per training step,
and on a machine whose cores are shared with other jobs one descheduled thread stalls every
product (BENCHMARKS.md, "Kernels: the thread pool").

So the ops split their work into independent blocks of samples (the cache blocks they use
anyway) and hand the blocks to a pool of Python threads, one per core, each running its
products with one BLAS thread. NumPy releases the GIL in its copies and in BLAS, so the blocks
really run in parallel; a thread that loses its core delays only the block it holds while the
other threads take the remaining blocks (no barrier until the op's end).

The bits of a result depend on the shapes and dtypes alone, not on the number of cores: one
seed gives the same weights on 1, 2 or 64 cores (with the same NumPy, BLAS and CPU). Three
rules make it so:

* the split into blocks (which samples or rows go into which partial sum) is a function of
  the shapes: a large pass or product is cut into a multiple of ``BLOCK_MULTIPLE`` blocks,
  never into a multiple of the core count (``split_evenly``, ``batch_blocks``,
  ``_row_blocks``, ``im2col.sample_blocks``); only the number of pool threads follows the
  cores, and which thread runs which block does not change the bits (each block writes its
  own slice of the output; partial sums are added in block order, ``sum_blocks``);
* every BLAS product runs on one BLAS thread: OpenBLAS splits a product between its threads
  (as many as the cores by default) and the split changes the last bits (a float32 256x256
  product of standard normals moved by up to 5e-5 between 1 and 2 threads, its values ~16).
  Products that OpenBLAS keeps on one thread by its own rules (``blas_runs_serially``) are
  called as they are; every other one inside ``_OneBlasThread``, even a product that is a
  single block: OpenBLAS's own threads, once used, also spin on a core for ~0.1 s before
  sleeping, under whatever the pool runs next (see ``map_blocks``);
* the compiled loops (``compiled``) run the same machine code whatever the thread.
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
    restores the thread counts after. threadpoolctl's ``limit()`` does the same but re-reads
    every library's information on each call; this only sets and restores the counts, and does
    nothing when BLAS is already single-threaded. Small ops pay it on every call, so its cost
    matters next to theirs (BENCHMARKS.md, "Kernels: the thread pool").
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
    """The number of cores this process may run on: the pool's size, never a block count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


# Large passes and products are split into a multiple of this many blocks, so that 1, 2 or 4
# cores finish together, and the split, hence the bits of every sum over blocks, is the same
# on any machine; more blocks would cost bookkeeping on the 2-core machines this targets
# (BENCHMARKS.md, "Kernels: the thread pool").
BLOCK_MULTIPLE = 4


def split_evenly(length: int, count: int) -> list[slice]:
    """``range(length)`` in at most ``count`` consecutive blocks of equal size (the last may be
    shorter): ceil(length / count) items each."""
    count = max(1, min(length, count))
    size = -(-length // count)
    return [slice(start, min(start + size, length)) for start in range(0, length, size)]


# Element-wise passes over fewer bytes than this run whole in the calling thread: waking the
# pool costs more than sharing a small map (LeNet-5's ReLU maps) saves; larger maps (batch
# norm and ReLU in ResNet-20, DenseNet-BC) are shared (BENCHMARKS.md, "Kernels: the thread
# pool").
_SHARE_BYTES = 4 << 20


def batch_blocks(batch: int, bytes_per_sample: int) -> list[slice]:
    """Blocks of samples for an element-wise pass (and batch norm's sums over it):
    ``BLOCK_MULTIPLE`` of them when the pass is large enough to be worth sharing, else the
    whole batch."""
    if batch < 2 or batch * bytes_per_sample < _SHARE_BYTES:
        return [slice(None)]
    return split_evenly(batch, BLOCK_MULTIPLE)


# Matrix products below this many multiply-adds run in one block: waking the pool's thread
# costs about what sharing a smaller product saves (a lower threshold split LeNet-5's
# 400 -> 120 layer, and its steps got slower: BENCHMARKS.md, "Kernels: the thread pool").
_SHARE_MACS = 1 << 24
# OpenBLAS runs a product on one thread by itself when it is small: a GEMM of at most
# SMP_THRESHOLD_MIN * GEMM_MULTITHREAD_THRESHOLD = 65536 * 4 multiply-adds (interface/gemm.c),
# a matrix-vector product (which NumPy calls when one side is a single row or column) of
# fewer than 2304 * 4 (interface/gemv.c), a dot product (a row times a column) of at most
# 10000 (the x86-64 dot kernels).
_SERIAL_GEMM_MACS = 1 << 18
_SERIAL_GEMV_MACS = 2304 * 4 - 1


def blas_runs_serially(rows: int, inner: int, columns: int) -> bool:
    """Whether OpenBLAS keeps the product of a (rows, inner) and an (inner, columns) matrix on
    one thread by itself, so calling it needs no switch to one BLAS thread (a saving on small
    ops) and its bits do not depend on the BLAS thread count."""
    macs = rows * inner * columns
    if rows == 1 or columns == 1:
        return macs <= _SERIAL_GEMV_MACS
    return macs <= _SERIAL_GEMM_MACS


def _may_be_symmetric(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether NumPy could compute ``a @ b`` as a @ a^T with syrk, which OpenBLAS threads at
    any size: a square result from operands on the same memory."""
    return a.shape[-2] == b.shape[-1] and np.may_share_memory(a, b)


def _row_blocks(rows: int, macs: int) -> list[slice]:
    if rows < 2 or macs < _SHARE_MACS:
        return [slice(None)]
    return split_evenly(rows, BLOCK_MULTIPLE)


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` for a (rows, k) and b (k, m), blocks of rows on every core when it is large
    (each block one GEMM with one BLAS thread, as every op of convprop: see ``map_blocks``)."""
    if blas_runs_serially(a.shape[0], a.shape[1], b.shape[1]) and not _may_be_symmetric(a, b):
        product: np.ndarray = np.matmul(a, b)
        return product
    out = np.empty((a.shape[0], b.shape[1]), dtype=np.result_type(a, b))
    blocks = _row_blocks(a.shape[0], a.shape[0] * a.shape[1] * b.shape[1])
    map_blocks(lambda block: np.matmul(a[block], b, out=out[block]), blocks)
    return out


def matmul_over_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a.T @ b`` for a (rows, k) and b (rows, m): the sum over rows of their outer products,
    partial sums over blocks of rows added in block order when it is large."""
    if blas_runs_serially(a.shape[1], a.shape[0], b.shape[1]) and not _may_be_symmetric(a.T, b):
        summed: np.ndarray = a.T @ b
        return summed
    blocks = _row_blocks(a.shape[0], a.shape[0] * a.shape[1] * b.shape[1])
    result: np.ndarray = sum_blocks(lambda block: a[block].T @ b[block], blocks)
    return result


def broadcast_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` with NumPy's rules (1-D operands promoted, leading axes broadcast), with one
    BLAS thread as every product of the ops; two matrices go through ``matmul``."""
    if a.ndim == 2 and b.ndim == 2:
        return matmul(a, b)
    rows = a.shape[-2] if a.ndim > 1 else 1
    columns = b.shape[-1] if b.ndim > 1 else 1
    symmetric = a.ndim > 1 and b.ndim > 1 and _may_be_symmetric(a, b)
    if blas_runs_serially(rows, a.shape[-1], columns) and not symmetric:
        product: np.ndarray = a @ b
        return product
    with _OneBlasThread():
        guarded: np.ndarray = a @ b
    return guarded


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
    says ``work`` makes no BLAS call (element-wise passes), which spares that switch (a
    noticeable part of a small ReLU's time).
    The calling thread and one pool thread per other core each take the next block not yet
    taken until none is left, so a thread that loses its core delays only the block it holds
    (one future per block cost bookkeeping per block, paid three times per layer and step). A
    single block (a small op) runs in the calling thread, also with one BLAS thread: an op that
    let OpenBLAS start its own threads left them spinning on a core for ~0.1 s after it
    (OpenBLAS's wait before sleeping), under the next ops' blocks (BENCHMARKS.md, "Kernels:
    the thread pool").
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
