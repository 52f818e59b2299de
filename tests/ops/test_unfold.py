"""``unfold`` (im2col) and ``fold`` (col2im) against PyTorch, their adjointness, finite
differences and bad input."""

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
from convprop.ops import unfold as unfold_ops
from convprop.ops.algorithm import kernels_used, use_algorithm
from tests.reference import assert_close, grad_of, pair


def compare_with_torch(name: str, x: np.ndarray, *args: Any, **kwargs: Any) -> None:
    """Forward values and the input gradient, convprop vs torch (float64)."""
    ours_x, torch_x = pair(x)
    ours = getattr(F, name)(ours_x, *args, **kwargs)
    theirs = getattr(torch_F, name)(torch_x, *args, **kwargs)
    what = f"{name} {args} {kwargs} on {x.shape}"
    assert_close(ours.numpy(), theirs, what=f"{what} forward")
    seed = np.cos(1.0 + np.arange(ours.data.size, dtype=np.float64)).reshape(ours.shape)
    ours.backward(seed)
    theirs.backward(torch.tensor(seed))
    assert_close(grad_of(ours_x), grad_of(torch_x), what=f"{what} grad input")


def sample(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape)


def blocks(size: int, kernel: int, dilation: int, padding: int, stride: int) -> int:
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def as_pair(value: Any) -> tuple[int, int]:
    return (value[0], value[1]) if isinstance(value, tuple) else (value, value)


@st.composite
def window_configs(draw: st.DrawFn) -> tuple[tuple[int, ...], dict[str, Any]]:
    """An image shape (batched or not) and unfold keyword arguments with >= 1 block."""

    def int_or_pair(low: int, high: int) -> Any:
        first = draw(st.integers(low, high))
        return first if draw(st.booleans()) else (first, draw(st.integers(low, high)))

    kwargs = {
        "kernel_size": int_or_pair(1, 3),
        "dilation": int_or_pair(1, 2),
        "padding": int_or_pair(0, 2),
        "stride": int_or_pair(1, 4),  # strides above the kernel skip samples entirely
    }
    spatial = (draw(st.integers(1, 8)), draw(st.integers(1, 8)))
    for axis in range(2):
        count = blocks(
            spatial[axis],
            *(as_pair(kwargs[k])[axis] for k in ("kernel_size", "dilation", "padding", "stride")),
        )
        assume(count >= 1)
    channels = draw(st.integers(1, 3))
    batch = draw(st.sampled_from([(), (1,), (2,), (3,)]))
    return batch + (channels,) + spatial, kwargs


@given(window_configs(), st.integers(0, 2**16))
def test_unfold_matches_torch(config, seed) -> None:
    shape, kwargs = config
    compare_with_torch("unfold", sample(seed, shape), **kwargs)


@given(window_configs(), st.integers(0, 2**16))
def test_fold_matches_torch(config, seed) -> None:
    shape, kwargs = config
    spatial = shape[-2:]
    kernel = as_pair(kwargs["kernel_size"])
    count = 1
    for axis in range(2):
        count *= blocks(
            spatial[axis],
            *(as_pair(kwargs[k])[axis] for k in ("kernel_size", "dilation", "padding", "stride")),
        )
    columns_shape = shape[:-3] + (shape[-3] * kernel[0] * kernel[1], count)
    compare_with_torch("fold", sample(seed, columns_shape), spatial, **kwargs)


@given(window_configs(), st.integers(0, 2**16))
def test_unfold_and_fold_are_adjoint(config, seed) -> None:
    """<unfold(x), c> = <x, fold(c)>; unfold's backward is fold and fold's backward is unfold."""
    shape, kwargs = config
    x = sample(seed, shape)
    columns, unfold_saved = unfold_ops.unfold_forward(x, **kwargs)
    c = sample(seed + 1, columns.shape)
    image, fold_saved = unfold_ops.fold_forward(c, shape[-2:], **kwargs)
    assert image.shape == x.shape
    np.testing.assert_allclose(np.vdot(columns, c), np.vdot(x, image), rtol=1e-12, atol=1e-12)
    (unfold_grad,) = unfold_ops.unfold_backward(c, unfold_saved, (True,))
    np.testing.assert_array_equal(unfold_grad, image)
    (fold_grad,) = unfold_ops.fold_backward(x, fold_saved, (True,))
    np.testing.assert_array_equal(fold_grad, columns)


def test_fold_adds_overlapping_windows() -> None:
    """Folding the unfolded ones counts how many windows read each pixel ("+=")."""
    ones = np.ones((1, 1, 4, 4))
    columns = F.unfold(cp.tensor(ones), 3)
    counts = F.fold(columns, (4, 4), 3).numpy()[0, 0]
    np.testing.assert_array_equal(counts, [[1, 2, 2, 1], [2, 4, 4, 2], [2, 4, 4, 2], [1, 2, 2, 1]])


def test_unfold_column_layout() -> None:
    """Row (c K_h + i) K_w + j, column o_h W_out + o_w holds x[c, o_h S + i, o_w S + j]."""
    x = np.arange(2 * 4 * 5, dtype=np.float64).reshape(1, 2, 4, 5)
    cols = F.unfold(cp.tensor(x), (2, 3), stride=(2, 1)).numpy()[0]
    assert cols.shape == (2 * 2 * 3, 2 * 3)
    c, i, j, o_h, o_w = 1, 1, 2, 1, 2
    assert cols[(c * 2 + i) * 3 + j, o_h * 3 + o_w] == x[0, c, o_h * 2 + i, o_w + j]


@pytest.mark.parametrize(
    "shape,kwargs",
    [
        ((1, 2, 4, 4), {"kernel_size": 2}),
        ((2, 1, 5, 4), {"kernel_size": (2, 3), "dilation": (2, 1), "padding": 1, "stride": 2}),
        ((2, 3, 3), {"kernel_size": 2, "padding": (1, 0)}),
    ],
)
@pytest.mark.parametrize("name", ["unfold", "fold"])
def test_unfold_fold_gradcheck(name, shape, kwargs) -> None:
    if name == "unfold":
        x = cp.tensor(sample(1, shape), requires_grad=True)
        assert gradcheck(lambda t: F.unfold(t, **kwargs), [x])
        return
    columns = unfold_ops.unfold_forward(sample(1, shape), **kwargs)[0]
    c = cp.tensor(sample(2, columns.shape), requires_grad=True)
    assert gradcheck(lambda t: F.fold(t, shape[-2:], **kwargs), [c])


@pytest.mark.parametrize(
    "shape,kwargs,error,match",
    [
        ((4, 4), {"kernel_size": 2}, ValueError, r"input must be 3-D .* or 4-D .* got 2-D"),
        ((1, 1, 1, 4, 4), {"kernel_size": 2}, ValueError, "got 5-D"),
        (
            (1, 1, 3, 3),
            {"kernel_size": 4},
            ValueError,
            r"spatial size \(3, 3\), kernel_size=\(4, 4\), .* blocks has shape \(0, 0\)",
        ),
        ((1, 1, 3, 3), {"kernel_size": 2, "dilation": 3}, ValueError, "must be at least one"),
        (
            (1, 1, 3, 3),
            {"kernel_size": 0},
            ValueError,
            r"kernel_size must be positive, got \(0, 0\)",
        ),
        ((1, 1, 3, 3), {"kernel_size": 2, "stride": 0}, ValueError, "stride must be positive"),
        (
            (1, 1, 3, 3),
            {"kernel_size": 2, "dilation": (1, 0)},
            ValueError,
            r"dilation must be positive, got \(1, 0\)",
        ),
        (
            (1, 1, 3, 3),
            {"kernel_size": 2, "padding": -1},
            ValueError,
            "padding must be non-negative",
        ),
        (
            (1, 1, 3, 3),
            {"kernel_size": (2, 2, 2)},
            TypeError,
            "kernel_size must be an int or a sequence of 2 ints",
        ),
        ((1, 1, 3, 3), {"kernel_size": 2.0}, TypeError, "kernel_size must be an int"),
        ((1, 0, 3, 3), {"kernel_size": 2}, ValueError, "non-empty apart from the batch"),
    ],
)
def test_unfold_errors(shape, kwargs, error, match) -> None:
    with pytest.raises(error, match=f"^unfold: .*{match}"):
        F.unfold(cp.tensor(np.zeros(shape)), **kwargs)


@pytest.mark.parametrize(
    "shape,args,kwargs,error,match",
    [
        ((12,), ((4, 5), 2), {}, ValueError, r"input must be 2-D .* or 3-D .* got 1-D"),
        ((1, 2, 12, 12), ((4, 5), 2), {}, ValueError, "got 4-D"),
        (
            (2, 10, 12),
            ((4, 5), 2),
            {},
            ValueError,
            r"input.size\(-2\) = 10 must be divisible by the product of kernel_size \(2, 2\) = 4",
        ),
        (
            (2, 12, 12),
            ((4, 4), 2),
            {},
            ValueError,
            r"output_size=\(4, 4\), kernel_size=\(2, 2\).* number of sliding blocks 3 \* 3 = 9, "
            r"but got input.size\(-1\)=12",
        ),
        ((2, 12, 12), ((1, 5), 2), {}, ValueError, "number of sliding blocks 0 \\* 4 = 0"),
        (
            (2, 12, 12),
            ((4, 5, 3), 2),
            {},
            TypeError,
            "output_size must be an int or a sequence of 2 ints",
        ),
        ((2, 12, 12), ((4, 5), 2), {"stride": 0}, ValueError, "stride must be positive"),
        ((2, 0, 12), ((4, 5), 2), {}, ValueError, "non-empty apart from the batch"),
    ],
)
def test_fold_errors(shape, args, kwargs, error, match) -> None:
    with pytest.raises(error, match=f"^fold: .*{match}"):
        F.fold(cp.tensor(np.zeros(shape)), *args, **kwargs)


@pytest.mark.parametrize(
    "name,shape,args", [("unfold", (1, 1, 4, 4), (2,)), ("fold", (1, 4, 4), ((3, 3), 2))]
)
def test_unfold_fold_refuse_integer_input(name, shape, args) -> None:
    with pytest.raises(TypeError, match=f"^{name}: input must have a floating-point dtype"):
        getattr(F, name)(cp.tensor(np.zeros(shape, dtype=np.int64)), *args)


def test_unfold_fold_keep_float32() -> None:
    x = cp.tensor(np.ones((1, 2, 4, 4), dtype=np.float32), requires_grad=True)
    columns = F.unfold(x, 2, padding=1)
    assert columns.dtype == np.float32
    image = F.fold(columns, (4, 4), 2, padding=1)
    assert image.dtype == np.float32
    image.sum().backward()
    assert x.grad.dtype == np.float32


# ------------------------------------------------------------------ every kernel, the plan
@pytest.mark.parametrize("kernel", sorted(unfold_ops.IM2COL_KERNELS))
@given(window_configs(), st.integers(0, 2**16))
def test_every_kernel_matches_torch_and_the_reference(kernel: str, config, seed) -> None:
    """im2col and col2im of the tables, called directly on batched images, against
    torch.nn.functional.unfold and fold and against the reference."""
    shape, kwargs = config
    x = torch.tensor(sample(seed, (2, *shape[-3:])))
    window = tuple(as_pair(kwargs[k]) for k in ("kernel_size", "dilation", "padding", "stride"))
    counts = tuple(
        blocks(x.shape[2 + axis], *(value[axis] for value in window)) for axis in range(2)
    )
    columns = unfold_ops.IM2COL_KERNELS[kernel](x.numpy(), *window, counts)
    assert_close(columns, torch_F.unfold(x, **kwargs), what=f"{kernel} im2col")
    reference = unfold_ops.reference_im2col(x.numpy(), *window, counts)
    np.testing.assert_array_equal(columns, reference)
    c = torch.tensor(sample(seed + 1, columns.shape))
    image = unfold_ops.COL2IM_KERNELS[kernel](c.numpy(), x.shape[2:], *window, counts)
    assert_close(image, torch_F.fold(c, x.shape[2:], **kwargs), what=f"{kernel} col2im")
    reference_image = unfold_ops.reference_col2im(c.numpy(), x.shape[2:], *window, counts)
    assert_close(image, reference_image, what=f"{kernel} col2im vs reference")


def test_the_plan_picks_the_compiled_loops_and_the_reference_on_request() -> None:
    with use_algorithm("fast"):
        assert unfold_ops.plan_unfold() == "compiled"
    with use_algorithm("reference"):
        assert unfold_ops.plan_unfold() == "reference"


def test_the_reference_path_is_really_taken() -> None:
    x = sample(3, (2, 3, 7, 6))

    def run() -> tuple[np.ndarray, np.ndarray]:
        inputs = cp.tensor(x, requires_grad=True)
        columns = F.unfold(inputs, 3, padding=1, stride=2)
        out = F.fold(columns * columns, (7, 6), 3, padding=1, stride=2)
        (out * out).sum().backward()
        return out.numpy(), inputs.grad.numpy()

    with use_algorithm("reference"), kernels_used() as used:
        reference = run()
    assert dict(used) == {"unfold.im2col.reference": 2, "unfold.col2im.reference": 2}
    with use_algorithm("fast"), kernels_used() as used:
        fast = run()
    assert dict(used) == {"unfold.im2col.compiled": 2, "unfold.col2im.compiled": 2}
    for a, b in zip(reference, fast, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
