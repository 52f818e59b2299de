"""``convprop.onnx.export``: one traced forward pass written as an ONNX graph.

The model runs once in eval mode under ``convprop.autograd.trace()``, which records every op
with its arguments. Each op becomes one or a few ONNX nodes (``CONVERTERS``, by op name); the
model's parameters and buffers become initializers under their ``state_dict`` names, other
tensors the ops read (scalars of an expression) constants. The batch dimension is symbolic by
default: every shape the graph holds is written with ``0`` ("as the input") for the batch.
An op ONNX cannot express raises :class:`~convprop.onnx.OnnxError` naming the layer that ran
it and why; nothing is dropped silently.

The notes' own layers: zero insertion (``dilate``) is a depthwise ConvTranspose with a unit
1x1 kernel and stride S (it places x[o] at o S and zeros between), decimation a strided Slice.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from convprop import onnx as package
from convprop.autograd import Tensor, TracedOp, no_grad, trace
from convprop.nn.module import Module
from convprop.onnx import OnnxError
from convprop.onnx.export_graph import (
    CONVERTERS,
    ONNX_DTYPES,
    ExportGraph,
    converts,
    onnx_pads,
)
from convprop.ops import geometry


# ----------------------------------------------------------------------------- converters
@converts("conv1d", "conv2d")
def _conv(graph: ExportGraph, op: TracedOp) -> str:
    x, weight, bias = op.inputs
    stride, padding, dilation, groups = op.params
    assert weight is not None
    spatial = weight.ndim - 2
    kernel = weight.shape[2:]
    strides = geometry.to_tuple(stride, spatial, op.name, "stride")
    dilations = geometry.to_tuple(dilation, spatial, op.name, "dilation")
    pads = geometry.conv_padding(padding, kernel, strides, dilations, op.name)
    inputs = [graph.value(x), graph.value(weight)] + (
        [graph.value(bias)] if bias is not None else []
    )
    return graph.node(
        "Conv",
        inputs,
        kernel_shape=list(kernel),
        strides=list(strides),
        dilations=list(dilations),
        pads=onnx_pads(pads),
        group=int(groups),
    )


@converts("conv_transpose1d", "conv_transpose2d")
def _conv_transpose(graph: ExportGraph, op: TracedOp) -> str:
    x, weight, bias = op.inputs
    stride, padding, output_padding, groups, dilation = op.params
    assert weight is not None
    spatial = weight.ndim - 2
    values = {
        name: geometry.to_tuple(value, spatial, op.name, name)
        for name, value in (
            ("stride", stride),
            ("padding", padding),
            ("output_padding", output_padding),
            ("dilation", dilation),
        )
    }
    inputs = [graph.value(x), graph.value(weight)] + (
        [graph.value(bias)] if bias is not None else []
    )
    return graph.node(
        "ConvTranspose",
        inputs,
        kernel_shape=list(weight.shape[2:]),
        strides=list(values["stride"]),
        dilations=list(values["dilation"]),
        pads=list(values["padding"]) * 2,
        output_padding=list(values["output_padding"]),
        group=int(groups),
    )


@converts("max_pool1d", "max_pool2d")
def _max_pool(graph: ExportGraph, op: TracedOp) -> str:
    (x,) = op.inputs
    kernel_size, stride, padding, dilation, ceil_mode, return_indices = op.params
    if return_indices:
        raise graph.fail(op, "ONNX's MaxPool indices count differently from PyTorch's")
    assert x is not None
    kernel, strides, pads, dilations = geometry.pool_arguments(
        op.name, x.ndim - 2, kernel_size, stride, padding, dilation
    )
    return graph.node(
        "MaxPool",
        [graph.value(x)],
        kernel_shape=list(kernel),
        strides=list(strides),
        pads=list(pads) * 2,
        dilations=list(dilations),
        ceil_mode=int(bool(ceil_mode)),
    )


@converts("avg_pool1d", "avg_pool2d")
def _avg_pool(graph: ExportGraph, op: TracedOp) -> str:
    (x,) = op.inputs
    kernel_size, stride, padding, ceil_mode, count_include_pad, *rest = op.params
    if rest and rest[0] is not None:
        raise graph.fail(op, "ONNX's AveragePool has no divisor_override")
    assert x is not None
    kernel, strides, pads, _ = geometry.pool_arguments(
        op.name, x.ndim - 2, kernel_size, stride, padding, 1
    )
    return graph.node(
        "AveragePool",
        [graph.value(x)],
        kernel_shape=list(kernel),
        strides=list(strides),
        pads=list(pads) * 2,
        ceil_mode=int(bool(ceil_mode)),
        count_include_pad=int(bool(count_include_pad)),
    )


def _adaptive(graph: ExportGraph, op: TracedOp, onnx_op: str) -> str:
    """Global pooling for a 1x1 output, a pool of stride in/out where the sizes divide; else
    (average pooling only, which is linear) one MatMul per axis with its averaging matrix."""
    (x,) = op.inputs
    assert x is not None
    in_size, out_size = x.shape[2:], op.output.shape[2:]
    if all(o == 1 for o in out_size):
        return graph.node(f"Global{onnx_op}", [graph.value(x)])
    if all(n % o == 0 for n, o in zip(in_size, out_size, strict=True)):
        steps = [n // o for n, o in zip(in_size, out_size, strict=True)]
        return graph.node(onnx_op, [graph.value(x)], kernel_shape=steps, strides=steps)
    if onnx_op == "MaxPool":
        raise graph.fail(
            op,
            f"its windows for input {tuple(in_size)} and output {tuple(out_size)} overlap "
            "unevenly, which no ONNX pool expresses",
        )
    name = graph.value(x)
    spatial = len(in_size)
    for axis, (n, o) in enumerate(zip(in_size, out_size, strict=True)):
        if n == o:
            continue
        # Window i averages samples floor(i n / o) .. ceil((i + 1) n / o) - 1 (PyTorch's rule).
        matrix = np.zeros((n, o), dtype=x.dtype)
        for i in range(o):
            start, end = (i * n) // o, -(-((i + 1) * n) // o)
            matrix[start:end, i] = 1.0 / (end - start)
        last = 2 + spatial - 1
        moved = (
            name
            if axis + 2 == last
            else graph.node("Transpose", [name], perm=_swap(x.ndim, axis + 2, last))
        )
        product = graph.node("MatMul", [moved, graph.constant(matrix, "averaging")])
        name = (
            product
            if axis + 2 == last
            else graph.node("Transpose", [product], perm=_swap(x.ndim, axis + 2, last))
        )
    return name


def _swap(ndim: int, a: int, b: int) -> list[int]:
    perm = list(range(ndim))
    perm[a], perm[b] = perm[b], perm[a]
    return perm


@converts("adaptive_avg_pool1d", "adaptive_avg_pool2d")
def _adaptive_avg(graph: ExportGraph, op: TracedOp) -> str:
    return _adaptive(graph, op, "AveragePool")


@converts("adaptive_max_pool1d", "adaptive_max_pool2d")
def _adaptive_max(graph: ExportGraph, op: TracedOp) -> str:
    if len(op.params) > 1 and op.params[1]:
        raise graph.fail(op, "ONNX's MaxPool indices count differently from PyTorch's")
    return _adaptive(graph, op, "MaxPool")


@converts("linear")
def _linear(graph: ExportGraph, op: TracedOp) -> str:
    x, weight, bias = op.inputs
    assert x is not None and weight is not None
    if x.ndim == 2:
        inputs = [graph.value(x), graph.value(weight)]
        inputs += [graph.value(bias)] if bias is not None else []
        return graph.node("Gemm", inputs, transB=1)
    product = graph.node("MatMul", [graph.value(x), graph.node("Transpose", [graph.value(weight)])])
    return graph.node("Add", [product, graph.value(bias)]) if bias is not None else product


@converts("batch_norm")
def _batch_norm(graph: ExportGraph, op: TracedOp) -> str:
    x, weight, bias = op.inputs
    running_mean, running_var, training, _, eps = op.params
    if training or running_mean is None or running_var is None:
        raise graph.fail(op, "batch norm exports in eval mode, with running statistics")
    assert x is not None
    channels = x.shape[1]
    scale = (
        graph.value(weight) if weight is not None else graph.constant(np.ones(channels, x.dtype))
    )
    shift = graph.value(bias) if bias is not None else graph.constant(np.zeros(channels, x.dtype))
    statistics = [graph.names.get(id(a)) or graph.constant(a) for a in (running_mean, running_var)]
    return graph.node(
        "BatchNormalization", [graph.value(x), scale, shift, *statistics], epsilon=float(eps)
    )


_POINTWISE = {
    "relu": "Relu",
    "sigmoid": "Sigmoid",
    "tanh": "Tanh",
    "exp": "Exp",
    "log": "Log",
    "sqrt": "Sqrt",
    "abs": "Abs",
    "neg": "Neg",
    "clone": "Identity",
}
_BINARY = {
    "add": "Add",
    "sub": "Sub",
    "mul": "Mul",
    "div": "Div",
    "pow": "Pow",
    "matmul": "MatMul",
    "equal": "Equal",
    "greater": "Greater",
    "less": "Less",
    "greater_equal": "GreaterOrEqual",
    "less_equal": "LessOrEqual",
}


@converts(*_POINTWISE)
def _pointwise(graph: ExportGraph, op: TracedOp) -> str:
    return graph.node(_POINTWISE[op.name], [graph.value(op.inputs[0])])


@converts(*_BINARY)
def _binary(graph: ExportGraph, op: TracedOp) -> str:
    a, b = op.inputs
    return graph.node(_BINARY[op.name], [graph.value(a), graph.value(b)])


@converts("not_equal")
def _not_equal(graph: ExportGraph, op: TracedOp) -> str:
    a, b = op.inputs
    return graph.node("Not", [graph.node("Equal", [graph.value(a), graph.value(b)])])


@converts("leaky_relu")
def _leaky_relu(graph: ExportGraph, op: TracedOp) -> str:
    return graph.node("LeakyRelu", [graph.value(op.inputs[0])], alpha=float(op.params[0]))


@converts("elu")
def _elu(graph: ExportGraph, op: TracedOp) -> str:
    return graph.node("Elu", [graph.value(op.inputs[0])], alpha=float(op.params[0]))


@converts("gelu")
def _gelu(graph: ExportGraph, op: TracedOp) -> str:
    x = graph.value(op.inputs[0])
    approximate = op.params[0] if op.params else "none"
    if graph.opset >= 20:
        return graph.node("Gelu", [x], approximate=approximate)
    dtype = op.output.dtype
    if approximate == "tanh":  # 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
        cube = graph.node("Mul", [x, graph.node("Mul", [x, x])])
        inner = graph.node(
            "Add", [x, graph.node("Mul", [cube, graph.constant(0.044715, dtype=dtype)])]
        )
        scaled = graph.node("Mul", [inner, graph.constant(math.sqrt(2 / math.pi), dtype=dtype)])
        gate = graph.node("Add", [graph.node("Tanh", [scaled]), graph.constant(1.0, dtype=dtype)])
    else:  # 0.5 x (1 + erf(x / sqrt 2))
        erf = graph.node("Erf", [graph.node("Div", [x, graph.constant(math.sqrt(2), dtype=dtype)])])
        gate = graph.node("Add", [erf, graph.constant(1.0, dtype=dtype)])
    return graph.node("Mul", [graph.node("Mul", [x, gate]), graph.constant(0.5, dtype=dtype)])


@converts("silu")
def _silu(graph: ExportGraph, op: TracedOp) -> str:
    x = graph.value(op.inputs[0])
    return graph.node("Mul", [x, graph.node("Sigmoid", [x])])


@converts("softmax", "log_softmax")
def _softmax(graph: ExportGraph, op: TracedOp) -> str:
    (x,) = op.inputs
    assert x is not None
    dim = op.params[0] if op.params[0] is not None else (0 if x.ndim in (0, 1, 3) else 1)
    onnx_op = "Softmax" if op.name == "softmax" else "LogSoftmax"
    return graph.node(onnx_op, [graph.value(x)], axis=int(dim))


@converts("clamp")
def _clamp(graph: ExportGraph, op: TracedOp) -> str:
    low, high = op.params
    dtype = op.output.dtype
    bounds = [graph.constant(v, dtype=dtype) if v is not None else "" for v in (low, high)]
    while bounds and bounds[-1] == "":
        bounds.pop()
    return graph.node("Clip", [graph.value(op.inputs[0]), *bounds])


@converts("where")
def _where(graph: ExportGraph, op: TracedOp) -> str:
    return graph.node("Where", [graph.value(t) for t in op.inputs])


def _axes(dims: Any, ndim: int) -> list[int]:
    if dims is None:
        return list(range(ndim))
    values = [dims] if isinstance(dims, int) else list(dims)
    return sorted(d % ndim for d in values)


@converts("sum", "mean", "amax")
def _reduce(graph: ExportGraph, op: TracedOp) -> str:
    (x,) = op.inputs
    assert x is not None
    dims, keepdim = op.params
    axes = _axes(dims, x.ndim)
    name = graph.value(x)
    if graph.batched.get(name) and graph.dynamic_batch and 0 in axes:
        raise graph.fail(op, "it sums over the batch, which a batch-independent graph cannot")
    onnx_op = {"sum": "ReduceSum", "mean": "ReduceMean", "amax": "ReduceMax"}[op.name]
    axes_as_input = onnx_op == "ReduceSum" or graph.opset >= 18
    if axes_as_input:
        result = graph.node(onnx_op, [name, graph.ints(axes, "axes")], keepdims=int(keepdim))
    else:
        result = graph.node(onnx_op, [name], axes=axes, keepdims=int(keepdim))
    graph.batched[result] = graph.batched.get(name, False) and 0 not in axes
    return result


@converts("reshape")
def _reshape(graph: ExportGraph, op: TracedOp) -> str:
    (x,) = op.inputs
    assert x is not None
    name = graph.value(x)
    batched = graph.batched.get(name, False) and graph.dynamic_batch
    target = list(op.output.shape)
    if batched:
        if not target or target[0] != x.shape[0]:
            raise graph.fail(
                op,
                f"it reshapes {tuple(x.shape)} to {tuple(target)} across the batch "
                "(export with dynamic_batch=False)",
            )
        target[0] = 0
        if len(target) == 2:  # flatten: Flatten keeps the batch without a shape constant
            result = graph.node("Flatten", [name], axis=1)
            graph.batched[result] = True
            return result
    result = graph.node("Reshape", [name, graph.ints(target)])
    graph.batched[result] = batched
    return result


@converts("permute")
def _permute(graph: ExportGraph, op: TracedOp) -> str:
    (dims,) = op.params
    name = graph.value(op.inputs[0])
    perm = [int(d) % len(dims) for d in dims]
    result = graph.node("Transpose", [name], perm=perm)
    graph.batched[result] = graph.batched.get(name, False) and perm[0] == 0
    return result


@converts("expand")
def _expand(graph: ExportGraph, op: TracedOp) -> str:
    (x,) = op.inputs
    assert x is not None
    name = graph.value(x)
    shape = list(op.output.shape)
    if graph.batched.get(name) and graph.dynamic_batch:
        shape[0] = 1  # Expand broadcasts both ways: 1 keeps the input's batch
    return graph.node("Expand", [name, graph.ints(shape)])


@converts("getitem")
def _getitem(graph: ExportGraph, op: TracedOp) -> str:
    (x,) = op.inputs
    assert x is not None
    (index,) = op.params
    items = list(index) if isinstance(index, tuple) else [index]
    if any(not isinstance(i, (slice, int, type(Ellipsis), type(None))) for i in items):
        raise graph.fail(op, "only basic indexing (slices, ints, ..., None) exports")
    if Ellipsis in items:
        at = items.index(Ellipsis)
        fill = x.ndim - sum(1 for i in items if i is not None and i is not Ellipsis)
        items[at : at + 1] = [slice(None)] * fill
    name = graph.value(x)
    starts: list[int] = []
    ends: list[int] = []
    axes: list[int] = []
    steps: list[int] = []
    squeeze: list[int] = []
    unsqueeze: list[int] = []
    axis = 0
    for position, item in enumerate(items):
        if item is None:
            unsqueeze.append(position - len(squeeze))
            continue
        if isinstance(item, int):
            start = item % x.shape[axis]
            starts.append(start)
            ends.append(start + 1)
            axes.append(axis)
            steps.append(1)
            squeeze.append(axis)
        elif item != slice(None):
            begin, end, step = item.indices(x.shape[axis])
            starts.append(begin)
            ends.append(end if step > 0 or end >= 0 else -(2**62))
            axes.append(axis)
            steps.append(step)
        axis += 1
    if 0 in axes and graph.batched.get(name) and graph.dynamic_batch:
        raise graph.fail(op, "it indexes the batch axis (export with dynamic_batch=False)")
    if axes:
        name = graph.node(
            "Slice",
            [
                name,
                graph.ints(starts, "starts"),
                graph.ints(ends, "ends"),
                graph.ints(axes, "axes"),
                graph.ints(steps, "steps"),
            ],
        )
    if squeeze:
        name = graph.node("Squeeze", [name, graph.ints(squeeze, "axes")])
    if unsqueeze:
        name = graph.node("Unsqueeze", [name, graph.ints(unsqueeze, "axes")])
    return name if name != graph.value(x) else graph.node("Identity", [name])


@converts("cat")
def _cat(graph: ExportGraph, op: TracedOp) -> str:
    return graph.node("Concat", [graph.value(t) for t in op.inputs], axis=int(op.params[0]))


@converts("stack")
def _stack(graph: ExportGraph, op: TracedOp) -> str:
    dim = int(op.params[0]) % op.output.ndim
    axes = graph.ints([dim], "axes")
    parts = [graph.node("Unsqueeze", [graph.value(t), axes]) for t in op.inputs]
    return graph.node("Concat", parts, axis=dim)


@converts("to")
def _cast(graph: ExportGraph, op: TracedOp) -> str:
    return graph.node("Cast", [graph.value(op.inputs[0])], to=ONNX_DTYPES[op.output.dtype])


@converts("pad")
def _pad(graph: ExportGraph, op: TracedOp) -> str:
    (x,) = op.inputs
    assert x is not None
    pad, mode, value = op.params
    modes = {"constant": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}
    if mode == "circular" and graph.opset < 19:
        raise graph.fail(op, "circular padding needs opset 19 or newer")
    pairs = [(0, 0)] * x.ndim
    for i in range(len(pad) // 2):  # PyTorch's pad lists the last axis first
        pairs[x.ndim - 1 - i] = (pad[2 * i], pad[2 * i + 1])
    if any(before < 0 or after < 0 for before, after in pairs):
        return _negative_pad(graph, op, pairs)
    inputs = [graph.value(x), graph.ints(onnx_pads(pairs), "pads")]
    if mode == "constant":
        inputs.append(graph.constant(value or 0.0, "pad_value", dtype=x.dtype))
    return graph.node("Pad", inputs, mode=modes[mode])


def _negative_pad(graph: ExportGraph, op: TracedOp, pairs: list[tuple[int, int]]) -> str:
    """Negative padding crops: a Slice."""
    (x,) = op.inputs
    assert x is not None
    if any(b > 0 or a > 0 for b, a in pairs):
        raise graph.fail(op, "it pads and crops at once")
    axes = [i for i, (b, a) in enumerate(pairs) if b or a]
    starts = [-pairs[i][0] for i in axes]
    ends = [x.shape[i] + pairs[i][1] for i in axes]
    return graph.node(
        "Slice",
        [
            graph.value(x),
            graph.ints(starts, "starts"),
            graph.ints(ends, "ends"),
            graph.ints(axes, "axes"),
        ],
    )


@converts("interpolate")
def _interpolate(graph: ExportGraph, op: TracedOp) -> str:
    (x,) = op.inputs
    assert x is not None
    size, scale_factor, mode, align_corners, recompute, antialias = op.params
    if antialias:
        raise graph.fail(op, "ONNX's Resize has no antialias for PyTorch's kernels")
    name = graph.value(x)
    spatial = x.ndim - 2
    attributes: dict[str, Any]
    if mode in ("nearest", "nearest-exact"):
        attributes = {
            "mode": "nearest",
            "coordinate_transformation_mode": "asymmetric",
            "nearest_mode": "floor",
        }
        if mode == "nearest-exact":
            attributes.update(
                coordinate_transformation_mode="half_pixel", nearest_mode="round_prefer_ceil"
            )
    elif mode in ("linear", "bilinear", "trilinear"):
        attributes = {
            "mode": "linear",
            "coordinate_transformation_mode": "align_corners"
            if align_corners
            else "pytorch_half_pixel",
        }
    else:
        raise graph.fail(op, f"mode {mode!r} has no exact ONNX Resize")
    if scale_factor is not None and not recompute:
        factors = [
            float(f)
            for f in (
                scale_factor if isinstance(scale_factor, Sequence) else [scale_factor] * spatial
            )
        ]
        scales = graph.constant(np.array([1.0, 1.0, *factors], np.float32), "scales")
        return graph.node("Resize", [name, "", scales], **attributes)
    shape = graph.node("Shape", [name], start=0, end=2)
    sizes = graph.node("Concat", [shape, graph.ints(op.output.shape[2:], "sizes")], axis=0)
    graph.batched[sizes] = False
    result = graph.node("Resize", [name, "", "", sizes], **attributes)
    graph.batched[result] = graph.batched.get(name, False)
    return result


@converts("pixel_shuffle")
def _pixel_shuffle(graph: ExportGraph, op: TracedOp) -> str:
    return graph.node(
        "DepthToSpace", [graph.value(op.inputs[0])], blocksize=int(op.params[0]), mode="CRD"
    )


@converts("pixel_unshuffle")
def _pixel_unshuffle(graph: ExportGraph, op: TracedOp) -> str:
    (x,) = op.inputs
    assert x is not None
    r = int(op.params[0])
    n, c, h, w = x.shape
    name = graph.value(x)
    batched = graph.batched.get(name, False)
    split = graph.node(
        "Reshape", [name, graph.ints(graph.shape_of([n, c, h // r, r, w // r, r], batched))]
    )
    moved = graph.node("Transpose", [split], perm=[0, 1, 3, 5, 2, 4])
    return graph.node(
        "Reshape", [moved, graph.ints(graph.shape_of([n, c * r * r, h // r, w // r], batched))]
    )


@converts("dilate")
def _dilate(graph: ExportGraph, op: TracedOp) -> str:
    """Zero insertion: each channel's ConvTranspose with a unit 1x1 kernel and stride S."""
    (x,) = op.inputs
    assert x is not None
    spatial = x.ndim - 2
    factors = geometry.to_tuple(op.params[0], spatial, "dilate", "factor")
    channels = x.shape[1]
    unit = graph.constant(np.ones((channels, 1, *(1,) * spatial), x.dtype), "unit_kernel")
    return graph.node(
        "ConvTranspose",
        [graph.value(x), unit],
        kernel_shape=[1] * spatial,
        strides=list(factors),
        group=channels,
    )


@converts("decimate")
def _decimate(graph: ExportGraph, op: TracedOp) -> str:
    """Decimation keeps every S-th sample: a Slice with steps S."""
    (x,) = op.inputs
    assert x is not None
    spatial = x.ndim - 2
    factors = geometry.to_tuple(op.params[0], spatial, "decimate", "factor")
    axes = list(range(2, x.ndim))
    return graph.node(
        "Slice",
        [
            graph.value(x),
            graph.ints([0] * spatial, "starts"),
            graph.ints([2**62] * spatial, "ends"),
            graph.ints(axes, "axes"),
            graph.ints(factors, "steps"),
        ],
    )


@converts("dropout")
def _dropout(graph: ExportGraph, op: TracedOp) -> str:
    raise graph.fail(op, "dropout in training mode is random (export in eval mode)")


# ----------------------------------------------------------------------------- export
@contextmanager
def _layer_marks(
    model: Module, ops: list[TracedOp], marks: list[tuple[int, str]]
) -> Iterator[None]:
    """Note in ``marks`` which module runs from which traced op on, for error messages."""
    stack: list[str] = ["the model"]
    handles = []
    for name, module in model.named_modules():
        label = f"{name} ({type(module).__name__})" if name else f"{type(module).__name__}"

        def enter(module: Module, args: Any, label: str = label) -> None:
            stack.append(label)
            marks.append((len(ops), label))

        def leave(module: Module, args: Any, output: Any) -> None:
            stack.pop()
            marks.append((len(ops), stack[-1]))

        handles.append(module.register_forward_pre_hook(enter))
        handles.append(module.register_forward_hook(leave))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def export(
    model: Module,
    example_input: Any,
    path: str | Path,
    *,
    opset_version: int | None = None,
    dynamic_batch: bool = True,
    input_names: Sequence[str] = ("input",),
    output_names: Sequence[str] = ("output",),
) -> Path:
    """Write ``model`` as an ONNX file at ``path``, traced on ``example_input`` (N, ...).

    The model runs once in eval mode (its mode is restored after). The graph's input and
    output are named ``input_names[0]`` and ``output_names[0]``; with ``dynamic_batch`` their
    first axis is the symbolic ``batch``. Returns the path. Raises
    :class:`~convprop.onnx.OnnxError` for a layer ONNX cannot express.
    """
    onnx = package.require("onnx")
    opset = package.DEFAULT_OPSET if opset_version is None else int(opset_version)
    if not package.OLDEST_OPSET <= opset <= onnx.defs.onnx_opset_version():
        raise OnnxError(
            f"opset_version must be between {package.OLDEST_OPSET} and "
            f"{onnx.defs.onnx_opset_version()}, got {opset_version}"
        )
    x = example_input if isinstance(example_input, Tensor) else Tensor(np.asarray(example_input))
    batch = x.shape[0] if x.ndim else 1
    graph = ExportGraph(onnx, opset, dynamic_batch, batch)
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        graph.bind(tensor, graph.fresh(name), False)
        graph.initializers.append(
            onnx.numpy_helper.from_array(tensor.data, graph.names[id(tensor)])
        )
    input_name = graph.fresh(input_names[0])
    graph.bind(x, input_name, True)
    was_training = model.training
    model.eval()
    try:
        marks: list[tuple[int, str]] = []
        with no_grad(), trace() as ops, _layer_marks(model, ops, marks):
            output = model(x)
    finally:
        model.train(was_training)
    if not isinstance(output, Tensor):
        raise OnnxError(f"export: the model must return one Tensor, got {type(output).__name__}")
    _convert(graph, ops, marks)
    output_name = graph.value(output)
    final = graph.fresh(output_names[0])
    graph.nodes.append(onnx.helper.make_node("Identity", [output_name], [final], name="output"))
    # Buffers no node reads (batch norm's num_batches_tracked) would only make runtimes warn.
    read = {name for node in graph.nodes for name in node.input}
    graph.initializers = [tensor for tensor in graph.initializers if tensor.name in read]
    model_proto = _model(onnx, graph, x, output, input_name, final)
    onnx.checker.check_model(model_proto, full_check=True)
    path = Path(path)
    from convprop.io.files import atomic_write_bytes

    atomic_write_bytes(path, model_proto.SerializeToString())
    return path


def _convert(graph: ExportGraph, ops: list[TracedOp], marks: list[tuple[int, str]]) -> None:
    """Each traced op's nodes, in the order the ops ran."""
    pending = list(reversed(marks))
    for index, op in enumerate(ops):
        while pending and pending[-1][0] <= index:
            graph.layer = pending.pop()[1]
        converter = CONVERTERS.get(op.name)
        if converter is None:
            raise graph.fail(op, "ONNX has no operator for it")
        result = converter(graph, op)
        graph.bind(op.output, result, graph.batched.get(result, False))


def _model(
    onnx: Any, graph: ExportGraph, x: Tensor, output: Tensor, input_name: str, output_name: str
) -> Any:
    helper = onnx.helper

    def info(name: str, tensor: Tensor) -> Any:
        shape: list[Any] = list(tensor.shape)
        if graph.dynamic_batch and shape:
            shape[0] = "batch"
        return helper.make_tensor_value_info(name, ONNX_DTYPES[tensor.dtype], shape)

    body = helper.make_graph(
        graph.nodes,
        "convprop",
        [info(input_name, x)],
        [info(output_name, output)],
        initializer=graph.initializers,
    )
    model = helper.make_model(
        body, opset_imports=[helper.make_opsetid("", graph.opset)], producer_name="convprop"
    )
    model.ir_version = min(model.ir_version, 10)  # what the pinned onnxruntime reads
    return model
