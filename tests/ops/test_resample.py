"""The notes' dilate/decimate layers, interpolate and pixel (un)shuffle.

dilate and decimate have no PyTorch counterpart; they are checked against independent torch
constructions (a strided 1x1 depthwise convolution / transposed convolution with a kernel of
ones), the adjoint identity and finite differences.
"""

from __future__ import annotations

import math
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
from convprop.ops import resample
from convprop.ops.algorithm import kernels_used, use_algorithm
from tests.reference import assert_close, grad_of, pair

LINEAR_MODES = {1: "linear", 2: "bilinear", 3: "trilinear"}


def compare_with_torch(
    ours_fn: Any, torch_fn: Any, x: np.ndarray, what: str, check_grad: bool = True
) -> None:
    """Forward values and the input gradient, convprop vs torch (float64)."""
    ours_x, torch_x = pair(x)
    ours, theirs = ours_fn(ours_x), torch_fn(torch_x)
    assert_close(ours.numpy(), theirs, what=f"{what} forward")
    if not check_grad:
        return
    seed = np.cos(1.0 + np.arange(ours.data.size, dtype=np.float64)).reshape(ours.shape)
    ours.backward(seed)
    theirs.backward(torch.tensor(seed))
    assert_close(grad_of(ours_x), grad_of(torch_x), what=f"{what} grad input")


def sample(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape)


# ----------------------------------------------------------------------------------------------
# dilate (zero insertion) and decimate (keep every S-th sample), the notes' resampling layers.
# ----------------------------------------------------------------------------------------------


@st.composite
def resample_configs(draw: st.DrawFn) -> tuple[tuple[int, ...], Any, tuple[int, ...]]:
    spatial = draw(st.sampled_from([1, 2]))
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, 3))) + tuple(
        draw(st.integers(1, 9)) for _ in range(spatial)
    )
    factors = tuple(draw(st.integers(1, 4)) for _ in range(spatial))
    factor: Any = factors[0] if draw(st.booleans()) else factors
    if isinstance(factor, int):
        factors = (factor,) * spatial
    return shape, factor, factors


@given(resample_configs(), st.integers(0, 2**16))
def test_dilate_inserts_factor_minus_one_zeros(config, seed) -> None:
    shape, factor, factors = config
    x = sample(seed, shape)
    out = F.dilate(cp.tensor(x), factor).numpy()
    assert out.shape == shape[:2] + tuple(
        (w - 1) * f + 1 for w, f in zip(shape[2:], factors, strict=True)
    )
    kept = (slice(None), slice(None)) + tuple(slice(None, None, f) for f in factors)
    np.testing.assert_array_equal(out[kept], x)
    inserted = np.ones(out.shape, dtype=bool)
    inserted[kept] = False
    assert not out[inserted].any()


@given(resample_configs(), st.integers(0, 2**16))
def test_decimate_keeps_every_factor_th_sample(config, seed) -> None:
    shape, factor, factors = config
    x = sample(seed, shape)
    out = F.decimate(cp.tensor(x), factor).numpy()
    assert out.shape == shape[:2] + tuple(
        math.ceil(w / f) for w, f in zip(shape[2:], factors, strict=True)
    )
    np.testing.assert_array_equal(
        out, x[(slice(None), slice(None)) + tuple(slice(None, None, f) for f in factors)]
    )


def _ones_kernel(channels: int, spatial: int) -> torch.Tensor:
    return torch.ones((channels, 1) + (1,) * spatial, dtype=torch.float64)


@given(resample_configs(), st.integers(0, 2**16))
def test_dilate_equals_strided_transposed_conv_with_a_kernel_of_ones(config, seed) -> None:
    """Zero insertion is a transposed convolution with a 1x1 kernel of ones (per channel)."""
    shape, factor, factors = config
    spatial, channels = len(shape) - 2, shape[1]
    conv_t = torch_F.conv_transpose1d if spatial == 1 else torch_F.conv_transpose2d
    compare_with_torch(
        lambda t: F.dilate(t, factor),
        lambda t: conv_t(t, _ones_kernel(channels, spatial), stride=factors, groups=channels),
        sample(seed, shape),
        "dilate",
    )


@given(resample_configs(), st.integers(0, 2**16))
def test_decimate_equals_strided_conv_with_a_kernel_of_ones(config, seed) -> None:
    """Decimation is a strided convolution with a 1x1 kernel of ones (per channel)."""
    shape, factor, factors = config
    spatial, channels = len(shape) - 2, shape[1]
    conv = torch_F.conv1d if spatial == 1 else torch_F.conv2d
    compare_with_torch(
        lambda t: F.decimate(t, factor),
        lambda t: conv(t, _ones_kernel(channels, spatial), stride=factors, groups=channels),
        sample(seed, shape),
        "decimate",
    )


@given(resample_configs(), st.integers(0, 2**16))
def test_dilate_and_decimate_are_adjoint(config, seed) -> None:
    """<dilate(x), y> = <x, decimate(y)>, and each one's backward is the other."""
    shape, factor, _ = config
    x = sample(seed, shape)
    dilated, saved = resample.dilate_forward(x, factor)
    y = sample(seed + 1, dilated.shape)
    decimated, decimate_saved = resample.decimate_forward(y, factor)
    assert decimated.shape == x.shape
    scale = np.linalg.norm(dilated) * np.linalg.norm(y)  # the sums may cancel to ~0
    assert abs(np.vdot(dilated, y) - np.vdot(x, decimated)) <= 1e-12 * scale
    (dilate_grad,) = resample.dilate_backward(y, saved, (True,))
    np.testing.assert_array_equal(dilate_grad, decimated)
    (decimate_grad,) = resample.decimate_backward(x, decimate_saved, (True,))
    np.testing.assert_array_equal(decimate_grad, dilated)


@pytest.mark.parametrize(
    "shape,factor", [((1, 2, 4), 2), ((2, 1, 3, 4), (2, 3)), ((1, 1, 5, 2), 3)]
)
@pytest.mark.parametrize("name", ["dilate", "decimate"])
def test_dilate_decimate_gradcheck(name, shape, factor) -> None:
    x = cp.tensor(sample(3, shape), requires_grad=True)
    assert gradcheck(lambda t: getattr(F, name)(t, factor), [x])


@pytest.mark.parametrize("name", ["dilate", "decimate"])
@pytest.mark.parametrize(
    "shape,factor,error,match",
    [
        ((1, 1, 4), 0, ValueError, r"factor must be positive, got \(0,\)"),
        ((1, 1, 4, 4), (2, -1), ValueError, r"factor must be positive, got \(2, -1\)"),
        ((4, 4), 2, ValueError, r"input must be 3-D or 4-D .* got 2-D with shape \(4, 4\)"),
        ((1, 1, 2, 2, 2), 2, ValueError, r"input must be 3-D or 4-D .* got 5-D"),
        ((1, 1, 4), 2.0, TypeError, r"factor must be an int or a sequence of 1 ints, got 2.0"),
        ((1, 1, 4, 4), (2, 2, 2), TypeError, r"factor must be an int or a sequence of 2 ints"),
        ((1, 1, 4), True, TypeError, r"factor must be an int"),
    ],
)
def test_dilate_decimate_errors(name, shape, factor, error, match) -> None:
    with pytest.raises(error, match=rf"{name}: {match}"):
        getattr(F, name)(cp.tensor(np.zeros(shape)), factor)


@pytest.mark.parametrize("name", ["dilate", "decimate"])
def test_dilate_decimate_keep_float32(name) -> None:
    x = cp.tensor(np.ones((1, 2, 5, 3), dtype=np.float32), requires_grad=True)
    out = getattr(F, name)(x, 2)
    assert out.dtype == np.float32
    out.sum().backward()
    assert x.grad.dtype == np.float32


# ----------------------------------------------------------------------------------------------
# interpolate
# ----------------------------------------------------------------------------------------------


@st.composite
def interpolate_configs(draw: st.DrawFn) -> tuple[tuple[int, ...], dict[str, Any]]:
    spatial = draw(st.sampled_from([1, 1, 2, 2, 3]))
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, 3))) + tuple(
        draw(st.integers(1, 8 if spatial < 3 else 4)) for _ in range(spatial)
    )
    mode = draw(st.sampled_from(["nearest", "nearest-exact", LINEAR_MODES[spatial]]))
    kwargs: dict[str, Any] = {"mode": mode}
    if mode in LINEAR_MODES.values():
        kwargs["align_corners"] = draw(st.sampled_from([None, False, True]))
    if draw(st.booleans()):
        sizes = tuple(draw(st.integers(1, 16 if spatial < 3 else 6)) for _ in range(spatial))
        kwargs["size"] = sizes[0] if spatial == 1 and draw(st.booleans()) else sizes
    else:
        factor_values = st.one_of(
            st.sampled_from([0.5, 1.0, 1.1, 1.5, 2.0, 3.0, 1 / 3, 2 / 3, 0.7, 2.5]),
            st.floats(0.3, 3.0, allow_nan=False),
        )
        factors = tuple(draw(factor_values) for _ in range(spatial))
        if draw(st.booleans()):
            factors = (factors[0],) * spatial
            kwargs["scale_factor"] = factors[0]
        else:
            kwargs["scale_factor"] = factors
        assume(all(math.floor(n * f) >= 1 for n, f in zip(shape[2:], factors, strict=True)))
        kwargs["recompute_scale_factor"] = draw(st.sampled_from([None, False, True]))
    return shape, kwargs


def _torch_nearest_gradient_is_wrong(shape: tuple[int, ...], kwargs: dict[str, Any]) -> bool:
    """PyTorch's 1-D/3-D nearest backward short-cuts an axis that a scale factor leaves
    unchanged (index d) or exactly doubles (index d // 2), while its forward maps it with
    floor(d / scale): the two disagree (see
    ``test_nearest_gradient_is_the_adjoint_where_torch_is_not``)."""
    if kwargs["mode"] != "nearest" or len(shape) == 4 or "scale_factor" not in kwargs:
        return False
    if kwargs.get("recompute_scale_factor"):
        return False
    factors = kwargs["scale_factor"]
    factors = factors if isinstance(factors, tuple) else (factors,) * (len(shape) - 2)
    return any(
        math.floor(n * f) in (n, 2 * n) and f not in (1.0, 2.0)
        for n, f in zip(shape[2:], factors, strict=True)
    )


@given(interpolate_configs(), st.integers(0, 2**16))
def test_interpolate_matches_torch(config, seed) -> None:
    shape, kwargs = config
    compare_with_torch(
        lambda t: F.interpolate(t, **kwargs),
        lambda t: torch_F.interpolate(t, **kwargs),
        sample(seed, shape),
        f"interpolate {kwargs}",
        check_grad=not _torch_nearest_gradient_is_wrong(shape, kwargs),
    )


@pytest.mark.parametrize(
    "shape,kwargs",
    [
        # scale_factor enters the coordinate map as 1 / scale_factor unless recomputed.
        ((1, 1, 5), {"scale_factor": 1.7, "mode": "linear"}),
        ((1, 1, 5), {"scale_factor": 1.7, "mode": "linear", "recompute_scale_factor": True}),
        ((2, 3, 5, 4), {"scale_factor": (1.7, 0.6), "mode": "bilinear"}),
        ((1, 2, 7, 3), {"scale_factor": 1.1, "mode": "bilinear"}),  # 7 -> 7 is a copy
        ((1, 2, 4, 5), {"size": (9, 2), "mode": "bilinear", "align_corners": True}),
        ((1, 2, 4, 5), {"size": (1, 1), "mode": "bilinear", "align_corners": True}),
        ((1, 2, 4, 5), {"size": (1, 1), "mode": "bilinear", "align_corners": False}),
        ((1, 1, 6, 6), {"scale_factor": 1 / 3, "mode": "nearest"}),
        ((1, 1, 5, 3), {"size": (10, 6), "mode": "nearest"}),
        ((1, 1, 5, 3), {"size": (5, 3), "mode": "nearest"}),
        ((2, 1, 7), {"size": 3, "mode": "nearest-exact"}),
        ((1, 1, 1), {"size": 5, "mode": "linear"}),
        ((1, 1, 3, 2, 4), {"scale_factor": (2.0, 1.5, 0.5), "mode": "trilinear"}),
        ((1, 2, 3, 2, 4), {"size": (4, 4, 3), "mode": "nearest"}),
        ((3, 1, 12, 12), {"size": (24, 24), "mode": "bilinear", "align_corners": True}),
    ],
)
def test_interpolate_edge_cases_match_torch(shape, kwargs) -> None:
    compare_with_torch(
        lambda t: F.interpolate(t, **kwargs),
        lambda t: torch_F.interpolate(t, **kwargs),
        sample(7, shape),
        f"interpolate {kwargs}",
    )


@pytest.mark.parametrize(
    "scale_factor,expected_grad",
    [
        # 2 -> 2 samples: both outputs copy x[0] (floor(d / 1.1) = 0, 0).
        (1.1, [2.0, 0.0]),
        # 2 -> 4 samples: floor(d / 2.25) = 0, 0, 0, 1.
        (2.25, [3.0, 1.0]),
    ],
)
def test_nearest_gradient_is_the_adjoint_where_torch_is_not(scale_factor, expected_grad) -> None:
    """Torch's 1-D nearest forward maps output d to floor(d / scale), but its backward
    short-cuts m = n (index d) and m = 2n (index d // 2), so its gradient is not the derivative
    of its forward (finite differences reject it). Ours matches torch's forward and is the
    adjoint of it."""
    x = np.array([[[0.5, -1.5]]])
    out = F.interpolate(cp.tensor(x), scale_factor=scale_factor)
    np.testing.assert_array_equal(
        out.numpy(), torch_F.interpolate(torch.tensor(x), scale_factor=scale_factor).numpy()
    )
    ours_x = cp.tensor(x, requires_grad=True)
    F.interpolate(ours_x, scale_factor=scale_factor).sum().backward()
    np.testing.assert_array_equal(ours_x.grad.numpy(), [[expected_grad]])
    fresh = cp.tensor(x, requires_grad=True)
    assert gradcheck(lambda t: F.interpolate(t, scale_factor=scale_factor), [fresh])


@pytest.mark.parametrize(
    "shape,kwargs",
    [
        ((1, 2, 4), {"size": 7, "mode": "linear"}),
        ((2, 1, 5), {"scale_factor": 0.6, "mode": "linear", "align_corners": True}),
        ((1, 1, 3, 4), {"size": (5, 3), "mode": "bilinear"}),
        ((1, 1, 3, 4), {"scale_factor": 1.5, "mode": "bilinear", "align_corners": True}),
        ((1, 2, 3, 4), {"size": (5, 2), "mode": "nearest"}),
        ((1, 1, 5), {"size": 3, "mode": "nearest-exact"}),
        ((1, 1, 2, 3, 2), {"size": (3, 2, 3), "mode": "trilinear"}),
    ],
)
def test_interpolate_gradcheck(shape, kwargs) -> None:
    x = cp.tensor(sample(5, shape), requires_grad=True)
    assert gradcheck(lambda t: F.interpolate(t, **kwargs), [x])


@pytest.mark.parametrize(
    "shape,kwargs,error,match",
    [
        (
            (1, 1, 4),
            {"size": 3, "scale_factor": 2.0},
            ValueError,
            "only one of size or scale_factor should be defined",
        ),
        ((1, 1, 4), {}, ValueError, "either size or scale_factor should be defined"),
        (
            (1, 1, 4),
            {"size": 3, "align_corners": False},
            ValueError,
            "align_corners can only be set with the interpolating modes.*mode='nearest'",
        ),
        (
            (1, 1, 4),
            {"size": 3, "mode": "nearest-exact", "align_corners": True},
            ValueError,
            "align_corners can only be set",
        ),
        (
            (1, 1, 4),
            {"size": 3, "mode": "cubic"},
            ValueError,
            "mode must be one of 'nearest', .* got 'cubic'",
        ),
        (
            (1, 1, 4, 4),
            {"size": 3, "mode": "bicubic"},
            ValueError,
            "'bicubic' exists in PyTorch but is not implemented",
        ),
        (
            (1, 1, 4, 4),
            {"size": 3, "mode": "linear"},
            ValueError,
            "mode 'linear' needs a 3-D input, got 4-D",
        ),
        (
            (1, 1, 4),
            {"size": 3, "mode": "bilinear"},
            ValueError,
            "mode 'bilinear' needs a 4-D input, got 3-D",
        ),
        ((4, 4), {"size": 3}, ValueError, r"input must be 3-D or 4-D or 5-D .* got 2-D"),
        (
            (1, 1, 4, 4),
            {"size": (3, 3, 3)},
            ValueError,
            r"same number of spatial dimensions.*\[4, 4\] and size of \(3, 3, 3\)",
        ),
        ((1, 1, 4, 4), {"scale_factor": (2.0,)}, ValueError, r"scale_factor of \(2.0,\)"),
        (
            (1, 1, 4),
            {"size": 0},
            ValueError,
            r"sizes should be greater than 0.*input \(4,\) and output \(0,\)",
        ),
        ((1, 1, 4), {"scale_factor": 0.1}, ValueError, "sizes should be greater than 0"),
        ((1, 1, 4), {"size": 2.5}, TypeError, "size must be an int or a tuple of ints, got 2.5"),
        ((1, 1, 4), {"scale_factor": "2"}, TypeError, "scale_factor must be a float"),
        (
            (1, 1, 4),
            {"size": 3, "recompute_scale_factor": True},
            ValueError,
            "recompute_scale_factor is not meaningful with an explicit size",
        ),
        (
            (1, 1, 4, 4),
            {"size": 3, "mode": "bilinear", "antialias": True},
            ValueError,
            "antialias=True is not supported",
        ),
        ((1, 0, 4), {"size": 3}, ValueError, "non-empty apart from the batch"),
    ],
)
def test_interpolate_errors(shape, kwargs, error, match) -> None:
    with pytest.raises(error, match=f"^interpolate: .*{match}"):
        F.interpolate(cp.tensor(np.zeros(shape)), **kwargs)


def test_interpolate_refuses_integer_input() -> None:
    with pytest.raises(TypeError, match="interpolate: input must have a floating-point dtype"):
        F.interpolate(cp.tensor(np.zeros((1, 1, 4), dtype=np.int64)), size=3)


@pytest.mark.parametrize(
    "shape,kwargs",
    [
        ((1, 2, 5), {"size": 8, "mode": "linear"}),
        ((1, 2, 3, 4), {"scale_factor": 2.5}),
        ((1, 2, 3, 4), {"size": (2, 7), "mode": "bilinear", "align_corners": True}),
    ],
)
def test_interpolate_keeps_float32(shape, kwargs) -> None:
    x32 = sample(1, shape).astype(np.float32)
    ours_x = cp.tensor(x32, requires_grad=True)
    out = F.interpolate(ours_x, **kwargs)
    assert out.dtype == np.float32
    out.sum().backward()
    assert ours_x.grad.dtype == np.float32
    expected = torch_F.interpolate(torch.tensor(x32), **kwargs).numpy()
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------------------------
# pixel_shuffle / pixel_unshuffle
# ----------------------------------------------------------------------------------------------


@st.composite
def shuffle_configs(draw: st.DrawFn) -> tuple[tuple[int, ...], int]:
    factor = draw(st.integers(1, 3))
    batch = tuple(draw(st.integers(1, 2)) for _ in range(draw(st.integers(0, 2))))
    channels = draw(st.integers(1, 3))
    spatial = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    return batch + (channels,) + spatial, factor


@given(shuffle_configs(), st.integers(0, 2**16))
def test_pixel_shuffle_matches_torch(config, seed) -> None:
    (*batch, channels, height, width), factor = config
    shape = (*batch, channels * factor**2, height, width)
    compare_with_torch(
        lambda t: F.pixel_shuffle(t, factor),
        lambda t: torch_F.pixel_shuffle(t, factor),
        sample(seed, shape),
        "pixel_shuffle",
    )


@given(shuffle_configs(), st.integers(0, 2**16))
def test_pixel_unshuffle_matches_torch(config, seed) -> None:
    (*batch, channels, height, width), factor = config
    shape = (*batch, channels, height * factor, width * factor)
    compare_with_torch(
        lambda t: F.pixel_unshuffle(t, factor),
        lambda t: torch_F.pixel_unshuffle(t, factor),
        sample(seed, shape),
        "pixel_unshuffle",
    )


@given(shuffle_configs(), st.integers(0, 2**16))
def test_pixel_unshuffle_inverts_pixel_shuffle(config, seed) -> None:
    (*batch, channels, height, width), factor = config
    x = sample(seed, (*batch, channels * factor**2, height, width))
    shuffled, saved = resample.pixel_shuffle_forward(x, factor)
    np.testing.assert_array_equal(resample.pixel_unshuffle_forward(shuffled, factor)[0], x)
    (grad,) = resample.pixel_shuffle_backward(shuffled, saved, (True,))
    np.testing.assert_array_equal(grad, x)


@pytest.mark.parametrize(
    "name,shape", [("pixel_shuffle", (2, 8, 2, 3)), ("pixel_unshuffle", (1, 2, 4, 2))]
)
def test_pixel_shuffle_gradcheck(name, shape) -> None:
    x = cp.tensor(sample(4, shape), requires_grad=True)
    assert gradcheck(lambda t: getattr(F, name)(t, 2), [x])


@pytest.mark.parametrize(
    "name,shape,factor,error,match",
    [
        (
            "pixel_shuffle",
            (1, 3, 2, 2),
            2,
            ValueError,
            r"divisible by upscale_factor\*\*2 = 4, but input.size\(-3\)=3",
        ),
        ("pixel_shuffle", (4, 2), 2, ValueError, "at least 3 dimensions"),
        ("pixel_shuffle", (4, 2, 2), 0, ValueError, "upscale_factor must be positive, got 0"),
        ("pixel_shuffle", (4, 2, 2), 2.0, TypeError, "upscale_factor must be an int, got 2.0"),
        (
            "pixel_unshuffle",
            (1, 1, 3, 4),
            2,
            ValueError,
            r"height must be divisible by downscale_factor=2, but input.size\(-2\)=3",
        ),
        (
            "pixel_unshuffle",
            (1, 1, 4, 3),
            2,
            ValueError,
            r"width must be divisible by downscale_factor=2, but input.size\(-1\)=3",
        ),
        ("pixel_unshuffle", (1, 4, 4), -1, ValueError, "downscale_factor must be positive"),
    ],
)
def test_pixel_shuffle_errors(name, shape, factor, error, match) -> None:
    with pytest.raises(error, match=f"^{name}: .*{match}"):
        getattr(F, name)(cp.tensor(np.zeros(shape)), factor)


@pytest.mark.parametrize("name", ["pixel_shuffle", "pixel_unshuffle"])
def test_pixel_shuffle_keeps_float32(name) -> None:
    x = cp.tensor(np.ones((1, 4, 2, 2), dtype=np.float32), requires_grad=True)
    out = getattr(F, name)(x, 2)
    assert out.dtype == np.float32
    out.sum().backward()
    assert x.grad.dtype == np.float32


# ------------------------------------------------------------- interpolate's plan, reference
def test_the_interpolate_plan_picks_each_modes_fast_path_and_the_reference_on_request() -> None:
    with use_algorithm("fast"):
        assert resample.plan_interpolate("nearest") == "index_copy"
        assert resample.plan_interpolate("linear") == "axis_products"
    with use_algorithm("reference"):
        assert {resample.plan_interpolate(k) for k in ("nearest", "linear")} == {"reference"}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"scale_factor": 2, "mode": "nearest"},
        {"size": (5, 3), "mode": "nearest-exact"},
        {"scale_factor": (1.5, 0.5), "mode": "bilinear", "align_corners": False},
    ],
)
def test_the_interpolate_reference_path_is_really_taken(kwargs: dict[str, Any]) -> None:
    x = sample(4, (2, 3, 4, 6))

    def run() -> tuple[np.ndarray, np.ndarray]:
        inputs = cp.tensor(x, requires_grad=True)
        out = F.interpolate(inputs, **kwargs)
        (out * out).sum().backward()
        return out.numpy(), inputs.grad.numpy()

    with use_algorithm("reference"), kernels_used() as used:
        reference = run()
    assert dict(used) == {"interpolate.forward.reference": 1, "interpolate.backward.reference": 1}
    with use_algorithm("fast"), kernels_used() as used:
        fast = run()
    assert used and not any(name.endswith(".reference") for name in used), used
    for a, b in zip(reference, fast, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
