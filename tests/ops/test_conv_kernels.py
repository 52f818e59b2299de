"""Every implementation of convolution the plan can choose, against PyTorch and the notes'
reference implementation; the plan's choices; and proof that the reference path runs.

Each kernel is called directly (``conv.FORWARD_KERNELS[name]`` and the gradient tables), on
every hypothesis configuration where it applies, so no threshold has to be patched to reach a
path the plan would only take for large inputs.
"""

from __future__ import annotations

import subprocess
import sys
import warnings
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as torch_F
from hypothesis import given
from hypothesis import strategies as st

import convprop.nn.functional as F
from convprop import tensor
from convprop.ops import conv
from convprop.ops.algorithm import kernels_used, use_algorithm
from convprop.ops.geometry import conv_geometry
from convprop.ops.kernels import conv_gemm
from tests.ops.test_conv import conv_configs
from tests.reference import assert_close


def torch_conv(x: np.ndarray, w: np.ndarray, delta_seed: int, **kwargs: Any) -> tuple:
    """PyTorch's forward, a delta, and its input and weight gradients."""
    tx = torch.tensor(x, requires_grad=True)
    tw = torch.tensor(w, requires_grad=True)
    conv_fn = torch_F.conv1d if w.ndim == 3 else torch_F.conv2d
    with warnings.catch_warnings():  # torch warns that 'same' with an even kernel pads a copy
        warnings.simplefilter("ignore", UserWarning)
        z = conv_fn(tx, tw, None, **kwargs)
    delta = np.random.default_rng(delta_seed).standard_normal(z.shape)
    z.backward(torch.tensor(delta))
    return z.detach().numpy(), delta, tx.grad.numpy(), tw.grad.numpy()


def batched_config(data: st.DataObject, spatial: int) -> tuple:
    config = data.draw(conv_configs(spatial))
    rng = np.random.default_rng(config["seed"])
    shape = config["x_shape"] if len(config["x_shape"]) == spatial + 2 else (1, *config["x_shape"])
    x, w = rng.standard_normal(shape), rng.standard_normal(config["w_shape"])
    kwargs = config["kwargs"]
    geometry = conv_geometry(
        "conv",
        x.shape[2:],
        w.shape[2:],
        kwargs["stride"],
        kwargs["padding"],
        kwargs["dilation"],
        kwargs["groups"],
    )
    return x, w, kwargs, geometry, config["seed"]


@st.composite
def winograd_shapes(draw: st.DrawFn) -> dict[str, Any]:
    """3x3 stride-1 layers, the shape Winograd's kernels take."""
    return {
        "x_shape": (
            draw(st.integers(1, 3)),
            draw(st.integers(1, 9)),
            draw(st.integers(3, 11)),
            draw(st.integers(3, 11)),
        ),
        "out_channels": draw(st.integers(1, 6)),
        "padding": draw(st.integers(0, 2)),
        "seed": draw(st.integers(0, 2**31)),
    }


@pytest.mark.parametrize("spatial", [1, 2])
@given(data=st.data())
def test_every_applicable_kernel_matches_torch_and_the_reference(
    spatial: int, data: st.DataObject
) -> None:
    x, w, kwargs, geometry, seed = batched_config(data, spatial)
    z, delta, grad_x, grad_w = torch_conv(x, w, seed + 1, **kwargs)
    reference = {
        "forward": conv.reference_forward(x, w, geometry),
        "input": conv.reference_input_grad(delta, w, geometry),
        "weight": conv.reference_weight_grad(x, delta, geometry),
    }
    assert_close(reference["forward"], z, what="reference forward")
    assert_close(reference["input"], grad_x, what="reference dL/dx")
    assert_close(reference["weight"], grad_w, what="reference dL/dw")
    for name in conv.applicable_forward_kernels(geometry):
        ours = conv.FORWARD_KERNELS[name](x, w, geometry)
        assert_close(ours, reference["forward"], what=f"forward {name} vs reference")
    for name in conv.applicable_input_grad_kernels(geometry):
        if name == conv.SHARED_COLUMNS:
            ours, ours_w = conv_gemm.shared_columns(delta, x, w, geometry)
            assert_close(ours_w, grad_w, what="shared columns dL/dw vs torch")
        else:
            ours = conv.INPUT_GRAD_KERNELS[name](delta, w, geometry, x.shape[1])
        assert_close(ours, grad_x, what=f"dL/dx {name} vs torch")
    for name in conv.applicable_weight_grad_kernels(geometry):
        if name != conv.SHARED_COLUMNS:
            ours = conv.WEIGHT_GRAD_KERNELS[name](x, delta, geometry)
            assert_close(ours, grad_w, what=f"dL/dw {name} vs torch")


@given(config=winograd_shapes())
def test_every_kernel_of_a_3x3_stride_1_layer_matches_torch(config: dict[str, Any]) -> None:
    """The layers where every kernel applies, Winograd's included."""
    rng = np.random.default_rng(config["seed"])
    x = rng.standard_normal(config["x_shape"])
    w = rng.standard_normal((config["out_channels"], x.shape[1], 3, 3))
    padding = config["padding"]
    geometry = conv_geometry("conv2d", x.shape[2:], (3, 3), 1, padding, 1, 1)
    z, delta, grad_x, grad_w = torch_conv(x, w, config["seed"] + 1, padding=padding)
    kernels = conv.applicable_forward_kernels(geometry)
    assert kernels == ["reference", "im2col", "winograd"]
    for name in kernels:
        assert_close(conv.FORWARD_KERNELS[name](x, w, geometry), z, what=f"forward {name}")
    names = set(conv.applicable_input_grad_kernels(geometry)) - {conv.SHARED_COLUMNS}
    assert names == {"reference", "adjoint", "full_correlation", "full_correlation_winograd"}
    for name in sorted(names):
        ours = conv.INPUT_GRAD_KERNELS[name](delta, w, geometry, x.shape[1])
        assert_close(ours, grad_x, what=f"dL/dx {name}")
    for name in ("reference", "im2col", "winograd"):
        ours = conv.WEIGHT_GRAD_KERNELS[name](x, delta, geometry)
        assert_close(ours, grad_w, what=f"dL/dw {name}")


# ----------------------------------------------------------------------------- the plan
@pytest.mark.parametrize(
    ("layer", "batch", "channels", "out_channels", "forward", "input_grad", "weight_grad"),
    [
        # ResNet-20's 3x3 layers: Winograd forward, Winograd gradients.
        (
            ((32, 32), (3, 3), 1, 1, 1, 1),
            128,
            16,
            16,
            "winograd",
            "full_correlation_winograd",
            "winograd",
        ),
        # LeNet-5's conv2, 6 -> 16 5x5 valid: widening, so dL/dx in the adjoint form.
        (((14, 14), (5, 5), 1, 0, 1, 1), 128, 6, 16, "im2col", "adjoint", "im2col"),
        # LeNet-5's conv1, 1 -> 6 5x5 'same': widening too.
        (((28, 28), (5, 5), 1, 2, 1, 1), 128, 1, 6, "im2col", "adjoint", "im2col"),
        # a 16 -> 16 5x5 layer at stride 1: dL/dx and dL/dw share delta's columns.
        (((14, 14), (5, 5), 1, 2, 1, 1), 32, 16, 16, "im2col", "shared_columns", "shared_columns"),
        # a strided 3x3 layer: adjoint form.
        (((32, 32), (3, 3), 2, 1, 1, 1), 128, 16, 32, "im2col", "adjoint", "im2col"),
        # a 1x1 projection with stride 2.
        (((32, 32), (1, 1), 2, 0, 1, 1), 128, 16, 32, "im2col", "adjoint", "im2col"),
        # DenseNet-BC's 48 -> 12 3x3: more input channels than delta, im2col's weight grad.
        (
            ((32, 32), (3, 3), 1, 1, 1, 1),
            64,
            48,
            12,
            "winograd",
            "shared_columns",
            "shared_columns",
        ),
        # a small batch-1 3x3 layer: too few positions for Winograd.
        (((8, 8), (3, 3), 1, 1, 1, 1), 1, 64, 64, "im2col", "shared_columns", "shared_columns"),
    ],
)
def test_the_plan_picks_the_measured_kernels(
    layer: tuple,
    batch: int,
    channels: int,
    out_channels: int,
    forward: str,
    input_grad: str,
    weight_grad: str,
) -> None:
    size, kernel, stride, padding, dilation, groups = layer
    geometry = conv_geometry("conv2d", size, kernel, stride, padding, dilation, groups)
    with use_algorithm("fast"):
        assert conv.plan_forward(geometry, batch, channels) == forward
        plan = conv.plan_backward(geometry, batch, channels, out_channels, (True, True, True))
    assert (plan.input_grad, plan.weight_grad) == (input_grad, weight_grad)
    for needs, expected in (
        ((True, False), (input_grad, None)),
        ((False, True), (None, weight_grad)),
    ):
        with use_algorithm("fast"):
            alone = conv.plan_backward(geometry, batch, channels, out_channels, needs)
        if input_grad != conv.SHARED_COLUMNS:
            assert (alone.input_grad, alone.weight_grad) == expected
        else:  # one gradient alone has no columns to share
            assert conv.SHARED_COLUMNS not in (alone.input_grad, alone.weight_grad)


def test_the_reference_path_is_really_taken() -> None:
    """With ``use_algorithm("reference")`` every convolution runs the notes' implementation:
    the only kernels counted are the reference ones, and the result still equals the fast
    path's."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 16, 12, 12))
    weights = [rng.standard_normal(shape) for shape in ((16, 16, 3, 3), (8, 16, 3, 3))]

    def run() -> tuple[np.ndarray, ...]:
        inputs = tensor(x, requires_grad=True)
        w1, w2 = (tensor(w, requires_grad=True) for w in weights)
        hidden = F.conv2d(inputs, w1, padding=1)
        out = F.conv_transpose2d(F.conv2d(hidden, w2, stride=2), w2, stride=2, output_padding=1)
        (out * out).sum().backward()
        return out.numpy(), inputs.grad.numpy(), w1.grad.numpy(), w2.grad.numpy()

    with use_algorithm("reference"), kernels_used() as used:
        reference = run()
    assert used and all(name.endswith(".reference") for name in used), used
    with use_algorithm("fast"), kernels_used() as used:
        fast = run()
    assert not any(name.endswith(".reference") for name in used), used
    for a, b in zip(reference, fast, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)


def test_the_environment_variable_selects_the_reference() -> None:
    code = (
        "import numpy as np; from convprop.ops import conv; "
        "from convprop.ops.algorithm import kernels_used, algorithm\n"
        "with kernels_used() as used:\n"
        "    conv.conv2d_forward(np.ones((1, 1, 4, 4)), np.ones((1, 1, 3, 3)))\n"
        "print(algorithm(), dict(used))"
    )
    for value, expected in (
        ("reference", "reference {'conv.forward.reference': 1}"),
        ("fast", "fast {'conv.forward.im2col': 1}"),
    ):
        result = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            env={"CONVPROP_ALGORITHM": value, "PATH": ""},
            timeout=120,
        )
        assert result.stdout.strip() == expected, result.stderr
    bad = subprocess.run(
        [sys.executable, "-c", "import convprop"],
        capture_output=True,
        text=True,
        env={"CONVPROP_ALGORITHM": "fastest"},
        timeout=120,
    )
    assert "CONVPROP_ALGORITHM must be one of fast, reference, got 'fastest'" in bad.stderr


def test_use_algorithm_refuses_unknown_names() -> None:
    with pytest.raises(ValueError, match="name must be one of fast, reference, got 'quick'"):
        with use_algorithm("quick"):
            pass
