"""Convolution and transposed convolution (1-D and 2-D): the notes' math, and one plan.

Forward (cross-correlation, as PyTorch; decks 000/001 write the same layer as a true
convolution with the kernel rotated by 180 degrees), for output channel f in group g,
output position o, kernel tap k and the zero-padded input x_pad:

    z[n, f, o] = b[f] + sum_{c in g} sum_k w[f, c, k] x_pad[n, c, o S + k D]

Backward, with the local gradient delta = dL/dz = ``grad_out`` (decks 000, 001, 002, 004):

* dL/db[f] = sum_{n, o} delta[n, f, o]: the bias is shared by every position.
* dL/dw[f, c, k] = sum_{n, o} delta[n, f, o] x_pad[n, c, o S + k D]: the correlation of the
  (padded) input with delta, "weight sharing" summing over every position the kernel visited.
* dL/dx: the *full* correlation of delta -- zero-inserted (S - 1 zeros between samples, the
  notes' upsampling) when S > 1 and zero-padded by D (K - 1) on every side -- with the kernel
  rotated 180 degrees and its in/out channel axes swapped (within each group); the result has
  the padded input's shape, and the padding region is removed before backprop continues.

Transposed convolution is the adjoint of convolution: its forward *is* convolution's input
gradient (the notes' "upsampling followed by a convolution", a fractional stride 1/S), and its
backward uses convolution's forward (for dL/dx) and weight gradient (for dL/dw).

This module holds three things, in this order:

1. **The reference implementation** (``reference_forward``, ``reference_input_grad``,
   ``reference_weight_grad``): the formulas above written as the notes write them, with a
   window view and one contraction per group. ``convprop.ops.use_algorithm("reference")``
   runs every convolution through them.
2. **The plan** (``plan_forward``, ``plan_backward``): which fast kernel of
   ``convprop.ops.kernels`` computes each part for a given geometry, every threshold in one
   place. The kernels compute the same sums (im2col and one GEMM, Winograd's F(4x4, 3x3), the
   adjoint form w^T delta scattered back by col2im); each is tested against the reference
   and against PyTorch.
3. **The public pairs** (``conv1d``, ``conv2d``, ``conv_transpose1d``, ``conv_transpose2d``,
   each an :class:`~convprop.ops.contract.OpPair`): validation, then the plan's kernels.

Layouts: input (N, C, L) / (N, C, H, W), or unbatched (C, L) / (C, H, W); convolution weight
(out_channels, in_channels / groups, *kernel_size); transposed-convolution weight
(in_channels, out_channels / groups, *kernel_size), the same tensor as the convolution it is
the adjoint of.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from convprop.ops import algorithm
from convprop.ops.checks import check_float, check_ndim, check_same_dtype
from convprop.ops.contract import Grads, Needs, OpPair
from convprop.ops.geometry import (
    ConvGeometry,
    IntOrTuple,
    as_batched,
    conv_geometry,
    conv_transpose_geometry,
    groups_count,
    unbatched,
)
from convprop.ops.kernels import conv_gemm, winograd
from convprop.ops.windows import (
    pad_spatial,
    rot180_channel_swapped,
    unpad_spatial,
    window_view,
    zero_insert,
)

_LAYOUTS = {1: "N, C, L", 2: "N, C, H, W"}
_UNBATCHED_LAYOUTS = {1: "C, L", 2: "C, H, W"}


# --------------------------------------------------------------------------------------------
# 1. The reference implementation: the notes' formulas, literally.
# --------------------------------------------------------------------------------------------
def correlate_reference(
    x_pad: np.ndarray,
    weight: np.ndarray,
    stride: tuple[int, ...],
    dilation: tuple[int, ...],
    out_size: tuple[int, ...],
    groups: int,
) -> np.ndarray:
    """z[n, f, o] = sum_{c in group(f)} sum_k w[f, c, k] x_pad[n, c, o S + k D].

    The window view holds x_pad[n, c, o S + k D] at [n, c, o, k]; for each group, one
    contraction over its input channels and the kernel taps (decks 002 and 004).
    """
    spatial = weight.ndim - 2
    windows = window_view(x_pad, weight.shape[2:], stride, dilation, out_size)  # (N, C, *O, *K)
    in_per_group, out_per_group = weight.shape[1], weight.shape[0] // groups
    channel_and_taps = [1, *range(2 + spatial, 2 + 2 * spatial)]
    parts = []
    for g in range(groups):
        x_g = windows[:, g * in_per_group : (g + 1) * in_per_group]
        w_g = weight[g * out_per_group : (g + 1) * out_per_group]
        z_g = np.tensordot(x_g, w_g, axes=(channel_and_taps, [1, *range(2, 2 + spatial)]))
        parts.append(np.moveaxis(z_g, -1, 1))  # (N, *O, F/G) -> (N, F/G, *O)
    return np.concatenate(parts, axis=1)


def reference_forward(x: np.ndarray, weight: np.ndarray, geometry: ConvGeometry) -> np.ndarray:
    """z = w correlated with the zero-padded input (no bias), the notes' forward sum."""
    return correlate_reference(
        pad_spatial(x, geometry.pads),
        weight,
        geometry.stride,
        geometry.dilation,
        geometry.output_size,
        geometry.groups,
    )


def reference_input_grad(
    grad_out: np.ndarray, weight: np.ndarray, geometry: ConvGeometry
) -> np.ndarray:
    """dL/dx as decks 000, 001 and 004 compute it, step by step:

    1. zero-insert delta: S - 1 zeros between neighbouring entries (undoes the stride);
    2. pad it by D (K - 1) on every side (a *full* correlation);
    3. correlate with Rot180(w), in/out channel axes swapped, taps D apart: dL/dx_pad;
    4. give the trailing samples of the padded input that no window reached a zero gradient;
    5. remove the padding region.
    """
    upsampled = zero_insert(grad_out, geometry.stride)
    kernel_size, dilation = geometry.kernel_size, geometry.dilation
    full = tuple((d * (k - 1), d * (k - 1)) for k, d in zip(kernel_size, dilation, strict=True))
    reached = tuple(
        n + d * (k - 1) for n, k, d in zip(upsampled.shape[2:], kernel_size, dilation, strict=True)
    )
    grad_padded = correlate_reference(
        pad_spatial(upsampled, full),
        rot180_channel_swapped(weight, geometry.groups),
        (1,) * geometry.spatial,
        geometry.dilation,
        reached,
        geometry.groups,
    )
    unreached = tuple((0, p - r) for p, r in zip(geometry.padded_size, reached, strict=True))
    return unpad_spatial(pad_spatial(grad_padded, unreached), geometry.pads)


def reference_weight_grad(
    x: np.ndarray, grad_out: np.ndarray, geometry: ConvGeometry
) -> np.ndarray:
    """dL/dw[f, c, k] = sum_{n, o} delta[n, f, o] x_pad[n, c, o S + k D]: the correlation of
    the padded input with delta, summed over the minibatch (weight sharing, deck 002)."""
    spatial = geometry.spatial
    windows = window_view(
        pad_spatial(x, geometry.pads),
        geometry.kernel_size,
        geometry.stride,
        geometry.dilation,
        geometry.output_size,
    )  # (N, C, *O, *K)
    groups = geometry.groups
    in_per_group, out_per_group = x.shape[1] // groups, grad_out.shape[1] // groups
    batch_and_positions = [0, *range(2, 2 + spatial)]
    parts = [
        np.tensordot(
            grad_out[:, g * out_per_group : (g + 1) * out_per_group],
            windows[:, g * in_per_group : (g + 1) * in_per_group],
            axes=(batch_and_positions, batch_and_positions),
        )
        for g in range(groups)
    ]
    return np.concatenate(parts, axis=0)


def bias_grad(grad_out: np.ndarray) -> np.ndarray:
    """dL/db[f] = sum_{n, o} delta[n, f, o]: the bias is shared by every position."""
    summed: np.ndarray = grad_out.sum(axis=(0, *range(2, grad_out.ndim)))
    return summed


# --------------------------------------------------------------------------------------------
# 2. The plan: which kernel computes each part, every threshold in one place.
# --------------------------------------------------------------------------------------------
# Winograd's F(4x4, 3x3) pays from this many input channels and positions (samples times
# height times width): below, its fixed costs (the filter transform, short contractions over
# the channels) outweigh its 4x fewer multiply-adds (BENCHMARKS.md, "Kernels: Winograd").
WINOGRAD_MIN_CHANNELS = 8
WINOGRAD_MIN_POSITIONS = 256

ForwardKernel = Callable[[np.ndarray, np.ndarray, ConvGeometry], np.ndarray]
InputGradKernel = Callable[[np.ndarray, np.ndarray, ConvGeometry, int], np.ndarray]
WeightGradKernel = Callable[[np.ndarray, np.ndarray, ConvGeometry], np.ndarray]

FORWARD_KERNELS: dict[str, ForwardKernel] = {
    "reference": reference_forward,
    "im2col": lambda x, w, g: conv_gemm.correlate(
        x, w, g.stride, g.dilation, g.pads, g.groups, g.output_size
    ),
    "winograd": lambda x, w, g: winograd.correlate(x, w, g.pads, g.output_size),
}
INPUT_GRAD_KERNELS: dict[str, InputGradKernel] = {
    "reference": lambda delta, w, g, channels: reference_input_grad(delta, w, g),
    "full_correlation": lambda delta, w, g, channels: conv_gemm.full_correlation(delta, w, g),
    "full_correlation_winograd": lambda delta, w, g, channels: winograd.full_correlation(
        delta, w, g
    ),
    "adjoint": conv_gemm.backproject_adjoint,
}
WEIGHT_GRAD_KERNELS: dict[str, WeightGradKernel] = {
    "reference": reference_weight_grad,
    "im2col": lambda x, delta, g: conv_gemm.correlate_weight(
        x, delta, g.kernel_size, g.stride, g.dilation, g.pads, g.groups
    ),
    "winograd": lambda x, delta, g: winograd.weight_gradient(x, delta, g.pads),
}
# Both gradients from one set of columns (``conv_gemm.shared_columns``).
SHARED_COLUMNS = "shared_columns"


def applicable_forward_kernels(geometry: ConvGeometry) -> list[str]:
    """The forward kernels that can compute this geometry (the plan picks among them)."""
    shape_ok = winograd.applies(
        geometry.kernel_size, geometry.stride, geometry.dilation, geometry.groups
    )
    return [name for name in FORWARD_KERNELS if name != "winograd" or shape_ok]


def applicable_input_grad_kernels(geometry: ConvGeometry) -> list[str]:
    """The input-gradient kernels that can compute this geometry."""
    stride_1 = all(s == 1 for s in geometry.stride)
    names = ["reference", "adjoint"]
    if stride_1:
        names += ["full_correlation", SHARED_COLUMNS]
        if winograd.applies(
            geometry.kernel_size, geometry.stride, geometry.dilation, geometry.groups
        ):
            names.append("full_correlation_winograd")
    return names


def applicable_weight_grad_kernels(geometry: ConvGeometry) -> list[str]:
    """The weight-gradient kernels that can compute this geometry."""
    names = ["reference", "im2col"]
    if all(s == 1 for s in geometry.stride):
        names.append(SHARED_COLUMNS)
    if winograd.applies(geometry.kernel_size, geometry.stride, geometry.dilation, geometry.groups):
        names.append("winograd")
    return names


def _winograd_pays(
    geometry: ConvGeometry, batch: int, channels: int, size: tuple[int, ...]
) -> bool:
    """Winograd for a correlation of ``channels`` input channels over ``size`` positions."""
    return (
        winograd.applies(geometry.kernel_size, geometry.stride, geometry.dilation, geometry.groups)
        and channels >= WINOGRAD_MIN_CHANNELS
        and batch * math.prod(size) >= WINOGRAD_MIN_POSITIONS
    )


def plan_forward(geometry: ConvGeometry, batch: int, channels: int) -> str:
    """The forward kernel for ``batch`` samples of ``channels`` channels."""
    if algorithm.reference():
        return "reference"
    if _winograd_pays(geometry, batch, channels, geometry.input_size):
        return "winograd"
    return "im2col"


@dataclass(frozen=True)
class BackwardPlan:
    """The kernels of a convolution's backward: ``input_grad`` and ``weight_grad`` name
    entries of ``INPUT_GRAD_KERNELS`` and ``WEIGHT_GRAD_KERNELS`` (None: not needed), or
    both ``SHARED_COLUMNS``."""

    input_grad: str | None
    weight_grad: str | None


def _full_correlation_pays(geometry: ConvGeometry, channels: int, out_channels: int) -> bool:
    """Whether dL/dx goes as the notes' full correlation rather than the adjoint form: stride
    1, and the adjoint form would move more than half as many values as the full correlation
    copies (layers that widen few channels into many, as LeNet-5's conv2, scatter instead)."""
    groups = geometry.groups
    scattered = channels // groups * math.prod(geometry.output_size)
    correlated = out_channels // groups * math.prod(geometry.input_size)
    return all(s == 1 for s in geometry.stride) and 2 * scattered > correlated


def _cropped_delta_size(geometry: ConvGeometry) -> tuple[int, ...]:
    """The size of delta once ``conv_gemm.padded_delta`` crops it (where padding exceeds
    D (K - 1), the outputs that only read padding are not needed)."""
    sizes = []
    for i, (before, _) in enumerate(geometry.pads):
        full = geometry.dilation[i] * (geometry.kernel_size[i] - 1)
        out, length = geometry.output_size[i], geometry.input_size[i]
        sizes.append(out - max(0, before - full) - max(0, out - length - before))
    return tuple(sizes)


def plan_backward(
    geometry: ConvGeometry, batch: int, channels: int, out_channels: int, needs: Needs
) -> BackwardPlan:
    """The kernels for dL/dx (``needs[0]``) and dL/dw (``needs[1]``) of a convolution from
    ``channels`` to ``out_channels`` channels."""
    need_input, need_weight = needs[0], len(needs) > 1 and needs[1]
    if algorithm.reference():
        return BackwardPlan(
            "reference" if need_input else None, "reference" if need_weight else None
        )
    # Winograd's weight gradient where its forward pays and x has no more channels than delta;
    # dL/dx then goes on its own instead of sharing delta's columns.
    winograd_weight = (
        need_weight
        and channels <= out_channels
        and _winograd_pays(geometry, batch, channels, geometry.input_size)
    )
    full = _full_correlation_pays(geometry, channels, out_channels)
    if need_input and need_weight and not winograd_weight and full:
        return BackwardPlan(SHARED_COLUMNS, SHARED_COLUMNS)
    input_grad = None
    if need_input:
        if not full:
            input_grad = "adjoint"
        elif _winograd_pays(geometry, batch, out_channels, _cropped_delta_size(geometry)):
            input_grad = "full_correlation_winograd"
        else:
            input_grad = "full_correlation"
    weight_grad = None
    if need_weight:
        weight_grad = "winograd" if winograd_weight else "im2col"
    return BackwardPlan(input_grad, weight_grad)


def run_forward(
    kernel: str, x: np.ndarray, weight: np.ndarray, geometry: ConvGeometry
) -> np.ndarray:
    """The forward correlation by the named kernel (no bias)."""
    algorithm.ran(f"conv.forward.{kernel}")
    return FORWARD_KERNELS[kernel](x, weight, geometry)


def run_input_grad(
    kernel: str, grad_out: np.ndarray, weight: np.ndarray, geometry: ConvGeometry, channels: int
) -> np.ndarray:
    """dL/dx (``channels`` channels) by the named kernel."""
    algorithm.ran(f"conv.input_grad.{kernel}")
    return INPUT_GRAD_KERNELS[kernel](grad_out, weight, geometry, channels)


def run_weight_grad(
    kernel: str, x: np.ndarray, grad_out: np.ndarray, geometry: ConvGeometry
) -> np.ndarray:
    """dL/dw by the named kernel."""
    algorithm.ran(f"conv.weight_grad.{kernel}")
    return WEIGHT_GRAD_KERNELS[kernel](x, grad_out, geometry)


def run_backward(
    plan: BackwardPlan,
    grad_out: np.ndarray,
    x: np.ndarray,
    weight: np.ndarray,
    geometry: ConvGeometry,
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """dL/dx and dL/dw by the plan's kernels."""
    if plan.input_grad == SHARED_COLUMNS:
        algorithm.ran("conv.backward.shared_columns")
        return conv_gemm.shared_columns(grad_out, x, weight, geometry)
    grad_input = grad_weight = None
    if plan.input_grad is not None:
        grad_input = run_input_grad(plan.input_grad, grad_out, weight, geometry, x.shape[1])
    if plan.weight_grad is not None:
        grad_weight = run_weight_grad(plan.weight_grad, x, grad_out, geometry)
    return grad_input, grad_weight


# --------------------------------------------------------------------------------------------
# 3. The public pairs: validation, then the plan's kernels.
# --------------------------------------------------------------------------------------------
def _check_arrays(
    func: str,
    spatial: int,
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None,
    weight_layout: str,
) -> None:
    for name, array in (("input", x), ("weight", weight), ("bias", bias)):
        if array is not None and not isinstance(array, np.ndarray):
            raise TypeError(f"{func}: {name} must be an ndarray, got {type(array).__name__}")
    check_float(x, func, "input")
    check_float(weight, func, "weight")
    if bias is not None:
        check_float(bias, func, "bias")
    check_same_dtype({"input": x, "weight": weight, "bias": bias}, func)
    check_ndim(
        x,
        (spatial + 1, spatial + 2),
        func,
        "input",
        f"{_LAYOUTS[spatial]}, or unbatched {_UNBATCHED_LAYOUTS[spatial]}",
    )
    check_ndim(weight, (spatial + 2,), func, "weight", weight_layout)
    if 0 in weight.shape:
        raise ValueError(
            f"{func}: weight must have no zero-size dimension (channels and kernel size must be "
            f"positive), got weight shape {tuple(weight.shape)}"
        )


def _check_bias(func: str, bias: np.ndarray | None, channels: int, weight: np.ndarray) -> None:
    if bias is not None and (bias.ndim != 1 or bias.shape[0] != channels):
        raise ValueError(
            f"{func}: bias must be 1-D with {channels} elements (one per output channel of "
            f"weight shape {tuple(weight.shape)}), got shape {tuple(bias.shape)}"
        )


def _check_channels(
    func: str,
    channels: int,
    weight: np.ndarray,
    groups: int,
    divided: int,
    expected: int,
    role: str,
) -> None:
    if divided % groups:
        raise ValueError(
            f"{func}: groups={groups} must divide the weight's {divided} {role} channels "
            f"(weight shape {tuple(weight.shape)})"
        )
    if channels != expected:
        raise ValueError(
            f"{func}: input has {channels} channels but weight expects {expected} (weight shape "
            f"{tuple(weight.shape)}, groups={groups})"
        )


def _add_bias(out: np.ndarray, bias: np.ndarray | None) -> None:
    if bias is not None:
        out += bias.reshape(-1, *(1,) * (out.ndim - 2))


class ConvSaved:
    """What a (transposed) convolution's backward needs: the batched input, the weight, the
    geometry, whether the input was unbatched."""

    __slots__ = ("x", "weight", "geometry", "unbatched")

    def __init__(
        self, x: np.ndarray, weight: np.ndarray, geometry: ConvGeometry, was_unbatched: bool
    ) -> None:
        self.x, self.weight, self.geometry, self.unbatched = x, weight, geometry, was_unbatched


def _conv_forward(
    func: str,
    spatial: int,
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None,
    stride: IntOrTuple,
    padding: IntOrTuple | str,
    dilation: IntOrTuple,
    groups: int,
) -> tuple[np.ndarray, ConvSaved]:
    _check_arrays(func, spatial, x, weight, bias, "out_channels, in_channels/groups, *kernel")
    batched, was_unbatched = as_batched(x, spatial)
    groups = groups_count(groups, func)
    out_channels, in_per_group = weight.shape[:2]
    _check_channels(
        func, batched.shape[1], weight, groups, out_channels, in_per_group * groups, "output"
    )
    _check_bias(func, bias, out_channels, weight)
    geometry = conv_geometry(
        func, batched.shape[2:], weight.shape[2:], stride, padding, dilation, groups
    )
    kernel = plan_forward(geometry, batched.shape[0], batched.shape[1])
    out = run_forward(kernel, batched, weight, geometry)
    _add_bias(out, bias)
    # The input itself (held by its tensor anyway) rather than its padded copy.
    return unbatched(out, was_unbatched), ConvSaved(batched, weight, geometry, was_unbatched)


def conv_backward(grad_out: np.ndarray, saved: ConvSaved, needs_input_grad: Needs) -> Grads:
    """Gradients of convolution, delta = grad_out = dL/dz:

    dL/db[f]       = sum_{n, o} delta[n, f, o]
    dL/dw[f, c, k] = sum_{n, o} delta[n, f, o] x_pad[n, c, o S + k D]
                     (correlation of the padded input with delta)
    dL/dx          = full correlation of delta (zero-inserted for S > 1, padded by D (K - 1))
                     with the Rot180, in/out-channel-swapped kernel; padding region removed.

    ``reference_input_grad`` and ``reference_weight_grad`` compute them as written;
    ``plan_backward`` picks the kernels that run.
    """
    x, weight, geometry = saved.x, saved.weight, saved.geometry
    delta = grad_out[np.newaxis] if saved.unbatched else grad_out
    plan = plan_backward(geometry, x.shape[0], x.shape[1], weight.shape[0], needs_input_grad)
    grad_input, grad_weight = run_backward(plan, delta, x, weight, geometry)
    if grad_input is not None and saved.unbatched:
        grad_input = grad_input[0]
    grad_bias = bias_grad(delta) if len(needs_input_grad) > 2 and needs_input_grad[2] else None
    return (
        grad_input if needs_input_grad[0] else None,
        grad_weight if needs_input_grad[1] else None,
        grad_bias,
    )


def conv1d_forward(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    stride: IntOrTuple = 1,
    padding: IntOrTuple | str = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
) -> tuple[np.ndarray, ConvSaved]:
    """z[n, f, l] = b[f] + sum_{c in group(f)} sum_k w[f, c, k] x_pad[n, c, l S + k D]."""
    return _conv_forward("conv1d", 1, x, weight, bias, stride, padding, dilation, groups)


def conv2d_forward(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    stride: IntOrTuple = 1,
    padding: IntOrTuple | str = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
) -> tuple[np.ndarray, ConvSaved]:
    """z[n, f, i, j] = b[f] + sum_{c in group(f)} sum_{p, q} w[f, c, p, q]
    x_pad[n, c, i S_h + p D_h, j S_w + q D_w]."""
    return _conv_forward("conv2d", 2, x, weight, bias, stride, padding, dilation, groups)


conv1d = OpPair("conv1d", conv1d_forward, conv_backward)
conv2d = OpPair("conv2d", conv2d_forward, conv_backward)


# Transposed convolution: the adjoint of convolution.
def _conv_transpose_forward(
    func: str,
    spatial: int,
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None,
    stride: IntOrTuple,
    padding: IntOrTuple,
    output_padding: IntOrTuple,
    groups: int,
    dilation: IntOrTuple,
) -> tuple[np.ndarray, ConvSaved]:
    _check_arrays(func, spatial, x, weight, bias, "in_channels, out_channels/groups, *kernel")
    batched, was_unbatched = as_batched(x, spatial)
    groups = groups_count(groups, func)
    in_channels, out_per_group = weight.shape[:2]
    _check_channels(func, batched.shape[1], weight, groups, in_channels, in_channels, "input")
    _check_bias(func, bias, out_per_group * groups, weight)
    geometry = conv_transpose_geometry(
        func, batched.shape[2:], weight.shape[2:], stride, padding, output_padding, dilation, groups
    )
    out_channels = out_per_group * groups
    # y = conv's dL/dx with delta = x: the zero-inserted (upsampled) input, padded by
    # D (K - 1), correlated with the Rot180 channel-swapped kernel, padding region removed.
    plan = plan_backward(geometry, batched.shape[0], out_channels, in_channels, (True, False))
    out = run_input_grad(plan.input_grad or "adjoint", batched, weight, geometry, out_channels)
    _add_bias(out, bias)
    return unbatched(out, was_unbatched), ConvSaved(batched, weight, geometry, was_unbatched)


def conv_transpose_backward(
    grad_out: np.ndarray, saved: ConvSaved, needs_input_grad: Needs
) -> Grads:
    """Gradients of the transposed convolution y = C^T x (C: the convolution with this weight):

    dL/dx = C dL/dy: convolution's forward applied to grad_out (padded, strided, dilated);
    dL/dw[c, f, k] = sum_{n, o} x[n, c, o] dL/dy_pad[n, f, o S + k D]: convolution's weight
                     gradient with the roles swapped (grad_out as input, x as delta);
    dL/db[f] = sum_{n, o} dL/dy[n, f, o].
    """
    x, weight, geometry = saved.x, saved.weight, saved.geometry
    delta = grad_out[np.newaxis] if saved.unbatched else grad_out
    grad_input = grad_weight = grad_bias = None
    if needs_input_grad[0]:
        kernel = plan_forward(geometry, delta.shape[0], delta.shape[1])
        grad_input = unbatched(run_forward(kernel, delta, weight, geometry), saved.unbatched)
    if needs_input_grad[1]:
        kernel = "reference" if algorithm.reference() else "im2col"
        grad_weight = run_weight_grad(kernel, delta, x, geometry)
    if len(needs_input_grad) > 2 and needs_input_grad[2]:
        grad_bias = bias_grad(delta)
    return grad_input, grad_weight, grad_bias


def conv_transpose1d_forward(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    stride: IntOrTuple = 1,
    padding: IntOrTuple = 0,
    output_padding: IntOrTuple = 0,
    groups: int = 1,
    dilation: IntOrTuple = 1,
) -> tuple[np.ndarray, ConvSaved]:
    """y = conv1d's input gradient with delta = x, plus bias (output (L - 1) S - 2 P + D (K - 1)
    + output_padding + 1)."""
    return _conv_transpose_forward(
        "conv_transpose1d", 1, x, weight, bias, stride, padding, output_padding, groups, dilation
    )


def conv_transpose2d_forward(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    stride: IntOrTuple = 1,
    padding: IntOrTuple = 0,
    output_padding: IntOrTuple = 0,
    groups: int = 1,
    dilation: IntOrTuple = 1,
) -> tuple[np.ndarray, ConvSaved]:
    """y = conv2d's input gradient with delta = x, plus bias (output per axis (L - 1) S - 2 P
    + D (K - 1) + output_padding + 1)."""
    return _conv_transpose_forward(
        "conv_transpose2d", 2, x, weight, bias, stride, padding, output_padding, groups, dilation
    )


conv_transpose1d = OpPair("conv_transpose1d", conv_transpose1d_forward, conv_transpose_backward)
conv_transpose2d = OpPair("conv_transpose2d", conv_transpose2d_forward, conv_transpose_backward)
