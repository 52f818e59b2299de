"""``pad`` (constant/cropping, reflect, replicate, circular) against PyTorch, finite
differences, the notes' "remove the padding region" backward, and bad input."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as torch_F
from hypothesis import assume, given
from hypothesis import strategies as st

import convprop as cp
import convprop.nn.functional as F
from convprop.autograd import gradcheck
from convprop.ops import padding
from tests.reference import assert_close, grad_of, pair


def compare_with_torch(x: np.ndarray, pad: tuple[int, ...], **kwargs: Any) -> None:
    """Forward values and the input gradient of ``pad``, convprop vs torch (float64)."""
    ours_x, torch_x = pair(x)
    ours = F.pad(ours_x, pad, **kwargs)
    theirs = torch_F.pad(torch_x, pad, **kwargs)
    what = f"pad {pad} {kwargs} on {x.shape}"
    assert_close(ours.numpy(), theirs, what=f"{what} forward")
    seed = np.cos(1.0 + np.arange(ours.data.size, dtype=np.float64)).reshape(ours.shape)
    ours.backward(seed)
    theirs.backward(torch.tensor(seed))
    assert_close(grad_of(ours_x), grad_of(torch_x), what=f"{what} grad input")


def sample(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape)


def axis_pads(pad: tuple[int, ...], ndim: int) -> list[tuple[int, int, int]]:
    """(axis, before, after) from PyTorch's last-dimension-first order."""
    return [(ndim - 1 - k, pad[2 * k], pad[2 * k + 1]) for k in range(len(pad) // 2)]


# ----------------------------------------------------------------------------------------------
# Against torch.nn.functional.pad on random configurations.
# ----------------------------------------------------------------------------------------------


@st.composite
def constant_configs(draw: st.DrawFn) -> tuple[tuple[int, ...], tuple[int, ...], Any]:
    ndim = draw(st.integers(1, 4))
    shape = tuple(draw(st.integers(1, 5)) for _ in range(ndim))
    padded = draw(st.integers(1, ndim))
    pad = tuple(draw(st.integers(-3, 3)) for _ in range(2 * padded))
    for axis, before, after in axis_pads(pad, ndim):
        # Cropping may empty a dimension but not take more than it holds.
        assume(shape[axis] + min(before, 0) + min(after, 0) >= 0)
        assume(shape[axis] + before + after >= 0)
    value = draw(st.sampled_from([None, 0.0, 1.5, -2.0]))
    return shape, pad, value


@given(constant_configs(), st.integers(0, 2**16))
def test_constant_pad_matches_torch(config, seed) -> None:
    shape, pad, value = config
    compare_with_torch(sample(seed, shape), pad, mode="constant", value=value)


@st.composite
def border_configs(draw: st.DrawFn, mode: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    spatial = draw(st.integers(1, 3))
    batched = draw(st.booleans())
    shape = (
        ((draw(st.integers(1, 2)),) if batched else ())
        + (draw(st.integers(1, 3)),)
        + tuple(draw(st.integers(1, 5 if spatial < 3 else 3)) for _ in range(spatial))
    )
    ndim = len(shape)
    pad = tuple(draw(st.integers(-2, 4)) for _ in range(2 * spatial))
    for axis, before, after in axis_pads(pad, ndim):
        size = shape[axis]
        kept = size + min(before, 0) + min(after, 0)
        # Every padded dimension keeps a sample: PyTorch's backward of an empty reflect or
        # replicate output returns uninitialised memory.
        assume(size + before + after >= 1)
        if mode == "reflect":
            assume(before < size and after < size)
        if mode == "circular":
            assume(kept >= 0 and before <= kept and after <= kept)
    return shape, pad


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
@given(data=st.data())
def test_border_pad_matches_torch(mode, data) -> None:
    shape, pad = data.draw(border_configs(mode))
    seed = data.draw(st.integers(0, 2**16))
    compare_with_torch(sample(seed, shape), pad, mode=mode)


@pytest.mark.parametrize(
    "shape,pad,mode",
    [
        ((2, 3, 4), (3, 3), "reflect"),  # the largest reflect padding: size - 1
        ((2, 3, 4), (4, 4), "circular"),  # circular may wrap a whole period
        ((2, 3, 4), (5, -2), "replicate"),  # replicate has no limit
        ((2, 3, 4), (-1, 3), "reflect"),  # crop one side, reflect the other
        ((2, 3, 4), (2, -3), "reflect"),  # the border mirrors the uncropped input
        ((2, 3, 4), (-3, 6), "replicate"),
        ((2, 3, 4), (-1, 3), "circular"),  # wraps the cropped input
        ((1, 2, 3, 4), (1, 2, 2, 1), "reflect"),
        ((2, 3, 5), (1, 2, 0, 4), "replicate"),  # unbatched 2-D
        ((1, 1, 2, 3, 4), (1, 1, 1, 1, 1, 1), "circular"),
        ((2, 2, 3, 4), (1, 0, 2, 2, 1, 1), "replicate"),  # unbatched 3-D
        ((3, 4), (2, 1), "reflect"),  # unbatched 1-D
        ((1, 2, 3, 4), (0, 0, 0, 0), "reflect"),
        ((2, 3, 4), (-2, -2), "constant"),  # crops to an empty dimension
        ((2, 3, 4), (0, 0, 0, 0, 0, 0), "constant"),
        ((5,), (2, -1), "constant"),
        ((2, 1, 3, 2), (1, 1, 0, 0, -1, 2, 1, 0), "constant"),  # all four dimensions
    ],
)
def test_pad_edge_cases_match_torch(shape, pad, mode) -> None:
    compare_with_torch(sample(5, shape), pad, mode=mode)


# ----------------------------------------------------------------------------------------------
# The backward in the notes' terms.
# ----------------------------------------------------------------------------------------------


def test_constant_pad_backward_removes_the_padding_region() -> None:
    """The gradient of zero padding is the output gradient with the padded border deleted."""
    x = sample(0, (2, 3, 4, 5))
    out, saved = padding.pad_forward(x, (1, 2, 3, 0))
    grad_out = sample(1, out.shape)
    (grad,) = padding.pad_backward(grad_out, saved, (True,))
    np.testing.assert_array_equal(grad, grad_out[:, :, 3:7, 1:6])


def test_cropping_backward_puts_zeros_where_the_input_was_cut() -> None:
    x = sample(0, (1, 2, 5))
    out, saved = padding.pad_forward(x, (-2, 1))
    np.testing.assert_array_equal(out[..., :3], x[..., 2:])
    (grad,) = padding.pad_backward(np.ones(out.shape), saved, (True,))
    np.testing.assert_array_equal(grad, [[[0, 0, 1, 1, 1]] * 2])


@pytest.mark.parametrize(
    "mode,pad,expected",
    [
        # Every border copy adds its gradient onto the sample it copies ("+=").
        ("replicate", (2, 3), [3, 1, 1, 4]),  # x0 x0 | x0 x1 x2 x3 | x3 x3 x3
        ("reflect", (2, 3), [2, 3, 3, 1]),  # x2 x1 | x0 x1 x2 x3 | x2 x1 x0
        ("circular", (2, 3), [2, 2, 3, 2]),  # x2 x3 | x0 x1 x2 x3 | x0 x1 x2
        ("circular", (4, 1), [3, 2, 2, 2]),  # x0 x1 x2 x3 | x0 x1 x2 x3 | x0
        ("reflect", (2, -1), [1, 2, 2, 0]),  # x2 x1 | x0 x1 x2
    ],
)
def test_border_gradients_are_added_onto_the_copied_samples(mode, pad, expected) -> None:
    x = cp.tensor(np.arange(4.0).reshape(1, 1, 4), requires_grad=True)
    F.pad(x, pad, mode=mode).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy()[0, 0], expected)


@pytest.mark.parametrize(
    "shape,pad,mode",
    [
        ((1, 2, 4), (2, 1), "reflect"),
        ((2, 1, 3, 3), (1, 2, 2, 0), "replicate"),
        ((1, 1, 3, 4), (2, -1, 1, 3), "circular"),
        ((1, 2, 2, 2, 3), (1, 0, 1, 1, 0, 1), "reflect"),
        ((2, 3, 4), (1, -2, 0, 2), "constant"),
    ],
)
def test_pad_gradcheck(shape, pad, mode) -> None:
    x = cp.tensor(sample(2, shape), requires_grad=True)
    assert gradcheck(lambda t: F.pad(t, pad, mode=mode), [x])


# ----------------------------------------------------------------------------------------------
# Bad input, dtype.
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape,pad,kwargs,error,match",
    [
        ((1, 2, 4), (1, 2, 3), {}, ValueError, r"padding length must be divisible by 2.*3 values"),
        ((1, 2), (1,) * 6, {}, ValueError, "pads 3 dimensions but the input has only 2"),
        (
            (1, 2, 4),
            (4, 1),
            {"mode": "reflect"},
            ValueError,
            r"reflect padding must be smaller than the padded dimension, got padding \(4, 1\) "
            r"for dimension 2 \(size 4\)",
        ),
        (
            (1, 2, 4),
            (1, 5),
            {"mode": "circular"},
            ValueError,
            r"circular padding wraps around more than once: padding \(1, 5\)",
        ),
        (
            (1, 2, 4),
            (3, -2),
            {"mode": "circular"},
            ValueError,
            r"circular padding \(3, -2\) wraps the cropped dimension of size 2 more than once",
        ),
        (
            (1, 2, 4),
            (1, 1),
            {"mode": "wrap"},
            ValueError,
            "mode must be one of 'constant', 'reflect', 'replicate', 'circular', got 'wrap'",
        ),
        (
            (1, 2, 4),
            (1, 1),
            {"mode": "reflect", "value": 2.0},
            ValueError,
            "padding mode 'reflect' does not take a value argument",
        ),
        (
            (1, 2, 3, 4),
            (1, 1),
            {"mode": "reflect"},
            ValueError,
            r"a padding of length 2 needs a 2-D or 3-D input.* "
            r"got padding length 2 for a 4-D input",
        ),
        ((4,), (1, 1), {"mode": "replicate"}, ValueError, "for a 1-D input"),
        ((1, 2, 4), (1.0, 1), {}, TypeError, r"pad must be a tuple of ints, got \(1.0, 1\)"),
        ((1, 2, 4), 1, {}, TypeError, "pad must be a tuple of ints, got 1"),
        (
            (1, 2, 4),
            (-3, -2),
            {},
            ValueError,
            r"padding \(-3, -2\) crops more than dimension 2 \(size 4\)",
        ),
        (
            (1, 2, 4),
            (-3, -2),
            {"mode": "replicate"},
            ValueError,
            "leaves a negative output size -1",
        ),
        (
            (1, 2, 4),
            (-2, -2),
            {"mode": "reflect"},
            ValueError,
            "leaves no sample in any padded dimension",
        ),
        (
            (1, 0, 4),
            (1, 1),
            {"mode": "reflect"},
            ValueError,
            "needs non-empty dimensions .*got input shape \\(1, 0, 4\\)",
        ),
    ],
)
def test_pad_errors(shape, pad, kwargs, error, match) -> None:
    with pytest.raises(error, match=f"^pad: .*{match}"):
        F.pad(cp.tensor(np.zeros(shape)), pad, **kwargs)


def test_zero_value_is_accepted_by_border_modes_as_in_torch() -> None:
    x = sample(0, (1, 2, 4))
    np.testing.assert_array_equal(
        F.pad(cp.tensor(x), (1, 1), mode="circular", value=0).numpy(),
        torch_F.pad(torch.tensor(x), (1, 1), mode="circular", value=0).numpy(),
    )


@pytest.mark.parametrize("mode", ["constant", "reflect", "replicate", "circular"])
def test_pad_keeps_float32(mode) -> None:
    x = cp.tensor(np.ones((1, 2, 3, 4), dtype=np.float32), requires_grad=True)
    out = F.pad(x, (1, 2, 2, 1), mode=mode)
    assert out.dtype == np.float32
    out.sum().backward()
    assert x.grad.dtype == np.float32


def test_constant_pad_of_integers_keeps_the_dtype() -> None:
    x = np.arange(6, dtype=np.int64).reshape(2, 3)
    out = F.pad(cp.tensor(x), (1, 1), value=7)
    assert out.dtype == np.int64
    np.testing.assert_array_equal(out.numpy(), torch_F.pad(torch.tensor(x), (1, 1), value=7))
