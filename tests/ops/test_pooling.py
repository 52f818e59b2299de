"""Max pooling (max_pool1d/2d) against PyTorch, finite differences and the notes' identities.

The notes (deck 004): pidx = maxidx(window), Y = Y_prev[pidx]; backward
dY_prev[pidx] += dY ("+=" because an entry may be selected by overlapping windows).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import assume, given
from hypothesis import strategies as st

import convprop as cp
import convprop.nn.functional as F
from convprop.autograd import gradcheck
from convprop.ops.algorithm import kernels_used, use_algorithm
from tests.reference import assert_close, grad_of, pair


# --------------------------------------------------------------------------- configurations
@st.composite
def pool_config(draw: st.DrawFn, spatial: int) -> dict:
    """Kernel, stride (None, smaller or larger than the kernel), padding <= k // 2, dilation,
    ceil_mode, and an input just big enough (or bigger) for at least one window."""
    kernel = tuple(draw(st.integers(1, 4)) for _ in range(spatial))
    dilation = tuple(draw(st.integers(1, 3)) for _ in range(spatial))
    padding = tuple(draw(st.integers(0, k // 2)) for k in kernel)
    stride = draw(st.none() | st.tuples(*(st.integers(1, 5) for _ in range(spatial))))
    size = tuple(
        draw(st.integers(max(1, d * (k - 1) + 1 - 2 * p), 12))
        for k, d, p in zip(kernel, dilation, padding, strict=True)
    )
    # A window that dilation makes jump over the whole input holds only padding: PyTorch then
    # returns an out-of-range index and writes its gradient out of bounds (tested separately).
    assume(not _window_only_in_padding(size, kernel, stride or kernel, padding, dilation))
    batch = draw(st.sampled_from([None, 1, 2, 3]))  # None: unbatched
    channels = draw(st.integers(1, 4))
    shape = ((channels,) if batch is None else (batch, channels)) + size
    return dict(
        shape=shape,
        kernel_size=kernel,
        stride=stride,
        padding=padding,
        dilation=dilation,
        ceil_mode=draw(st.booleans()),
    )


def _window_only_in_padding(size, kernel, stride, padding, dilation) -> bool:
    """Whether some window (in floor or ceil mode) has no tap inside the input."""
    for length, k, s, p, d in zip(size, kernel, stride, padding, dilation, strict=True):
        count = -(-(length + 2 * p - d * (k - 1) - 1) // s) + 1
        for o in range(count):
            if not any(0 <= o * s - p + tap * d < length for tap in range(k)):
                return True
    return False


def _random_input(draw: st.DrawFn, shape: tuple[int, ...], kind: str) -> np.ndarray:
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if kind == "ties":
        # Few distinct values: many windows hold several equal maxima.
        return rng.integers(-2, 3, size=shape).astype(np.float64)
    values = rng.standard_normal(shape)
    if kind == "special":
        values[rng.random(shape) < 0.15] = np.nan
        values[rng.random(shape) < 0.15] = -np.inf
        values[rng.random(shape) < 0.05] = np.inf
    return values


def _compare_max_pool(spatial: int, config: dict, x: np.ndarray, seed: int) -> None:
    ours_fn, torch_fn = (
        (F.max_pool1d, TF.max_pool1d) if spatial == 1 else (F.max_pool2d, TF.max_pool2d)
    )
    args = dict(
        kernel_size=config["kernel_size"],
        stride=config["stride"],
        padding=config["padding"],
        dilation=config["dilation"],
        ceil_mode=config["ceil_mode"],
        return_indices=True,
    )
    ours_in, torch_in = pair(x)
    ours_out, ours_idx = ours_fn(ours_in, **args)
    torch_out, torch_idx = torch_fn(torch_in, **args)
    # A max is a copy of an input sample: equal exactly (NaN to NaN, inf to inf).
    np.testing.assert_array_equal(ours_out.numpy(), torch_out.detach().numpy(), err_msg="forward")
    assert ours_out.dtype == np.float64
    assert ours_idx.dtype == np.int64
    np.testing.assert_array_equal(ours_idx.numpy(), torch_idx.numpy(), err_msg="indices")
    upstream = np.random.default_rng(seed).standard_normal(torch_out.shape)
    ours_out.backward(cp.tensor(upstream))
    torch_out.backward(torch.tensor(upstream))
    assert_close(grad_of(ours_in), grad_of(torch_in), what="input gradient")


# --------------------------------------------------------------------------- against PyTorch
@pytest.mark.parametrize("spatial", [1, 2])
@given(data=st.data())
def test_max_pool_matches_torch(spatial: int, data: st.DataObject) -> None:
    config = data.draw(pool_config(spatial))
    x = _random_input(data.draw, config["shape"], "normal")
    _compare_max_pool(spatial, config, x, data.draw(st.integers(0, 1000)))


@pytest.mark.parametrize("spatial", [1, 2])
@given(data=st.data())
def test_max_pool_ties_go_to_the_first_maximum_as_torch(spatial: int, data: st.DataObject) -> None:
    config = data.draw(pool_config(spatial))
    x = _random_input(data.draw, config["shape"], "ties")
    _compare_max_pool(spatial, config, x, data.draw(st.integers(0, 1000)))


@pytest.mark.parametrize("spatial", [1, 2])
@given(data=st.data())
def test_max_pool_nan_and_infinities_as_torch(spatial: int, data: st.DataObject) -> None:
    """NaN propagates and takes the gradient (the last NaN of a window); a window of -inf picks
    its first sample inside the input."""
    config = data.draw(pool_config(spatial))
    x = _random_input(data.draw, config["shape"], "special")
    _compare_max_pool(spatial, config, x, data.draw(st.integers(0, 1000)))


def test_max_pool_ceil_mode_window_starting_in_the_padding() -> None:
    rng = np.random.default_rng(0)
    # L=5, k=2, s=2, p=1: ceil mode would add a 4th window starting at 5 = L, inside the right
    # padding; PyTorch drops it.
    config = dict(
        shape=(2, 3, 5, 5), kernel_size=2, stride=2, padding=1, dilation=1, ceil_mode=True
    )
    _compare_max_pool(2, config, rng.standard_normal(config["shape"]), 1)
    assert F.max_pool2d(cp.tensor(np.zeros((1, 1, 5, 5))), 2, 2, 1, ceil_mode=True).shape == (
        1,
        1,
        3,
        3,
    )
    # L=6, k=3, s=3, p=1: the 3rd ceil-mode window starts at 5 and ends in the padding: kept.
    config = dict(shape=(1, 2, 6), kernel_size=3, stride=3, padding=1, dilation=1, ceil_mode=True)
    _compare_max_pool(1, config, rng.standard_normal(config["shape"]), 2)
    assert F.max_pool1d(cp.tensor(np.zeros((1, 1, 6))), 3, 3, 1, ceil_mode=True).shape == (1, 1, 3)
    # L=4, k=2, s=3, p=1: the ceil-mode window (start 2) reads past the right padding.
    config = dict(shape=(1, 1, 4), kernel_size=2, stride=3, padding=1, dilation=1, ceil_mode=True)
    _compare_max_pool(1, config, rng.standard_normal(config["shape"]), 3)


def test_max_pool_all_minus_inf_window_picks_first_valid_sample() -> None:
    x = np.full((1, 2, 5, 5), -np.inf)
    config = dict(shape=x.shape, kernel_size=3, stride=2, padding=1, dilation=1, ceil_mode=True)
    _compare_max_pool(2, config, x, 0)


def test_max_pool_window_entirely_in_the_padding() -> None:
    """L=1, k=2, dilation 2, padding 1: the taps at -1 and 1 both miss the input. The output is
    -inf and the index PyTorch's (1, beyond the input); its gradient goes nowhere (PyTorch would
    write it out of bounds, into the next channel)."""
    x = np.array([[[5.0], [3.0]]])
    ours_in, torch_in = pair(x)
    ours_out, ours_idx = F.max_pool1d(ours_in, 2, padding=1, dilation=2, return_indices=True)
    torch_out, torch_idx = TF.max_pool1d(torch_in, 2, padding=1, dilation=2, return_indices=True)
    np.testing.assert_array_equal(ours_out.numpy(), torch_out.detach().numpy())
    np.testing.assert_array_equal(ours_out.numpy(), -np.inf)
    np.testing.assert_array_equal(ours_idx.numpy(), torch_idx.numpy())
    ours_out.backward(cp.tensor(np.ones((1, 2, 1))))
    np.testing.assert_array_equal(ours_in.grad.numpy(), 0.0)


def test_max_pool_empty_batch() -> None:
    ours = F.max_pool2d(cp.tensor(np.zeros((0, 2, 4, 4)), requires_grad=True), 2)
    assert ours.shape == (0, 2, 2, 2)


# --------------------------------------------------------------------------- finite differences
@pytest.mark.parametrize(
    "args",
    [
        dict(kernel_size=2),
        dict(kernel_size=3, stride=1, padding=1),
        dict(kernel_size=(2, 3), stride=(1, 2), dilation=(2, 1), ceil_mode=True),
        dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
    ],
)
def test_max_pool2d_gradcheck(args: dict) -> None:
    x = cp.tensor(np.random.default_rng(3).standard_normal((2, 2, 5, 6)), requires_grad=True)
    assert gradcheck(lambda t: F.max_pool2d(t, **args), [x])


def test_max_pool1d_gradcheck() -> None:
    x = cp.tensor(np.random.default_rng(4).standard_normal((2, 3, 9)), requires_grad=True)
    assert gradcheck(lambda t: F.max_pool1d(t, 3, stride=2, padding=1, dilation=2), [x])


# --------------------------------------------------------------------------- the notes' identities
def test_max_pool_gradient_routed_to_argmax_with_accumulation() -> None:
    """dY_prev[pidx(m, n)] += dY[m, n]: with overlapping 3x3 windows of stride 1, an input that is
    the maximum of several windows receives the sum of their gradients; all else gets 0."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((1, 1, 6, 7))
    x[0, 0, 2, 3] = 10.0  # the maximum of every window that contains it (9 windows)
    upstream = rng.standard_normal((1, 1, 4, 5))
    ours = cp.tensor(x, requires_grad=True)
    (F.max_pool2d(ours, 3, stride=1) * cp.tensor(upstream)).sum().backward()

    expected = np.zeros_like(x)
    windows_holding_peak = 0.0
    for m in range(4):
        for n in range(5):
            window = x[0, 0, m : m + 3, n : n + 3]
            i, j = np.unravel_index(np.argmax(window), window.shape)  # first maximum
            expected[0, 0, m + i, n + j] += upstream[0, 0, m, n]
            if m <= 2 <= m + 2 and n <= 3 <= n + 2:
                windows_holding_peak += upstream[0, 0, m, n]
    np.testing.assert_allclose(ours.grad.numpy(), expected, rtol=0, atol=1e-14)
    np.testing.assert_allclose(ours.grad.numpy()[0, 0, 2, 3], windows_holding_peak, atol=1e-14)
    assert np.count_nonzero(ours.grad.numpy()) <= 4 * 5


# --------------------------------------------------------------------------- dtypes and errors
def test_max_pool_keeps_float32() -> None:
    x = cp.tensor(
        np.random.default_rng(0).standard_normal((2, 3, 6, 6)).astype(np.float32),
        requires_grad=True,
    )
    y, idx = F.max_pool2d(x, 3, stride=2, padding=1, return_indices=True)
    y.sum().backward()
    assert y.dtype == np.float32 and x.grad.dtype == np.float32 and idx.dtype == np.int64
    y1 = F.max_pool1d(cp.tensor(np.ones((2, 5), np.float32)), 2)
    assert y1.dtype == np.float32 and y1.shape == (2, 2)


def test_max_pool_without_return_indices_returns_a_tensor() -> None:
    y = F.max_pool2d(cp.tensor(np.arange(16.0).reshape(1, 1, 4, 4)), 2)
    assert isinstance(y, cp.Tensor)
    np.testing.assert_array_equal(y.numpy(), [[[[5.0, 7.0], [13.0, 15.0]]]])


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (
            lambda x: F.max_pool2d(x, 3, padding=2),
            ValueError,
            r"max_pool2d: padding should be at most half of kernel_size.*padding=\(2, 2\)",
        ),
        (
            lambda x: F.max_pool2d(x, 3, padding=2, dilation=2),
            ValueError,
            "padding should be at most half",
        ),
        (
            lambda x: F.max_pool1d(x[0], 2, padding=2),
            ValueError,
            "max_pool1d: padding should be at most half",
        ),
        (lambda x: F.max_pool2d(x, 0), ValueError, r"max_pool2d: kernel_size must be positive"),
        (lambda x: F.max_pool2d(x, 2, stride=0), ValueError, "stride must be positive, got"),
        (
            lambda x: F.max_pool2d(x, 2, stride=(1, -1)),
            ValueError,
            r"stride must be positive, got \(1, -1\)",
        ),
        (lambda x: F.max_pool2d(x, 2, dilation=0), ValueError, "dilation must be positive"),
        (lambda x: F.max_pool2d(x, 2, padding=-1), ValueError, "padding must be non-negative"),
        (lambda x: F.max_pool2d(x, 6), ValueError, "max_pool2d: output size is too small"),
        (
            lambda x: F.max_pool2d(x, (2, 3, 4)),
            TypeError,
            "kernel_size must be an int or a sequence of 2 ints",
        ),
        (
            lambda x: F.max_pool2d(x[0, 0], 2),
            ValueError,
            r"max_pool2d: input must be 3-D or 4-D .*got 2-D",
        ),
        (lambda x: F.max_pool1d(x, 2), ValueError, r"max_pool1d: input must be 2-D or 3-D"),
        (
            lambda x: F.max_pool2d(cp.tensor(np.zeros((1, 1, 4, 4), dtype=np.int64)), 2),
            TypeError,
            "max_pool2d: input must have a floating-point dtype.*int64",
        ),
        (
            lambda x: F.max_pool2d(cp.tensor(np.zeros((1, 0, 4, 4))), 2),
            ValueError,
            "non-zero channel and spatial sizes",
        ),
    ],
)
def test_max_pool_errors(call, error, match) -> None:
    x = cp.tensor(np.zeros((1, 2, 5, 5)))
    with pytest.raises(error, match=match):
        call(x)


def test_torch_agrees_these_arguments_are_invalid() -> None:
    """The padding rule really is PyTorch's: pad <= kernel // 2 even with dilation."""
    with pytest.raises(RuntimeError):
        TF.max_pool2d(torch.zeros(1, 1, 9, 9), 3, padding=2, dilation=2)
    with pytest.raises(RuntimeError):
        TF.max_pool1d(torch.zeros(1, 1, 9), 3, padding=2, dilation=2)
    theirs = TF.max_pool2d(torch.zeros(1, 1, 9, 9), 3, stride=1, padding=1, dilation=3)
    ours = F.max_pool2d(cp.tensor(np.zeros((1, 1, 9, 9))), 3, stride=1, padding=1, dilation=3)
    assert ours.shape == tuple(theirs.shape) == (1, 1, 5, 5)


@pytest.mark.parametrize("pool", ["max", "avg"])
def test_backward_of_windows_that_tile_the_input_writes_every_entry(monkeypatch, pool) -> None:
    """Windows side by side over the whole input: the fast backward ("taps_tile") allocates
    its gradient without zero-filling it, so every entry must be written. With np.empty
    poisoned to NaN, the gradient still equals PyTorch's."""
    real_empty = np.empty

    def nan_empty(*args, **kwargs):
        array = real_empty(*args, **kwargs)
        if array.dtype.kind == "f":
            array.fill(np.nan)
        return array

    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 3, 6, 4))
    grad = rng.standard_normal((2, 3, 3, 2))
    ours_x, torch_x = pair(x)
    monkeypatch.setattr(np, "empty", nan_empty)
    with use_algorithm("fast"), kernels_used() as used:
        ours = (F.max_pool2d if pool == "max" else F.avg_pool2d)(ours_x, 2)
        ours.backward(cp.tensor(grad))
    monkeypatch.undo()
    assert used[f"pool.{pool}_pool.backward.taps_tile"] == 1, used
    theirs = (TF.max_pool2d if pool == "max" else TF.avg_pool2d)(torch_x, 2)
    theirs.backward(torch.tensor(grad))
    assert_close(grad_of(ours_x), grad_of(torch_x), what="input gradient")
