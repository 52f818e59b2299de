"""The words of ``explain model``: each layer's configuration, its shape arithmetic with the
numbers filled in, and the backward rule of the notes that connects its gradients."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from convprop import nn
from convprop.data.canvases import IGNORE
from convprop.ops import geometry


def config_of(module: nn.Module | None) -> dict[str, Any]:
    """A layer's settings: its public attributes that are plain values."""
    if module is None:
        return {}
    config: dict[str, Any] = {}
    for key, value in vars(module).items():
        if key.startswith("_") or key == "training":
            continue
        if isinstance(value, (bool, int, float, str)) or value is None:
            config[key] = value
        elif isinstance(value, tuple) and all(isinstance(v, (int, float, str)) for v in value):
            config[key] = list(value)
    return config


def _axes(values: Any, spatial: int) -> tuple[int, ...]:
    if isinstance(values, str):
        return (0,) * spatial
    return geometry.to_tuple(values, spatial, "explain", "size")


def _conv_arithmetic(module: Any, in_size: Sequence[int], out_size: Sequence[int]) -> str:
    spatial = len(in_size)
    kernel = _axes(module.kernel_size, spatial)
    stride = _axes(module.stride, spatial)
    dilation = _axes(module.dilation, spatial)
    pads = geometry.conv_padding(module.padding, kernel, stride, dilation, "explain")
    parts = []
    for n, k, s, d, (before, after), o in zip(
        in_size, kernel, stride, dilation, pads, out_size, strict=True
    ):
        span = f"{k}" if d == 1 else f"{d}*({k}-1) - 1"
        padding = f"2*{before}" if before == after else f"{before}+{after}"
        parts.append(
            f"({n} + {padding} - {span})/{s} + 1 = {o}"
            if d == 1
            else f"({n} + {padding} - {span})/{s} + 1 = {o}"
        )
    return "; ".join(parts)


def _transpose_arithmetic(module: Any, in_size: Sequence[int], out_size: Sequence[int]) -> str:
    spatial = len(in_size)
    kernel, stride = _axes(module.kernel_size, spatial), _axes(module.stride, spatial)
    padding, dilation = _axes(module.padding, spatial), _axes(module.dilation, spatial)
    extra = _axes(module.output_padding, spatial)
    return "; ".join(
        f"({n} - 1)*{s} - 2*{p} + {d}*({k} - 1) + {e} + 1 = {o}"
        for n, s, p, d, k, e, o in zip(
            in_size, stride, padding, dilation, kernel, extra, out_size, strict=True
        )
    )


def _pool_arithmetic(module: Any, in_size: Sequence[int], out_size: Sequence[int]) -> str:
    spatial = len(in_size)
    kernel = _axes(module.kernel_size, spatial)
    stride = _axes(module.stride if module.stride is not None else module.kernel_size, spatial)
    padding = _axes(module.padding, spatial)
    rounding = "ceil" if getattr(module, "ceil_mode", False) else "floor"
    return "; ".join(
        f"{rounding}(({n} + 2*{p} - {k})/{s}) + 1 = {o}"
        for n, k, s, p, o in zip(in_size, kernel, stride, padding, out_size, strict=True)
    )


def _joined_axis(input_shapes: Sequence[Sequence[int]], output_shape: Sequence[int]) -> int:
    """The axis a concatenation joined along: where the inputs' sizes add up to the output's."""
    for axis in range(1, len(output_shape)):
        if sum(shape[axis] for shape in input_shapes) == output_shape[axis]:
            return axis
    return 1


def shape_arithmetic(
    kind: str,
    module: Any,
    input_shape: Sequence[int],
    output_shape: Sequence[int],
    input_shapes: Sequence[Sequence[int]] = (),
) -> str:
    """The layer's output size worked out from its input's (per spatial axis), or the shapes;
    ``input_shapes``, every input's, for an op of several inputs."""
    in_size, out_size = input_shape[2:], output_shape[2:]
    if kind == "cat" and len(input_shapes) > 1:
        axis = _joined_axis(input_shapes, output_shape)
        sizes = " + ".join(str(shape[axis]) for shape in input_shapes)
        shapes = " + ".join(str(tuple(shape[1:])) for shape in input_shapes)
        what = "channels" if axis == 1 else f"along axis {axis - 1}"
        return f"{sizes} {what} = {output_shape[axis]}: {shapes} -> {tuple(output_shape[1:])}"
    if kind in ("Conv1d", "Conv2d"):
        return _conv_arithmetic(module, in_size, out_size)
    if kind in ("ConvTranspose1d", "ConvTranspose2d"):
        return _transpose_arithmetic(module, in_size, out_size)
    if kind in ("MaxPool1d", "MaxPool2d", "AvgPool1d", "AvgPool2d"):
        return _pool_arithmetic(module, in_size, out_size)
    if kind == "Linear":
        return f"{input_shape[-1]} features -> {output_shape[-1]}"
    return f"{tuple(input_shape[1:])} -> {tuple(output_shape[1:])}"


def _size(values: Sequence[int]) -> str:
    return "x".join(str(v) for v in values)


def _transpose_rule(module: Any, input_shape: Sequence[int], output_shape: Sequence[int]) -> str:
    """The notes' upsampling: a transposed convolution is the input gradient of the
    convolution with the same kernel, so its backward is that convolution's forward."""
    spatial = len(input_shape) - 2
    kernel, stride = _axes(module.kernel_size, spatial), _axes(module.stride, spatial)
    padding, dilation = _axes(module.padding, spatial), _axes(module.dilation, spatial)
    extra = _axes(module.output_padding, spatial)
    border = [d * (k - 1) - p for k, d, p in zip(kernel, dilation, padding, strict=True)]
    zeros = [s - 1 for s in stride]
    between = (
        f"{zeros[0]} zero{'s' if zeros[0] > 1 else ''}"
        if len(set(zeros)) == 1
        else f"{_size(zeros)} zeros"
    )
    inserted = f"zero-inserted ({between} between neighbours), " if any(zeros) else ""
    framed = f"padded by {_size(border)}"
    if any(b < 0 for b in border):
        framed = f"padded by {border} (a negative padding crops)"
    if any(extra):
        framed += f" (+{_size(extra)} at the end: output_padding)"
    x = f"{_size(input_shape[2:])}x{input_shape[1]}"
    delta = f"{_size(output_shape[2:])}x{output_shape[1]}"
    strided = f"at stride {_size(stride)}"
    if any(padding):
        strided += f", padding {_size(padding)}"
    if any(d > 1 for d in dilation):
        strided += f", dilation {_size(dilation)}"
    return (
        f"transposed convolution {_size(kernel)}: forward = the input ({x}) {inserted}{framed} "
        "and correlated with the channel-swapped Rot180 kernels (the notes' upsampling: "
        "zero insertion, then convolution); "
        f"dL/dx = delta ({delta}) correlated with the kernels {strided}, an ordinary strided "
        "convolution (the forward of the Conv it transposes); dL/dw = delta correlated with "
        "the input (a convolution's weight gradient, input and delta swapped); "
        "dL/db = the sum of delta"
    )


def pixel_loss_rule(labelled: int, ignored: int) -> str:
    """A segmenter's loss: the mean over the labelled pixels of the per-pixel cross-entropy."""
    return (
        f"per-pixel softmax + cross-entropy, the mean over the {labelled} labelled pixels "
        f"({ignored} ignored): dL/ds = (p - onehot(mask)) / {labelled} at each labelled pixel, "
        f"0 at the ignored ones (mask {IGNORE})"
    )


def _cat_rule(input_shapes: Sequence[Sequence[int]], output_shape: Sequence[int]) -> str:
    axis = _joined_axis(input_shapes, output_shape)
    start, slices = 0, []
    for number, shape in enumerate(input_shapes, 1):
        slices.append(f"{start}..{start + shape[axis] - 1} to input {number}")
        start += shape[axis]
    where = "the channels" if axis == 1 else f"axis {axis - 1}"
    return (
        f"concatenation of {len(input_shapes)} inputs along {where}: delta "
        f"({_size(output_shape[2:])}x{output_shape[1]}) split back into its slices, "
        f"{', '.join(slices)}; where an input also feeds another layer (a skip connection), "
        "its gradient is the sum of both shares"
    )


def _conv_rule(module: Any, spatial: int, output_shape: Sequence[int]) -> str:
    kernel = _axes(module.kernel_size, spatial)
    stride, dilation = _axes(module.stride, spatial), _axes(module.dilation, spatial)
    pads = geometry.conv_padding(module.padding, kernel, stride, dilation, "explain")
    full = [d * (k - 1) for k, d in zip(kernel, dilation, strict=True)]
    delta = f"{_size(output_shape[2:])}x{output_shape[1]}"
    inserted = f"zero-inserted for stride {_size(stride)}, " if any(s > 1 for s in stride) else ""
    cut = (
        f"; then the padding {_size([b for b, _ in pads])} is removed" if any(sum(pads, ())) else ""
    )
    return (
        f"dL/dx = full convolution of delta ({delta}, {inserted}padded by {_size(full)}) "
        f"with the channel-swapped Rot180 kernels{cut}; dL/dw = the input correlated with "
        "delta (summed over every position the kernel visited); dL/db = the sum of delta"
    )


def _pool_rule(kind: str, module: Any, spatial: int) -> str:
    kernel = _axes(module.kernel_size, spatial)
    if kind.startswith("Max"):
        return (
            f"max pool {_size(kernel)}: each delta routed to its window's argmax (1 of "
            f"{math.prod(kernel)} positions), += where windows overlap; the others get 0"
        )
    return (
        f"mean pool {_size(kernel)}: each delta spread evenly over its window "
        f"(1/{math.prod(kernel)} to each position), += where windows overlap"
    )


# The rules whose words do not depend on the layer's numbers: (layer and op names, rule).
_FIXED: list[tuple[tuple[str, ...], str]] = [
    (
        ("AdaptiveAvgPool1d", "AdaptiveAvgPool2d"),
        "adaptive average: each delta spread evenly over the positions of its window",
    ),
    (
        ("AdaptiveMaxPool1d", "AdaptiveMaxPool2d"),
        "adaptive max: each delta routed to its window's argmax",
    ),
    (("ReLU", "relu"), "ReLU: delta * (z > 0)"),
    (("Sigmoid", "sigmoid"), "sigmoid: delta * s (1 - s)"),
    (("Tanh", "tanh"), "tanh: delta * (1 - tanh(z)^2)"),
    (("LeakyReLU", "leaky_relu"), "leaky ReLU: delta where z > 0, slope * delta elsewhere"),
    (
        ("Linear",),
        "linear y = W x + b (deck 002's Y = WX + b): dL/dx = W^T delta, "
        "dL/dW = delta x^T, dL/db = delta",
    ),
    (
        ("BatchNorm1d", "BatchNorm2d"),
        "batch norm (eval: the running statistics are constants): dL/dx = delta * "
        "gamma / sqrt(var + eps); dL/dgamma = sum of delta * x_hat, dL/dbeta = sum of delta",
    ),
    (("Flatten", "reshape"), "flatten: delta folded back into the maps it came from"),
    (
        ("add",),
        "add: each summand receives delta unchanged; where a value fed two paths (a "
        "fork, as the residual shortcut), their gradients add",
    ),
    (("loss",), "softmax + cross-entropy: dL/ds = p - onehot(label)"),
]
_FIXED_RULES = {name: text for names, text in _FIXED for name in names}


def rule(
    kind: str,
    module: Any,
    input_shape: Sequence[int],
    output_shape: Sequence[int],
    inputs: int = 1,
    input_shapes: Sequence[Sequence[int]] = (),
) -> str:
    """The backward rule of the notes for this layer, with its numbers (``input_shapes``:
    every input's, for an op of several inputs)."""
    spatial = len(input_shape) - 2
    if kind in ("Conv1d", "Conv2d"):
        return _conv_rule(module, spatial, output_shape)
    if kind in ("ConvTranspose1d", "ConvTranspose2d"):
        return _transpose_rule(module, input_shape, output_shape)
    if kind in ("MaxPool1d", "MaxPool2d", "AvgPool1d", "AvgPool2d"):
        return _pool_rule(kind, module, spatial)
    if kind == "cat" and len(input_shapes) > 1:
        return _cat_rule(input_shapes, output_shape)
    if kind == "cat" and inputs == 1:
        return "concatenation of 1 input: delta passes unchanged"
    if kind == "cat":
        return (
            f"concatenation of {inputs} inputs: delta split back along the channels, each "
            "input its own slice"
        )
    if kind in ("Dropout", "Dropout2d", "Identity"):
        return f"{kind} (eval mode): delta passes unchanged"
    return _FIXED_RULES.get(kind, f"{kind}: its hand-derived backward")


def top_entries(array: np.ndarray, count: int = 3) -> list[tuple[tuple[int, ...], float]]:
    """The ``count`` entries of largest magnitude, with their indices."""
    flat = np.abs(array).ravel()
    order = np.argsort(-flat, kind="stable")[:count]
    return [
        (tuple(int(i) for i in np.unravel_index(j, array.shape)), float(array.ravel()[j]))
        for j in order
    ]
