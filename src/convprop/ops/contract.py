"""The op contract every module of ``convprop.ops`` follows.

An op is a forward/backward pair on ndarrays, named as one record, :class:`OpPair`:

* ``forward(*arrays, *params) -> (output, saved)`` computes the output and keeps in ``saved``
  only what the backward needs (a typed record where the op has one);
* ``backward(grad_out, saved, needs_input_grad) -> Grads``: one gradient per array input, each
  of the input's shape and dtype, ``None`` where ``needs_input_grad`` says it is not needed.

``grad_out`` is the local gradient delta = dL/d(output) of the notes; the backward's docstring
says how delta travels back, in the notes' terms. ``convprop.autograd.apply(op, inputs,
*params)`` runs the forward on the tensors' arrays and records the backward in the graph,
under the op's name (``<Conv2dBackward>``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

Grads = tuple[np.ndarray | None, ...]
Needs = tuple[bool, ...]
Forward = Callable[..., tuple[np.ndarray, Any]]
Backward = Callable[[np.ndarray, Any, Needs], Grads]


@dataclass(frozen=True)
class OpPair:
    """An op: its name (as the graph shows it), its forward and its backward."""

    name: str
    forward: Forward
    backward: Backward

    def __repr__(self) -> str:
        return f"OpPair({self.name!r})"
