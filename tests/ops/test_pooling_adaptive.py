"""Adaptive max pooling and max unpooling against PyTorch and finite differences."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given
from hypothesis import strategies as st

import convprop as cp
import convprop.nn.functional as F
from convprop.autograd import gradcheck
from tests.ops.test_pooling_avg import adaptive_config
from tests.reference import assert_close, grad_of, pair


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


@pytest.mark.parametrize("kind", ["normal", "ties", "special"])
@pytest.mark.parametrize("spatial", [1, 2])
@given(data=st.data())
def test_adaptive_max_pool_matches_torch(spatial: int, kind: str, data: st.DataObject) -> None:
    shape, output_size = data.draw(adaptive_config(spatial))
    x = _input(data.draw(st.integers(0, 2**32 - 1)), shape, kind)
    ours_fn, torch_fn = (
        (F.adaptive_max_pool1d, TF.adaptive_max_pool1d)
        if spatial == 1
        else (F.adaptive_max_pool2d, TF.adaptive_max_pool2d)
    )
    ours_in, torch_in = pair(x)
    ours_out, ours_idx = ours_fn(ours_in, output_size, return_indices=True)
    torch_out, torch_idx = torch_fn(torch_in, output_size, return_indices=True)
    np.testing.assert_array_equal(ours_out.numpy(), torch_out.detach().numpy(), err_msg="forward")
    assert ours_idx.dtype == np.int64
    np.testing.assert_array_equal(ours_idx.numpy(), torch_idx.numpy(), err_msg="indices")
    upstream = np.random.default_rng(data.draw(st.integers(0, 99))).standard_normal(torch_out.shape)
    ours_out.backward(cp.tensor(upstream))
    torch_out.backward(torch.tensor(upstream))
    assert_close(grad_of(ours_in), grad_of(torch_in), what="input gradient")


@pytest.mark.parametrize("kind", ["normal", "ties", "special"])
@pytest.mark.parametrize(
    ("shape", "output_size"),
    [
        ((2, 3, 12, 12), 1),  # global pooling: 144-sample windows
        ((2, 3, 18, 18), (2, 1)),  # 162-sample windows that tile the plane
        ((2, 3, 12, 12), 2),  # 36-sample tiles: the tap-by-tap path
        ((2, 3, 12, 12), (1, 12)),
        ((3, 130), 2),  # 1-D, 65-sample windows
        ((2, 2, 13, 9), (3, 1)),  # the separable path over long windows
    ],
)
def test_adaptive_max_pool_large_windows(shape, output_size, kind: str) -> None:
    x = _input(0, shape, kind)
    fns = (
        (F.adaptive_max_pool1d, TF.adaptive_max_pool1d)
        if len(shape) == 2
        else (F.adaptive_max_pool2d, TF.adaptive_max_pool2d)
    )
    ours_in, torch_in = pair(x)
    ours_out, ours_idx = fns[0](ours_in, output_size, return_indices=True)
    torch_out, torch_idx = fns[1](torch_in, output_size, return_indices=True)
    np.testing.assert_array_equal(ours_out.numpy(), torch_out.detach().numpy())
    np.testing.assert_array_equal(ours_idx.numpy(), torch_idx.numpy())
    upstream = np.random.default_rng(1).standard_normal(torch_out.shape)
    ours_out.backward(cp.tensor(upstream))
    torch_out.backward(torch.tensor(upstream))
    assert_close(grad_of(ours_in), grad_of(torch_in))


def test_adaptive_max_pool_overlapping_windows_accumulate() -> None:
    """L=5, out=3: windows [0, 2), [1, 4), [3, 5); the 9 at position 1 wins both of the first
    two, so it receives both gradients ("+=")."""
    x = cp.tensor(np.array([[[0.0, 9.0, 1.0, 2.0, 3.0]]]), requires_grad=True)
    y, idx = F.adaptive_max_pool1d(x, 3, return_indices=True)
    np.testing.assert_array_equal(y.numpy(), [[[9.0, 9.0, 3.0]]])
    np.testing.assert_array_equal(idx.numpy(), [[[1, 1, 4]]])
    y.backward(cp.tensor(np.array([[[2.0, 5.0, 7.0]]])))
    np.testing.assert_array_equal(x.grad.numpy(), [[[0.0, 7.0, 0.0, 0.0, 7.0]]])


def test_adaptive_max_pool_gradcheck_and_float32() -> None:
    x = cp.tensor(np.random.default_rng(1).standard_normal((2, 2, 5, 7)), requires_grad=True)
    assert gradcheck(lambda t: F.adaptive_max_pool2d(t, (3, 4)), [x])
    assert gradcheck(lambda t: F.adaptive_max_pool2d(t, (None, 7)), [x])
    x1 = cp.tensor(np.random.default_rng(2).standard_normal((3, 7)), requires_grad=True)
    assert gradcheck(lambda t: F.adaptive_max_pool1d(t, 4), [x1])
    x32 = cp.tensor(np.ones((2, 5, 5), np.float32), requires_grad=True)
    y, idx = F.adaptive_max_pool2d(x32, 3, return_indices=True)
    y.sum().backward()
    assert y.dtype == np.float32 and x32.grad.dtype == np.float32 and idx.dtype == np.int64
    assert F.adaptive_max_pool2d(x32, (0, 2)).shape == (2, 0, 2)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (
            lambda x: F.adaptive_max_pool2d(x, (2, -1)),
            ValueError,
            r"adaptive_max_pool2d: output_size must be non-negative, got \(2, -1\)",
        ),
        (
            lambda x: F.adaptive_max_pool2d(x, [3]),
            TypeError,
            "adaptive_max_pool2d: output_size must be an int or a sequence of 2",
        ),
        (
            lambda x: F.adaptive_max_pool1d(x[0], None),
            TypeError,
            "adaptive_max_pool1d: output_size must be an int",
        ),
        (
            lambda x: F.adaptive_max_pool1d(x, 2),
            ValueError,
            "adaptive_max_pool1d: input must be 2-D or 3-D",
        ),
        (
            lambda x: F.adaptive_max_pool2d(cp.tensor(np.zeros((2, 2), dtype=bool)), 1),
            ValueError,
            "adaptive_max_pool2d: input must be 3-D or 4-D",
        ),
        (
            lambda x: F.adaptive_max_pool2d(cp.tensor(np.zeros((2, 2, 2), dtype=bool)), 1),
            TypeError,
            "adaptive_max_pool2d: input must have a floating-point dtype.*bool",
        ),
    ],
)
def test_adaptive_max_pool_errors(call, error, match) -> None:
    x = cp.tensor(np.zeros((1, 2, 5, 5)))
    with pytest.raises(error, match=match):
        call(x)


# --------------------------------------------------------------------------- max unpooling
@st.composite
def unpool_config(draw: st.DrawFn, spatial: int) -> dict:
    kernel = tuple(draw(st.integers(1, 4)) for _ in range(spatial))
    stride = tuple(draw(st.integers(1, 4)) for _ in range(spatial))
    padding = tuple(draw(st.integers(0, k // 2)) for k in kernel)
    size = tuple(
        draw(st.integers(max(1, k - 2 * p), 10)) for k, p in zip(kernel, padding, strict=True)
    )
    batch = draw(st.sampled_from([None, 1, 2]))
    channels = draw(st.integers(1, 3))
    shape = ((channels,) if batch is None else (batch, channels)) + size
    return dict(
        shape=shape,
        kernel_size=kernel,
        stride=stride,
        padding=padding,
        give_size=draw(st.booleans()),
    )


@pytest.mark.parametrize("spatial", [1, 2])
@given(data=st.data())
def test_max_unpool_inverts_max_pool_as_torch(spatial: int, data: st.DataObject) -> None:
    config = data.draw(unpool_config(spatial))
    pool, unpool = (
        (TF.max_pool1d, TF.max_unpool1d) if spatial == 1 else (TF.max_pool2d, TF.max_unpool2d)
    )
    ours_unpool = F.max_unpool1d if spatial == 1 else F.max_unpool2d
    x = torch.tensor(
        np.random.default_rng(data.draw(st.integers(0, 2**32 - 1))).standard_normal(config["shape"])
    )
    pooled, indices = pool(
        x, config["kernel_size"], config["stride"], config["padding"], return_indices=True
    )
    args = dict(
        kernel_size=config["kernel_size"], stride=config["stride"], padding=config["padding"]
    )
    if config["give_size"]:
        # Any size strictly within one stride of the default, e.g. the pooled input's own.
        args["output_size"] = tuple(x.shape[-spatial:])
    ours_in, torch_in = pair(pooled.numpy())
    try:
        torch_out = unpool(torch_in, indices, **args)
    except RuntimeError:
        # With stride > kernel the default output can be smaller than the pooled input, so an
        # index may fall outside it: both libraries refuse.
        with pytest.raises(ValueError, match="invalid max index"):
            ours_unpool(ours_in, cp.tensor(indices.numpy()), **args)
        return
    ours_out = ours_unpool(ours_in, cp.tensor(indices.numpy()), **args)
    assert_close(ours_out, torch_out, what="forward")
    upstream = np.random.default_rng(data.draw(st.integers(0, 99))).standard_normal(torch_out.shape)
    ours_out.backward(cp.tensor(upstream))
    if torch_out.numel() == 0:
        # PyTorch's backward of an empty unpooled output fails; nothing depends on the input.
        np.testing.assert_array_equal(ours_in.grad.numpy(), 0.0)
        return
    torch_out.backward(torch.tensor(upstream))
    assert_close(grad_of(ours_in), grad_of(torch_in), what="input gradient")


def test_max_unpool_round_trip_and_gradcheck() -> None:
    x = cp.tensor(np.random.default_rng(3).standard_normal((2, 3, 6, 6)), requires_grad=True)
    pooled, indices = F.max_pool2d(x, 2, return_indices=True)
    restored = F.max_unpool2d(pooled, indices, 2)
    # Every window's maximum is back where it came from; the other samples are 0.
    kept = restored.numpy() != 0
    np.testing.assert_array_equal(restored.numpy()[kept], x.numpy()[kept])
    assert kept.sum() == pooled.numpy().size
    values = cp.tensor(pooled.numpy(), requires_grad=True)
    assert gradcheck(lambda t: F.max_unpool2d(t, indices, 2, output_size=(1, 1, 7, 7)), [values])
    values1 = cp.tensor(np.random.default_rng(4).standard_normal((2, 4)), requires_grad=True)
    indices1 = cp.tensor(np.array([[0, 3, 4, 7], [1, 2, 5, 6]]))
    y = F.max_unpool1d(values1, indices1, 2)
    assert y.shape == (2, 8) and y.dtype == np.float64
    assert gradcheck(lambda t: F.max_unpool1d(t, indices1, 2), [values1])


def test_max_unpool_keeps_float32() -> None:
    values = cp.tensor(np.ones((1, 1, 2, 2), np.float32), requires_grad=True)
    y = F.max_unpool2d(values, cp.tensor(np.array([[[[0, 3], [8, 15]]]])), 2)
    y.sum().backward()
    assert y.dtype == np.float32 and values.grad.dtype == np.float32


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (
            lambda v, i: F.max_unpool2d(v, cp.tensor(np.array([[[[0, 1], [2, 30]]]])), 2),
            ValueError,
            r"max_unpool2d: found an invalid max index 30 \(the output planes have size "
            r"4x4\)",
        ),
        (
            lambda v, i: F.max_unpool2d(v, cp.tensor(np.array([[[[0, 1], [2, -1]]]])), 2),
            ValueError,
            "found an invalid max index -1",
        ),
        (
            lambda v, i: F.max_unpool2d(v, i, 2, output_size=(7, 7)),
            ValueError,
            r"max_unpool2d: invalid output_size \(7, 7\) \(dimension 0 must be strictly between 2 "
            r"and 6\)",
        ),
        (
            lambda v, i: F.max_unpool2d(v, i, 2, output_size=(1, 5, 5)),
            ValueError,
            "output_size should contain 2 or 4 elements",
        ),
        (
            lambda v, i: F.max_unpool2d(v, cp.tensor(i.numpy().astype(np.float64)), 2),
            TypeError,
            "max_unpool2d: indices must be an integer",
        ),
        (
            lambda v, i: F.max_unpool2d(v, cp.tensor(i.numpy()[0]), 2),
            ValueError,
            r"indices must have the input's shape \(1, 1, 2, 2\), got \(1, 2, 2\)",
        ),
        (
            lambda v, i: F.max_unpool2d(cp.tensor(np.ones((2, 2))), i, 2),
            ValueError,
            "max_unpool2d: input must be 3-D or 4-D",
        ),
        (
            lambda v, i: F.max_unpool2d(cp.tensor(np.ones((1, 1, 2, 2), dtype=np.int64)), i, 2),
            TypeError,
            "max_unpool2d: input must have a floating-point dtype",
        ),
    ],
)
def test_max_unpool_errors(call, error, match) -> None:
    values = cp.tensor(np.ones((1, 1, 2, 2)))
    indices = cp.tensor(np.array([[[[0, 3], [8, 15]]]]))
    with pytest.raises(error, match=match):
        call(values, indices)
