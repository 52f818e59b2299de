"""Define-by-run automatic differentiation over the ops of ``convprop.ops``."""

from convprop.autograd.gradcheck import GradcheckError, gradcheck
from convprop.autograd.graph import (
    Node,
    TracedOp,
    apply,
    array_of,
    checked_tensor,
    enable_grad,
    is_grad_enabled,
    no_grad,
    not_a_tensor,
    perturb,
    record,
    trace,
)
from convprop.autograd.tensor import Tensor

__all__ = [
    "GradcheckError",
    "Node",
    "TracedOp",
    "Tensor",
    "apply",
    "array_of",
    "checked_tensor",
    "enable_grad",
    "gradcheck",
    "is_grad_enabled",
    "no_grad",
    "not_a_tensor",
    "perturb",
    "record",
    "trace",
]
