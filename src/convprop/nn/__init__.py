"""Neural-network building blocks with PyTorch's names."""

from convprop.nn import functional

__all__ = ["functional"]
