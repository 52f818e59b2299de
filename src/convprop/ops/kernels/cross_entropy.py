"""Cross-entropy with class-index targets, without the one-hot array.

The notes' formulas (``convprop.ops.loss.reference_cross_entropy``) weigh log y by a target
distribution d = (1 - eps) onehot(t) + eps / C over every class. With integer targets most of
d is zero or the same constant, so these kernels pick each sample's target class out of
log y with ``take_along_axis`` and add the smoothing term as one sum over the classes; the
backward starts from y times a per-sample coefficient and corrects the one entry at the
target class with ``put_along_axis`` (the one-hot term). Every sample's target class comes as
``class_index`` (N, 1, *d) (an ignored target points at class 0 and has ``kept`` False and a
zero ``target_weight``).
"""

from __future__ import annotations

import numpy as np


def _class_weight_view(weight: np.ndarray, ndim: int) -> np.ndarray:
    """A (C,) weight shaped (1, C, 1, ...) to broadcast against an (N, C, *d) array."""
    return weight.reshape((1, -1) + (1,) * (ndim - 2))


def per_sample_loss(
    log_probs: np.ndarray,
    class_index: np.ndarray,
    kept: np.ndarray,
    target_weight: np.ndarray,
    weight: np.ndarray | None,
    label_smoothing: float,
) -> np.ndarray:
    """loss_n = (1 - eps) w_t (-log y_t) + (eps / C) sum_c w_c (-log y_c), 0 if ignored."""
    target_log_prob = np.take_along_axis(log_probs, class_index, axis=1)[:, 0]
    per_sample: np.ndarray = -target_log_prob * target_weight
    if label_smoothing > 0:
        classes = log_probs.shape[1]
        if weight is None:
            smooth = -log_probs.sum(axis=1)
        else:
            smooth = -(log_probs * _class_weight_view(weight, log_probs.ndim)).sum(axis=1)
        smooth = np.where(kept, smooth, np.zeros((), log_probs.dtype))
        per_sample = (1.0 - label_smoothing) * per_sample + (label_smoothing / classes) * smooth
    return per_sample


def input_grad(
    sample_grad: np.ndarray,
    log_probs: np.ndarray,
    class_index: np.ndarray,
    kept: np.ndarray,
    target_weight: np.ndarray,
    weight: np.ndarray | None,
    label_smoothing: float,
) -> np.ndarray:
    """dL/dz_c = y_c sum_k a_k - a_c with a_c = s ((1 - eps) w_t onehot_c(t) + (eps / C) w_c),
    s = ``sample_grad`` (dL/d loss_n, zero for ignored samples)."""
    classes = log_probs.shape[1]
    probs: np.ndarray = np.exp(log_probs)
    # Coefficient of -log y_t (the one-hot part) for each sample.
    onehot_coef = (1.0 - label_smoothing) * sample_grad * target_weight
    if label_smoothing > 0:
        smooth_coef = (label_smoothing / classes) * sample_grad * kept
        total_weight = classes if weight is None else weight.sum()
        grad: np.ndarray = probs * np.expand_dims(onehot_coef + smooth_coef * total_weight, 1)
        smooth_part = np.expand_dims(smooth_coef, 1)
        if weight is not None:
            smooth_part = smooth_part * _class_weight_view(weight, log_probs.ndim)
        grad -= smooth_part
    else:
        grad = probs * np.expand_dims(onehot_coef, 1)
    # Subtract the one-hot term at each sample's target class (ignored samples add 0 at class 0).
    at_target = np.take_along_axis(grad, class_index, axis=1)
    np.put_along_axis(grad, class_index, at_target - np.expand_dims(onehot_coef, 1), axis=1)
    return grad
