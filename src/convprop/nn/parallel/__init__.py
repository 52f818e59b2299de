"""Data-parallel training: ``DistributedDataParallel`` averages gradients over processes."""

from convprop.nn.parallel.distributed import DistributedDataParallel

__all__ = ["DistributedDataParallel"]
