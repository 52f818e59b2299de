"""The graph ``convprop.onnx.export`` builds: names, initializers and nodes, and the table
of converters (one per traced op name) that ``exporting`` fills in.

``ExportGraph`` gives every tensor the export meets a unique ONNX name (parameters and
buffers under their ``state_dict`` names), remembers which values carry the batch axis, and
says which layer is being converted, so that a failure names it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from convprop.autograd import Tensor, TracedOp
from convprop.onnx import OnnxError

ONNX_DTYPES = {
    np.dtype(np.float32): 1,
    np.dtype(np.float64): 11,
    np.dtype(np.int64): 7,
    np.dtype(np.bool_): 9,
    np.dtype(np.int32): 6,
}


class ExportGraph:
    """The ONNX graph under construction: names of values, nodes, initializers."""

    def __init__(self, onnx: Any, opset: int, dynamic_batch: bool, batch: int) -> None:
        self.onnx, self.opset, self.dynamic_batch, self.batch = onnx, opset, dynamic_batch, batch
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self.names: dict[int, str] = {}  # id(tensor) or id(its array) -> value name
        self.batched: dict[str, bool] = {}  # value name -> its axis 0 is the batch
        self.used: set[str] = set()
        self.layer = "the model"

    def fresh(self, hint: str) -> str:
        name, number = hint, 1
        while name in self.used:
            number += 1
            name = f"{hint}_{number}"
        self.used.add(name)
        return name

    def bind(self, tensor: Tensor, name: str, batched: bool) -> None:
        self.names[id(tensor)] = name
        self.names[id(tensor.data)] = name
        self.batched[name] = batched

    def constant(self, array: Any, hint: str = "const", dtype: Any = None) -> str:
        value = np.asarray(array, dtype=dtype)
        name = self.fresh(hint)
        self.initializers.append(self.onnx.numpy_helper.from_array(value, name))
        self.batched[name] = False
        return name

    def ints(self, values: Sequence[int], hint: str = "shape") -> str:
        return self.constant(np.asarray(list(values), dtype=np.int64), hint)

    def value(self, tensor: Tensor | None) -> str:
        """The name of a tensor an op reads: a traced result, the input, a parameter or buffer,
        or else a constant."""
        if tensor is None:
            return ""
        for key in (id(tensor), id(tensor.data)):
            if key in self.names:
                return self.names[key]
        if tensor.ndim and tensor.shape[0] == self.batch and self.batch > 1:
            raise OnnxError(
                f"{self.layer}: computes a value of shape {tuple(tensor.shape)} outside "
                "convprop's ops (with NumPy directly?), which an ONNX graph cannot follow"
            )
        name = self.constant(tensor.data)
        self.names[id(tensor)] = name
        return name

    def node(self, op_type: str, inputs: Sequence[str], outputs: int = 1, **attributes: Any) -> Any:
        names = [self.fresh(op_type.lower()) for _ in range(outputs)]
        self.nodes.append(
            self.onnx.helper.make_node(
                op_type, list(inputs), names, name=self.fresh(f"{op_type}_node"), **attributes
            )
        )
        for name in names:
            self.batched[name] = any(self.batched.get(i, False) for i in inputs if i)
        return names[0] if outputs == 1 else names

    def shape_of(self, shape: Sequence[int], batched: bool) -> list[int]:
        """A static shape with the batch written 0 ("as the input") when it is symbolic."""
        values = list(shape)
        if batched and self.dynamic_batch:
            values[0] = 0
        return values

    def fail(self, op: TracedOp, reason: str) -> OnnxError:
        return OnnxError(f"{self.layer}: cannot export {op.name} to ONNX: {reason}")


Converter = Callable[[ExportGraph, TracedOp], str]
CONVERTERS: dict[str, Converter] = {}


def converts(*names: str) -> Callable[[Converter], Converter]:
    def register(function: Converter) -> Converter:
        for name in names:
            CONVERTERS[name] = function
        return function

    return register


def onnx_pads(pairs: Sequence[tuple[int, int]]) -> list[int]:
    """(before, after) per axis -> ONNX's [begin_1, ..., begin_n, end_1, ..., end_n]."""
    return [before for before, _ in pairs] + [after for _, after in pairs]
