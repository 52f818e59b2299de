"""Define-by-run automatic differentiation over the ops of ``convprop.ops``."""

from convprop.autograd.gradcheck import GradcheckError, gradcheck
from convprop.autograd.graph import Node, apply, enable_grad, is_grad_enabled, no_grad, record
from convprop.autograd.tensor import Tensor

__all__ = [
    "GradcheckError",
    "Node",
    "Tensor",
    "apply",
    "enable_grad",
    "gradcheck",
    "is_grad_enabled",
    "no_grad",
    "record",
]
