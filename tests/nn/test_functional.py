"""What the functional API takes: Tensors, and one clear TypeError for anything else."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import convprop as cp
import convprop.nn.functional as F

_FAMILIES = ["activation", "conv", "linear", "loss", "normalization", "pooling", "resample"]
_FUNCTIONS = [
    (name, getattr(module, name))
    for module in (importlib.import_module(f"convprop.nn.functional.{f}") for f in _FAMILIES)
    for name in module.__all__
]
# Valid values for the required arguments that are not being tested.
_VALID: dict[str, Any] = {
    "input": lambda: cp.ones(2, 2, 4, 4),
    "weight": lambda: cp.ones(2, 2, 3, 3),
    "target": lambda: cp.ones(2, 2, 4, 4),
    "indices": lambda: cp.zeros(2, 2, 2, 2, dtype=np.int64),
    "pad": lambda: (1, 1),
    "running_mean": lambda: None,
    "running_var": lambda: None,
}


def _tensor_arguments(function: Callable[..., Any]) -> list[tuple[str, bool]]:
    """(name, optional) of every argument the function's signature types as a Tensor."""
    return [
        (name, parameter.default is None or "None" in str(parameter.annotation))
        for name, parameter in inspect.signature(function).parameters.items()
        if "Tensor" in str(parameter.annotation)
    ]


def _call_with(function: Callable[..., Any], name: str, value: object) -> None:
    arguments = {
        key: _VALID.get(key, lambda: 2)()
        for key, parameter in inspect.signature(function).parameters.items()
        if parameter.default is inspect.Parameter.empty
    }
    function(**{**arguments, name: value})


@pytest.mark.parametrize(
    ("func", "function", "argument", "optional"),
    [
        (func, function, argument, optional)
        for func, function in _FUNCTIONS
        for argument, optional in _tensor_arguments(function)
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
@pytest.mark.parametrize(
    ("value", "got"),
    [
        (memoryview(np.ones((2, 2, 4, 4))), "memoryview"),
        (np.ones((2, 2, 4, 4)), "ndarray"),
        ([[1.0, 2.0]], "list"),
    ],
    ids=["memoryview", "ndarray", "list"],
)
def test_every_functional_op_says_it_takes_a_tensor(
    func: str, function: Callable[..., Any], argument: str, optional: bool, value: object, got: str
) -> None:
    """Each tensor argument of each op (input, weight, bias, target, running statistics,
    ...) given something else: a TypeError naming the op and the argument, saying what it
    takes and what it got (an ndarray was taken for its ``.data``, a memoryview, before)."""
    takes = "a Tensor or None" if optional else "a Tensor"
    message = f"{func}: {argument} must be {takes}, got {got}"
    with pytest.raises(TypeError, match=f"^{message}"):
        _call_with(function, argument, value)


def test_the_tensor_checks_cover_every_functional_op() -> None:
    exported = {name for name in dir(F) if not name.startswith("_")}
    assert {name for name, _ in _FUNCTIONS} <= exported
    assert len(_FUNCTIONS) >= 40 and all(_tensor_arguments(f) for _, f in _FUNCTIONS)


def test_an_ndarray_gets_a_hint_and_a_missing_weight_is_named() -> None:
    with pytest.raises(TypeError, match=r"convprop.from_numpy\(array\) makes one"):
        F.conv2d(np.ones((1, 1, 4, 4)), cp.ones(1, 1, 3, 3))
    with pytest.raises(TypeError, match="^conv2d: weight must be a Tensor, got NoneType$"):
        F.conv2d(cp.ones(1, 1, 4, 4), None)
    assert F.conv2d(cp.ones(1, 1, 4, 4), cp.ones(1, 1, 3, 3), None).shape == (1, 1, 2, 2)


@pytest.mark.parametrize(
    ("func", "call"),
    [
        ("exp", lambda v: cp.exp(v)),
        ("log", lambda v: cp.log(v)),
        ("sqrt", lambda v: cp.sqrt(v)),
        ("abs", lambda v: cp.abs(v)),
        ("clamp", lambda v: cp.clamp(v, 0.0)),
        ("matmul", lambda v: cp.matmul(v, cp.ones(4, 4))),
        ("flatten", lambda v: cp.flatten(v)),
        ("cat", lambda v: cp.cat([cp.ones(4), v])),
        ("stack", lambda v: cp.stack([cp.ones(4), v])),
    ],
)
def test_the_top_level_ops_say_it_too(func: str, call: Callable[[object], Any]) -> None:
    argument = "tensors\\[1\\]" if func in ("cat", "stack") else "input"
    with pytest.raises(TypeError, match=f"^{func}: {argument} must be a Tensor, got memoryview"):
        call(memoryview(np.ones(4)))
