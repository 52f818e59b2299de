"""The math of every op: forward/backward pairs on ndarrays, knowing nothing of Tensors.

Each op family's module (``conv``, ``pooling``, ``normalization``, ...) holds its public pairs
(``OpPair`` records, ``convprop.ops.contract``), its reference implementation (the notes'
formulas as written) and its plan, which picks a fast kernel from ``convprop.ops.kernels``.
``use_algorithm("reference")`` runs every op through its reference implementation;
``kernels_used()`` counts which implementation ran.
"""

from convprop.ops.algorithm import kernels_used, use_algorithm

__all__ = ["kernels_used", "use_algorithm"]
