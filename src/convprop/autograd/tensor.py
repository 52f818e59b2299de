"""``Tensor``: an ndarray with a gradient and a link to the op that produced it.

Dtype rules follow PyTorch: an ndarray keeps its dtype, Python floats become float32, Python
ints int64, bools bool; a Python scalar in arithmetic takes the tensor's dtype; mixing a float
tensor with an integer one gives the float dtype; float32 with float64 gives float64.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np

from convprop.autograd.graph import (
    Node,
    apply,
    checked_tensor,
    note_traced,
    record,
    run_backward,
)
from convprop.ops import activation, reduction
from convprop.ops import elementwise as ew
from convprop.ops import shape as shape_ops
from convprop.ops.contract import OpPair

DTypeLike = Any
default_float = np.dtype(np.float32)


def as_array(data: Any, dtype: DTypeLike = None) -> np.ndarray:
    """Convert ``data`` to an ndarray with PyTorch's dtype inference (floats -> float32)."""
    if isinstance(data, Tensor):
        array = data.data
    elif isinstance(data, np.ndarray) or isinstance(data, np.generic):
        array = np.asarray(data)
    else:
        array = np.asarray(data)
        if array.dtype == np.float64:
            array = array.astype(default_float)
        elif array.dtype.kind in "iu":
            array = array.astype(np.int64)
    if array.dtype == object:
        raise TypeError(f"tensor: cannot make a tensor from data of type {type(data).__name__}")
    if dtype is not None:
        array = array.astype(np.dtype(dtype), copy=False)
    return array


class MaxResult(NamedTuple):
    """``(values, indices)`` as returned by ``Tensor.max(dim)``, like ``torch.return_types.max``."""

    values: Tensor
    indices: Tensor


class Tensor:
    """A multi-dimensional array that can record the ops applied to it and backpropagate.

    Attributes:
        data: the values, an ndarray (NCHW for images, NCL for sequences).
        requires_grad: whether gradients are computed for this tensor.
        grad: after ``backward()``, dL/d(this tensor) for leaves (accumulated with ``+=``).
        grad_fn: the :class:`Node` that produced this tensor, ``None`` for leaves.
    """

    __slots__ = ("data", "requires_grad", "grad", "grad_fn", "_retains_grad", "__weakref__")
    __array_priority__ = 1000
    # Makes ``ndarray + Tensor`` defer to Tensor.__radd__ instead of broadcasting element-wise.
    __array_ufunc__ = None

    def __init__(self, data: Any, requires_grad: bool = False) -> None:
        self.data: np.ndarray = as_array(data)
        self.grad: Tensor | None = None
        self.grad_fn: Node | None = None
        self._retains_grad = False
        self.requires_grad = False
        if requires_grad:
            self.requires_grad_(True)

    @classmethod
    def _from_op(cls, data: np.ndarray, node: Node | None) -> Tensor:
        tensor = cls.__new__(cls)
        tensor.data = data
        tensor.grad = None
        tensor.grad_fn = node
        tensor.requires_grad = node is not None
        tensor._retains_grad = False
        return tensor

    # ----------------------------------------------------------------------------- basics
    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def is_leaf(self) -> bool:
        return self.grad_fn is None

    @property
    def T(self) -> Tensor:  # noqa: N802 - PyTorch's name
        return self.permute(*reversed(range(self.ndim)))

    def dim(self) -> int:
        return self.data.ndim

    def size(self, dim: int | None = None) -> Any:
        return self.data.shape if dim is None else self.data.shape[dim]

    def numel(self) -> int:
        return int(self.data.size)

    def numpy(self) -> np.ndarray:
        """The underlying ndarray (shared, not copied, as ``torch.Tensor.numpy``)."""
        return self.data

    def item(self) -> Any:
        if self.data.size != 1:
            raise ValueError(
                f"item: only a tensor with one element can be converted to a Python scalar, "
                f"got shape {self.shape}"
            )
        return self.data.item()

    def tolist(self) -> Any:
        return self.data.tolist()

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        if dtype is None:
            return self.data
        return self.data.astype(dtype)

    def __len__(self) -> int:
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return len(self.data)

    def __iter__(self) -> Iterator[Tensor]:
        for i in range(len(self)):
            yield self[i]

    def __repr__(self) -> str:
        body = np.array2string(self.data, separator=", ", prefix="tensor(")
        extras = []
        if self.dtype not in (default_float, np.dtype(np.int64), np.dtype(bool)):
            extras.append(f"dtype={self.dtype}")
        if self.grad_fn is not None:
            extras.append(f"grad_fn={self.grad_fn!r}")
        elif self.requires_grad:
            extras.append("requires_grad=True")
        return "tensor(" + ", ".join([body, *extras]) + ")"

    def __bool__(self) -> bool:
        return bool(self.data)

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    def __hash__(self) -> int:
        return id(self)

    # ----------------------------------------------------------------------------- autograd
    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        if requires_grad and not np.issubdtype(self.dtype, np.floating):
            raise TypeError(
                f"requires_grad_: only tensors of floating-point dtype can require gradients, "
                f"got {self.dtype}"
            )
        if not requires_grad and self.grad_fn is not None:
            raise RuntimeError(
                "requires_grad_: a non-leaf tensor always requires grad; use detach() instead"
            )
        self.requires_grad = requires_grad
        return self

    def retain_grad(self) -> None:
        """Keep ``.grad`` for this non-leaf tensor after backward (the notes' local gradient)."""
        if not self.requires_grad:
            raise RuntimeError("retain_grad: the tensor does not require grad")
        self._retains_grad = True

    def backward(self, gradient: Any = None, retain_graph: bool = False) -> None:
        """Compute d(self)/d(leaf) for every leaf requiring grad and add it to ``leaf.grad``.

        A scalar needs no ``gradient`` (it is taken as 1); otherwise ``gradient`` is
        dL/d(self), of this tensor's shape, and the leaves receive dL/d(leaf).
        """
        if not self.requires_grad:
            raise RuntimeError(
                "backward: the tensor does not require grad and has no grad_fn "
                "(no input of the computation had requires_grad=True)"
            )
        if gradient is None:
            if self.data.size != 1:
                raise RuntimeError(
                    f"backward: grad can be implicitly created only for scalar outputs, got "
                    f"shape {self.shape}; pass gradient="
                )
            grad = np.ones(self.shape, dtype=self.dtype)
        else:
            grad = as_array(gradient, self.dtype)
            if grad.shape != self.shape:
                raise ValueError(
                    f"backward: gradient has shape {grad.shape} but the tensor has shape "
                    f"{self.shape}"
                )
        run_backward(self, grad, retain_graph=retain_graph)

    def detach(self) -> Tensor:
        """The same values, cut from the graph (shares memory, as PyTorch)."""
        return Tensor._from_op(self.data, None)

    def clone(self) -> Tensor:
        return apply(_copy, (self,))

    def to(self, dtype: DTypeLike) -> Tensor:
        target = np.dtype(dtype)
        if target == self.dtype:
            return self
        return apply(_cast, (self,), target)

    def float(self) -> Tensor:
        return self.to(np.float32)

    def double(self) -> Tensor:
        return self.to(np.float64)

    def zero_(self) -> Tensor:
        self.data[...] = 0
        return self

    # ----------------------------------------------------------------------------- arithmetic
    def _operand(self, other: Any) -> Tensor:
        """``other`` as a Tensor, with PyTorch's promotion: scalars take this tensor's dtype."""
        if isinstance(other, Tensor):
            return other
        if np.ndim(other) == 0:
            value = np.asarray(other)
            keeps_dtype = self.dtype.kind == "f" or value.dtype.kind != "f"
            return Tensor._from_op(value.astype(self.dtype if keeps_dtype else default_float), None)
        return Tensor._from_op(as_array(other), None)

    def _binary(self, op: OpPair, other: Any, reflected: bool = False) -> Tensor:
        other_tensor = self._operand(other)
        a, b = (other_tensor, self) if reflected else (self, other_tensor)
        a, b = _promote(a, b)
        return apply(op, (a, b))

    def __add__(self, other: Any) -> Tensor:
        return self._binary(ew.add, other)

    def __radd__(self, other: Any) -> Tensor:
        return self._binary(ew.add, other, reflected=True)

    def __sub__(self, other: Any) -> Tensor:
        return self._binary(ew.sub, other)

    def __rsub__(self, other: Any) -> Tensor:
        return self._binary(ew.sub, other, reflected=True)

    def __mul__(self, other: Any) -> Tensor:
        return self._binary(ew.mul, other)

    def __rmul__(self, other: Any) -> Tensor:
        return self._binary(ew.mul, other, reflected=True)

    def __truediv__(self, other: Any) -> Tensor:
        return self._binary(ew.div, other)

    def __rtruediv__(self, other: Any) -> Tensor:
        return self._binary(ew.div, other, reflected=True)

    def __pow__(self, other: Any) -> Tensor:
        return self._binary(ew.pow, other)

    def __rpow__(self, other: Any) -> Tensor:
        return self._binary(ew.pow, other, reflected=True)

    def __matmul__(self, other: Any) -> Tensor:
        return self._binary(ew.matmul, other)

    def __rmatmul__(self, other: Any) -> Tensor:
        return self._binary(ew.matmul, other, reflected=True)

    def __neg__(self) -> Tensor:
        return apply(ew.neg, (self,))

    def __pos__(self) -> Tensor:
        return self

    def pow(self, exponent: Any) -> Tensor:
        return self.__pow__(exponent)

    def matmul(self, other: Any) -> Tensor:
        return self.__matmul__(other)

    def exp(self) -> Tensor:
        return apply(ew.exp, (self,))

    def log(self) -> Tensor:
        return apply(ew.log, (self,))

    def sqrt(self) -> Tensor:
        return apply(ew.sqrt, (self,))

    def abs(self) -> Tensor:
        return apply(ew.abs, (self,))

    def clamp(self, min: builtins.float | None = None, max: builtins.float | None = None) -> Tensor:
        return apply(ew.clamp, (self,), min, max)

    clip = clamp

    # The point-wise activations PyTorch also offers as methods (same ops as nn.functional's).
    def relu(self) -> Tensor:
        return apply(activation.relu, (self,))

    def sigmoid(self) -> Tensor:
        return apply(activation.sigmoid, (self,))

    def tanh(self) -> Tensor:
        return apply(activation.tanh, (self,))

    def softmax(self, dim: int) -> Tensor:
        return apply(activation.softmax, (self,), dim)

    def log_softmax(self, dim: int) -> Tensor:
        return apply(activation.log_softmax, (self,), dim)

    # Comparisons give bool tensors outside the graph, as in PyTorch.
    def _compare(self, other: Any, op: Any) -> Tensor:
        """A bool tensor, outside the graph (no gradient flows through a comparison)."""
        operand = self._operand(other)
        result = Tensor._from_op(op(self.data, operand.data), None)
        note_traced(op.__name__, (self, operand), (), result)
        return result

    def __eq__(self, other: Any) -> Tensor:  # type: ignore[override]
        return self._compare(other, np.equal)

    def __ne__(self, other: Any) -> Tensor:  # type: ignore[override]
        return self._compare(other, np.not_equal)

    def __lt__(self, other: Any) -> Tensor:
        return self._compare(other, np.less)

    def __le__(self, other: Any) -> Tensor:
        return self._compare(other, np.less_equal)

    def __gt__(self, other: Any) -> Tensor:
        return self._compare(other, np.greater)

    def __ge__(self, other: Any) -> Tensor:
        return self._compare(other, np.greater_equal)

    # ----------------------------------------------------------------------------- reductions
    def sum(self, dim: int | Sequence[int] | None = None, keepdim: bool = False) -> Tensor:
        return apply(reduction.sum, (self,), _dims(dim), keepdim)

    def mean(self, dim: int | Sequence[int] | None = None, keepdim: bool = False) -> Tensor:
        if not np.issubdtype(self.dtype, np.floating):
            raise TypeError(f"mean: input dtype should be floating point, got {self.dtype}")
        return apply(reduction.mean, (self,), _dims(dim), keepdim)

    def max(self, dim: int | None = None, keepdim: bool = False) -> Any:
        """``max()`` is the largest value; ``max(dim)`` is ``(values, indices)``."""
        if dim is None:
            return apply(reduction.amax, (self,), None, False)
        values, saved = reduction.max_dim_forward(self.data, dim, keepdim)
        result = record(
            "max",
            values,
            (self,),
            lambda grad, needs: reduction.max_dim_backward(grad, saved, needs),
            (dim, keepdim),
        )
        return MaxResult(result, Tensor._from_op(saved[3], None))

    def min(self, dim: int | None = None, keepdim: bool = False) -> Any:
        """``min()`` is the smallest value; ``min(dim)`` is ``(values, indices)``."""
        if dim is None:
            return -((-self).max())
        values, indices = (-self).max(dim, keepdim)
        return MaxResult(-values, indices)

    def amax(self, dim: int | Sequence[int] | None = None, keepdim: bool = False) -> Tensor:
        return apply(reduction.amax, (self,), _dims(dim), keepdim)

    def argmax(self, dim: int | None = None, keepdim: bool = False) -> Tensor:
        if dim is None:
            return Tensor._from_op(np.asarray(np.argmax(self.data)), None)
        indices: Tensor = self.max(dim, keepdim).indices
        return indices

    def argmin(self, dim: int | None = None, keepdim: bool = False) -> Tensor:
        return (-self).argmax(dim, keepdim)

    # ----------------------------------------------------------------------------- shapes
    def reshape(self, *shape: Any) -> Tensor:
        return apply(shape_ops.reshape, (self,), _shape_args(shape))

    view = reshape

    def flatten(self, start_dim: int = 0, end_dim: int = -1) -> Tensor:
        if self.ndim == 0:
            return self.reshape(1)
        start, end = start_dim % self.ndim, end_dim % self.ndim
        if start > end:
            raise ValueError(
                f"flatten: start_dim {start_dim} must not come after end_dim {end_dim}"
            )
        new_shape = self.shape[:start] + (-1,) + self.shape[end + 1 :]
        if 0 in self.shape[start : end + 1]:
            new_shape = self.shape[:start] + (0,) + self.shape[end + 1 :]
        return self.reshape(new_shape)

    def permute(self, *dims: Any) -> Tensor:
        return apply(shape_ops.permute, (self,), _shape_args(dims))

    def transpose(self, dim0: int, dim1: int) -> Tensor:
        order = list(range(self.ndim))
        order[dim0], order[dim1] = order[dim1], order[dim0]
        return self.permute(order)

    def t(self) -> Tensor:
        if self.ndim > 2:
            raise ValueError(f"t: expects a tensor with <= 2 dimensions, got {self.ndim}-D")
        return self.T

    def squeeze(self, dim: int | None = None) -> Tensor:
        if dim is None:
            return self.reshape(tuple(s for s in self.shape if s != 1))
        axis = dim % max(self.ndim, 1)
        if self.ndim == 0 or self.shape[axis] != 1:
            return self
        return self.reshape(self.shape[:axis] + self.shape[axis + 1 :])

    def unsqueeze(self, dim: int) -> Tensor:
        axis = dim % (self.ndim + 1)
        return self.reshape(self.shape[:axis] + (1,) + self.shape[axis:])

    def expand(self, *shape: Any) -> Tensor:
        return apply(shape_ops.expand, (self,), _shape_args(shape))

    def __getitem__(self, index: Any) -> Tensor:
        return apply(shape_ops.getitem, (self,), _plain_index(index))

    def __setitem__(self, index: Any, value: Any) -> None:
        if self.requires_grad:
            raise RuntimeError(
                "__setitem__: in-place assignment into a tensor that requires grad is not "
                "supported; build a new tensor (e.g. with where or cat) instead"
            )
        self.data[_plain_index(index)] = np.asarray(value)


def _promote(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Cast integer/bool operands of a float op to the float dtype; float32 with float64 -> 64."""
    if a.dtype == b.dtype:
        return a, b
    a_float, b_float = a.dtype.kind == "f", b.dtype.kind == "f"
    if a_float and not b_float:
        return a, b.to(a.dtype)
    if b_float and not a_float:
        return a.to(b.dtype), b
    target = np.promote_types(a.dtype, b.dtype)
    return a.to(target), b.to(target)


def _dims(dim: int | Sequence[int] | None) -> int | tuple[int, ...] | None:
    return dim if dim is None or isinstance(dim, (int, np.integer)) else tuple(dim)


def _shape_args(args: tuple[Any, ...]) -> tuple[int, ...]:
    """Accept ``reshape(2, 3)`` as well as ``reshape((2, 3))``."""
    if len(args) == 1 and isinstance(args[0], (tuple, list)):
        return tuple(int(a) for a in args[0])
    return tuple(int(a) for a in args)


def _plain_index(index: Any) -> Any:
    """Replace Tensor indices by their arrays."""
    if isinstance(index, Tensor):
        return index.data
    if isinstance(index, tuple):
        return tuple(i.data if isinstance(i, Tensor) else i for i in index)
    return index


def _copy_forward(a: np.ndarray) -> tuple[np.ndarray, None]:
    return a.copy(), None


def _cast_forward(a: np.ndarray, dtype: np.dtype) -> tuple[np.ndarray, None]:
    return a.astype(dtype), None


def _identity_backward(
    grad_out: np.ndarray, saved: None, needs: tuple[bool, ...]
) -> tuple[np.ndarray]:
    """Copies and casts pass the gradient through (the engine casts it to the input's dtype)."""
    return (grad_out,)


_copy = OpPair("clone", _copy_forward, _identity_backward)
_cast = OpPair("to", _cast_forward, _identity_backward)


# ------------------------------------------------------------------------------- constructors
def tensor(data: Any, dtype: DTypeLike = None, requires_grad: bool = False) -> Tensor:
    """A new tensor holding a copy of ``data`` (as ``torch.tensor``)."""
    array = np.array(as_array(data, dtype), copy=True)
    return Tensor(array, requires_grad=requires_grad)


def from_numpy(array: np.ndarray) -> Tensor:
    """A tensor sharing memory with ``array`` (as ``torch.from_numpy``)."""
    return Tensor._from_op(array, None)


def zeros(*shape: Any, dtype: DTypeLike = None, requires_grad: bool = False) -> Tensor:
    return Tensor(np.zeros(_shape_args(shape), dtype=dtype or default_float), requires_grad)


def ones(*shape: Any, dtype: DTypeLike = None, requires_grad: bool = False) -> Tensor:
    return Tensor(np.ones(_shape_args(shape), dtype=dtype or default_float), requires_grad)


def zeros_like(other: Tensor, dtype: DTypeLike = None) -> Tensor:
    return Tensor(np.zeros(other.shape, dtype=dtype or other.dtype))


def ones_like(other: Tensor, dtype: DTypeLike = None) -> Tensor:
    return Tensor(np.ones(other.shape, dtype=dtype or other.dtype))


def full(shape: Sequence[int], fill_value: float, dtype: DTypeLike = None) -> Tensor:
    return Tensor(np.full(tuple(shape), fill_value, dtype=dtype or default_float))


def arange(
    start: float, end: float | None = None, step: float = 1, dtype: DTypeLike = None
) -> Tensor:
    values = np.arange(start, end, step) if end is not None else np.arange(start)
    return Tensor(as_array(values if dtype is None else values.astype(dtype)))


def cat(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    """Concatenate along an existing axis; each input's gradient is its slice of the output's."""
    items = [checked_tensor("cat", f"tensors[{i}]", t) for i, t in enumerate(tensors)]
    output, saved = shape_ops.cat.forward([t.data for t in items], dim)
    return record(
        "cat", output, items, lambda grad, needs: shape_ops.cat.backward(grad, saved, needs), (dim,)
    )


def stack(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    """Stack along a new axis; each input's gradient is its slice of the output's."""
    items = [checked_tensor("stack", f"tensors[{i}]", t) for i, t in enumerate(tensors)]
    output, saved = shape_ops.stack.forward([t.data for t in items], dim)
    return record(
        "stack",
        output,
        items,
        lambda grad, needs: shape_ops.stack.backward(grad, saved, needs),
        (dim,),
    )


def where(condition: Any, input: Any, other: Any) -> Tensor:
    """``input`` where ``condition`` holds, else ``other`` (gradients routed likewise)."""
    cond = (
        condition if isinstance(condition, Tensor) else Tensor._from_op(np.asarray(condition), None)
    )
    if cond.dtype != bool:
        raise TypeError(f"where: condition must be a bool tensor, got dtype {cond.dtype}")
    a = input if isinstance(input, Tensor) else None
    b = other if isinstance(other, Tensor) else None
    like = a if a is not None else b
    if like is None:
        like = Tensor(as_array(input))
    a_t, b_t = _promote(like._operand(input), like._operand(other))
    return apply(ew.where, (cond, a_t, b_t))
