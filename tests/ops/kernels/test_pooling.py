"""The tap-by-tap pooling kernels on explicit blocks of maps: any split into blocks, run one
after another or on every core, gives the same values, indices and gradients (as PyTorch),
including the per-block NaN and -inf fix-ups (ops/kernels/pooling, adaptive_pooling)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

from convprop.ops import adaptive_pooling as adaptive_ops
from convprop.ops import pooling
from convprop.ops.geometry import pool_geometry
from convprop.ops.kernels import adaptive_pooling
from convprop.ops.kernels import pooling as kernels
from tests.reference import assert_close


def _blocks(count: int, per_block: int) -> tuple[slice, ...]:
    return tuple(
        slice(start, min(start + per_block, count)) for start in range(0, count, per_block)
    )


def _special_input(shape: tuple[int, ...], seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal(shape)
    x[1, 2, 3, 3] = np.nan
    x[2, 0] = -np.inf
    return x


@pytest.mark.parametrize("per_block", [1, 2, 5])
@pytest.mark.parametrize("parallel", [False, True])
@pytest.mark.parametrize(
    "args",
    [
        dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
        dict(kernel_size=2, stride=2, padding=0, ceil_mode=False),
    ],
)
def test_max_pool_in_any_blocks_of_maps_as_torch(per_block: int, parallel: bool, args) -> None:
    x = _special_input((3, 4, 7, 8), 11)
    geometry = pool_geometry(
        "max_pool2d",
        x.shape[2:],
        args["kernel_size"],
        args["stride"],
        args["padding"],
        1,
        args["ceil_mode"],
    )
    maps = x.reshape(-1, 7, 8)
    blocks = kernels.MapBlocks(_blocks(maps.shape[0], per_block), parallel)
    values, argmax_tap, indices = kernels.max_pool_taps(maps, geometry, blocks, True)
    torch_x = torch.tensor(x, requires_grad=True)
    torch_values, torch_indices = TF.max_pool2d(torch_x, **args, return_indices=True)
    np.testing.assert_array_equal(values.reshape(torch_values.shape), torch_values.detach())
    np.testing.assert_array_equal(indices.reshape(torch_indices.shape), torch_indices)
    delta = np.random.default_rng(5).standard_normal(torch_values.shape)
    torch_values.backward(torch.tensor(delta))
    for name in pooling.applicable_window_backward_kernels(geometry)[1:]:
        grad = pooling.MAX_POOL_BACKWARD_KERNELS[name](
            delta.reshape(values.shape), argmax_tap, geometry, blocks
        )
        assert_close(grad.reshape(x.shape), torch_x.grad, what=name)


@pytest.mark.parametrize("per_block", [1, 2, 5])
def test_mean_pool_in_any_blocks_of_maps_as_torch(per_block: int) -> None:
    x = np.random.default_rng(12).standard_normal((3, 4, 7, 8))
    geometry = pool_geometry("avg_pool2d", x.shape[2:], 3, 2, 1, 1, True)
    maps = x.reshape(-1, 7, 8)
    blocks = kernels.MapBlocks(_blocks(maps.shape[0], per_block))
    out, divisor = kernels.mean_over_taps(maps, geometry, blocks, True, None)
    torch_x = torch.tensor(x, requires_grad=True)
    torch_out = TF.avg_pool2d(torch_x, 3, stride=2, padding=1, ceil_mode=True)
    assert_close(out.reshape(torch_out.shape), torch_out)
    delta = np.random.default_rng(13).standard_normal(torch_out.shape)
    torch_out.backward(torch.tensor(delta))
    grad = kernels.spread_over_taps(
        delta.reshape(out.shape), divisor, geometry, blocks, accumulate=True, zero_fill=True
    )
    assert_close(grad.reshape(x.shape), torch_x.grad)


def test_max_pool_blocks_on_every_core_equal_serial_blocks() -> None:
    """The same blocks on the pool or one after another: the same bits, with NaNs and all
    -inf windows in some blocks."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((8, 8, 16, 16)).astype(np.float32)
    x[3, 2, 4:8, 4:8] = np.nan
    x[6, 7, :3, :3] = -np.inf
    maps = x.reshape(-1, 16, 16)
    geometry = pool_geometry("max_pool2d", (16, 16), 3, 2, 1, 1, False)
    grad = rng.standard_normal((maps.shape[0], *geometry.out_size)).astype(np.float32)

    def run(parallel: bool) -> tuple[np.ndarray, ...]:
        blocks = kernels.MapBlocks(_blocks(maps.shape[0], 4), parallel)
        values, argmax_tap, indices = kernels.max_pool_taps(maps, geometry, blocks, True)
        grad_input = kernels.route_to_argmax(
            grad, argmax_tap, geometry, blocks, accumulate=True, zero_fill=True
        )
        assert indices is not None
        return values, indices, grad_input

    for a, b in zip(run(True), run(False), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("per_block", [1, 3, 100])
def test_separable_adaptive_max_in_any_blocks_equals_the_reference(per_block: int) -> None:
    x = _special_input((3, 4, 13, 9), 14).reshape(-1, 13, 9)
    blocks = kernels.MapBlocks(_blocks(x.shape[0], per_block))
    values, indices = adaptive_pooling.max_separable(x, (3, 4), blocks)
    expected_values, expected_indices = adaptive_ops.reference_adaptive_max_pool(x, (3, 4))
    np.testing.assert_array_equal(values, expected_values)
    np.testing.assert_array_equal(indices, expected_indices)


def test_kernels_refuse_windows_that_do_not_tile_the_input() -> None:
    x = np.zeros((2, 7, 5))
    with pytest.raises(ValueError, match="do not tile"):
        adaptive_pooling.max_over_tile_rows(x, (2, 5))
    with pytest.raises(ValueError, match="do not tile"):
        adaptive_pooling.max_by_max_pool(x, (2, 5), kernels.MapBlocks((slice(None),)))
