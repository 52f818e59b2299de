"""The define-by-run graph: nodes recorded by the forward pass, walked backwards by ``backward``.

Every op result that depends on a tensor requiring grad carries a :class:`Node`. The node holds
the op's backward (a closure over what the forward saved) and the op's input tensors. Backward
visits nodes in reverse topological order, so a node runs only once all the gradients flowing
into its output (from every consumer: a tensor used twice, a residual addition) have been
summed, which is the chain rule over a DAG.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

if TYPE_CHECKING:
    from convprop.autograd.tensor import Tensor
    from convprop.ops.contract import OpPair

BackwardFn = Callable[[np.ndarray, tuple[bool, ...]], Sequence[np.ndarray | None]]


class _GradMode(threading.local):
    enabled: bool = True


_grad_mode = _GradMode()


def is_grad_enabled() -> bool:
    """Whether ops currently record the graph."""
    return _grad_mode.enabled


class no_grad(contextlib.ContextDecorator):  # noqa: N801 - PyTorch's name
    """Context manager (and decorator) in which no op records the graph, as ``torch.no_grad``."""

    def __enter__(self) -> None:
        self._previous = _grad_mode.enabled
        _grad_mode.enabled = False

    def __exit__(self, *exc: object) -> None:
        _grad_mode.enabled = self._previous


class enable_grad(contextlib.ContextDecorator):  # noqa: N801 - PyTorch's name
    """Re-enables graph recording inside a ``no_grad`` block."""

    def __enter__(self) -> None:
        self._previous = _grad_mode.enabled
        _grad_mode.enabled = True

    def __exit__(self, *exc: object) -> None:
        _grad_mode.enabled = self._previous


class Node:
    """One recorded op: maps the gradient of its output to the gradients of its inputs."""

    __slots__ = ("name", "backward_fn", "inputs", "needs_input_grad", "__weakref__")

    def __init__(
        self, name: str, backward_fn: BackwardFn, inputs: tuple[Tensor | None, ...]
    ) -> None:
        self.name = name
        self.backward_fn: BackwardFn | None = backward_fn
        self.inputs = inputs
        self.needs_input_grad = tuple(t is not None and t.requires_grad for t in inputs)

    def release(self) -> None:
        """Drop the saved arrays and the links to the inputs once backward has used them."""
        self.backward_fn = None
        self.inputs = ()

    def __repr__(self) -> str:
        return f"<{self.name[:1].upper()}{self.name[1:]}Backward>"


def record(
    name: str,
    output: np.ndarray,
    inputs: Sequence[Tensor | None],
    backward_fn: BackwardFn,
    params: tuple[Any, ...] = (),
) -> Tensor:
    """Wrap ``output`` in a Tensor; record a node if grad mode is on and an input needs grad.

    ``backward_fn(grad_out, needs_input_grad)`` returns one gradient per entry of ``inputs``;
    ``params`` are the op's other arguments, which only a :func:`trace` sees.
    """
    from convprop.autograd.tensor import Tensor

    if _grad_mode.enabled and any(t is not None and t.requires_grad for t in inputs):
        result = Tensor._from_op(output, Node(name, backward_fn, tuple(inputs)))
    else:
        result = Tensor._from_op(output, None)
    note_traced(name, inputs, params, result)
    return result


def note_traced(
    name: str, inputs: Sequence[Tensor | None], params: tuple[Any, ...], result: Tensor
) -> None:
    """Tell a running :func:`trace` about an op (``record`` does; ops outside the graph, as
    comparisons, call it themselves), and apply a running :func:`perturb`."""
    traced = _trace.get()
    if traced is not None:
        traced.append(TracedOp(name, tuple(inputs), params, result))
    probe = _perturbation.get()
    if probe is not None:
        if probe[0] == probe[1]:
            # A copy: the output may be a view of an input, which must stay as it was.
            result.data = result.data.copy()
            result.data.flat[probe[2]] += probe[3]
        probe[0] += 1


_perturbation: contextvars.ContextVar[list[Any] | None] = contextvars.ContextVar(
    "convprop_perturbation", default=None
)


@contextlib.contextmanager
def perturb(op_index: int, flat_index: int, delta: float) -> Iterator[None]:
    """Add ``delta`` to entry ``flat_index`` of the output of the ``op_index``-th op run in the
    ``with`` block (counting as :func:`trace` does): a finite difference of anything computed
    downstream with respect to an intermediate value (``convprop.explain.trace`` checks every
    layer's gradients this way)."""
    token = _perturbation.set([0, op_index, flat_index, delta])
    try:
        yield
    finally:
        _perturbation.reset(token)


class TracedOp(NamedTuple):
    """One op a :func:`trace` saw: its name, its tensor inputs, its other arguments (as the op's
    forward received them) and the tensor it returned."""

    name: str
    inputs: tuple[Tensor | None, ...]
    params: tuple[Any, ...]
    output: Tensor


_trace: contextvars.ContextVar[list[TracedOp] | None] = contextvars.ContextVar(
    "convprop_trace", default=None
)


@contextlib.contextmanager
def trace() -> Iterator[list[TracedOp]]:
    """Record every op run in the ``with`` block, in order, with its arguments (what
    ``convprop.onnx.export`` turns into a graph). Ops run as usual meanwhile."""
    ops: list[TracedOp] = []
    token = _trace.set(ops)
    try:
        yield ops
    finally:
        _trace.reset(token)


def not_a_tensor(func: str, name: str, value: object, *, optional: bool = False) -> TypeError:
    """The TypeError for an argument of op ``func`` that should have been a Tensor."""
    accepted = "a Tensor or None" if optional else "a Tensor"
    hint = " (convprop.from_numpy(array) makes one)" if isinstance(value, np.ndarray) else ""
    return TypeError(f"{func}: {name} must be {accepted}, got {type(value).__name__}{hint}")


def checked_tensor(func: str, name: str, value: Any) -> Tensor:
    """``value``, which must be a Tensor, for an argument of op ``func`` outside ``apply``."""
    from convprop.autograd.tensor import Tensor

    if not isinstance(value, Tensor):
        raise not_a_tensor(func, name, value)
    return value


def array_of(func: str, name: str, value: Any) -> np.ndarray | None:
    """The array of ``value``, a Tensor or None, for an optional argument of op ``func`` that
    is no input of its graph node (batch norm's running statistics)."""
    from convprop.autograd.tensor import Tensor

    if value is None or isinstance(value, Tensor):
        return None if value is None else value.data
    raise not_a_tensor(func, name, value, optional=True)


@functools.cache
def _input_names(forward: Callable[..., Any], count: int) -> list[tuple[str, bool]]:
    """(name, optional) of the first ``count`` parameters of an op's forward, under PyTorch's
    names (the ops call PyTorch's ``input`` x)."""
    parameters = list(inspect.signature(forward).parameters.values())[:count]
    return [
        (
            "input" if parameter.name == "x" else parameter.name,
            parameter.default is None or "None" in str(parameter.annotation),
        )
        for parameter in parameters
    ]


def apply(op: OpPair, inputs: Sequence[Tensor | None], *params: Any) -> Tensor:
    """Run ``op`` (an op of ``convprop.ops``) on the arrays of ``inputs`` and record its
    backward under the op's name.

    Each input is a Tensor or None (an optional input not given); anything else is a
    TypeError naming the op, the argument and what it takes.
    """
    from convprop.autograd.tensor import Tensor

    arrays: list[np.ndarray | None] = []
    for tensor in inputs:
        if isinstance(tensor, Tensor):
            arrays.append(tensor.data)
            continue
        argument, optional = _input_names(op.forward, len(inputs))[len(arrays)]
        if tensor is not None or not optional:
            raise not_a_tensor(op.name, argument, tensor, optional=optional)
        arrays.append(None)
    output, saved = op.forward(*arrays, *params)
    backward = op.backward
    return record(op.name, output, inputs, lambda grad, needs: backward(grad, saved, needs), params)


def _topological_order(root: Node) -> list[Node]:
    """Nodes reachable from ``root``, each after every node that consumes its output.

    An iterative depth-first search that emits a node once all its inputs' nodes are emitted
    (post-order), then reverses the list. A node is marked visited when it is expanded, not
    when it is first pushed: a node pushed early by one consumer may be reached again through
    another consumer before it is expanded, and must then be finished before that consumer.
    """
    order: list[Node] = []
    visited: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if id(node) in visited:
            continue
        visited.add(id(node))
        stack.append((node, True))
        for tensor in node.inputs:
            child = None if tensor is None else tensor.grad_fn
            if child is not None and id(child) not in visited:
                stack.append((child, False))
    order.reverse()
    return order


def run_backward(root: Tensor, grad: np.ndarray, retain_graph: bool = False) -> None:
    """Propagate ``grad`` (dL/d root) to every leaf that requires grad, accumulating ``.grad``."""
    if root.grad_fn is None:
        _accumulate_leaf(root, grad)
        return
    pending: dict[int, np.ndarray] = {id(root.grad_fn): grad}
    for node in _topological_order(root.grad_fn):
        grad_out = pending.pop(id(node), None)
        if grad_out is None:
            continue
        if node.backward_fn is None:
            raise RuntimeError(
                "backward: trying to backward through the graph a second time; its saved "
                "values were freed by the first backward (pass retain_graph=True to keep them)"
            )
        input_grads = node.backward_fn(grad_out, node.needs_input_grad)
        for tensor, need, input_grad in zip(
            node.inputs, node.needs_input_grad, input_grads, strict=True
        ):
            if not need or input_grad is None:
                continue
            assert tensor is not None
            if input_grad.dtype != tensor.dtype:
                input_grad = input_grad.astype(tensor.dtype)
            if tensor.grad_fn is None:
                _accumulate_leaf(tensor, input_grad)
                continue
            if tensor._retains_grad:
                _accumulate_leaf(tensor, input_grad)
            key = id(tensor.grad_fn)
            # Out of place: input_grad may be the very array handed to another input.
            pending[key] = input_grad if key not in pending else pending[key] + input_grad
        if not retain_graph:
            node.release()


def _accumulate_leaf(tensor: Tensor, grad: np.ndarray) -> None:
    from convprop.autograd.tensor import Tensor

    if grad.shape != tensor.shape:
        raise RuntimeError(
            f"backward: gradient of shape {grad.shape} does not match the tensor's shape "
            f"{tensor.shape}"
        )
    if tensor.grad is None:
        tensor.grad = Tensor(np.array(grad, dtype=tensor.dtype, copy=True))
    else:
        tensor.grad.data = tensor.grad.data + grad
