"""The block pool and the malloc tuning behind the engine's speed (kernels/parallel, memory)."""

from __future__ import annotations

import os

import numpy as np
import pytest

import convprop as cp
import convprop.nn.functional as F
from convprop import tensor
from convprop.ops.kernels import memory, parallel


def test_map_blocks_keeps_block_order_and_sum_blocks_adds_in_order() -> None:
    blocks = [slice(i, i + 1) for i in range(7)]
    assert parallel.map_blocks(lambda b: b.start * 10, blocks) == [0, 10, 20, 30, 40, 50, 60]
    assert parallel.sum_blocks(lambda b: np.array([b.start]), blocks)[0] == 21


def test_map_blocks_runs_every_block_once_and_reraises_a_blocks_exception() -> None:
    seen: list[int] = []
    blocks = [slice(i, i + 1) for i in range(40)]
    assert parallel.map_blocks(lambda b: seen.append(b.start) or b.start, blocks) == list(range(40))
    assert sorted(seen) == list(range(40))

    def fail_at_seven(block: slice) -> int:
        if block.start == 7:
            raise ValueError("block 7")
        return block.start

    with pytest.raises(ValueError, match="block 7"):
        parallel.map_blocks(fail_at_seven, blocks)


def test_same_blocks_give_the_same_bits_serially_and_in_parallel(monkeypatch) -> None:
    """Each block writes its own slice and partial sums are added in block order, so with the
    same split into blocks (here 18 samples each, under either worker count) a layer gives
    bitwise the same values whether its blocks run in the pool or one after another."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 8, 20, 20)).astype(np.float32)
    w = rng.standard_normal((8, 8, 3, 3)).astype(np.float32)

    def run() -> tuple[np.ndarray, ...]:
        input_, weight = tensor(x, requires_grad=True), tensor(w, requires_grad=True)
        out = F.batch_norm(F.conv2d(input_, weight, padding=1), None, None, training=True)
        (out * out).sum().backward()
        return out.numpy(), input_.grad.numpy(), weight.grad.numpy()

    on_every_core = run()
    monkeypatch.setattr(parallel, "worker_count", lambda: 1)
    serial = run()
    for a, b in zip(on_every_core, serial, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("variable", ["CONVPROP_NO_MALLOC_TUNING", "MALLOC_MMAP_THRESHOLD_"])
def test_malloc_tuning_respects_the_users_choice(monkeypatch, variable: str) -> None:
    monkeypatch.setenv(variable, "1")
    assert memory.keep_freed_memory() is False


def test_matmul_split_over_rows_equals_one_product() -> None:
    """Linear layers' products, split into row blocks on the pool when they are large, equal
    NumPy's product; small ones, row vectors and empty ones too."""
    rng = np.random.default_rng(4)
    a, b = rng.standard_normal((520, 256)), rng.standard_normal((256, 128))
    c = rng.standard_normal((520, 128))
    assert len(parallel._row_blocks(520, 520 * 256 * 128)) == parallel.BLOCK_MULTIPLE
    np.testing.assert_allclose(parallel.matmul(a, b), a @ b, rtol=1e-13, atol=1e-12)
    np.testing.assert_allclose(parallel.matmul_over_rows(a, c), a.T @ c, rtol=1e-13, atol=1e-11)
    for rows, inner, columns in [(7, 5, 4), (1, 300, 40), (40, 300, 1), (1, 50, 1)]:
        small_a, small_b = rng.standard_normal((rows, inner)), rng.standard_normal((inner, columns))
        np.testing.assert_allclose(parallel.matmul(small_a, small_b), small_a @ small_b, 1e-14)
    empty = np.zeros((0, 5))
    assert parallel.matmul(empty, b[:5]).shape == (0, 128)
    np.testing.assert_array_equal(parallel.matmul_over_rows(empty, np.zeros((0, 4))), 0)


@pytest.mark.parametrize("length", [1, 2, 3, 7, 8, 9, 64, 100, 128])
@pytest.mark.parametrize("count", [1, 2, 3, 4, 8, 43])
def test_split_evenly_covers_the_range_in_order(length: int, count: int) -> None:
    blocks = parallel.split_evenly(length, count)
    assert [i for block in blocks for i in range(block.start, block.stop)] == list(range(length))
    sizes = [block.stop - block.start for block in blocks]
    assert len(blocks) <= count and len(set(sizes[:-1])) <= 1 and 0 < sizes[-1] <= sizes[0]


def _partitions() -> dict[str, list[slice]]:
    """The splits into blocks of ops that sum over blocks, at shapes where they split."""
    from convprop.ops import pooling
    from convprop.ops.kernels import im2col, winograd

    return {
        "batch norm, ResNet-20 stage 1 b128": parallel.batch_blocks(128, 16 * 32 * 32 * 4),
        "batch norm, 7 samples": parallel.batch_blocks(7, 1 << 20),
        "linear 4096 -> 4096 b256": parallel._row_blocks(256, 256 * 4096 * 4096),
        "im2col, ResNet-20 stage 1 b128": im2col.sample_blocks(128, 16 * 9 * 32 * 32 * 4),
        "im2col, LeNet-5 conv1 b128": im2col.sample_blocks(128, 25 * 28 * 28 * 4),
        "im2col, TDNN layer 1 b64": im2col.sample_blocks(64, 40 * 5 * 196 * 4),
        "winograd, ResNet-20 stage 2 b128": winograd.sample_blocks_for(
            np.empty((128, 32, 16, 16), np.float32), 32, (16, 16)
        ),
        "max pooling maps": pooling.blocks_of_maps(64 * 16, 34 * 34),
    }


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs os.sched_setaffinity")
def test_block_partitions_depend_on_the_shapes_alone() -> None:
    """Which samples or rows go into which partial sum is the same on one core as on all of
    them (this thread pinned to one core with sched_setaffinity, as ``taskset -c 0``), so one
    seed gives the same bits on any core count."""
    cores = os.sched_getaffinity(0)
    if len(cores) < 2:
        pytest.skip("a single core: nothing to compare one core with")
    spread = _partitions()
    os.sched_setaffinity(0, {min(cores)})
    try:
        assert parallel.worker_count() == 1
        pinned = _partitions()
    finally:
        os.sched_setaffinity(0, cores)
    assert pinned == spread
    assert all(len(blocks) > 1 for blocks in spread.values())  # each case really splits


def test_the_blas_thread_count_does_not_change_the_bits() -> None:
    """Every product of the ops runs with one BLAS thread, or is one that OpenBLAS keeps on
    one thread by itself: with BLAS allowed 1 or 4 threads (OpenBLAS's default is one per
    core), values and gradients of products that OpenBLAS would split have the same bits. (A
    float32 256x256 product differs in its last bits between 1 and 2 OpenBLAS threads.) A
    property of the fast kernels: the reference implementations call NumPy's products as they
    are."""
    from threadpoolctl import threadpool_limits

    from convprop.ops.algorithm import use_algorithm

    if not parallel._blas_libraries:
        pytest.skip("threadpoolctl finds no BLAS library")
    rng = np.random.default_rng(7)
    arrays = {
        "matrix": rng.standard_normal((256, 256)).astype(np.float32),
        "batched": rng.standard_normal((3, 64, 300)).astype(np.float32),
        "row": rng.standard_normal((1, 2000)).astype(np.float32),
        "weight": rng.standard_normal((100, 2000)).astype(np.float32),
        "maps": rng.standard_normal((4, 16, 32, 32)).astype(np.float32),
        "depthwise": rng.standard_normal((16, 1, 3, 3)).astype(np.float32),
    }

    def run() -> list[np.ndarray]:
        t = {name: cp.tensor(value, requires_grad=True) for name, value in arrays.items()}
        outputs = [
            t["matrix"] @ t["matrix"],  # a square product of one array: NumPy's syrk
            t["matrix"] @ t["matrix"].T,
            t["batched"] @ t["batched"].permute(0, 2, 1),
            F.linear(t["row"], t["weight"]),  # a matrix-vector product
            F.conv2d(t["maps"], t["depthwise"], padding=1, groups=16),
        ]
        sum(((out * out).sum() for out in outputs), cp.tensor(0.0)).backward()
        return [out.numpy() for out in outputs] + [t[name].grad.numpy() for name in t]

    with use_algorithm("fast"), threadpool_limits(limits=1, user_api="blas"):
        one = run()
    with use_algorithm("fast"), threadpool_limits(limits=4, user_api="blas"):
        four = run()
    for a, b in zip(one, four, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("axis", [0, 1, 2, -1, -2])
def test_matmul_along_axis_equals_einsum(axis: int) -> None:
    """The contraction shared by adaptive pooling and interpolation, on a non-contiguous
    input, against einsum."""
    rng = np.random.default_rng(6)
    array = rng.standard_normal((5, 4, 6)).transpose(1, 0, 2)  # (4, 5, 6), not contiguous
    matrix = rng.standard_normal((3, array.shape[axis]))
    moved = np.moveaxis(array, axis, -1)
    expected = np.moveaxis(np.einsum("...q,pq->...p", moved, matrix), -1, axis)
    np.testing.assert_allclose(
        parallel.matmul_along_axis(array, matrix, axis), expected, rtol=1e-12, atol=1e-14
    )


def test_blas_is_single_threaded_inside_the_blocks_and_restored_after() -> None:
    """Every block runs with one BLAS thread (the parallelism is across blocks); the caller's
    thread count comes back after, also when the guards nest; element-wise work
    (``blas=False``) leaves BLAS alone."""
    from threadpoolctl import threadpool_limits

    libraries = parallel._blas_libraries
    if not libraries:
        pytest.skip("threadpoolctl finds no BLAS library")

    def counts() -> list[int]:
        return [library.get_num_threads() for library in libraries]

    with threadpool_limits(limits=2, user_api="blas"):
        seen: list[list[int]] = []
        parallel.map_blocks(lambda b: seen.append(counts()), [slice(0, 1)])
        parallel.map_blocks(lambda b: seen.append(counts()), [slice(i, i + 1) for i in range(5)])
        assert seen == [[1] * len(libraries)] * 6
        assert counts() == [2] * len(libraries)
        with parallel._OneBlasThread():
            with parallel._OneBlasThread():
                assert counts() == [1] * len(libraries)
            assert counts() == [1] * len(libraries)
        assert counts() == [2] * len(libraries)
        untouched: list[list[int]] = []
        parallel.map_blocks(lambda b: untouched.append(counts()), [slice(0, 1)], blas=False)
        assert untouched == [[2] * len(libraries)]
