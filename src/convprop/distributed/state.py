"""Keeping the processes' state equal, and adding up their evaluations.

* :func:`broadcast_module` copies process 0's parameters and buffers (batch norm's running
  statistics) into every other process's model, in place, at the start of training and after
  a resume; :func:`broadcast_optimizer` does the same for the optimizer's state (momentum
  buffers, Adam's moments, step counts, the groups' learning rates), so every process then
  takes the same steps.
* :func:`all_reduce_metrics` adds per-process sums (loss sums, counts of correct predictions,
  confusion matrices) over the processes in one ``Allreduce``; :func:`gather_shards` puts
  the shards of an array (predictions) back together in rank order. With the contiguous
  slices of ``shard_range``, a sharded evaluation thus equals one process's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from convprop.distributed import process_group as pg

if TYPE_CHECKING:
    from convprop.nn.module import Module
    from convprop.optim.optimizer import Optimizer

__all__ = ["all_reduce_metrics", "broadcast_module", "broadcast_optimizer", "gather_shards"]

# Metrics travel as float64, which holds every integer count up to 2**53 exactly.
_EXACT_INTEGER_LIMIT = 2**53


def broadcast_module(module: Module, src: int = 0, group: pg.ProcessGroup | None = None) -> None:
    """Overwrite every parameter and buffer of ``module`` with process ``src``'s, in place.

    The processes' models must have the same parameters and buffers, by name, shape and
    dtype (the same architecture and dtype); a difference is a DistributedError naming the
    first one, raised on the processes that differ.
    """
    target = pg._group_or_default(group)
    tensors = [*module.named_parameters(), *module.named_buffers()]
    layout = [(name, tensor.shape, tensor.dtype.str) for name, tensor in tensors]
    reference = target.broadcast_object(layout, src)
    if reference != layout:
        difference = next(
            (
                f"{mine} here but {theirs} on rank {src}"
                for mine, theirs in zip(layout, reference, strict=False)
                if mine != theirs
            ),
            f"{len(layout)} tensors here but {len(reference)} on rank {src}",
        )
        raise pg.DistributedError(
            f"broadcast_module: the model on rank {target.rank} differs from rank {src}'s: "
            f"{difference}"
        )
    for _, tensor in tensors:
        if not (tensor.data.flags.c_contiguous and tensor.data.flags.writeable):
            tensor.data = np.ascontiguousarray(tensor.data).copy()
        target.broadcast(tensor.data, src)


def broadcast_optimizer(
    optimizer: Optimizer, src: int = 0, group: pg.ProcessGroup | None = None
) -> None:
    """Load process ``src``'s optimizer state (``state_dict()``) into every other process's
    optimizer, which must be built on the same parameters."""
    target = pg._group_or_default(group)
    state = target.broadcast_object(optimizer.state_dict() if target.rank == src else None, src)
    if target.rank != src:
        optimizer.load_state_dict(state)


def all_reduce_metrics(
    metrics: Mapping[str, float | int | np.ndarray], group: pg.ProcessGroup | None = None
) -> dict[str, Any]:
    """Each entry summed over the processes, in one ``Allreduce``: floats stay floats,
    ints (and integer arrays, e.g. a confusion matrix) stay exact integers.

    Every process must pass the same keys with values of the same shapes.

    Example, in a sharded evaluation: ``all_reduce_metrics({"loss_sum": ..., "correct": ...,
    "count": ..., "confusion": matrix})``; the mean loss is then ``loss_sum / count``.
    """
    target = pg._group_or_default(group)
    names = sorted(metrics)
    arrays = {name: np.asarray(metrics[name]) for name in names}
    for name, array in arrays.items():
        if array.dtype.kind not in "biuf":
            raise TypeError(
                f"all_reduce_metrics: {name!r} must be a number or a numeric array, got dtype "
                f"{array.dtype}"
            )
        if array.dtype.kind in "iu" and array.size and np.abs(array).max() >= _EXACT_INTEGER_LIMIT:
            raise ValueError(
                f"all_reduce_metrics: {name!r} has a count of 2**53 or more, beyond what the "
                "reduction adds exactly"
            )
    packed = np.concatenate(
        [np.zeros(0), *(arrays[name].astype(np.float64).ravel() for name in names)]
    )
    target.all_reduce(packed)
    reduced: dict[str, Any] = {}
    offset = 0
    for name in names:
        array = arrays[name]
        values = packed[offset : offset + array.size].reshape(array.shape)
        offset += array.size
        if array.dtype.kind in "biu":
            values = values.astype(np.int64)
        reduced[name] = values if array.ndim else values.item()
    return reduced


def gather_shards(array: np.ndarray, group: pg.ProcessGroup | None = None) -> np.ndarray:
    """Every process's ``array`` concatenated along axis 0 in rank order (lengths may
    differ): the predictions of a sharded evaluation in the data set's order."""
    return pg._group_or_default(group).all_gather_varying(array)
