"""Convolution and transposed convolution against PyTorch, finite differences and bad input.

The notes' identities (Rot180 input gradient, weight gradient as a correlation, ...) are in
``test_conv_identities.py``.
"""

from __future__ import annotations

import re
import warnings
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
from convprop.ops import conv
from tests.reference import assert_close, grad_of, pair

SPATIAL_NAMES = {1: ("conv1d", "conv_transpose1d"), 2: ("conv2d", "conv_transpose2d")}


def compare_with_torch(
    name: str, x: np.ndarray, w: np.ndarray, b: np.ndarray | None, **kwargs: Any
) -> None:
    """Forward values and the gradients of input, weight and bias, convprop vs torch."""
    (ours_x, torch_x), (ours_w, torch_w) = pair(x), pair(w)
    ours_b, torch_b = pair(b) if b is not None else (None, None)
    ours = getattr(F, name)(ours_x, ours_w, ours_b, **kwargs)
    with warnings.catch_warnings():
        # torch warns that 'same' with an even kernel pads a copy; the result is what we test.
        warnings.simplefilter("ignore", UserWarning)
        theirs = getattr(torch_F, name)(torch_x, torch_w, torch_b, **kwargs)
    assert_close(ours.numpy(), theirs, what=f"{name} forward")
    seed = np.cos(1.0 + np.arange(ours.data.size, dtype=np.float64)).reshape(ours.shape)
    ours.backward(seed)
    theirs.backward(torch.tensor(seed))
    assert_close(grad_of(ours_x), grad_of(torch_x), what=f"{name} grad input")
    assert_close(grad_of(ours_w), grad_of(torch_w), what=f"{name} grad weight")
    if b is not None:
        assert_close(grad_of(ours_b), grad_of(torch_b), what=f"{name} grad bias")


def normal(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.standard_normal(shape)


# ----------------------------------------------------------------------------------------------
# Convolution vs torch.nn.functional on random configurations.
# ----------------------------------------------------------------------------------------------


@st.composite
def conv_configs(draw: st.DrawFn, spatial: int) -> dict[str, Any]:
    groups = draw(st.integers(1, 3))
    in_channels = groups * draw(st.integers(1, 2))
    out_channels = groups * draw(st.integers(1, 2))
    kernel = tuple(draw(st.integers(1, 4)) for _ in range(spatial))
    dilation = tuple(draw(st.integers(1, 3 if k <= 2 else 2)) for k in kernel)
    padding_kind = draw(st.sampled_from(["int", "tuple", "valid", "same"]))
    if padding_kind == "same":
        stride: tuple[int, ...] = (1,) * spatial
        pads = [d * (k - 1) for k, d in zip(kernel, dilation, strict=True)]
        padding: Any = "same"
    else:
        # Strides up to 5 are often larger than the kernel: samples that no window reads.
        stride = tuple(draw(st.integers(1, 5)) for _ in range(spatial))
        if padding_kind == "valid":
            padding, pads = "valid", [0] * spatial
        elif padding_kind == "int":
            padding = draw(st.integers(0, 3))
            pads = [2 * padding] * spatial
        else:
            padding = tuple(draw(st.integers(0, 3)) for _ in range(spatial))
            pads = [2 * p for p in padding]
    size = tuple(
        draw(st.integers(max(1, d * (k - 1) + 1 - p), d * (k - 1) + 7))
        for k, d, p in zip(kernel, dilation, pads, strict=True)
    )
    unbatched = draw(st.booleans())
    batch = () if unbatched else (draw(st.integers(1, 3)),)
    return {
        "x_shape": batch + (in_channels,) + size,
        "w_shape": (out_channels, in_channels // groups) + kernel,
        "bias": draw(st.booleans()),
        "kwargs": {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups},
        "seed": draw(st.integers(0, 2**32 - 1)),
    }


@pytest.mark.parametrize("spatial", [1, 2])
@given(data=st.data())
def test_conv_matches_torch(spatial: int, data: st.DataObject) -> None:
    config = data.draw(conv_configs(spatial))
    rng = np.random.default_rng(config["seed"])
    x, w = normal(rng, config["x_shape"]), normal(rng, config["w_shape"])
    b = normal(rng, (config["w_shape"][0],)) if config["bias"] else None
    compare_with_torch(SPATIAL_NAMES[spatial][0], x, w, b, **config["kwargs"])


@pytest.mark.parametrize(
    "x_shape, w_shape, kwargs",
    [
        ((1, 1, 1, 1), (1, 1, 1, 1), {}),  # everything 1
        ((2, 3, 7, 5), (4, 3, 1, 1), {"stride": 3}),  # 1x1 kernel, stride > kernel
        ((2, 2, 8, 8), (3, 2, 4, 2), {"padding": "same"}),  # even kernel: pad (1, 2), (0, 1)
        ((1, 2, 9, 8), (2, 2, 2, 3), {"padding": "same", "dilation": (3, 2)}),
        ((2, 4, 6, 7), (4, 1, 3, 3), {"groups": 4, "padding": 1}),  # depthwise
        ((3, 2, 11), (2, 2, 3), {"stride": 4, "padding": 3, "dilation": 2}),
        ((2, 6), (3, 2, 2), {"padding": "same"}),  # unbatched 1-D, even kernel
        ((0, 3, 5, 5), (2, 3, 2, 2), {"stride": 2}),  # empty batch, as torch allows
    ],
)
def test_conv_edge_cases_match_torch(x_shape, w_shape, kwargs) -> None:
    rng = np.random.default_rng(0)
    name = SPATIAL_NAMES[len(w_shape) - 2][0]
    compare_with_torch(
        name, normal(rng, x_shape), normal(rng, w_shape), normal(rng, (w_shape[0],)), **kwargs
    )


# ----------------------------------------------------------------------------------------------
# Transposed convolution vs torch.nn.functional.
# ----------------------------------------------------------------------------------------------


@st.composite
def conv_transpose_configs(draw: st.DrawFn, spatial: int) -> dict[str, Any]:
    groups = draw(st.integers(1, 3))
    in_channels = groups * draw(st.integers(1, 2))
    out_per_group = draw(st.integers(1, 2))
    kernel = tuple(draw(st.integers(1, 4)) for _ in range(spatial))
    stride = tuple(draw(st.integers(1, 4)) for _ in range(spatial))
    dilation = tuple(draw(st.integers(1, 3)) for _ in range(spatial))
    padding = tuple(draw(st.integers(0, 3)) for _ in range(spatial))
    output_padding = tuple(
        draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation, strict=True)
    )
    size = tuple(draw(st.integers(1, 6)) for _ in range(spatial))
    out_size = [
        (n - 1) * s - 2 * p + d * (k - 1) + e + 1
        for n, s, p, d, k, e in zip(
            size, stride, padding, dilation, kernel, output_padding, strict=True
        )
    ]
    assume(all(o > 0 for o in out_size))
    unbatched = draw(st.booleans())
    batch = () if unbatched else (draw(st.integers(1, 3)),)
    kwargs = {
        "stride": stride,
        "padding": padding,
        "output_padding": output_padding,
        "groups": groups,
        "dilation": dilation,
    }
    return {
        "x_shape": batch + (in_channels,) + size,
        "w_shape": (in_channels, out_per_group) + kernel,
        "bias": draw(st.booleans()),
        "kwargs": kwargs,
        "seed": draw(st.integers(0, 2**32 - 1)),
    }


@pytest.mark.parametrize("spatial", [1, 2])
@given(data=st.data())
def test_conv_transpose_matches_torch(spatial: int, data: st.DataObject) -> None:
    config = data.draw(conv_transpose_configs(spatial))
    rng = np.random.default_rng(config["seed"])
    x, w = normal(rng, config["x_shape"]), normal(rng, config["w_shape"])
    out_channels = config["w_shape"][1] * config["kwargs"]["groups"]
    b = normal(rng, (out_channels,)) if config["bias"] else None
    compare_with_torch(SPATIAL_NAMES[spatial][1], x, w, b, **config["kwargs"])


@pytest.mark.parametrize(
    "x_shape, w_shape, kwargs",
    [
        ((1, 1, 1, 1), (1, 1, 1, 1), {}),
        ((2, 3, 4, 5), (3, 2, 3, 3), {"stride": 2, "padding": 1, "output_padding": 1}),
        ((2, 4, 3, 3), (4, 1, 2, 2), {"stride": 2, "groups": 4}),  # depthwise upsampling
        ((1, 2, 3, 4), (2, 2, 3, 2), {"dilation": 3, "output_padding": 2}),  # stride 1, op > 0
        ((2, 5), (2, 3, 4), {"stride": 3, "padding": 2}),  # unbatched 1-D
        ((0, 2, 3, 3), (2, 2, 3, 3), {"stride": 2}),
    ],
)
def test_conv_transpose_edge_cases_match_torch(x_shape, w_shape, kwargs) -> None:
    rng = np.random.default_rng(1)
    name = SPATIAL_NAMES[len(w_shape) - 2][1]
    out_channels = w_shape[1] * kwargs.get("groups", 1)
    compare_with_torch(
        name, normal(rng, x_shape), normal(rng, w_shape), normal(rng, (out_channels,)), **kwargs
    )


# ----------------------------------------------------------------------------------------------
# Finite differences (independent of torch).
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, x_shape, w_shape, bias_size, kwargs",
    [
        ("conv1d", (2, 2, 7), (3, 2, 3), 3, {"stride": 2, "padding": 1, "dilation": 2}),
        ("conv1d", (2, 5), (2, 1, 2), 2, {"padding": "same", "groups": 2}),
        ("conv2d", (1, 2, 5, 4), (2, 2, 2, 3), 2, {"stride": (2, 1), "padding": (1, 0)}),
        (
            "conv2d",
            (2, 4, 4, 4),
            (2, 2, 2, 2),
            2,
            {"padding": "same", "groups": 2, "dilation": (1, 2)},
        ),
        (
            "conv_transpose1d",
            (2, 2, 4),
            (2, 3, 3),
            3,
            {"stride": 2, "padding": 1, "output_padding": 1},
        ),
        (
            "conv_transpose2d",
            (1, 2, 3, 2),
            (2, 1, 2, 3),
            2,
            {"stride": (2, 1), "groups": 2, "dilation": (1, 2)},
        ),
    ],
)
def test_conv_gradcheck(name, x_shape, w_shape, bias_size, kwargs) -> None:
    rng = np.random.default_rng(2)
    x = cp.tensor(normal(rng, x_shape), requires_grad=True)
    w = cp.tensor(normal(rng, w_shape), requires_grad=True)
    b = cp.tensor(normal(rng, (bias_size,)), requires_grad=True)
    assert gradcheck(lambda x, w, b: getattr(F, name)(x, w, b, **kwargs), [x, w, b])


# ----------------------------------------------------------------------------------------------
# dtype and the op contract.
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, x_shape, w_shape, kwargs",
    [
        ("conv2d", (2, 3, 6, 6), (4, 3, 3, 3), {"padding": 1}),
        ("conv2d", (2, 4, 7, 6), (4, 2, 3, 3), {"stride": 2, "groups": 2}),
        ("conv1d", (2, 3, 9), (4, 3, 2), {"padding": "same"}),
        ("conv_transpose2d", (2, 4, 3, 3), (4, 3, 3, 3), {"stride": 2, "output_padding": 1}),
        ("conv_transpose1d", (2, 4, 5), (4, 3, 3), {"padding": 1}),
    ],
)
def test_float32_stays_float32(name, x_shape, w_shape, kwargs) -> None:
    rng = np.random.default_rng(3)
    x = normal(rng, x_shape).astype(np.float32)
    w = normal(rng, w_shape).astype(np.float32)
    out_channels = w_shape[1] if "transpose" in name else w_shape[0]
    b = normal(rng, (out_channels,)).astype(np.float32)
    ours = [cp.tensor(a, requires_grad=True) for a in (x, w, b)]
    theirs = [torch.tensor(a, requires_grad=True) for a in (x, w, b)]
    y = getattr(F, name)(*ours, **kwargs)
    expected = getattr(torch_F, name)(*theirs, **kwargs)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y.numpy(), expected.detach().numpy(), rtol=1e-4, atol=1e-4)
    y.backward(np.ones(y.shape, dtype=np.float32))
    expected.backward(torch.ones_like(expected))
    for mine, reference in zip(ours, theirs, strict=True):
        assert mine.grad.dtype == np.float32
        np.testing.assert_allclose(mine.grad.numpy(), reference.grad.numpy(), rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("transposed", [False, True])
def test_backward_computes_only_requested_gradients(transposed: bool) -> None:
    rng = np.random.default_rng(4)
    x, w, b = normal(rng, (2, 2, 5, 5)), normal(rng, (2, 2, 3, 3)), normal(rng, (2,))
    forward = conv.conv_transpose2d.forward if transposed else conv.conv2d.forward
    backward = conv.conv_transpose2d.backward if transposed else conv.conv2d.backward
    y, saved = forward(x, w, b, 2)
    grad_out = np.ones_like(y)
    for needs in [(True, False, False), (False, True, False), (False, False, True)]:
        grads = backward(grad_out, saved, needs)
        assert len(grads) == 3
        assert [g is not None for g in grads] == list(needs)
        for g, array in zip(grads, (x, w, b), strict=True):
            assert g is None or g.shape == array.shape
    assert backward(grad_out, saved, (False, False, False)) == (None, None, None)


def test_conv_without_bias_tensor_records_two_inputs() -> None:
    x = cp.tensor(np.ones((1, 1, 3, 3)), requires_grad=True)
    w = cp.tensor(np.ones((1, 1, 2, 2)), requires_grad=False)
    F.conv2d(x, w).sum().backward()
    np.testing.assert_array_equal(
        x.grad.numpy()[0, 0], [[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]
    )
    assert w.grad is None


# ----------------------------------------------------------------------------------------------
# Errors: the function, the argument, the value received and the rule.
# ----------------------------------------------------------------------------------------------


def arr(*shape: int, dtype: Any = np.float64) -> cp.Tensor:
    return cp.tensor(np.zeros(shape, dtype=dtype))


@pytest.mark.parametrize(
    "call, error, message",
    [
        (
            lambda: F.conv2d(arr(1, 3, 5, 5), arr(8, 4, 3, 3)),
            ValueError,
            "conv2d: input has 3 channels but weight expects 4 (weight shape (8, 4, 3, 3), "
            "groups=1)",
        ),
        (
            lambda: F.conv2d(arr(1, 4, 5, 5), arr(4, 1, 3, 3), groups=2),
            ValueError,
            "conv2d: input has 4 channels but weight expects 2 (weight shape (4, 1, 3, 3), "
            "groups=2)",
        ),
        (
            lambda: F.conv2d(arr(1, 4, 5, 5), arr(3, 2, 3, 3), groups=2),
            ValueError,
            "conv2d: groups=2 must divide the weight's 3 output channels",
        ),
        (
            lambda: F.conv2d(arr(1, 4, 5, 5), arr(4, 4, 3, 3), groups=0),
            ValueError,
            "conv2d: groups must be positive, got 0",
        ),
        (
            lambda: F.conv2d(arr(1, 4, 5, 5), arr(4, 4, 3, 3), groups=1.0),
            TypeError,
            "conv2d: groups must be an int, got 1.0",
        ),
        (
            lambda: F.conv2d(arr(1, 1, 5, 5), arr(1, 1, 6, 3)),
            ValueError,
            "conv2d: kernel size can't be greater than the padded input: effective kernel size "
            "(6, 3)",
        ),
        (
            lambda: F.conv1d(arr(1, 1, 4), arr(1, 1, 3), dilation=3, padding=1),
            ValueError,
            "conv1d: kernel size can't be greater than the padded input: effective kernel size "
            "(7,) (kernel (3,), dilation (3,)) but padded input size (6,) (input (4,), padding "
            "((1, 1),))",
        ),
        (
            lambda: F.conv2d(arr(1, 1, 5, 5), arr(1, 1, 3, 3), stride=(1, 0)),
            ValueError,
            "conv2d: stride must be positive, got (1, 0)",
        ),
        (
            lambda: F.conv2d(arr(1, 1, 5, 5), arr(1, 1, 3, 3), dilation=0),
            ValueError,
            "conv2d: dilation must be positive, got (0, 0)",
        ),
        (
            lambda: F.conv2d(arr(1, 1, 5, 5), arr(1, 1, 3, 3), padding=-1),
            ValueError,
            "conv2d: padding must be non-negative, got (-1, -1)",
        ),
        (
            lambda: F.conv2d(arr(1, 1, 5, 5), arr(1, 1, 3, 3), padding=(1, 2, 3)),
            TypeError,
            "conv2d: padding must be an int or a sequence of 2 ints, got (1, 2, 3)",
        ),
        (
            lambda: F.conv2d(arr(1, 1, 5, 5), arr(1, 1, 3, 3), padding="same", stride=2),
            ValueError,
            "conv2d: padding='same' is not supported for strided convolutions, got stride=(2, 2)",
        ),
        (
            lambda: F.conv2d(arr(1, 1, 5, 5), arr(1, 1, 3, 3), padding="full"),
            ValueError,
            "conv2d: padding must be an int, a tuple of ints, 'valid' or 'same', got 'full'",
        ),
        (
            lambda: F.conv2d(arr(5, 5), arr(1, 1, 3, 3)),
            ValueError,
            "conv2d: input must be 3-D or 4-D (N, C, H, W, or unbatched C, H, W), got 2-D with "
            "shape (5, 5)",
        ),
        (
            lambda: F.conv1d(arr(1, 1, 5, 5), arr(1, 1, 3)),
            ValueError,
            "conv1d: input must be 2-D or 3-D (N, C, L, or unbatched C, L), got 4-D",
        ),
        (
            lambda: F.conv1d(arr(1, 1, 5), arr(1, 1, 3, 3)),
            ValueError,
            "conv1d: weight must be 3-D (out_channels, in_channels/groups, *kernel), got 4-D",
        ),
        (
            lambda: F.conv2d(arr(1, 1, 5, 5), arr(1, 1, 0, 3)),
            ValueError,
            "conv2d: weight must have no zero-size dimension (channels and kernel size must be "
            "positive), got weight shape (1, 1, 0, 3)",
        ),
        (
            lambda: F.conv2d(arr(1, 1, 5, 5), arr(2, 1, 3, 3), arr(3)),
            ValueError,
            "conv2d: bias must be 1-D with 2 elements (one per output channel of weight shape "
            "(2, 1, 3, 3)), got shape (3,)",
        ),
        (
            lambda: F.conv2d(arr(1, 1, 5, 5, dtype=np.int64), arr(1, 1, 3, 3)),
            TypeError,
            "conv2d: input must have a floating-point dtype (float32 or float64), got int64",
        ),
        (
            lambda: F.conv2d(arr(1, 1, 5, 5), arr(1, 1, 3, 3, dtype=np.bool_)),
            TypeError,
            "conv2d: weight must have a floating-point dtype (float32 or float64), got bool",
        ),
        (
            lambda: F.conv2d(arr(1, 1, 5, 5), arr(1, 1, 3, 3, dtype=np.float32)),
            TypeError,
            "conv2d: all inputs must have the same dtype, but input is float64, weight is float32",
        ),
        (
            lambda: F.conv2d(arr(1, 1, 5, 5), arr(1, 1, 3, 3), arr(1, dtype=np.float32)),
            TypeError,
            "bias is float32",
        ),
        (
            lambda: F.conv_transpose2d(arr(1, 3, 5, 5), arr(4, 2, 3, 3)),
            ValueError,
            "conv_transpose2d: input has 3 channels but weight expects 4 (weight shape "
            "(4, 2, 3, 3), groups=1)",
        ),
        (
            lambda: F.conv_transpose2d(arr(1, 3, 5, 5), arr(3, 2, 3, 3), groups=2),
            ValueError,
            "conv_transpose2d: groups=2 must divide the weight's 3 input channels",
        ),
        (
            lambda: F.conv_transpose2d(
                arr(1, 3, 5, 5), arr(3, 2, 3, 3), stride=2, output_padding=2
            ),
            ValueError,
            "conv_transpose2d: output_padding must be smaller than either stride or dilation in "
            "every dimension, got output_padding=(2, 2), stride=(2, 2), dilation=(1, 1)",
        ),
        (
            lambda: F.conv_transpose1d(arr(1, 3, 5), arr(3, 2, 3), output_padding=(1,)),
            ValueError,
            "conv_transpose1d: output_padding must be smaller than either stride or dilation",
        ),
        (
            lambda: F.conv_transpose2d(arr(1, 3, 5, 5), arr(3, 2, 3, 3), output_padding=-1),
            ValueError,
            "conv_transpose2d: output_padding must be non-negative, got (-1, -1)",
        ),
        (
            lambda: F.conv_transpose2d(arr(1, 3, 5, 5), arr(3, 2, 3, 3), padding=5),
            ValueError,
            "conv_transpose2d: output size (L - 1) * stride - 2 * padding + dilation * "
            "(kernel - 1) + output_padding + 1 must be positive, got (-3, -3)",
        ),
        (
            lambda: F.conv_transpose2d(arr(1, 3, 5, 5), arr(3, 2, 3, 3), padding="same"),
            TypeError,
            "conv_transpose2d: padding must be an int or a tuple of ints (no "
            "'same'/'valid' for transposed convolutions), got 'same'",
        ),
        (
            lambda: F.conv_transpose2d(arr(1, 3, 5, 5), arr(3, 2, 3, 3), stride=0),
            ValueError,
            "conv_transpose2d: stride must be positive, got (0, 0)",
        ),
        (
            lambda: F.conv_transpose2d(arr(1, 3, 5, 5), arr(3, 2, 3, 3), arr(3)),
            ValueError,
            "conv_transpose2d: bias must be 1-D with 2 elements",
        ),
        (
            lambda: F.conv_transpose1d(arr(1, 3, 5), arr(3, 2, 3, 3)),
            ValueError,
            "conv_transpose1d: weight must be 3-D (in_channels, out_channels/groups, *kernel)",
        ),
        (
            lambda: F.conv_transpose2d(arr(1, 3, 5, 5, dtype=np.int32), arr(3, 2, 3, 3)),
            TypeError,
            "conv_transpose2d: input must have a floating-point dtype",
        ),
    ],
)
def test_conv_errors(call, error, message) -> None:
    with pytest.raises(error, match=re.escape(message)):
        call()


def test_same_padding_with_even_kernel_pads_after_as_torch() -> None:
    # total = D (K - 1) = 3: one zero before, two after (PyTorch's rule), per axis.
    x = np.arange(1.0, 7.0).reshape(1, 1, 6)
    w = np.array([[[1.0, 0.0, 0.0, 0.0]]])  # picks the first sample of each window
    y = F.conv1d(cp.tensor(x), cp.tensor(w), padding="same").numpy()
    np.testing.assert_array_equal(y[0, 0], [0.0, 1.0, 2.0, 3.0, 4.0, 5.0])


@pytest.mark.parametrize("name", ["conv2d", "conv_transpose2d"])
def test_non_contiguous_arrays_match_torch(name: str) -> None:
    rng = np.random.default_rng(5)
    x = np.asfortranarray(normal(rng, (2, 3, 6, 5)))
    w = normal(rng, (3, 3, 3, 4)).transpose(0, 1, 3, 2)  # a strided view
    compare_with_torch(name, x, w, normal(rng, (3,)), stride=2, padding=1)
