"""Data-parallel training over MPI, with ``torch.distributed``'s names.

Run the same program on N processes with ``mpirun -n N python train.py``; each process
computes its share of every global batch, and the gradients are averaged over the processes
before each optimizer step, so N processes take the steps one process would take on the
whole batch. mpi4py (``pip install 'convprop[mpi]'``) is imported only by
:func:`init_process_group`.

* the process group: :func:`init_process_group`, :func:`is_initialized`, :func:`get_rank`,
  :func:`get_world_size`, :func:`destroy_process_group`;
* collectives on NumPy arrays and Tensors, in place: :func:`all_reduce` (:class:`ReduceOp`
  SUM, AVG, ...), :func:`broadcast`, :func:`barrier`, :func:`all_gather_into_tensor`, and
  on picklable objects :func:`broadcast_object_list`, :func:`all_gather_object`;
* shards: :class:`DistributedSampler`, :func:`shard_batch` and :func:`share_weight`
  (training), :func:`shard_range` (evaluation);
* state: :func:`broadcast_module`, :func:`broadcast_optimizer` (from rank 0, at the start
  and on resume), :func:`all_reduce_metrics` and :func:`gather_shards` (sharded evaluation);
* faults: :func:`abort_on_error`, :func:`install_fault_handler` (an error on one process
  ends the job with one line, no process left waiting).

The gradient averaging itself is ``convprop.nn.parallel.DistributedDataParallel``, and batch
norm over the global batch ``convprop.nn.SyncBatchNorm``. See docs/distributed.md.
"""

from convprop.distributed.faults import abort_on_error, error_line, install_fault_handler
from convprop.distributed.process_group import (
    DistributedError,
    ProcessGroup,
    ReduceOp,
    all_gather_into_tensor,
    all_gather_object,
    all_reduce,
    barrier,
    broadcast,
    broadcast_object_list,
    destroy_process_group,
    get_process_group,
    get_rank,
    get_world_size,
    init_process_group,
    is_available,
    is_initialized,
    launched_by_mpi,
    launched_world_size,
)
from convprop.distributed.sampler import (
    DistributedSampler,
    check_batch_size,
    shard_batch,
    shard_range,
    share_weight,
)
from convprop.distributed.state import (
    all_reduce_metrics,
    broadcast_module,
    broadcast_optimizer,
    gather_shards,
)

__all__ = [
    "DistributedError",
    "DistributedSampler",
    "ProcessGroup",
    "ReduceOp",
    "abort_on_error",
    "all_gather_into_tensor",
    "all_gather_object",
    "all_reduce",
    "all_reduce_metrics",
    "barrier",
    "broadcast",
    "broadcast_module",
    "broadcast_object_list",
    "broadcast_optimizer",
    "check_batch_size",
    "destroy_process_group",
    "error_line",
    "gather_shards",
    "get_process_group",
    "get_rank",
    "get_world_size",
    "init_process_group",
    "install_fault_handler",
    "is_available",
    "is_initialized",
    "launched_by_mpi",
    "launched_world_size",
    "shard_batch",
    "shard_range",
    "share_weight",
]
