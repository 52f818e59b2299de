"""Losses, the notes' divergences averaged over the batch (see ``convprop.ops.loss``).

``reduction`` is 'mean' (the notes' (1/T) sum_i div(Y_i, d_i)), 'sum' or 'none' (one value per
sample). ``size_average`` and ``reduce`` are PyTorch's deprecated spellings of ``reduction``;
when either is given it decides the reduction, as in PyTorch.
"""

from __future__ import annotations

from convprop.autograd import Tensor, apply, checked_tensor, is_grad_enabled, not_a_tensor
from convprop.ops import loss as loss_ops

__all__ = ["binary_cross_entropy_with_logits", "cross_entropy", "mse_loss", "nll_loss"]


def _reduction(size_average: bool | None, reduce: bool | None, reduction: str) -> str:
    if size_average is not None or reduce is not None:
        return loss_ops.legacy_reduction(size_average, reduce)
    return reduction


def _refuse_grad(func: str, name: str, tensor: Tensor | None) -> None:
    """PyTorch does not differentiate these losses with respect to their weights; neither do we."""
    if tensor is not None and not isinstance(tensor, Tensor):
        raise not_a_tensor(func, name, tensor, optional=True)
    if tensor is not None and tensor.requires_grad and is_grad_enabled():
        raise ValueError(
            f"{func}: the loss is not differentiable with respect to {name} (as in PyTorch), "
            f"but {name} requires grad; pass {name}.detach()"
        )


def cross_entropy(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    size_average: bool | None = None,
    ignore_index: int = -100,
    reduce: bool | None = None,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> Tensor:
    """Cross-entropy between softmax(input) over the class axis and the target.

    Class-index target t (integer dtype), with eps = label_smoothing and w the class weights::

        loss_n = (1 - eps) * w[t_n] * -log softmax(x_n)[t_n]
                 + eps / C * sum_c w[c] * -log softmax(x_n)[c]          (0 where t_n is ignored)

    'mean' divides the sum by sum_n w[t_n] over the kept targets (their count without weight).
    Class-probability target d (floating dtype, the input's shape)::

        loss_n = -sum_c w[c] * ((1 - eps) d_nc + eps / C) * log softmax(x_n)[c]

    and 'mean' divides by the number of samples. The gradient with respect to the input is the
    notes' (softmax(x) - target) times the weights and the normaliser.

    Shape:
        input (N, C), (N, C, d1, ...) or unbatched (C,); index target (N,), (N, d1, ...) or ();
        probability target: the input's shape. Output: a scalar, or with reduction='none'
        the target's shape (index) or the input's shape without C (probabilities).
    """
    reduction = _reduction(size_average, reduce, reduction)
    checked_tensor("cross_entropy", "input", input)
    if checked_tensor("cross_entropy", "target", target).dtype.kind != "f":
        _refuse_grad("cross_entropy", "weight", weight)
    return apply(
        loss_ops.cross_entropy,
        (input, target, weight),
        ignore_index,
        reduction,
        label_smoothing,
    )


def nll_loss(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    size_average: bool | None = None,
    ignore_index: int = -100,
    reduce: bool | None = None,
    reduction: str = "mean",
) -> Tensor:
    """Negative log-likelihood of log-probabilities: loss_n = -w[t_n] * input[n, t_n].

    'mean' divides the sum by sum_n w[t_n] over the targets that are not ``ignore_index``.

    Shape: input (N, C), (N, C, d1, ...) or (C,); target (N,), (N, d1, ...) or () of class
    indices. Output: a scalar, or the target's shape with reduction='none'.
    """
    reduction = _reduction(size_average, reduce, reduction)
    _refuse_grad("nll_loss", "weight", weight)
    return apply(
        loss_ops.nll_loss,
        (input, target, weight),
        ignore_index,
        reduction,
    )


def mse_loss(
    input: Tensor,
    target: Tensor,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
    weight: Tensor | None = None,
) -> Tensor:
    """Mean squared error: loss_i = weight_i * (input_i - target_i)^2.

    'mean' divides the sum by the number of elements, or by sum_i weight_i when weighted.

    Shape: input any; target the input's shape (another broadcastable shape is broadcast with a
    warning, as PyTorch); weight the input's shape. Output: a scalar, or the broadcast shape
    with reduction='none'.
    """
    reduction = _reduction(size_average, reduce, reduction)
    return apply(
        loss_ops.mse_loss,
        (input, target, weight),
        reduction,
    )


def binary_cross_entropy_with_logits(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
    pos_weight: Tensor | None = None,
) -> Tensor:
    """Binary cross-entropy of sigmoid(input) against target, computed stably from the logits::

        loss_i = weight_i * (p * t_i * softplus(-x_i) + (1 - t_i) * softplus(x_i))

    with p = pos_weight (broadcast along the last axis, the classes), default 1.

    Shape: input any; target the input's shape; weight and pos_weight broadcastable to it.
    Output: a scalar, or the input's shape with reduction='none'.
    """
    reduction = _reduction(size_average, reduce, reduction)
    _refuse_grad("binary_cross_entropy_with_logits", "weight", weight)
    _refuse_grad("binary_cross_entropy_with_logits", "pos_weight", pos_weight)
    return apply(
        loss_ops.binary_cross_entropy_with_logits,
        (input, target, weight, pos_weight),
        reduction,
    )
