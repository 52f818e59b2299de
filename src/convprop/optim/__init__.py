"""Optimizers and learning-rate schedulers with PyTorch's update rules, names and defaults.

Every optimizer updates ``param.data`` in place from ``param.grad`` (skipping parameters whose
grad is None), keeps the parameter's dtype, and agrees with ``torch.optim`` (its single-tensor
implementation) to rounding in float64.
"""

from convprop.optim import lr_scheduler
from convprop.optim.adam import Adam, AdamW
from convprop.optim.optimizer import Optimizer
from convprop.optim.rmsprop import RMSprop
from convprop.optim.sgd import SGD

__all__ = ["SGD", "Adam", "AdamW", "Optimizer", "RMSprop", "lr_scheduler"]
