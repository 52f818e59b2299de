"""Batch normalisation (see ``convprop.ops.normalization``)."""

from __future__ import annotations

from convprop.autograd import Tensor, apply, array_of
from convprop.ops import normalization

__all__ = ["batch_norm"]


def batch_norm(
    input: Tensor,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> Tensor:
    """y = (x - mean) / sqrt(var + eps) * weight + bias, per channel (axis 1).

    ``training=True``: mean and the biased variance are taken over the batch and every spatial
    position of each channel, and ``running_mean``/``running_var`` (if given) are updated in
    place: running = (1 - momentum) * running + momentum * batch statistic, with the unbiased
    variance. ``training=False``: the running statistics are used (they must be given).

    Shape: input (N, C), (N, C, L), (N, C, H, W) or (N, C, D, H, W); running_mean, running_var,
    weight and bias (C,); the output has the input's shape.
    """
    return apply(
        normalization.batch_norm,
        (input, weight, bias),
        array_of("batch_norm", "running_mean", running_mean),
        array_of("batch_norm", "running_var", running_var),
        training,
        momentum,
        eps,
    )
