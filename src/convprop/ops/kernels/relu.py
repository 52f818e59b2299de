"""ReLU's fast passes: the forward in blocks of samples, the backward as one compiled loop.

The notes' rule (``convprop.ops.activation.reference_relu_backward``) masks and multiplies,
three passes over the map in NumPy; ``backward`` does it in one compiled pass that reads the
gradient and the output once. Both passes run over blocks of samples on every core when the
map is large (``parallel.batch_blocks``, unless the caller gives ``blocks``): NumPy and the
compiled loop release the GIL (BENCHMARKS.md, "Kernels: ReLU").
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from convprop.ops.kernels.compiled import compiled
from convprop.ops.kernels.parallel import batch_blocks, map_blocks


def _blocks_of(array: np.ndarray, blocks: Sequence[slice] | None) -> Sequence[slice]:
    if blocks is not None:
        return blocks
    return batch_blocks(len(array), array[:1].nbytes) if array.ndim else [slice(None)]


def forward(x: np.ndarray, blocks: Sequence[slice] | None = None) -> np.ndarray:
    """relu(x) = max(x, 0), blocks of samples on every core."""
    blocks = _blocks_of(x, blocks)
    if len(blocks) == 1:
        out: np.ndarray = np.maximum(x, 0)
        return out
    out = np.empty_like(x)
    map_blocks(lambda b: np.maximum(x[b], 0, out=out[b]), blocks, blas=False)
    return out


def backward(
    grad_out: np.ndarray, out: np.ndarray, blocks: Sequence[slice] | None = None
) -> np.ndarray:
    """dL/dz = 0 where y = relu(z) <= 0, else dL/dy; ``grad_out`` of ``out``'s shape."""
    grad_out = np.ascontiguousarray(grad_out)
    grad = np.empty(out.shape, dtype=np.result_type(grad_out, out))
    if not out.ndim:
        _zero_where_not_positive(grad_out.reshape(1), out.reshape(1), grad.reshape(1))
        return grad

    def block(b: slice) -> None:
        _zero_where_not_positive(grad_out[b].reshape(-1), out[b].reshape(-1), grad[b].reshape(-1))

    map_blocks(block, _blocks_of(out, blocks), blas=False)
    return grad


@compiled
def _zero_where_not_positive(grad: np.ndarray, values: np.ndarray, out: np.ndarray) -> None:
    """out_i = 0 where values_i <= 0, else grad_i (a NaN value passes its gradient, as in
    PyTorch's threshold_backward)."""
    for i in range(grad.size):
        out[i] = 0 if values[i] <= 0 else grad[i]
