"""Losses (the notes' "divergence") as forward/backward pairs.

Deck 004 trains on the divergence between the network's output Y_i and the desired output d_i,
averaged over the instances: Loss = (1/T) sum_i div(Y_i, d_i), so dLoss/dw = (1/T) sum_i
dDiv(Y_i, d_i)/dw. ``reduction='mean'`` is that average (over instances, and for dense
prediction over positions as well), ``'sum'`` drops the 1/T and ``'none'`` returns every
div(Y_i, d_i).

The classifier's output layer is a softmax y = softmax(z) over the class axis and its divergence
the cross-entropy div = -sum_c d_c log y_c. Combined, they have the derivative the notes use to
start backpropagation,

    dDiv/dz_c = y_c - d_c,      i.e. softmax(z) - onehot(class) for a class-index target,

which is what ``cross_entropy_backward`` computes directly (never through the softmax's full
Jacobian), times the class weight and the reduction's normaliser. The forward pass computes
log y = z - logsumexp(z) with the maximum subtracted, so that exp() cannot overflow.

Every loss follows PyTorch exactly: shapes (N, C) or (N, C, d1, d2, ...), unbatched (C,) inputs,
weighted means normalised by the sum of the weights of the target classes, ignore_index left out
of numerator and denominator, label smoothing as PyTorch mixes it in.

Cross-entropy with class-index targets has two implementations: the notes' formula with a
one-hot target distribution (``reference_cross_entropy``, ``reference_cross_entropy_grad``)
and the kernels of ``convprop.ops.kernels.cross_entropy``, which pick the target class out of
log y instead; ``plan_cross_entropy`` chooses (``convprop.ops.use_algorithm("reference")``
runs the formula). Every other loss here (class-probability cross-entropy, nll_loss, mse_loss,
binary_cross_entropy_with_logits) has one implementation, its formula as the docstring writes
it, which is its own reference.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from convprop.ops import algorithm
from convprop.ops.activation import log_softmax_forward
from convprop.ops.checks import check_float
from convprop.ops.contract import Grads, Needs, OpPair
from convprop.ops.elementwise import unbroadcast
from convprop.ops.kernels import cross_entropy as cross_entropy_kernels

REDUCTIONS = ("mean", "sum", "none")


# ------------------------------------------------------------------------------------- helpers
def legacy_reduction(size_average: bool | None, reduce: bool | None) -> str:
    """The reduction named by PyTorch's deprecated ``size_average``/``reduce`` flags."""
    size_average = True if size_average is None else size_average
    reduce = True if reduce is None else reduce
    if not reduce:
        return "none"
    return "mean" if size_average else "sum"


def check_reduction(reduction: str, func: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"{func}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def _reduce(per_element: np.ndarray, reduction: str, denominator: Any = None) -> np.ndarray:
    """Apply ``reduction``; 'mean' divides the sum by ``denominator`` (default: the count)."""
    if reduction == "none":
        return per_element
    total = per_element.sum()
    if reduction == "mean":
        count = per_element.size if denominator is None else denominator
        # An empty batch, or one whose targets are all ignored, gives 0/0 = NaN, as PyTorch.
        with np.errstate(invalid="ignore", divide="ignore"):
            total = total / count
    return np.asarray(total, dtype=per_element.dtype)


def _grad_scale(grad_out: np.ndarray, reduction: str, denominator: Any) -> np.ndarray:
    """dL/d(per-element loss): grad_out itself, or divided by the mean's denominator."""
    if reduction != "mean":
        return grad_out
    with np.errstate(invalid="ignore", divide="ignore"):
        scaled: np.ndarray = grad_out / np.asarray(denominator, dtype=grad_out.dtype)
    return scaled


def _check_float_target(target: np.ndarray, func: str) -> None:
    if not np.issubdtype(target.dtype, np.floating):
        raise TypeError(
            f"{func}: target must have a floating-point dtype (float32 or float64), "
            f"got {target.dtype}"
        )


def _common_dtype(arrays: list[np.ndarray | None]) -> np.dtype:
    """PyTorch's promotion: the widest floating dtype; integer arrays do not widen it."""
    return np.result_type(*[a.dtype for a in arrays if a is not None and a.dtype.kind == "f"])


# ------------------------------------------------------------------------- class-index targets
def _is_class_index(target: np.ndarray, func: str) -> bool:
    """True for integer targets (class indices), False for float ones (class probabilities)."""
    if target.dtype == np.bool_ or not np.issubdtype(target.dtype, np.number):
        raise TypeError(
            f"{func}: target must hold class indices (an integer dtype such as int64) or class "
            f"probabilities (a floating-point dtype), got {target.dtype}"
        )
    return bool(np.issubdtype(target.dtype, np.integer))


def _check_input(x: np.ndarray, func: str) -> None:
    check_float(x, func, "input")
    if x.ndim == 0:
        raise ValueError(
            f"{func}: input must be (C,), (N, C) or (N, C, d1, ...) with the classes on axis "
            "1, got a 0-D input"
        )


def _check_class_weight(weight: np.ndarray | None, x: np.ndarray, classes: int, func: str) -> None:
    if weight is None:
        return
    check_float(weight, func, "weight")
    if weight.shape != (classes,):
        raise ValueError(
            f"{func}: weight must hold one weight per class, shape ({classes},) for input of "
            f"shape {tuple(x.shape)}, got shape {tuple(weight.shape)}"
        )
    if weight.dtype != x.dtype:
        raise TypeError(f"{func}: weight is {weight.dtype} but input is {x.dtype}")


def _batched_index_target(
    x: np.ndarray, target: np.ndarray, ignore_index: int, func: str
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Validate class indices; return (input (N, C, *d), target (N, *d), unbatched)."""
    unbatched = x.ndim == 1
    expected = () if unbatched else (x.shape[0],) + x.shape[2:]
    if target.shape != expected:
        layout = (
            "(C,) input takes a 0-D target"
            if unbatched
            else ("(N, C, d1, ...) input takes an (N, d1, ...) target")
        )
        raise ValueError(
            f"{func}: target of class indices must have shape {expected} for input of shape "
            f"{tuple(x.shape)} ({layout}), got shape {tuple(target.shape)}"
        )
    classes = x.shape[0] if unbatched else x.shape[1]
    out_of_range = ((target < 0) | (target >= classes)) & (target != ignore_index)
    if out_of_range.any():
        bad = int(target[out_of_range].flat[0])
        raise ValueError(
            f"{func}: target contains class {bad}, but input has {classes} classes (class "
            f"indices must lie in [0, {classes - 1}] or equal ignore_index={ignore_index})"
        )
    if unbatched:
        return x[None], target[None], True
    return x, target, False


def _gather_classes(
    target: np.ndarray, weight: np.ndarray | None, ignore_index: int, dtype: np.dtype
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(index array for take_along_axis on axis 1, kept mask, weight of each target class)."""
    kept = target != ignore_index
    safe_target = np.where(kept, target, 0).astype(np.intp, copy=False)
    class_index = np.expand_dims(safe_target, 1)
    if weight is None:
        target_weight = kept.astype(dtype)
    else:
        target_weight = weight[safe_target] * kept
    return class_index, kept, target_weight


def _class_weight_view(weight: np.ndarray, ndim: int) -> np.ndarray:
    """A (C,) weight shaped (1, C, 1, ...) to broadcast against an (N, C, *d) array."""
    return weight.reshape((1, -1) + (1,) * (ndim - 2))


def _finish(
    per_sample: np.ndarray, reduction: str, denominator: Any, unbatched: bool
) -> np.ndarray:
    if reduction == "none" and unbatched:
        return per_sample.reshape(())
    return _reduce(per_sample, reduction, denominator)


def _per_sample_grad(
    grad_out: np.ndarray, reduction: str, denominator: Any, sample_shape: tuple[int, ...]
) -> np.ndarray:
    """dL/d(per-sample loss), as an array of the batched per-sample shape (N, d1, ...)."""
    scale = _grad_scale(grad_out, reduction, denominator)
    if reduction == "none":
        return scale.reshape(sample_shape)  # an unbatched () gradient becomes (1,)
    return np.broadcast_to(scale, sample_shape)


def _kept_only(sample_grad: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """Exactly zero gradient for ignored targets, even when the mean divided by 0 (as PyTorch)."""
    return np.where(kept, sample_grad, np.zeros((), sample_grad.dtype))


# ------------------------------------------------------------------------------- cross_entropy
# With class-index targets, cross-entropy has the notes' formula as its reference (a one-hot
# target distribution over every class) beside the kernels of ``convprop.ops.kernels.
# cross_entropy``, which pick the target class out instead; ``plan_cross_entropy`` chooses.
def _target_distribution(
    class_index: np.ndarray, kept: np.ndarray, classes: int, label_smoothing: float, dtype: Any
) -> np.ndarray:
    """d = (1 - eps) onehot(t) + eps / C over axis 1, zero for an ignored target."""
    shape = (1, classes) + (1,) * (class_index.ndim - 2)
    onehot = (np.arange(classes).reshape(shape) == class_index).astype(dtype)
    smoothed = (1.0 - label_smoothing) * onehot + label_smoothing / classes
    distribution: np.ndarray = smoothed * np.expand_dims(kept, 1)
    return distribution


def reference_cross_entropy(
    log_probs: np.ndarray,
    class_index: np.ndarray,
    kept: np.ndarray,
    target_weight: np.ndarray,
    weight: np.ndarray | None,
    label_smoothing: float,
) -> np.ndarray:
    """div_n = -sum_c w_c d_c log y_c, the divergence of y = softmax(z) from the target
    distribution d = (1 - eps) onehot(t) + eps / C (d = 0 for an ignored target).

    A class with w_c d_c = 0 adds nothing even where log y_c = -inf (0 log 0 = 0).
    """
    classes = log_probs.shape[1]
    d = _target_distribution(class_index, kept, classes, label_smoothing, log_probs.dtype)
    w = np.ones(classes, log_probs.dtype) if weight is None else weight
    coefficient = _class_weight_view(w, log_probs.ndim) * d
    with np.errstate(invalid="ignore"):  # 0 * -inf, replaced by 0
        terms = np.where(coefficient != 0, coefficient * log_probs, np.zeros((), log_probs.dtype))
    loss: np.ndarray = -terms.sum(axis=1)
    return loss


def reference_cross_entropy_grad(
    sample_grad: np.ndarray,
    log_probs: np.ndarray,
    class_index: np.ndarray,
    kept: np.ndarray,
    target_weight: np.ndarray,
    weight: np.ndarray | None,
    label_smoothing: float,
) -> np.ndarray:
    """dL/dz_c = s (y_c sum_k w_k d_k - w_c d_c), s = dL/d div_n (1/sum w_t for 'mean').

    Without class weights or smoothing, sum_k w_k d_k = 1: the notes' dDiv/dz = y - onehot(t),
    times s = 1/N for the mean, (p - onehot) / N.
    """
    classes = log_probs.shape[1]
    d = _target_distribution(class_index, kept, classes, label_smoothing, log_probs.dtype)
    w = np.ones(classes, log_probs.dtype) if weight is None else weight
    weighted_target = _class_weight_view(w, log_probs.ndim) * d
    y = np.exp(log_probs)
    s = np.expand_dims(sample_grad, 1)
    grad: np.ndarray = s * (y * weighted_target.sum(axis=1, keepdims=True) - weighted_target)
    return grad


LossKernel = Callable[
    [np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, float], np.ndarray
]
LossGradKernel = Callable[
    [np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, float],
    np.ndarray,
]
CROSS_ENTROPY_KERNELS: dict[str, LossKernel] = {
    "reference": reference_cross_entropy,
    "target_gather": cross_entropy_kernels.per_sample_loss,
}
CROSS_ENTROPY_GRAD_KERNELS: dict[str, LossGradKernel] = {
    "reference": reference_cross_entropy_grad,
    "target_gather": cross_entropy_kernels.input_grad,
}


def plan_cross_entropy() -> str:
    """Cross-entropy of class-index targets: the target class picked out of log y (no one-hot
    array), or the reference. Class-probability targets have one implementation, the formula
    with the dense target d, which is its own reference."""
    return "reference" if algorithm.reference() else "target_gather"


def cross_entropy_forward(
    x: np.ndarray,
    target: np.ndarray,
    weight: np.ndarray | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> tuple[np.ndarray, Any]:
    """Cross-entropy of softmax(x) over axis 1 (axis 0 for an unbatched (C,) input).

    Class-index target t (integers): with w_t the weight of the target class (0 if ignored),
    eps the label smoothing and C the number of classes,

        loss_n = (1 - eps) w_t (-log y_t) + (eps / C) sum_c w_c (-log y_c)   (0 if ignored)

    and 'mean' divides the sum by sum_n w_t (the count of kept targets without weights).

    Class-probability target d (floats, the input's shape): with d' = (1 - eps) d + eps / C,
    loss_n = -sum_c w_c d'_c log y_c, and 'mean' divides by the number of samples N * d1 * ...
    """
    func = "cross_entropy"
    _check_input(x, func)
    check_reduction(reduction, func)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(
            f"{func}: label_smoothing must be between 0.0 and 1.0, got {label_smoothing}"
        )
    classes = x.shape[0] if x.ndim == 1 else x.shape[1]
    if _is_class_index(target, func):
        _check_class_weight(weight, x, classes, func)
        return _cross_entropy_index(x, target, weight, ignore_index, reduction, label_smoothing)
    return _cross_entropy_probability(x, target, weight, ignore_index, reduction, label_smoothing)


def _cross_entropy_index(
    x: np.ndarray,
    target: np.ndarray,
    weight: np.ndarray | None,
    ignore_index: int,
    reduction: str,
    label_smoothing: float,
) -> tuple[np.ndarray, Any]:
    batched, target, unbatched = _batched_index_target(x, target, ignore_index, "cross_entropy")
    log_probs, _ = log_softmax_forward(batched, 1)
    class_index, kept, target_weight = _gather_classes(target, weight, ignore_index, x.dtype)
    kernel = plan_cross_entropy()
    algorithm.ran(f"cross_entropy.forward.{kernel}")
    per_sample = CROSS_ENTROPY_KERNELS[kernel](
        log_probs, class_index, kept, target_weight, weight, label_smoothing
    )
    denominator = target_weight.sum()
    saved = (
        "index",
        log_probs,
        class_index,
        kept,
        target_weight,
        weight,
        label_smoothing,
        reduction,
        denominator,
        x.shape,
    )
    return _finish(per_sample, reduction, denominator, unbatched), saved


def _cross_entropy_probability(
    x: np.ndarray,
    target: np.ndarray,
    weight: np.ndarray | None,
    ignore_index: int,
    reduction: str,
    label_smoothing: float,
) -> tuple[np.ndarray, Any]:
    func = "cross_entropy"
    if target.shape != x.shape:
        raise ValueError(
            f"{func}: target of class probabilities must have the input's shape "
            f"{tuple(x.shape)}, got shape {tuple(target.shape)}"
        )
    if ignore_index >= 0:
        raise ValueError(
            f"{func}: ignore_index is not supported for class-probability (floating-point) "
            f"targets, got ignore_index={ignore_index}"
        )
    classes = x.shape[0] if x.ndim == 1 else x.shape[1]
    if weight is not None:
        check_float(weight, func, "weight")
        if weight.shape != (classes,):
            raise ValueError(
                f"{func}: weight must hold one weight per class, shape ({classes},) for input "
                f"of shape {tuple(x.shape)}, got shape {tuple(weight.shape)}"
            )
    dtype = _common_dtype([x, target, weight])
    unbatched = x.ndim == 1
    batched = x.astype(dtype, copy=False)[None] if unbatched else x.astype(dtype, copy=False)
    probabilities = target.astype(dtype, copy=False)
    probabilities = probabilities[None] if unbatched else probabilities
    log_probs, _ = log_softmax_forward(batched, 1)
    smoothed = probabilities
    if label_smoothing > 0:
        smoothed = probabilities * (1.0 - label_smoothing) + label_smoothing / classes
    class_weight = None
    weighted = smoothed
    if weight is not None:
        class_weight = _class_weight_view(weight.astype(dtype, copy=False), batched.ndim)
        weighted = smoothed * class_weight
    per_sample = -(log_probs * weighted).sum(axis=1)
    denominator = per_sample.size
    saved = (
        "probability",
        log_probs,
        smoothed,
        weighted,
        class_weight,
        label_smoothing,
        reduction,
        denominator,
        x.shape,
    )
    return _finish(per_sample, reduction, denominator, unbatched), saved


def cross_entropy_backward(grad_out: np.ndarray, saved: Any, needs: Needs) -> Grads:
    """The notes' softmax + cross-entropy derivative, written directly.

    Class-index target: dL/dz = (softmax(z) - onehot(t)) w_t s, s the reduction's factor
    (1/sum w_t for 'mean'). With label smoothing eps the per-sample coefficients are
    a_c = s ((1 - eps) w_t onehot_c(t) + (eps / C) w_c), and dL/dz_c = y_c sum_k a_k - a_c.

    Class-probability target: a_c = s w_c d'_c, again dL/dz_c = y_c sum_k a_k - a_c;
    dL/dd_c = -s (1 - eps) w_c log y_c; dL/dw_c = -sum_n s d'_c log y_c.
    """
    if saved[0] == "index":
        return _cross_entropy_index_backward(grad_out, saved, needs)
    return _cross_entropy_probability_backward(grad_out, saved, needs)


def _cross_entropy_index_backward(grad_out: np.ndarray, saved: Any, needs: Needs) -> Grads:
    (
        _,
        log_probs,
        class_index,
        kept,
        target_weight,
        weight,
        label_smoothing,
        reduction,
        denominator,
        input_shape,
    ) = saved
    if not needs[0]:
        return None, None, None
    sample_grad = _kept_only(
        _per_sample_grad(grad_out, reduction, denominator, target_weight.shape), kept
    )
    kernel = plan_cross_entropy()
    algorithm.ran(f"cross_entropy.backward.{kernel}")
    grad = CROSS_ENTROPY_GRAD_KERNELS[kernel](
        sample_grad, log_probs, class_index, kept, target_weight, weight, label_smoothing
    )
    return grad.reshape(input_shape), None, None


def _cross_entropy_probability_backward(grad_out: np.ndarray, saved: Any, needs: Needs) -> Grads:
    (
        _,
        log_probs,
        smoothed,
        weighted,
        class_weight,
        label_smoothing,
        reduction,
        denominator,
        input_shape,
    ) = saved
    sample_shape = (log_probs.shape[0],) + log_probs.shape[2:]
    sample_grad = np.expand_dims(
        _per_sample_grad(
            grad_out.astype(log_probs.dtype, copy=False), reduction, denominator, sample_shape
        ),
        1,
    )
    grad_x = grad_target = grad_weight = None
    if needs[0]:
        coef = weighted * sample_grad
        grad_x = (np.exp(log_probs) * coef.sum(axis=1, keepdims=True) - coef).reshape(input_shape)
    if needs[1]:
        local = -log_probs * sample_grad * (1.0 - label_smoothing)
        if class_weight is not None:
            local = local * class_weight
        grad_target = local.reshape(input_shape)
    if len(needs) > 2 and needs[2]:
        axes = (0, *range(2, log_probs.ndim))
        grad_weight = -(log_probs * smoothed * sample_grad).sum(axis=axes)
    return grad_x, grad_target, grad_weight


# ------------------------------------------------------------------------------------ nll_loss
def nll_loss_forward(
    x: np.ndarray,
    target: np.ndarray,
    weight: np.ndarray | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> tuple[np.ndarray, Any]:
    """Negative log-likelihood of log-probabilities x: loss_n = -w_t x[n, t] (0 if ignored).

    'mean' divides the sum by sum_n w_t, the weights of the kept targets.
    """
    func = "nll_loss"
    _check_input(x, func)
    check_reduction(reduction, func)
    if not _is_class_index(target, func):
        raise TypeError(
            f"{func}: target must hold class indices (an integer dtype such as int64), got "
            f"{target.dtype}"
        )
    classes = x.shape[0] if x.ndim == 1 else x.shape[1]
    _check_class_weight(weight, x, classes, func)
    batched, target, unbatched = _batched_index_target(x, target, ignore_index, func)
    class_index, kept, target_weight = _gather_classes(target, weight, ignore_index, x.dtype)
    per_sample = -np.take_along_axis(batched, class_index, axis=1)[:, 0] * target_weight
    denominator = target_weight.sum()
    saved = (class_index, kept, target_weight, reduction, denominator, batched.shape, x.shape)
    return _finish(per_sample, reduction, denominator, unbatched), saved


def nll_loss_backward(grad_out: np.ndarray, saved: Any, needs: Needs) -> Grads:
    """dL/dx[n, c] = -w_t s at c = t, 0 elsewhere (s the reduction's factor, 1/sum w_t for mean)."""
    class_index, kept, target_weight, reduction, denominator, batched_shape, input_shape = saved
    if not needs[0]:
        return None, None, None
    sample_grad = _kept_only(
        _per_sample_grad(grad_out, reduction, denominator, target_weight.shape), kept
    )
    grad = np.zeros(batched_shape, dtype=grad_out.dtype)
    np.put_along_axis(grad, class_index, np.expand_dims(-sample_grad * target_weight, 1), axis=1)
    return grad.reshape(input_shape), None, None


# ------------------------------------------------------------------------------------ mse_loss
def mse_loss_forward(
    x: np.ndarray,
    target: np.ndarray,
    weight: np.ndarray | None = None,
    reduction: str = "mean",
) -> tuple[np.ndarray, Any]:
    """loss_i = w_i (x_i - d_i)^2; 'mean' divides the sum by the count, or by sum_i w_i.

    As PyTorch, a target of another shape is broadcast against the input, with a warning.
    """
    func = "mse_loss"
    check_float(x, func, "input")
    check_reduction(reduction, func)
    if target.dtype == np.bool_ or not np.issubdtype(target.dtype, np.number):
        raise TypeError(f"{func}: target must have a numeric dtype, got {target.dtype}")
    if target.shape != x.shape:
        try:
            np.broadcast_shapes(x.shape, target.shape)
        except ValueError:
            raise ValueError(
                f"{func}: target of shape {tuple(target.shape)} does not broadcast against "
                f"input of shape {tuple(x.shape)}"
            ) from None
        warnings.warn(
            f"{func}: using a target size {tuple(target.shape)} that is different to the input "
            f"size {tuple(x.shape)}; this will likely lead to incorrect results due to "
            "broadcasting. Please ensure they have the same size.",
            UserWarning,
            stacklevel=4,
        )
    if weight is not None:
        check_float(weight, func, "weight")
        if weight.shape != x.shape:
            raise ValueError(
                f"{func}: weight must have the input's shape {tuple(x.shape)}, got shape "
                f"{tuple(weight.shape)}"
            )
    dtype = _common_dtype([x, target, weight])
    difference = x.astype(dtype, copy=False) - target.astype(dtype, copy=False)
    squared = difference * difference
    per_element = squared if weight is None else squared * weight.astype(dtype, copy=False)
    denominator = per_element.size if weight is None else weight.sum(dtype=dtype)
    out = _reduce(per_element, reduction, denominator)
    saved = (difference, squared, weight, reduction, denominator, out, x.shape, target.shape)
    return out, saved


def mse_loss_backward(grad_out: np.ndarray, saved: Any, needs: Needs) -> Grads:
    """dL/dx = 2 w (x - d) s, dL/dd = -dL/dx (summed over broadcast axes); s the reduction factor.

    dL/dw_i = s (x_i - d_i)^2, and for the weighted mean (x_i - d_i)^2 - L over sum w, times
    dL/dL.
    """
    difference, squared, weight, reduction, denominator, loss, x_shape, target_shape = saved
    scale = _grad_scale(grad_out, reduction, denominator)
    grad_x = grad_target = grad_weight = None
    if needs[0] or needs[1]:
        local = 2.0 * difference * scale
        if weight is not None:
            local = local * weight
        grad_x = unbroadcast(local, x_shape) if needs[0] else None
        grad_target = unbroadcast(-local, target_shape) if needs[1] else None
    if len(needs) > 2 and needs[2]:
        if reduction == "mean":
            grad_weight = (squared - loss) * scale
        else:
            grad_weight = squared * scale
        grad_weight = unbroadcast(np.broadcast_to(grad_weight, squared.shape), weight.shape)
    return grad_x, grad_target, grad_weight


# ------------------------------------------------------------ binary_cross_entropy_with_logits
def binary_cross_entropy_with_logits_forward(
    x: np.ndarray,
    target: np.ndarray,
    weight: np.ndarray | None = None,
    pos_weight: np.ndarray | None = None,
    reduction: str = "mean",
) -> tuple[np.ndarray, Any]:
    """loss_i = w_i [p_i d_i softplus(-x_i) + (1 - d_i) softplus(x_i)], the binary divergence of
    sigmoid(x_i) from d_i, with p the weight of the positive class (pos_weight, default 1).

    Computed stably as (1 - d) x + (1 + (p - 1) d) softplus(-x), where
    softplus(-x) = log(1 + exp(-|x|)) + max(-x, 0) never overflows.
    """
    func = "binary_cross_entropy_with_logits"
    check_float(x, func, "input")
    _check_float_target(target, func)
    check_reduction(reduction, func)
    if target.shape != x.shape:
        raise ValueError(
            f"{func}: target must have the input's shape {tuple(x.shape)}, got shape "
            f"{tuple(target.shape)}"
        )
    for name, array in (("weight", weight), ("pos_weight", pos_weight)):
        if array is None:
            continue
        check_float(array, func, name)
        try:
            fits = np.broadcast_shapes(array.shape, x.shape) == x.shape
        except ValueError:
            fits = False
        if not fits:
            raise ValueError(
                f"{func}: {name} of shape {tuple(array.shape)} does not broadcast to the "
                f"input's shape {tuple(x.shape)}"
            )
    dtype = _common_dtype([x, target, weight, pos_weight])
    x = x.astype(dtype, copy=False)
    target = target.astype(dtype, copy=False)
    softplus_neg = np.log1p(np.exp(-np.abs(x))) + np.maximum(-x, 0)
    log_weight = None
    if pos_weight is not None:
        log_weight = 1.0 + (pos_weight.astype(dtype, copy=False) - 1.0) * target
        per_element = (1.0 - target) * x + log_weight * softplus_neg
    else:
        per_element = (1.0 - target) * x + softplus_neg
    if weight is not None:
        per_element = per_element * weight.astype(dtype, copy=False)
    saved = (x, target, weight, pos_weight, log_weight, softplus_neg, reduction, per_element.size)
    return _reduce(per_element, reduction), saved


def binary_cross_entropy_with_logits_backward(
    grad_out: np.ndarray, saved: Any, needs: Needs
) -> Grads:
    """dL/dx = w ((1 + (p - 1) d) sigmoid(x) - p d) s  (= w (sigmoid(x) - d) s without p);
    dL/dd = w (-x + (p - 1) softplus(-x)) s; s the reduction's factor (1/count for 'mean').
    """
    x, target, weight, pos_weight, log_weight, softplus_neg, reduction, count = saved
    scale = _grad_scale(grad_out, reduction, count)
    if weight is not None:
        scale = scale * weight
    grad_x = grad_target = None
    if needs[0]:
        with np.errstate(over="ignore"):
            sigmoid = 1.0 / (1.0 + np.exp(-x))
        if pos_weight is None:
            local = sigmoid - target
        else:
            local = log_weight * sigmoid - pos_weight * target
        grad_x = np.broadcast_to(local * scale, x.shape).copy()
    if needs[1]:
        local = -x if pos_weight is None else (pos_weight - 1.0) * softplus_neg - x
        grad_target = np.broadcast_to(local * scale, x.shape).copy()
    return grad_x, grad_target, None, None


binary_cross_entropy_with_logits = OpPair(
    "binary_cross_entropy_with_logits",
    binary_cross_entropy_with_logits_forward,
    binary_cross_entropy_with_logits_backward,
)
cross_entropy = OpPair("cross_entropy", cross_entropy_forward, cross_entropy_backward)
mse_loss = OpPair("mse_loss", mse_loss_forward, mse_loss_backward)
nll_loss = OpPair("nll_loss", nll_loss_forward, nll_loss_backward)
