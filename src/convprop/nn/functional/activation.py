"""Point-wise activations, softmax and dropout (see ``convprop.ops.activation``).

Each point-wise function y = phi(v) backpropagates dL/dv = dL/dy * phi'(v), the notes' local
gradient. Shape: any input shape; the output has the input's shape and dtype.

``inplace`` is accepted for PyTorch compatibility, but convprop never overwrites the input:
the result is always a new tensor (with the same values PyTorch's in-place call produces).
"""

from __future__ import annotations

import warnings
from typing import Any

from convprop.autograd import Tensor, apply, checked_tensor
from convprop.ops import activation

__all__ = [
    "dropout",
    "dropout1d",
    "dropout2d",
    "elu",
    "gelu",
    "leaky_relu",
    "log_softmax",
    "relu",
    "sigmoid",
    "silu",
    "softmax",
    "tanh",
]


def relu(input: Tensor, inplace: bool = False) -> Tensor:
    """relu(x) = max(x, 0); gradient 1 where x > 0 and 0 elsewhere (0 at x = 0)."""
    return apply(activation.relu, (input,))


def leaky_relu(input: Tensor, negative_slope: float = 0.01, inplace: bool = False) -> Tensor:
    """leaky_relu(x) = x for x > 0, negative_slope * x otherwise.

    Gradient 1 for x > 0 and negative_slope for x <= 0 (negative_slope at x = 0, as PyTorch).
    """
    return apply(activation.leaky_relu, (input,), negative_slope)


def elu(input: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    """elu(x) = x for x > 0, alpha * (exp(x) - 1) otherwise.

    Gradient 1 for x > 0 and alpha * exp(x) for x <= 0 (alpha at x = 0, as PyTorch).
    """
    return apply(activation.elu, (input,), alpha)


def gelu(input: Tensor, approximate: str = "none") -> Tensor:
    """gelu(x) = x * Phi(x), Phi(x) = 0.5 * (1 + erf(x / sqrt(2))) the standard normal CDF.

    ``approximate='tanh'``: 0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x^3))).
    """
    return apply(activation.gelu, (input,), approximate)


def sigmoid(input: Tensor) -> Tensor:
    """sigmoid(x) = 1 / (1 + exp(-x)); gradient sigmoid(x) * (1 - sigmoid(x))."""
    return apply(activation.sigmoid, (input,))


def tanh(input: Tensor) -> Tensor:
    """tanh(x); gradient 1 - tanh(x)^2."""
    return apply(activation.tanh, (input,))


def silu(input: Tensor, inplace: bool = False) -> Tensor:
    """silu(x) = x * sigmoid(x); gradient s * (1 + x * (1 - s)), s = sigmoid(x)."""
    return apply(activation.silu, (input,))


def softmax(
    input: Tensor, dim: int | None = None, _stacklevel: int = 3, dtype: Any = None
) -> Tensor:
    """softmax(x)_i = exp(x_i) / sum_j exp(x_j) along ``dim``.

    ``dim`` is required (PyTorch's deprecated implicit choice is not copied). With ``dtype``,
    the input is cast to it first. Shape: any; the output has the input's shape.
    """
    if dtype is not None:
        input = input.to(dtype)
    return apply(activation.softmax, (input,), dim)


def log_softmax(
    input: Tensor, dim: int | None = None, _stacklevel: int = 3, dtype: Any = None
) -> Tensor:
    """log_softmax(x)_i = x_i - log sum_j exp(x_j) along ``dim``, computed stably.

    ``dim`` is required (PyTorch's deprecated implicit choice is not copied). With ``dtype``,
    the input is cast to it first. Shape: any; the output has the input's shape.
    """
    if dtype is not None:
        input = input.to(dtype)
    return apply(activation.log_softmax, (input,), dim)


def dropout(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """Inverted dropout: in training, zero each element with probability ``p`` and scale the
    others by 1 / (1 - p), so the expected output equals the input; otherwise return ``input``.

    The mask comes from ``convprop.random.default_generator()`` (seed it with
    ``convprop.manual_seed``); the backward pass multiplies by the same mask and scale.
    """
    checked_tensor("dropout", "input", input)
    activation.check_dropout_probability(p)
    if not training:
        return input
    return apply(activation.dropout, (input,), p, training)


def _channel_dropout(input: Tensor, p: float, training: bool, batched: bool) -> Tensor:
    activation.check_dropout_probability(p)
    if not training:
        return input
    shape = input.shape
    # One draw per (sample, channel), broadcast over the spatial positions.
    mask_shape = (shape[:2] if batched else shape[:1]) + (1,) * (len(shape) - (2 if batched else 1))
    return apply(
        activation.dropout,
        (input,),
        p,
        training,
        None,
        mask_shape,
    )


def dropout1d(
    input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False
) -> Tensor:
    """Channel-wise dropout of (N, C, L) or unbatched (C, L) input: whole channels are zeroed
    with probability ``p`` and the rest scaled by 1 / (1 - p)."""
    checked_tensor("dropout1d", "input", input)
    if input.ndim not in (2, 3):
        raise ValueError(
            f"dropout1d: input must be 2-D (C, L) or 3-D (N, C, L), got shape {input.shape}"
        )
    return _channel_dropout(input, p, training, batched=input.ndim == 3)


def dropout2d(
    input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False
) -> Tensor:
    """Channel-wise dropout of (N, C, H, W) input: whole channels are zeroed with probability
    ``p`` and the rest scaled by 1 / (1 - p).

    As PyTorch, a 3-D input is taken as (N, C, L) (1-D channel dropout), with a warning.
    """
    checked_tensor("dropout2d", "input", input)
    if input.ndim not in (3, 4):
        warnings.warn(
            f"dropout2d: received a {input.ndim}-D input; dropout2d is meant for (N, C, H, W) "
            "or (C, H, W) inputs (use dropout instead)",
            UserWarning,
            stacklevel=2,
        )
    if input.ndim == 3:
        warnings.warn(
            "dropout2d: received a 3-D input; as PyTorch, it is taken as (N, C, L) and whole "
            "1-D channels are dropped (use dropout1d for that)",
            UserWarning,
            stacklevel=2,
        )
    if input.ndim < 2:
        raise ValueError(
            f"dropout2d: input must have a batch and a channel axis, got shape {input.shape}"
        )
    return _channel_dropout(input, p, training, batched=True)
