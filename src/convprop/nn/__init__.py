"""Neural-network building blocks with PyTorch's names."""

from convprop.nn import functional, init
from convprop.nn.containers import ModuleDict, ModuleList, Sequential
from convprop.nn.module import Module, Parameter, StateDictError

__all__ = [
    "Module",
    "ModuleDict",
    "ModuleList",
    "Parameter",
    "Sequential",
    "StateDictError",
    "functional",
    "init",
]
