"""``convprop.explain``: the lecture notes' derivations, computed symbolically (sympy) for any
configuration and checked against the engine.

* ``conv(...)``: a convolution layer's forward pass as sums of products of named inputs and
  weights, its backward pass by differentiation, the notes' identities (full correlation with
  the Rot180 kernel, correlation of the input with delta, sum of delta) proven by sympy;
* ``matrix(...)``: the same convolution as a matrix acting on the flattened input (deck 002),
  its transpose as the backward pass, and the weight gradient Q^T delta;
* ``pool(...)``: max/mean pooling on concrete numbers: routing to the argmax ("+=" where
  windows overlap), or the 1/K^2 spread;
* ``network(...)``: a tiny CNN (deck 004's shape) layer by layer, its deltas derived by hand in
  NumPy and compared with the engine's, and one gradient-descent step.

Each returns an object with the sympy expressions (or numbers) and ``render(format)`` for
'text', 'markdown' or 'json', and ``figure(path)`` for a PNG. sympy is imported lazily so the
``convprop`` command starts quickly.
"""

from __future__ import annotations

from typing import Any

__all__ = ["conv", "matrix", "network", "pool"]

_PROVIDERS = {
    "conv": ("convprop.explain.convolution", "conv"),
    "matrix": ("convprop.explain.unrolled", "matrix"),
    "pool": ("convprop.explain.pooling", "pool"),
    "network": ("convprop.explain.cnn", "network"),
}


def __getattr__(name: str) -> Any:
    if name in _PROVIDERS:
        import importlib

        module, attribute = _PROVIDERS[name]
        return getattr(importlib.import_module(module), attribute)
    raise AttributeError(f"module 'convprop.explain' has no attribute {name!r}")
