"""The block pool and the malloc tuning behind the engine's speed (ops/_parallel, ops/_malloc)."""

from __future__ import annotations

import numpy as np
import pytest

import convprop.nn.functional as F
from convprop import tensor
from convprop.ops import _malloc, _parallel


def test_map_blocks_keeps_block_order_and_sum_blocks_adds_in_order() -> None:
    blocks = [slice(i, i + 1) for i in range(7)]
    assert _parallel.map_blocks(lambda b: b.start * 10, blocks) == [0, 10, 20, 30, 40, 50, 60]
    assert _parallel.sum_blocks(lambda b: np.array([b.start]), blocks)[0] == 21


def test_map_blocks_runs_every_block_once_and_reraises_a_blocks_exception() -> None:
    seen: list[int] = []
    blocks = [slice(i, i + 1) for i in range(40)]
    assert _parallel.map_blocks(lambda b: seen.append(b.start) or b.start, blocks) == list(
        range(40)
    )
    assert sorted(seen) == list(range(40))

    def fail_at_seven(block: slice) -> int:
        if block.start == 7:
            raise ValueError("block 7")
        return block.start

    with pytest.raises(ValueError, match="block 7"):
        _parallel.map_blocks(fail_at_seven, blocks)


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

    parallel = run()
    monkeypatch.setattr(_parallel, "worker_count", lambda: 1)
    serial = run()
    for a, b in zip(parallel, serial, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("variable", ["CONVPROP_NO_MALLOC_TUNING", "MALLOC_MMAP_THRESHOLD_"])
def test_malloc_tuning_respects_the_users_choice(monkeypatch, variable: str) -> None:
    monkeypatch.setenv(variable, "1")
    assert _malloc.keep_freed_memory() is False


def test_matmul_split_over_rows_equals_one_product(monkeypatch) -> None:
    """Linear layers' products, split into row blocks on the pool, equal NumPy's product."""
    monkeypatch.setattr(_parallel, "_SHARE_MACS", 1)  # split even these small products
    monkeypatch.setattr(_parallel, "_SERIAL_BLAS_MACS", 0)
    monkeypatch.setattr(_parallel, "worker_count", lambda: 3)
    rng = np.random.default_rng(4)
    a, b, c = rng.standard_normal((7, 5)), rng.standard_normal((5, 4)), rng.standard_normal((7, 4))
    assert len(_parallel._row_blocks(7, 7 * 5 * 4)) == 3
    np.testing.assert_allclose(_parallel.matmul(a, b), a @ b, rtol=1e-14)
    np.testing.assert_allclose(_parallel.matmul_over_rows(a, c), a.T @ c, rtol=1e-13)
    calls: list[slice] = []
    monkeypatch.setattr(
        _parallel,
        "map_blocks",
        lambda work, blocks, **_: calls.extend(blocks) or [work(b) for b in blocks],
    )
    _parallel.matmul(a, b)
    assert len(calls) == 3  # the product above really went through the row blocks
    monkeypatch.setattr(_parallel, "_SERIAL_BLAS_MACS", 1 << 18)
    np.testing.assert_allclose(_parallel.matmul(a, b), a @ b, rtol=1e-14)  # small: one product
    empty = np.zeros((0, 5))
    assert _parallel.matmul(empty, b).shape == (0, 4)
    np.testing.assert_array_equal(_parallel.matmul_over_rows(empty, np.zeros((0, 4))), 0)


def test_max_pool_blocks_on_the_pool_equal_serial_blocks(monkeypatch) -> None:
    """Max pooling over enough maps to use both cores gives the same values, indices and
    gradients as one block after another, with NaNs and all -inf windows in some blocks."""
    from convprop.ops import pooling

    rng = np.random.default_rng(5)
    x = rng.standard_normal((64, 16, 32, 32)).astype(np.float32)
    x[3, 2, 4:8, 4:8] = np.nan
    x[40, 7, :3, :3] = -np.inf
    grad = rng.standard_normal((64, 16, 16, 16)).astype(np.float32)

    def run() -> tuple[np.ndarray, ...]:
        out, saved = pooling.max_pool2d_forward(x, 3, 2, 1, return_indices=True)
        (grad_input,) = pooling.max_pool_backward(grad, saved, (True,))
        return out, saved.indices, grad_input

    assert len(pooling._map_blocks(64 * 16, 34 * 34)) >= 2 * _parallel.worker_count()
    parallel = run()
    monkeypatch.setattr(pooling, "worker_count", lambda: 10**6)  # fewer than 2 blocks per core
    serial = run()
    for a, b in zip(parallel, serial, strict=True):
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
        _parallel.matmul_along_axis(array, matrix, axis), expected, rtol=1e-12, atol=1e-14
    )


def test_blas_is_single_threaded_inside_the_blocks_and_restored_after() -> None:
    """Every block runs with one BLAS thread (the parallelism is across blocks); the caller's
    thread count comes back after, also when the guards nest; element-wise work
    (``blas=False``) leaves BLAS alone."""
    from threadpoolctl import threadpool_limits

    libraries = _parallel._blas_libraries
    if not libraries:
        pytest.skip("threadpoolctl finds no BLAS library")

    def counts() -> list[int]:
        return [library.get_num_threads() for library in libraries]

    with threadpool_limits(limits=2, user_api="blas"):
        seen: list[list[int]] = []
        _parallel.map_blocks(lambda b: seen.append(counts()), [slice(0, 1)])
        _parallel.map_blocks(lambda b: seen.append(counts()), [slice(i, i + 1) for i in range(5)])
        assert seen == [[1] * len(libraries)] * 6
        assert counts() == [2] * len(libraries)
        with _parallel._OneBlasThread():
            with _parallel._OneBlasThread():
                assert counts() == [1] * len(libraries)
            assert counts() == [1] * len(libraries)
        assert counts() == [2] * len(libraries)
        untouched: list[list[int]] = []
        _parallel.map_blocks(lambda b: untouched.append(counts()), [slice(0, 1)], blas=False)
        assert untouched == [[2] * len(libraries)]
