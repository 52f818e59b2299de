"""Every implementation of pooling the plans can choose, against PyTorch and the notes'
reference implementation; the plans' choices; and proof that the reference path runs.

Each kernel is called directly from the tables (``pooling.MAX_POOL_KERNELS`` ...), on every
hypothesis configuration where it applies and on the plan's blocks of maps as well as on
blocks of one map run on every core, so no threshold has to be patched to reach a path.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given
from hypothesis import strategies as st

import convprop as cp
import convprop.nn.functional as F
from convprop.ops import adaptive_pooling, pooling
from convprop.ops.algorithm import kernels_used, use_algorithm
from convprop.ops.geometry import PoolGeometry, pool_geometry
from tests.ops.test_pooling import pool_config
from tests.ops.test_pooling_avg import adaptive_config, avg_config
from tests.reference import assert_close

KINDS = ["normal", "ties", "special"]


def _input(seed: int, shape: tuple[int, ...], kind: str) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "ties":
        return rng.integers(-2, 3, size=shape).astype(np.float64)
    values = rng.standard_normal(shape)
    if kind == "special":
        values[rng.random(shape) < 0.15] = np.nan
        values[rng.random(shape) < 0.15] = -np.inf
        values[rng.random(shape) < 0.05] = np.inf
    return values


def _torch_pool(fn: Any, x: np.ndarray, seed: int, **kwargs: Any) -> tuple:
    """PyTorch's outputs (values, or values and indices), a delta, and dL/dx."""
    tx = torch.tensor(x, requires_grad=True)
    result = fn(tx, **kwargs)
    values = result[0] if isinstance(result, tuple) else result
    delta = np.random.default_rng(seed).standard_normal(values.shape)
    values.backward(torch.tensor(delta))
    indices = result[1].numpy() if isinstance(result, tuple) else None
    return values.detach().numpy(), indices, delta, tx.grad.numpy()


def _block_choices(geometry: PoolGeometry, maps: int) -> list[pooling.MapBlocks]:
    """The plan's blocks, and one map per block on every core."""
    planned = pooling.max_pool_blocks(maps, int(np.prod(geometry.padded_size)))
    one_each = tuple(slice(i, i + 1) for i in range(maps))
    return [planned, pooling.MapBlocks(one_each, parallel=True)]


def _maps(x: np.ndarray, spatial: int) -> np.ndarray:
    return x.reshape((-1,) + x.shape[-spatial:])


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("spatial", [1, 2])
@given(data=st.data())
def test_every_max_pool_kernel_matches_torch(spatial: int, kind: str, data: st.DataObject) -> None:
    config = data.draw(pool_config(spatial))
    x = _input(data.draw(st.integers(0, 2**32 - 1)), config["shape"], kind)
    args = {k: config[k] for k in ("kernel_size", "stride", "padding", "dilation", "ceil_mode")}
    torch_fn = TF.max_pool1d if spatial == 1 else TF.max_pool2d
    values, indices, delta, grad_x = _torch_pool(torch_fn, x, 1, **args, return_indices=True)
    geometry = pool_geometry("max_pool", x.shape[-spatial:], *args.values())
    maps = _maps(x, spatial)
    delta_maps = delta.reshape((-1,) + geometry.out_size)
    for blocks in _block_choices(geometry, maps.shape[0]):
        for name, kernel in pooling.MAX_POOL_KERNELS.items():
            ours, argmax_tap, our_indices = kernel(maps, geometry, blocks, True)
            what = f"{name} on {blocks}"
            np.testing.assert_array_equal(ours.reshape(values.shape), values, err_msg=what)
            assert our_indices is not None and our_indices.dtype == np.int64
            np.testing.assert_array_equal(our_indices.reshape(indices.shape), indices, what)
            for backward in pooling.applicable_window_backward_kernels(geometry):
                grad = pooling.MAX_POOL_BACKWARD_KERNELS[backward](
                    delta_maps, argmax_tap, geometry, blocks
                )
                assert_close(grad.reshape(x.shape), grad_x, what=f"{backward} after {what}")


@pytest.mark.parametrize("spatial", [1, 2])
@given(data=st.data())
def test_every_avg_pool_kernel_matches_torch(spatial: int, data: st.DataObject) -> None:
    config = data.draw(avg_config(spatial))
    x = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1))).standard_normal(
        config.pop("shape")
    )
    torch_fn = TF.avg_pool1d if spatial == 1 else TF.avg_pool2d
    expected, _, delta, grad_x = _torch_pool(torch_fn, x, 2, **config)
    geometry = pool_geometry(
        "avg_pool",
        x.shape[-spatial:],
        config["kernel_size"],
        config["stride"],
        config["padding"],
        1,
        config["ceil_mode"],
    )
    maps = _maps(x, spatial)
    delta_maps = delta.reshape((-1,) + geometry.out_size)
    override = config.get("divisor_override")
    for blocks in _block_choices(geometry, maps.shape[0]):
        for name, kernel in pooling.AVG_POOL_KERNELS.items():
            ours, divisor = kernel(maps, geometry, blocks, config["count_include_pad"], override)
            assert_close(ours.reshape(expected.shape), expected, what=name)
            for backward in pooling.applicable_window_backward_kernels(geometry):
                grad = pooling.AVG_POOL_BACKWARD_KERNELS[backward](
                    delta_maps, divisor, geometry, blocks
                )
                assert_close(grad.reshape(x.shape), grad_x, what=f"{backward} after {name}")


def _resolved(output_size: Any, in_size: tuple[int, ...]) -> tuple[int, ...]:
    requested = output_size if isinstance(output_size, tuple) else (output_size,) * len(in_size)
    return tuple(n if o is None else o for o, n in zip(requested, in_size, strict=True))


@pytest.mark.parametrize("spatial", [1, 2])
@given(data=st.data())
def test_every_adaptive_avg_pool_kernel_matches_torch(spatial: int, data: st.DataObject) -> None:
    shape, output_size = data.draw(adaptive_config(spatial))
    x = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1))).standard_normal(shape)
    torch_fn = TF.adaptive_avg_pool1d if spatial == 1 else TF.adaptive_avg_pool2d
    expected, _, delta, grad_x = _torch_pool(torch_fn, x, 3, output_size=output_size)
    out_size = _resolved(output_size, x.shape[-spatial:])
    for name, kernel in adaptive_pooling.ADAPTIVE_AVG_KERNELS.items():
        assert_close(
            kernel(_maps(x, spatial), out_size).reshape(expected.shape), expected, what=name
        )
    delta_maps = delta.reshape((-1,) + out_size)
    for name, backward in adaptive_pooling.ADAPTIVE_AVG_BACKWARD_KERNELS.items():
        grad = backward(delta_maps, x.shape[-spatial:])
        assert_close(grad.reshape(x.shape), grad_x, what=name)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("spatial", [1, 2])
@given(data=st.data())
def test_every_applicable_adaptive_max_pool_kernel_matches_torch(
    spatial: int, kind: str, data: st.DataObject
) -> None:
    shape, output_size = data.draw(adaptive_config(spatial))
    x = _input(data.draw(st.integers(0, 2**32 - 1)), shape, kind)
    torch_fn = TF.adaptive_max_pool1d if spatial == 1 else TF.adaptive_max_pool2d
    values, indices, delta, grad_x = _torch_pool(
        torch_fn, x, 4, output_size=output_size, return_indices=True
    )
    in_size = x.shape[-spatial:]
    out_size = _resolved(output_size, in_size)
    maps = _maps(x, spatial)
    blocks = pooling.MapBlocks(tuple(slice(i, i + 1) for i in range(maps.shape[0])), True)
    for name in adaptive_pooling.applicable_adaptive_max_kernels(in_size, out_size):
        ours, our_indices = adaptive_pooling.ADAPTIVE_MAX_KERNELS[name](maps, out_size, blocks)
        np.testing.assert_array_equal(ours.reshape(values.shape), values, err_msg=name)
        np.testing.assert_array_equal(our_indices.reshape(indices.shape), indices, err_msg=name)
        assert our_indices.dtype == np.int64
    delta_maps = delta.reshape((-1,) + out_size)
    index_maps = indices.reshape(delta_maps.shape)
    for name, backward in adaptive_pooling.ADAPTIVE_MAX_BACKWARD_KERNELS.items():
        grad = backward(delta_maps, index_maps, in_size)
        assert_close(grad.reshape(x.shape), grad_x, what=name)


@pytest.mark.parametrize(
    ("in_size", "out_size", "kernels"),
    [
        ((12, 12), (2, 2), ["reference", "max_pool", "tile_rows", "separable"]),
        ((13, 9), (3, 1), ["reference", "separable"]),
        ((5,), (7,), ["reference", "separable"]),
    ],
)
def test_adaptive_max_kernels_that_need_tiles_apply_only_to_tiles(
    in_size: tuple[int, ...], out_size: tuple[int, ...], kernels: list[str]
) -> None:
    assert adaptive_pooling.applicable_adaptive_max_kernels(in_size, out_size) == kernels


# ----------------------------------------------------------------------------- the plans
@pytest.mark.parametrize(
    ("pool", "size", "args", "forward", "backward"),
    [
        # The benchmark's pools and LeNet-5's: windows side by side, no zero fill.
        ("max", (32, 32), (2, 2, 0, 1, False), "taps", "taps_tile"),
        ("avg", (32, 32), (2, 2, 0, 1, False), "taps", "taps_tile"),
        ("max", (28, 28), (2, 2, 0, 1, False), "taps", "taps_tile"),
        # Overlapping windows: "+=" into every tap's slice.
        ("max", (32, 32), (3, 2, 1, 1, False), "taps", "taps_add"),
        ("avg", (32, 32), (3, 1, 1, 1, False), "taps", "taps_add"),
        ("max", (9, 9), (2, 1, 0, 2, False), "taps", "taps_add"),  # dilated: taps overlap
        # Disjoint windows that leave samples over, or padded: assigned, zero-filled first.
        ("max", (7, 7), (2, 2, 0, 1, False), "taps", "taps_assign"),
        ("avg", (8, 8), (2, 2, 1, 1, False), "taps", "taps_assign"),
        ("max", (7,), (3, 4, 1, 1, True), "taps", "taps_assign"),
    ],
)
def test_the_window_pool_plans(
    pool: str, size: tuple[int, ...], args: tuple, forward: str, backward: str
) -> None:
    geometry = pool_geometry(f"{pool}_pool", size, *args)
    with use_algorithm("fast"):
        if pool == "max":
            plans = (
                pooling.plan_max_pool(geometry, 6),
                pooling.plan_max_pool_backward(geometry, 6),
            )
        else:
            plans = (pooling.plan_avg_pool(geometry, 6), pooling.plan_avg_pool(geometry, 6, True))
    assert (plans[0].kernel, plans[1].kernel) == (forward, backward)
    with use_algorithm("reference"):
        assert pooling.plan_max_pool(geometry, 6).kernel == "reference"
        assert pooling.plan_avg_pool(geometry, 6, backward=True).kernel == "reference"


@pytest.mark.parametrize(
    ("maps", "size", "cores", "blocks", "parallel"),
    [
        # max_pool2d 2x2/2 on 16x32x32 at batch 128: 2048 maps of 1024 samples, 8 blocks of 256
        # maps, on both cores of a 2-core machine (at least 2 blocks per core) ...
        (2048, (32, 32), 2, 8, True),
        # ... but one after another on 8 cores (1 block per core).
        (2048, (32, 32), 8, 8, False),
        # LeNet-5's first pool at batch 128 (768 maps of 28x28): 3 blocks, serial on 2 cores.
        (768, (28, 28), 2, 3, False),
        # One block (a small batch): serial whatever the cores.
        (6, (28, 28), 1, 1, False),
    ],
)
def test_max_pool_blocks_and_when_they_share_the_cores(
    maps: int, size: tuple[int, ...], cores: int, blocks: int, parallel: bool
) -> None:
    plan = pooling.max_pool_blocks(maps, int(np.prod(size)), cores)
    assert (len(plan.slices), plan.parallel) == (blocks, parallel)
    assert plan.slices == tuple(pooling.blocks_of_maps(maps, int(np.prod(size))))
    covered = [i for block in plan.slices for i in range(block.start, block.stop)]
    assert covered == list(range(maps))
    per_block = plan.slices[0].stop - plan.slices[0].start
    assert per_block * np.prod(size) <= max(pooling.MAP_BLOCK_ELEMENTS, np.prod(size))


@pytest.mark.parametrize(
    ("in_size", "out_size", "kernel"),
    [
        ((8, 8), (4, 4), "max_pool"),  # 2x2 tiles
        ((16, 16), (2, 2), "max_pool"),  # 64-sample tiles: still the tap loop
        ((18, 18), (2, 1), "tile_rows"),  # 162-sample tiles
        ((8, 8), (1, 1), "max_pool"),  # global pooling of 64 samples
        ((12, 12), (1, 1), "tile_rows"),  # global pooling of 144 samples
        ((7, 5), (2, 2), "separable"),  # overlapping windows
        ((5,), (7,), "separable"),  # more outputs than samples
    ],
)
def test_the_adaptive_max_plan(
    in_size: tuple[int, ...], out_size: tuple[int, ...], kernel: str
) -> None:
    with use_algorithm("fast"):
        assert adaptive_pooling.plan_adaptive_max(in_size, out_size, 4).kernel == kernel
        assert adaptive_pooling.plan_adaptive_max_backward() == "disjoint_groups"
        assert adaptive_pooling.plan_adaptive_avg() == "matrices"
    with use_algorithm("reference"):
        assert adaptive_pooling.plan_adaptive_max(in_size, out_size, 4).kernel == "reference"
        assert adaptive_pooling.plan_adaptive_max_backward() == "reference"
        assert adaptive_pooling.plan_adaptive_avg() == "reference"


# ----------------------------------------------------------------------------- the reference
def _every_pooling_op(x: np.ndarray, x1: np.ndarray) -> tuple[list[np.ndarray], set[str]]:
    """Every pooling op forward and backward through the functional API: the outputs and
    gradients, and the parts of ``kernels_used`` names they are expected to count."""
    inputs, inputs1 = cp.tensor(x, requires_grad=True), cp.tensor(x1, requires_grad=True)
    pooled, indices = F.max_pool2d(inputs, 3, 2, 1, return_indices=True)
    adaptive, adaptive_indices = F.adaptive_max_pool2d(inputs, (3, 2), return_indices=True)
    outputs = [
        pooled,
        F.max_pool2d(inputs, 2),
        F.max_pool2d(inputs, 3),  # disjoint windows, two samples left over
        F.max_pool1d(inputs1, 2, 1, dilation=2),
        F.avg_pool2d(inputs, 3, 2, 1, ceil_mode=True),
        F.avg_pool2d(inputs, 2),
        F.avg_pool1d(inputs1, 3, 1, 1, count_include_pad=False),
        F.adaptive_avg_pool2d(inputs, (3, 2)),
        F.adaptive_avg_pool1d(inputs1, 4),
        adaptive,
        F.adaptive_max_pool2d(inputs, 4),  # 2x2 tiles
        F.adaptive_max_pool1d(inputs1, 1),  # global pooling: 70-sample tiles
        F.max_unpool2d(pooled, indices, 3, 2, 1, output_size=x.shape[-2:]),
    ]
    sum(((out * out).sum() for out in outputs), cp.tensor(0.0)).backward()
    assert inputs.grad is not None and inputs1.grad is not None
    arrays = [out.numpy() for out in outputs] + [inputs.grad.numpy(), inputs1.grad.numpy()]
    arrays += [indices.numpy(), adaptive_indices.numpy()]
    parts = {
        f"{op}.{direction}"
        for op in ("max_pool", "avg_pool", "adaptive_avg_pool", "adaptive_max_pool", "max_unpool")
        for direction in ("forward", "backward")
    }
    return arrays, parts


def test_the_reference_path_is_really_taken() -> None:
    """With ``use_algorithm("reference")`` every pooling op runs the notes' implementation:
    only reference kernels are counted, one for every op and direction, and the results
    equal the fast path's."""
    rng = np.random.default_rng(0)
    x = rng.integers(-3, 4, size=(2, 3, 8, 8)).astype(np.float64)  # ties in many windows
    x1 = rng.standard_normal((2, 3, 70))
    with use_algorithm("reference"), kernels_used() as used:
        reference, parts = _every_pooling_op(x, x1)
    assert all(name.endswith(".reference") for name in used), used
    assert {name.removeprefix("pool.").removesuffix(".reference") for name in used} == parts
    with use_algorithm("fast"), kernels_used() as used:
        fast, _ = _every_pooling_op(x, x1)
    # Max unpooling is one scatter (its backward one gather): its reference is its only kernel.
    assert not any(
        name.endswith(".reference") for name in used if not name.startswith("pool.max_unpool")
    ), used
    assert {name.split(".")[-1] for name in used} >= {
        "taps",
        "taps_add",
        "taps_assign",
        "taps_tile",
        "matrices",
        "separable",
        "max_pool",
        "tile_rows",
        "disjoint_groups",
    }
    for a, b in zip(reference, fast, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
