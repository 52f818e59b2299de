"""Mean pooling (avg_pool1d/2d, adaptive_avg_pool1d/2d) against PyTorch, finite differences and
the notes' identity: dY_prev[x+i, y+j] += dY[m, n] / K^2 ("+=" because windows may overlap)."""

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
from tests.reference import assert_close, grad_of, pair


@st.composite
def avg_config(draw: st.DrawFn, spatial: int) -> dict:
    kernel = tuple(draw(st.integers(1, 4)) for _ in range(spatial))
    padding = tuple(draw(st.integers(0, k // 2)) for k in kernel)
    stride = draw(st.none() | st.tuples(*(st.integers(1, 5) for _ in range(spatial))))
    size = tuple(
        draw(st.integers(max(1, k - 2 * p), 12)) for k, p in zip(kernel, padding, strict=True)
    )
    batch = draw(st.sampled_from([None, 1, 2, 3]))  # None: unbatched
    channels = draw(st.integers(1, 4))
    config = dict(
        shape=((channels,) if batch is None else (batch, channels)) + size,
        kernel_size=kernel,
        stride=stride,
        padding=padding,
        ceil_mode=draw(st.booleans()),
        count_include_pad=draw(st.booleans()),
    )
    if spatial == 2:
        config["divisor_override"] = draw(st.none() | st.sampled_from([1, 3, -2, 7]))
    return config


def _compare(ours_fn, torch_fn, x: np.ndarray, seed: int, **args) -> None:
    ours_in, torch_in = pair(x)
    ours_out = ours_fn(ours_in, **args)
    torch_out = torch_fn(torch_in, **args)
    assert_close(ours_out, torch_out, what="forward")
    upstream = np.random.default_rng(seed).standard_normal(torch_out.shape)
    ours_out.backward(cp.tensor(upstream))
    torch_out.backward(torch.tensor(upstream))
    assert_close(grad_of(ours_in), grad_of(torch_in), what="input gradient")


@pytest.mark.parametrize("spatial", [1, 2])
@given(data=st.data())
def test_avg_pool_matches_torch(spatial: int, data: st.DataObject) -> None:
    config = data.draw(avg_config(spatial))
    x = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1))).standard_normal(
        config.pop("shape")
    )
    ours_fn, torch_fn = (
        (F.avg_pool1d, TF.avg_pool1d) if spatial == 1 else (F.avg_pool2d, TF.avg_pool2d)
    )
    _compare(ours_fn, torch_fn, x, data.draw(st.integers(0, 1000)), **config)


@pytest.mark.parametrize(
    ("length", "kernel", "stride", "padding", "expected_size"),
    [
        (5, 2, 2, 1, 3),  # the ceil-mode window at 5 = L would start in the padding: dropped
        (6, 3, 3, 1, 3),  # the ceil-mode window [5, 8) overhangs the padding by one
        (7, 3, 2, 1, 4),
        (4, 2, 3, 1, 2),
    ],
)
@pytest.mark.parametrize("count_include_pad", [True, False])
def test_avg_pool_ceil_mode_divisors(
    length, kernel, stride, padding, expected_size, count_include_pad
) -> None:
    """count_include_pad counts the zero padding but never the ceil-mode overhang beyond it."""
    x = np.arange(1.0, length + 1).reshape(1, 1, length)
    args = dict(
        kernel_size=kernel,
        stride=stride,
        padding=padding,
        ceil_mode=True,
        count_include_pad=count_include_pad,
    )
    _compare(F.avg_pool1d, TF.avg_pool1d, x, 0, **args)
    assert F.avg_pool1d(cp.tensor(x), **args).shape == (1, 1, expected_size)
    # The same windows on a 2-D plane, each axis with its own rule.
    x2 = np.random.default_rng(1).standard_normal((2, 3, length, length + 1))
    _compare(F.avg_pool2d, TF.avg_pool2d, x2, 1, **args)


def test_avg_pool_divisor_by_hand() -> None:
    # L=6, k=3, s=3, p=1, ceil: windows [-1, 2), [2, 5), [5, 8) -> padded extent ends at 7.
    x = cp.tensor(np.array([[[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]]]))
    with_pad = F.avg_pool1d(x, 3, 3, 1, ceil_mode=True, count_include_pad=True).numpy()
    without = F.avg_pool1d(x, 3, 3, 1, ceil_mode=True, count_include_pad=False).numpy()
    np.testing.assert_allclose(with_pad, [[[3 / 3, 12 / 3, 6 / 2]]])
    np.testing.assert_allclose(without, [[[3 / 2, 12 / 3, 6 / 1]]])


def test_mean_pool_gradient_spread_evenly() -> None:
    """Each input receives the sum, over the windows that contain it, of grad / K^2."""
    rng = np.random.default_rng(5)
    kernel, stride = 3, 1
    x = rng.standard_normal((2, 2, 6, 7))
    upstream = rng.standard_normal((2, 2, 4, 5))
    ours = cp.tensor(x, requires_grad=True)
    F.avg_pool2d(ours, kernel, stride=stride).backward(cp.tensor(upstream))

    expected = np.zeros_like(x)
    for m in range(4):
        for n in range(5):
            for i in range(kernel):
                for j in range(kernel):
                    expected[:, :, m * stride + i, n * stride + j] += (
                        upstream[:, :, m, n] / kernel**2
                    )
    np.testing.assert_allclose(ours.grad.numpy(), expected, rtol=0, atol=1e-14)
    # The centre sample lies in all 9 overlapping windows around it.
    centre = sum(upstream[0, 0, m, n] for m in range(1, 4) for n in range(1, 4)) / 9
    np.testing.assert_allclose(ours.grad.numpy()[0, 0, 3, 3], centre, atol=1e-14)


@pytest.mark.parametrize(
    "args",
    [
        dict(kernel_size=2),
        dict(kernel_size=3, stride=1, padding=1),
        dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
        dict(kernel_size=(2, 3), stride=(3, 1), divisor_override=5),
    ],
)
def test_avg_pool2d_gradcheck(args: dict) -> None:
    x = cp.tensor(np.random.default_rng(3).standard_normal((2, 2, 5, 6)), requires_grad=True)
    assert gradcheck(lambda t: F.avg_pool2d(t, **args), [x])


def test_avg_pool1d_gradcheck() -> None:
    x = cp.tensor(np.random.default_rng(4).standard_normal((2, 3, 8)), requires_grad=True)
    assert gradcheck(lambda t: F.avg_pool1d(t, 3, stride=2, padding=1, ceil_mode=True), [x])


def test_avg_pool_keeps_float32() -> None:
    x = cp.tensor(
        np.random.default_rng(0).standard_normal((2, 3, 7, 6)).astype(np.float32),
        requires_grad=True,
    )
    y = F.avg_pool2d(x, 3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)
    y.sum().backward()
    assert y.dtype == np.float32 and x.grad.dtype == np.float32
    assert F.avg_pool1d(cp.tensor(np.ones((3, 5), np.float32)), 2).dtype == np.float32
    y = F.adaptive_avg_pool2d(x, (3, 4))
    y.sum().backward()
    assert y.dtype == np.float32 and x.grad.dtype == np.float32


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (
            lambda x: F.avg_pool2d(x, 3, padding=2),
            ValueError,
            r"avg_pool2d: padding should be at most half of kernel_size",
        ),
        (
            lambda x: F.avg_pool1d(x[0], 3, padding=2),
            ValueError,
            "avg_pool1d: padding should be at most half",
        ),
        (
            lambda x: F.avg_pool2d(x, 3, divisor_override=0),
            ValueError,
            "avg_pool2d: divisor_override must not be zero",
        ),
        (
            lambda x: F.avg_pool2d(x, 3, divisor_override=1.5),
            TypeError,
            "divisor_override must be an int or None, got 1.5",
        ),
        (lambda x: F.avg_pool2d(x, 0), ValueError, "kernel_size must be positive"),
        (lambda x: F.avg_pool2d(x, 2, stride=-1), ValueError, "stride must be positive"),
        (lambda x: F.avg_pool1d(x[0], 2, padding=-1), ValueError, "padding must be non-negative"),
        (lambda x: F.avg_pool2d(x, 6), ValueError, "avg_pool2d: output size is too small"),
        (lambda x: F.avg_pool1d(x[0, 0, 0], 2), ValueError, "avg_pool1d: input must be 2-D or 3-D"),
        (
            lambda x: F.avg_pool2d(cp.tensor(np.zeros((1, 1, 4, 4), dtype=np.int32)), 2),
            TypeError,
            "avg_pool2d: input must have a floating-point dtype",
        ),
        (
            lambda x: F.adaptive_avg_pool2d(x, -1),
            ValueError,
            r"adaptive_avg_pool2d: output_size must be non-negative, got \(-1, -1\)",
        ),
        (
            lambda x: F.adaptive_avg_pool2d(x, (3,)),
            TypeError,
            "output_size must be an int or a sequence of 2 ints or None",
        ),
        (lambda x: F.adaptive_avg_pool2d(x, None), TypeError, "output_size must be an int"),
        (
            lambda x: F.adaptive_avg_pool1d(x[0], (None,)),
            TypeError,
            "adaptive_avg_pool1d: output_size must be an int or a sequence of 1 ints",
        ),
        (lambda x: F.adaptive_avg_pool1d(x[0], 2.0), TypeError, "output_size must be an int"),
        (
            lambda x: F.adaptive_avg_pool2d(cp.tensor(np.zeros((1, 1, 0, 4))), 2),
            ValueError,
            "non-zero channel and spatial sizes",
        ),
    ],
)
def test_avg_pool_errors(call, error, match) -> None:
    x = cp.tensor(np.zeros((1, 2, 5, 5)))
    with pytest.raises(error, match=match):
        call(x)


# --------------------------------------------------------------------------- adaptive
@st.composite
def adaptive_config(draw: st.DrawFn, spatial: int) -> tuple[tuple[int, ...], object]:
    size = tuple(draw(st.integers(1, 12)) for _ in range(spatial))
    # Divisible sizes (the reshape path), others (overlapping windows), and out > L.
    out = tuple(
        draw(
            st.sampled_from([length, 1])
            | st.integers(1, 14)
            | (st.none() if spatial == 2 else st.nothing())
        )
        for length in size
    )
    batch = draw(st.sampled_from([None, 1, 2, 3]))
    channels = draw(st.integers(1, 4))
    shape = ((channels,) if batch is None else (batch, channels)) + size
    output_size = out[0] if spatial == 1 and draw(st.booleans()) else out
    if spatial == 2 and len(set(out)) == 1 and out[0] is not None and draw(st.booleans()):
        output_size = out[0]
    return shape, output_size


@pytest.mark.parametrize("spatial", [1, 2])
@given(data=st.data())
def test_adaptive_avg_pool_matches_torch(spatial: int, data: st.DataObject) -> None:
    shape, output_size = data.draw(adaptive_config(spatial))
    x = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1))).standard_normal(shape)
    ours_fn, torch_fn = (
        (F.adaptive_avg_pool1d, TF.adaptive_avg_pool1d)
        if spatial == 1
        else (F.adaptive_avg_pool2d, TF.adaptive_avg_pool2d)
    )
    _compare(ours_fn, torch_fn, x, data.draw(st.integers(0, 1000)), output_size=output_size)


def test_adaptive_avg_pool_windows_by_hand() -> None:
    """L=5, out=3: windows [0, 2), [1, 4), [3, 5) (floor(i L / out), ceil((i + 1) L / out))."""
    x = cp.tensor(np.array([[[1.0, 2.0, 4.0, 8.0, 16.0]]]), requires_grad=True)
    y = F.adaptive_avg_pool1d(x, 3)
    np.testing.assert_allclose(y.numpy(), [[[1.5, 14 / 3, 12.0]]])
    y.backward(cp.tensor(np.array([[[1.0, 3.0, 2.0]]])))
    np.testing.assert_allclose(x.grad.numpy(), [[[0.5, 0.5 + 1.0, 1.0, 1.0 + 1.0, 1.0]]])


def test_adaptive_avg_pool_zero_output_and_gradcheck() -> None:
    x = cp.tensor(np.random.default_rng(2).standard_normal((2, 2, 5, 7)), requires_grad=True)
    assert F.adaptive_avg_pool2d(x, (0, 3)).shape == (2, 2, 0, 3)
    assert gradcheck(lambda t: F.adaptive_avg_pool2d(t, (3, 4)), [x])
    assert gradcheck(lambda t: F.adaptive_avg_pool2d(t, (None, 2)), [x])
    x1 = cp.tensor(np.random.default_rng(3).standard_normal((2, 7)), requires_grad=True)
    assert gradcheck(lambda t: F.adaptive_avg_pool1d(t, 3), [x1])
