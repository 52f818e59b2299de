"""The math of every op: forward/backward pairs on ndarrays, knowing nothing of Tensors.

See ``convprop.ops.elementwise`` for the contract every pair follows.
"""
