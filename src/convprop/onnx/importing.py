"""``convprop.onnx.load``: an ONNX graph as a convprop module that runs, learns and saves.

The graph's float initializers become ``Parameter``s (a BatchNormalization's mean and variance
become buffers), held under their ONNX names: ``layer1.0.conv1.weight`` is the parameter
``weight`` of the submodule ``layer1.0.conv1``, so ``state_dict`` has the exporter's keys
(a PyTorch model's, for ``torch.onnx.export``). Integer initializers, ``Constant`` nodes and
the ``Shape``/``Gather``/``Unsqueeze``/``Concat`` chains that compute shapes are NumPy values,
worked out as the graph runs. Every other node runs through ``convprop.nn.functional``, so the
backward pass is convprop's hand-derived one. In ``train()`` mode BatchNormalization uses the
batch's statistics and updates its running ones, and Dropout drops, as the layers they came
from would.

Loading reads the protobuf only: nothing in an ONNX file is executed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

import convprop as cp
from convprop import onnx as package
from convprop.autograd import Tensor
from convprop.nn import functional as F
from convprop.nn.module import Module, Parameter
from convprop.onnx import OnnxError

Value = Any  # a Tensor (a value of the network) or an ndarray (a constant, a shape)


class _Node:
    """One node of the graph: its type, its inputs' and outputs' names and its attributes."""

    __slots__ = ("op_type", "name", "inputs", "outputs", "attributes")

    def __init__(self, onnx: Any, proto: Any) -> None:
        self.op_type: str = proto.op_type
        self.name: str = proto.name or proto.output[0]
        self.inputs: list[str] = list(proto.input)
        self.outputs: list[str] = list(proto.output)
        self.attributes: dict[str, Any] = {
            a.name: onnx.helper.get_attribute_value(a) for a in proto.attribute
        }
        for key, value in list(self.attributes.items()):
            if isinstance(value, bytes):
                self.attributes[key] = value.decode()
            elif hasattr(value, "dims") and hasattr(value, "data_type"):  # a TensorProto
                self.attributes[key] = onnx.numpy_helper.to_array(value)

    def attr(self, name: str, default: Any = None) -> Any:
        return self.attributes.get(name, default)


def _segment(text: str) -> str:
    cleaned = re.sub(r"[^0-9A-Za-z_]", "_", text)
    return cleaned or "_"


class OnnxModule(Module):
    """A network imported from ONNX (see the module docstring)."""

    def __init__(self, onnx: Any, model: Any, source: str) -> None:
        super().__init__()
        graph = model.graph
        self.source = source
        self.opset = next(
            (o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13
        )
        self.nodes = [_Node(onnx, n) for n in graph.node]
        initializers = {i.name: onnx.numpy_helper.to_array(i) for i in graph.initializer}
        self.input_names = [i.name for i in graph.input if i.name not in initializers]
        self.output_names = [o.name for o in graph.output]
        if len(self.input_names) != 1 or len(self.output_names) != 1:
            raise OnnxError(
                f"{source}: convprop imports graphs of one input and one output, this one has "
                f"inputs {self.input_names} and outputs {self.output_names}"
            )
        statistics = {
            name
            for node in self.nodes
            if node.op_type == "BatchNormalization"
            for name in node.inputs[3:5]
        }
        self._places: dict[str, tuple[Module, str]] = {}
        self.constants: dict[str, np.ndarray] = {}
        for name, array in initializers.items():
            if array.dtype.kind != "f":
                self.constants[name] = array
                continue
            self._place(name, np.array(array), buffer=name in statistics)
        unknown = sorted({n.op_type for n in self.nodes} - set(_HANDLERS))
        if unknown:
            listing = ", ".join(
                f"{op} ({', '.join(n.name for n in self.nodes if n.op_type == op)[:80]})"
                for op in unknown
            )
            raise OnnxError(f"{source}: operators convprop cannot import: {listing}")

    def _place(self, name: str, array: np.ndarray, buffer: bool) -> None:
        """Register ``array`` under a submodule path made from the ONNX name's dotted parts."""
        parts = [_segment(p) for p in name.split(".")] if "." in name else [_segment(name)]
        owner: Module = self
        for part in parts[:-1]:
            child = owner._modules.get(part)
            if child is None:
                child = Module()
                owner.add_module(part, child)
            owner = child
        leaf = parts[-1]
        while leaf in owner._parameters or leaf in owner._buffers or leaf in owner._modules:
            leaf += "_"
        if buffer:
            owner.register_buffer(leaf, Tensor(array))
        else:
            owner.register_parameter(leaf, Parameter(array))
        self._places[name] = (owner, leaf)

    def initializer(self, name: str) -> Tensor:
        owner, leaf = self._places[name]
        value = owner._parameters.get(leaf)
        tensor = value if value is not None else owner._buffers[leaf]
        assert tensor is not None
        return tensor

    def forward(self, input: Tensor) -> Tensor:
        values: dict[str, Value] = {"": None, self.input_names[0]: input, **self.constants}
        for name in self._places:
            values[name] = self.initializer(name)
        for node in self.nodes:
            arguments = [values[name] if name else None for name in node.inputs]
            try:
                results = _HANDLERS[node.op_type](self, node, arguments)
            except OnnxError:
                raise
            except (ValueError, TypeError, IndexError) as error:
                raise OnnxError(
                    f"{self.source}: node {node.name} ({node.op_type}) failed: {error}"
                ) from None
            outputs = results if isinstance(results, tuple) else (results,)
            for name, value in zip(node.outputs, outputs, strict=False):
                values[name] = value
        output = values[self.output_names[0]]
        return output if isinstance(output, Tensor) else Tensor(np.asarray(output))

    def extra_repr(self) -> str:
        return f"{self.source}: {len(self.nodes)} nodes, opset {self.opset}"


# ----------------------------------------------------------------------------- handlers
Handler = Callable[[OnnxModule, _Node, list[Value]], Any]
_HANDLERS: dict[str, Handler] = {}


def _handles(*names: str) -> Callable[[Handler], Handler]:
    def register(function: Handler) -> Handler:
        for name in names:
            _HANDLERS[name] = function
        return function

    return register


def _tensor(value: Value) -> Tensor:
    return value if isinstance(value, Tensor) else Tensor(np.asarray(value))


def _const(value: Value) -> bool:
    return not isinstance(value, Tensor)


def _ints(value: Value) -> list[int]:
    array = value.data if isinstance(value, Tensor) else np.asarray(value)
    return [int(v) for v in np.asarray(array).ravel()]


def _symmetric(pads: Sequence[int], spatial: int) -> tuple[list[int], list[tuple[int, int]]]:
    """ONNX's pads (begins, then ends) as a symmetric padding and the asymmetric extra."""
    pairs = [(pads[i], pads[i + spatial]) for i in range(spatial)] if pads else [(0, 0)] * spatial
    common = [min(b, e) for b, e in pairs]
    extra = [(b - c, e - c) for (b, e), c in zip(pairs, common, strict=True)]
    return common, extra


def _pad_extra(x: Tensor, extra: list[tuple[int, int]], value: float = 0.0) -> Tensor:
    if not any(b or e for b, e in extra):
        return x
    flat = [amount for pair in reversed(extra) for amount in pair]  # F.pad: last axis first
    return F.pad(x, flat, mode="constant", value=value)


def _auto_pad(
    node: _Node, x: Tensor, kernel: Sequence[int], strides: Sequence[int], dilations: Sequence[int]
) -> list[int]:
    mode = node.attr("auto_pad", "NOTSET")
    spatial = len(kernel)
    if mode in ("NOTSET", ""):
        return list(node.attr("pads", [0] * 2 * spatial))
    if mode == "VALID":
        return [0] * 2 * spatial
    begins, ends = [], []
    for n, k, s, d in zip(x.shape[2:], kernel, strides, dilations, strict=True):
        out = -(-n // s)
        total = max(0, (out - 1) * s + d * (k - 1) + 1 - n)
        small, large = total // 2, total - total // 2
        begin, end = (small, large) if mode == "SAME_UPPER" else (large, small)
        begins.append(begin)
        ends.append(end)
    return begins + ends


def _window_attributes(
    node: _Node, x: Tensor, kernel: Sequence[int]
) -> tuple[list[int], list[int], list[int]]:
    spatial = len(kernel)
    strides = list(node.attr("strides", [1] * spatial))
    dilations = list(node.attr("dilations", [1] * spatial))
    return strides, dilations, _auto_pad(node, x, kernel, strides, dilations)


@_handles("Conv")
def _conv(module: OnnxModule, node: _Node, args: list[Value]) -> Tensor:
    x, weight = _tensor(args[0]), _tensor(args[1])
    bias = _tensor(args[2]) if len(args) > 2 and args[2] is not None else None
    kernel = list(weight.shape[2:])
    strides, dilations, pads = _window_attributes(node, x, kernel)
    common, extra = _symmetric(pads, len(kernel))
    conv = {1: F.conv1d, 2: F.conv2d}.get(len(kernel))
    if conv is None:
        raise OnnxError(f"{module.source}: node {node.name}: only 1-D and 2-D Conv import")
    return conv(
        _pad_extra(x, extra), weight, bias, strides, common, dilations, int(node.attr("group", 1))
    )


@_handles("ConvTranspose")
def _conv_transpose(module: OnnxModule, node: _Node, args: list[Value]) -> Tensor:
    x, weight = _tensor(args[0]), _tensor(args[1])
    bias = _tensor(args[2]) if len(args) > 2 and args[2] is not None else None
    spatial = weight.ndim - 2
    strides = list(node.attr("strides", [1] * spatial))
    dilations = list(node.attr("dilations", [1] * spatial))
    pads = list(node.attr("pads", [0] * 2 * spatial))
    output_padding = list(node.attr("output_padding", [0] * spatial))
    if node.attr("output_shape") is not None or node.attr("auto_pad", "NOTSET") not in (
        "NOTSET",
        "",
    ):
        raise OnnxError(
            f"{module.source}: node {node.name}: ConvTranspose's output_shape and "
            "auto_pad do not import; give pads and output_padding"
        )
    common, extra = _symmetric(pads, spatial)
    conv = {1: F.conv_transpose1d, 2: F.conv_transpose2d}[spatial]
    y = conv(
        x, weight, bias, strides, common, output_padding, int(node.attr("group", 1)), dilations
    )
    if any(b or e for b, e in extra):  # the extra padding crops the output
        index = (slice(None), slice(None)) + tuple(
            slice(b, n - e) for (b, e), n in zip(extra, y.shape[2:], strict=True)
        )
        y = y[index]
    return y


@_handles("Gemm")
def _gemm(module: OnnxModule, node: _Node, args: list[Value]) -> Tensor:
    a, b = _tensor(args[0]), _tensor(args[1])
    c = args[2] if len(args) > 2 else None
    if node.attr("transA", 0):
        a = a.t()
    alpha, beta = float(node.attr("alpha", 1.0)), float(node.attr("beta", 1.0))
    if (
        node.attr("transB", 0)
        and alpha == 1.0
        and beta == 1.0
        and (c is None or _tensor(c).ndim == 1)
    ):
        return F.linear(a, b, _tensor(c) if c is not None else None)
    product = a @ (b.t() if node.attr("transB", 0) else b)
    if alpha != 1.0:
        product = product * alpha
    if c is not None:
        product = product + (_tensor(c) * beta if beta != 1.0 else _tensor(c))
    return product


def _numeric(function: Callable[[Any, Any], Any], numpy: Callable[[Any, Any], Any]) -> Handler:
    """A two-input node: on constants in NumPy (shape arithmetic), else on tensors, a constant
    operand taking the tensor's float dtype (as ONNX's type rules have them equal)."""

    def handle(module: OnnxModule, node: _Node, args: list[Value]) -> Value:
        a, b = args
        if _const(a) and _const(b):
            return numpy(np.asarray(a), np.asarray(b))
        like = a if isinstance(a, Tensor) else b
        dtype = like.dtype if like.dtype.kind == "f" else None

        def operand(value: Value) -> Tensor:
            if isinstance(value, Tensor):
                return value
            array = np.asarray(value)
            return Tensor(
                array.astype(dtype) if dtype is not None and array.dtype.kind in "iuf" else array
            )

        return function(operand(a), operand(b))

    return handle


_BINARY: list[tuple[str, Callable[[Any, Any], Any], Callable[[Any, Any], Any]]] = [
    ("Add", lambda a, b: a + b, np.add),
    ("Sub", lambda a, b: a - b, np.subtract),
    ("Mul", lambda a, b: a * b, np.multiply),
    ("Div", lambda a, b: a / b, lambda a, b: a // b if a.dtype.kind in "iu" else a / b),
    ("Pow", lambda a, b: a**b, np.power),
    ("MatMul", lambda a, b: a @ b, np.matmul),
    ("Equal", lambda a, b: a == b, np.equal),
    ("Greater", lambda a, b: a > b, np.greater),
    ("Less", lambda a, b: a < b, np.less),
    ("GreaterOrEqual", lambda a, b: a >= b, np.greater_equal),
    ("LessOrEqual", lambda a, b: a <= b, np.less_equal),
]
for _name, _function, _numpy in _BINARY:
    _HANDLERS[_name] = _numeric(_function, _numpy)


def _unary(
    function: Callable[[Tensor], Tensor], numpy: Callable[[Any], Any] | None = None
) -> Handler:
    def handle(module: OnnxModule, node: _Node, args: list[Value]) -> Value:
        if _const(args[0]) and numpy is not None:
            return numpy(np.asarray(args[0]))
        return function(_tensor(args[0]))

    return handle


_UNARY: list[tuple[str, Callable[[Tensor], Tensor], Callable[[Any], Any] | None]] = [
    ("Relu", F.relu, None),
    ("Sigmoid", F.sigmoid, None),
    ("Tanh", F.tanh, None),
    ("Exp", cp.exp, np.exp),
    ("Log", cp.log, np.log),
    ("Sqrt", cp.sqrt, np.sqrt),
    ("Abs", cp.abs, np.abs),
    ("Neg", lambda t: -t, np.negative),
    ("Identity", lambda t: t, lambda a: a),
    ("Not", lambda t: Tensor(~t.numpy()), np.logical_not),
]
for _unary_name, _unary_function, _unary_numpy in _UNARY:
    _HANDLERS[_unary_name] = _unary(_unary_function, _unary_numpy)


@_handles("LeakyRelu")
def _leaky_relu(module: OnnxModule, node: _Node, args: list[Value]) -> Tensor:
    return F.leaky_relu(_tensor(args[0]), float(node.attr("alpha", 0.01)))


@_handles("Elu")
def _elu(module: OnnxModule, node: _Node, args: list[Value]) -> Tensor:
    return F.elu(_tensor(args[0]), float(node.attr("alpha", 1.0)))


@_handles("Gelu")
def _gelu(module: OnnxModule, node: _Node, args: list[Value]) -> Tensor:
    return F.gelu(_tensor(args[0]), approximate=str(node.attr("approximate", "none")))


@_handles("Softmax", "LogSoftmax")
def _softmax(module: OnnxModule, node: _Node, args: list[Value]) -> Tensor:
    x = _tensor(args[0])
    axis = int(node.attr("axis", -1 if module.opset >= 13 else 1))
    if module.opset < 13 and axis % x.ndim != x.ndim - 1:
        # Before opset 13, softmax flattened the axes from ``axis`` on.
        flat = x.reshape(*x.shape[:axis], -1)
        function = F.softmax if node.op_type == "Softmax" else F.log_softmax
        return function(flat, -1).reshape(*x.shape)
    return (F.softmax if node.op_type == "Softmax" else F.log_softmax)(x, axis)


def _pool_window(
    module: OnnxModule, node: _Node, x: Tensor
) -> tuple[list[int], list[int], list[int], list[tuple[int, int]], list[int]]:
    kernel = list(node.attr("kernel_shape"))
    strides, dilations, pads = _window_attributes(node, x, kernel)
    common, extra = _symmetric(pads, len(kernel))
    return kernel, strides, common, extra, dilations


@_handles("MaxPool")
def _max_pool(module: OnnxModule, node: _Node, args: list[Value]) -> Tensor:
    if len(node.outputs) > 1 and node.outputs[1]:
        raise OnnxError(f"{module.source}: node {node.name}: MaxPool's Indices do not import")
    x = _tensor(args[0])
    kernel, strides, common, extra, dilations = _pool_window(module, node, x)
    if any(p > k // 2 for p, k in zip(common, kernel, strict=True)):  # PyTorch's limit
        extra = [(b + p, e + p) for (b, e), p in zip(extra, common, strict=True)]
        common = [0] * len(kernel)
    pool = {1: F.max_pool1d, 2: F.max_pool2d}[len(kernel)]
    ceil = bool(node.attr("ceil_mode", 0))
    pooled = pool(_pad_extra(x, extra, -np.inf), kernel, strides, common, dilations, ceil)
    assert isinstance(pooled, Tensor)  # no indices asked for
    return pooled


@_handles("AveragePool")
def _avg_pool(module: OnnxModule, node: _Node, args: list[Value]) -> Tensor:
    x = _tensor(args[0])
    kernel, strides, common, extra, _ = _pool_window(module, node, x)
    include = bool(node.attr("count_include_pad", 0))
    if any(b or e for b, e in extra) and not include:
        raise OnnxError(
            f"{module.source}: node {node.name}: asymmetric padding without "
            "count_include_pad does not import"
        )
    pool = {1: F.avg_pool1d, 2: F.avg_pool2d}[len(kernel)]
    return pool(
        _pad_extra(x, extra), kernel, strides, common, bool(node.attr("ceil_mode", 0)), include
    )


@_handles("GlobalAveragePool", "GlobalMaxPool")
def _global_pool(module: OnnxModule, node: _Node, args: list[Value]) -> Tensor:
    x = _tensor(args[0])
    axes = tuple(range(2, x.ndim))
    return (
        x.mean(axes, keepdim=True)
        if node.op_type == "GlobalAveragePool"
        else x.amax(axes, keepdim=True)
    )


@_handles("BatchNormalization")
def _batch_norm(module: OnnxModule, node: _Node, args: list[Value]) -> Tensor:
    x, scale, bias, mean, var = (args + [None] * 5)[:5]
    if node.attr("training_mode", 0) or (len(node.outputs) > 1 and any(node.outputs[1:])):
        raise OnnxError(
            f"{module.source}: node {node.name}: BatchNormalization in training "
            "mode does not import (export in eval mode)"
        )
    # ONNX's momentum weighs the running statistic (PyTorch's weighs the batch's).
    momentum = 1.0 - float(node.attr("momentum", 0.9))
    return F.batch_norm(
        _tensor(x),
        _tensor(mean),
        _tensor(var),
        _tensor(scale),
        _tensor(bias),
        training=module.training,
        momentum=momentum,
        eps=float(node.attr("epsilon", 1e-5)),
    )


@_handles("Dropout")
def _dropout(module: OnnxModule, node: _Node, args: list[Value]) -> Value:
    if len(node.outputs) > 1 and node.outputs[1]:
        raise OnnxError(f"{module.source}: node {node.name}: Dropout's mask does not import")
    ratio = (
        float(np.asarray(args[1]))
        if len(args) > 1 and args[1] is not None
        else float(node.attr("ratio", 0.5))
    )
    if not module.training or ratio == 0:
        return args[0]
    return F.dropout(_tensor(args[0]), ratio, training=True)


@_handles("Flatten")
def _flatten(module: OnnxModule, node: _Node, args: list[Value]) -> Value:
    x = args[0]
    shape = x.shape
    axis = int(node.attr("axis", 1)) % max(len(shape), 1)
    lead = int(np.prod(shape[:axis])) if axis else 1
    return x.reshape(lead, -1) if isinstance(x, Tensor) else np.asarray(x).reshape(lead, -1)


def _target_shape(shape: Sequence[int], target: list[int], allowzero: bool) -> list[int]:
    return [shape[i] if v == 0 and not allowzero else v for i, v in enumerate(target)]


@_handles("Reshape")
def _reshape(module: OnnxModule, node: _Node, args: list[Value]) -> Value:
    x, target = args[0], _ints(args[1])
    shape = _target_shape(x.shape, target, bool(node.attr("allowzero", 0)))
    return x.reshape(*shape) if isinstance(x, Tensor) else np.asarray(x).reshape(shape)


@_handles("Transpose")
def _transpose(module: OnnxModule, node: _Node, args: list[Value]) -> Value:
    x = args[0]
    perm = node.attr("perm") or list(reversed(range(np.ndim(x) if _const(x) else x.ndim)))
    return x.permute(*perm) if isinstance(x, Tensor) else np.transpose(x, perm)


@_handles("Concat")
def _concat(module: OnnxModule, node: _Node, args: list[Value]) -> Value:
    axis = int(node.attr("axis"))
    if all(_const(a) for a in args):
        return np.concatenate([np.atleast_1d(a) for a in args], axis=axis)
    return cp.cat([_tensor(a) for a in args], axis)


@_handles("Unsqueeze", "Squeeze")
def _squeeze(module: OnnxModule, node: _Node, args: list[Value]) -> Value:
    x = args[0]
    axes = _ints(args[1]) if len(args) > 1 and args[1] is not None else node.attr("axes")
    shape = list(np.shape(x) if _const(x) else x.shape)
    if node.op_type == "Unsqueeze":
        for axis in sorted(a % (len(shape) + len(axes)) for a in axes):
            shape.insert(axis, 1)
    else:
        drop = (
            {a % len(shape) for a in axes} if axes else {i for i, n in enumerate(shape) if n == 1}
        )
        shape = [n for i, n in enumerate(shape) if i not in drop]
    return x.reshape(*shape) if isinstance(x, Tensor) else np.asarray(x).reshape(shape)


@_handles("Shape")
def _shape(module: OnnxModule, node: _Node, args: list[Value]) -> np.ndarray:
    shape = np.asarray(np.shape(args[0]) if _const(args[0]) else args[0].shape, dtype=np.int64)
    start, end = node.attr("start", 0), node.attr("end")
    return shape[start:end]


@_handles("Gather")
def _gather(module: OnnxModule, node: _Node, args: list[Value]) -> Value:
    data, indices = args
    axis = int(node.attr("axis", 0))
    index = np.asarray(indices.data if isinstance(indices, Tensor) else indices)
    if _const(data):
        return np.take(np.asarray(data), index, axis=axis)
    selection = (slice(None),) * (axis % data.ndim) + (int(index) if index.ndim == 0 else index,)
    return data[selection]


@_handles("Slice")
def _slice(module: OnnxModule, node: _Node, args: list[Value]) -> Value:
    x = args[0]
    ndim = np.ndim(x) if _const(x) else x.ndim
    if len(args) > 1:
        starts, ends = _ints(args[1]), _ints(args[2])
        axes = _ints(args[3]) if len(args) > 3 and args[3] is not None else list(range(len(starts)))
        steps = _ints(args[4]) if len(args) > 4 and args[4] is not None else [1] * len(starts)
    else:  # before opset 10: attributes
        starts, ends = list(node.attr("starts")), list(node.attr("ends"))
        axes = list(node.attr("axes", range(len(starts))))
        steps = [1] * len(starts)
    index: list[Any] = [slice(None)] * ndim
    big = 2**62
    for start, end, axis, step in zip(starts, ends, axes, steps, strict=True):
        index[axis % ndim] = slice(start, None if end >= big or end <= -big else end, step)
    return x[tuple(index)] if isinstance(x, Tensor) else np.asarray(x)[tuple(index)]


@_handles("Constant")
def _constant(module: OnnxModule, node: _Node, args: list[Value]) -> np.ndarray:
    for key in ("value", "value_float", "value_int", "value_floats", "value_ints"):
        if key in node.attributes:
            return np.asarray(node.attributes[key])
    raise OnnxError(f"{module.source}: node {node.name}: Constant without a value")


@_handles("ConstantOfShape")
def _constant_of_shape(module: OnnxModule, node: _Node, args: list[Value]) -> np.ndarray:
    value = node.attr("value")
    fill = np.asarray(value).ravel()[0] if value is not None else np.float32(0)
    return np.full(_ints(args[0]), fill, dtype=np.asarray(fill).dtype)


@_handles("Cast")
def _cast(module: OnnxModule, node: _Node, args: list[Value]) -> Value:
    onnx = package.require("onnx")
    dtype = onnx.helper.tensor_dtype_to_np_dtype(int(node.attr("to")))
    x = args[0]
    if _const(x):
        return np.asarray(x).astype(dtype)
    return x.to(dtype) if np.dtype(dtype).kind == "f" else Tensor(x.numpy().astype(dtype))


@_handles("Range")
def _range(module: OnnxModule, node: _Node, args: list[Value]) -> np.ndarray:
    start, limit, delta = (np.asarray(a).item() for a in args)
    return np.arange(start, limit, delta)


@_handles("Clip")
def _clip(module: OnnxModule, node: _Node, args: list[Value]) -> Tensor:
    low = args[1] if len(args) > 1 else node.attr("min")
    high = args[2] if len(args) > 2 else node.attr("max")

    def bound(value: Value) -> float | None:
        if value is None:
            return None
        return float(np.asarray(value.data if isinstance(value, Tensor) else value))

    return cp.clamp(_tensor(args[0]), bound(low), bound(high))


@_handles("Where")
def _where(module: OnnxModule, node: _Node, args: list[Value]) -> Value:
    condition, a, b = args
    if all(_const(v) for v in args):
        return np.where(condition, a, b)
    return cp.where(_tensor(condition), a, b)


@_handles("ReduceMean", "ReduceSum", "ReduceMax")
def _reduce(module: OnnxModule, node: _Node, args: list[Value]) -> Value:
    x = _tensor(args[0])
    if len(args) > 1 and args[1] is not None:
        axes = _ints(args[1])
    else:
        axes = node.attr("axes")
    if not axes:
        if node.attr("noop_with_empty_axes", 0):
            return x
        axes = list(range(x.ndim))
    keep = bool(node.attr("keepdims", 1))
    dims = tuple(a % x.ndim for a in axes)
    if node.op_type == "ReduceMean":
        return x.mean(dims, keepdim=keep)
    if node.op_type == "ReduceSum":
        return x.sum(dims, keepdim=keep)
    return x.amax(dims, keepdim=keep)


@_handles("Expand")
def _expand(module: OnnxModule, node: _Node, args: list[Value]) -> Value:
    x, shape = args[0], _ints(args[1])
    target = np.broadcast_shapes(tuple(np.shape(x) if _const(x) else x.shape), tuple(shape))
    return (
        _tensor(x).expand(*target) if isinstance(x, Tensor) else np.broadcast_to(x, target).copy()
    )


@_handles("Pad")
def _pad(module: OnnxModule, node: _Node, args: list[Value]) -> Tensor:
    x = _tensor(args[0])
    pads = _ints(args[1]) if len(args) > 1 else list(node.attr("pads"))
    value = (
        float(np.asarray(args[2]))
        if len(args) > 2 and args[2] is not None
        else float(node.attr("value", 0.0))
    )
    axes = _ints(args[3]) if len(args) > 3 and args[3] is not None else list(range(x.ndim))
    pairs = {a % x.ndim: (pads[i], pads[i + len(axes)]) for i, a in enumerate(axes)}
    mode = {"constant": "constant", "reflect": "reflect", "edge": "replicate", "wrap": "circular"}
    last = max(pairs)
    first = (
        min(a for a, p in pairs.items() if p != (0, 0))
        if any(p != (0, 0) for p in pairs.values())
        else last
    )
    flat: list[int] = []
    for axis in range(x.ndim - 1, first - 1, -1):
        flat += list(pairs.get(axis, (0, 0)))
    kind = mode[str(node.attr("mode", "constant"))]
    return F.pad(x, flat, mode=kind, value=value if kind == "constant" else None)


@_handles("Resize", "Upsample")
def _resize(module: OnnxModule, node: _Node, args: list[Value]) -> Tensor:
    x = _tensor(args[0])
    sizes = _ints(args[3]) if len(args) > 3 and args[3] is not None and np.size(args[3]) else None
    scales_value = args[2] if len(args) > 2 else (args[1] if node.op_type == "Upsample" else None)
    scales = (
        [float(s) for s in np.asarray(scales_value).ravel()]
        if scales_value is not None and np.size(scales_value)
        else None
    )
    mode = str(node.attr("mode", "nearest"))
    transform = str(
        node.attr(
            "coordinate_transformation_mode",
            "half_pixel" if node.op_type == "Resize" else "asymmetric",
        )
    )
    nearest = str(node.attr("nearest_mode", "round_prefer_floor"))
    if mode == "nearest" and transform == "asymmetric" and nearest == "floor":
        kwargs: dict[str, Any] = {"mode": "nearest"}
    elif mode == "nearest" and transform == "half_pixel" and nearest == "round_prefer_ceil":
        kwargs = {"mode": "nearest-exact"}
    elif mode == "linear" and transform in ("align_corners", "pytorch_half_pixel", "half_pixel"):
        kwargs = {
            "mode": "linear" if x.ndim == 3 else "bilinear",
            "align_corners": transform == "align_corners",
        }
    else:
        raise OnnxError(
            f"{module.source}: node {node.name}: Resize mode {mode!r} with "
            f"{transform!r} (nearest_mode {nearest!r}) has no convprop equivalent"
        )
    if sizes is not None:
        return F.interpolate(x, size=sizes[2:], **kwargs)
    if scales is None:
        raise OnnxError(f"{module.source}: node {node.name}: Resize without scales or sizes")
    return F.interpolate(x, scale_factor=scales[2:], recompute_scale_factor=False, **kwargs)


@_handles("DepthToSpace")
def _depth_to_space(module: OnnxModule, node: _Node, args: list[Value]) -> Tensor:
    x = _tensor(args[0])
    r = int(node.attr("blocksize"))
    if str(node.attr("mode", "DCR")) == "CRD":
        return F.pixel_shuffle(x, r)
    n, c, h, w = x.shape
    moved = x.reshape(n, r, r, c // (r * r), h, w).permute(0, 3, 4, 1, 5, 2)
    return moved.reshape(n, c // (r * r), h * r, w * r)


# ----------------------------------------------------------------------------- load
def load(path: str | Path) -> OnnxModule:
    """The ONNX model at ``path`` as a convprop module (see the module docstring).

    Raises:
        OnnxError: the file is not a valid ONNX model, or uses operators convprop cannot run
            (all of them are listed, with their nodes' names).
    """
    onnx = package.require("onnx")
    path = Path(path)
    try:
        model = onnx.load(str(path))
    except FileNotFoundError:
        raise OnnxError(f"{path}: no such file") from None
    except Exception as error:  # protobuf's DecodeError and onnx's own errors
        raise OnnxError(f"{path}: not an ONNX model ({error})") from None
    if not model.graph.node:
        raise OnnxError(f"{path}: not an ONNX model (its graph has no nodes)")
    return OnnxModule(onnx, model, str(path))
