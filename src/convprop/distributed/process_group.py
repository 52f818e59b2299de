"""The process group: every process of an MPI job, and the collectives over NumPy arrays.

``init_process_group()`` joins the job that ``mpirun`` (or ``srun``, or any MPI launcher)
started; afterwards ``get_rank()`` and ``get_world_size()`` say who this process is, and the
collectives (``all_reduce``, ``broadcast``, ``barrier``, ...) act on every process of the job
at once, in place on NumPy arrays (or on a convprop Tensor's array). The names and arguments
are ``torch.distributed``'s; the transport is MPI, through mpi4py, which is imported only
here and only when the group is created, so ``import convprop`` never needs it.

The group talks over a duplicate of ``MPI.COMM_WORLD`` (``Dup``), so collectives a program
runs on ``COMM_WORLD`` itself cannot be mistaken for convprop's.

Every collective must be called by every process of the group, in the same order, with
arrays of the same shape and dtype (MPI's rule: a process that skips one leaves the others
waiting). ``convprop.distributed.install_fault_handler`` ends the whole job when one process
fails, so that no other waits forever.
"""

from __future__ import annotations

import enum
import importlib
import importlib.util
import os
from typing import Any

import numpy as np

from convprop.autograd import Tensor

__all__ = [
    "LAUNCHER_VARIABLES",
    "DistributedError",
    "ProcessGroup",
    "ReduceOp",
    "all_gather_into_tensor",
    "all_gather_object",
    "all_reduce",
    "barrier",
    "broadcast",
    "broadcast_object_list",
    "destroy_process_group",
    "get_process_group",
    "get_rank",
    "get_world_size",
    "init_process_group",
    "is_available",
    "is_initialized",
    "launched_by_mpi",
    "launched_world_size",
]

INSTALL_HINT = "pip install 'convprop[mpi]'"

# What each launcher puts in the environment of the processes it starts: Open MPI's mpirun
# (OMPI_*), PMIx launchers (Open MPI 5, srun --mpi=pmix: PMIX_RANK), MPICH's and Intel MPI's
# Hydra and srun --mpi=pmi2 (PMI_*), MVAPICH (MV2_*).
LAUNCHER_VARIABLES = (
    "OMPI_COMM_WORLD_SIZE",
    "PMIX_RANK",
    "PMI_RANK",
    "PMI_SIZE",
    "PMI_FD",
    "MV2_COMM_WORLD_RANK",
)
# The number of processes the launcher started, where it says (to catch an mpirun of one MPI
# starting processes whose mpi4py loads another: each would see a world of one).
_LAUNCHED_SIZE_VARIABLES = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MV2_COMM_WORLD_SIZE")


class DistributedError(RuntimeError):
    """What is missing or wrong in the MPI setup (no mpi4py, no launcher, a mismatched MPI),
    or a collective used without a group; one line that says how to fix it."""


class ReduceOp(enum.Enum):
    """How ``all_reduce`` combines the processes' arrays, as ``torch.distributed.ReduceOp``."""

    SUM = "sum"
    AVG = "avg"
    PRODUCT = "product"
    MIN = "min"
    MAX = "max"


def is_available() -> bool:
    """Whether mpi4py can be imported (without importing it, which would start MPI)."""
    return importlib.util.find_spec("mpi4py") is not None


def launched_by_mpi() -> bool:
    """Whether this process was started by an MPI launcher (``mpirun``, ``mpiexec``, ``srun``
    with an MPI plugin), judged by the variables launchers set (``LAUNCHER_VARIABLES``)."""
    return any(name in os.environ for name in LAUNCHER_VARIABLES)


def launched_world_size() -> int | None:
    """The number of processes the launcher says it started (``OMPI_COMM_WORLD_SIZE``,
    ``PMI_SIZE``, ...), without starting MPI; None where no launcher says."""
    for name in _LAUNCHED_SIZE_VARIABLES:
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return None


def _load_mpi() -> Any:
    """mpi4py's ``MPI`` module (importing it initialises MPI), or a DistributedError saying
    what to install."""
    try:
        importlib.import_module("mpi4py")
    except ImportError:
        raise DistributedError(
            f"distributed training needs mpi4py and an MPI library: {INSTALL_HINT}"
        ) from None
    try:
        return importlib.import_module("mpi4py.MPI")
    except (ImportError, RuntimeError) as error:
        reason = " ".join(str(error).split())
        raise DistributedError(
            f"mpi4py is installed but cannot load an MPI library ({reason}): {INSTALL_HINT} "
            "brings Open MPI; on a cluster, load the site's MPI module and rebuild mpi4py "
            "against it (docs/distributed.md)"
        ) from None


class ProcessGroup:
    """The processes of one communicator: this process's ``rank`` among ``size``.

    Methods are the collectives on contiguous NumPy arrays, in place; the module-level
    functions (``all_reduce``, ...) call them on the default group. ``all_gather`` and
    ``all_reduce_sum`` are what ``convprop.ops.sync_batch_norm`` needs of a group.
    """

    def __init__(self, communicator: Any, mpi: Any) -> None:
        self.communicator = communicator
        self._mpi = mpi
        self.rank: int = communicator.Get_rank()
        self.size: int = communicator.Get_size()

    def __repr__(self) -> str:
        return f"ProcessGroup(rank={self.rank}, size={self.size})"

    def _operation(self, op: ReduceOp) -> Any:
        mpi = self._mpi
        return {
            ReduceOp.SUM: mpi.SUM,
            ReduceOp.AVG: mpi.SUM,
            ReduceOp.PRODUCT: mpi.PROD,
            ReduceOp.MIN: mpi.MIN,
            ReduceOp.MAX: mpi.MAX,
        }[op]

    def all_reduce(self, array: np.ndarray, op: ReduceOp = ReduceOp.SUM) -> None:
        """Combine ``array`` over every process, in place; AVG divides the sum by the size."""
        _check_buffer(array, "all_reduce", "tensor")
        if op is ReduceOp.AVG and array.dtype.kind != "f":
            raise TypeError(
                f"all_reduce: ReduceOp.AVG needs a floating-point array, got dtype {array.dtype} "
                "(reduce with ReduceOp.SUM and divide where the rounding is yours to choose)"
            )
        self.communicator.Allreduce(self._mpi.IN_PLACE, array, op=self._operation(op))
        if op is ReduceOp.AVG:
            # A division, not a product with 1/size: the mean of exactly representable
            # values is then the correctly rounded mean.
            array /= self.size

    def all_reduce_sum(self, array: np.ndarray) -> None:
        """``all_reduce(array, ReduceOp.SUM)``."""
        self.all_reduce(array, ReduceOp.SUM)

    def broadcast(self, array: np.ndarray, src: int = 0) -> None:
        """Overwrite ``array`` on every process with process ``src``'s, in place."""
        _check_buffer(array, "broadcast", "tensor")
        self.communicator.Bcast(array, root=self._check_rank(src, "broadcast", "src"))

    def all_gather(self, array: np.ndarray) -> np.ndarray:
        """Every process's ``array`` stacked in rank order: shape (size, *array.shape), the
        same on every process."""
        local = np.ascontiguousarray(array)
        gathered = np.empty((self.size, *local.shape), dtype=local.dtype)
        self.communicator.Allgather(local, gathered)
        return gathered

    def all_gather_varying(self, array: np.ndarray) -> np.ndarray:
        """Every process's ``array`` concatenated along axis 0 in rank order, the first axis
        of each process's array of any length (the others equal): an evaluation's shards of
        predictions put back together."""
        local = np.ascontiguousarray(array)
        lengths = self.communicator.allgather(local.shape)
        trailing = {shape[1:] for shape in lengths}
        if len(trailing) != 1:
            raise ValueError(
                "all_gather_varying: the arrays may differ in their first axis only, got shapes "
                + ", ".join(f"{tuple(shape)} on rank {rank}" for rank, shape in enumerate(lengths))
            )
        per_row = int(np.prod(local.shape[1:], dtype=np.int64))
        counts = [shape[0] * per_row for shape in lengths]
        gathered = np.empty((sum(shape[0] for shape in lengths), *local.shape[1:]), local.dtype)
        self.communicator.Allgatherv(local.reshape(-1), (gathered.reshape(-1), counts))
        return gathered

    def broadcast_object(self, value: Any, src: int = 0) -> Any:
        """Process ``src``'s ``value`` (any picklable object) on every process."""
        return self.communicator.bcast(value, root=self._check_rank(src, "broadcast", "src"))

    def all_gather_object(self, value: Any) -> list[Any]:
        """Every process's ``value`` (picklable), in rank order."""
        gathered: list[Any] = self.communicator.allgather(value)
        return gathered

    def barrier(self) -> None:
        """Wait until every process of the group has reached this call."""
        self.communicator.Barrier()

    def abort(self, exit_status: int) -> None:
        """End every process of the job (``MPI_Abort`` on ``COMM_WORLD``) with ``exit_status``."""
        self._mpi.COMM_WORLD.Abort(exit_status)

    def _check_rank(self, rank: int, func: str, name: str) -> int:
        if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)):
            raise TypeError(f"{func}: {name} must be an int rank, got {type(rank).__name__}")
        if not 0 <= rank < self.size:
            raise ValueError(
                f"{func}: {name} must be a rank of the group, 0 to {self.size - 1}, got {rank}"
            )
        return int(rank)


_default_group: ProcessGroup | None = None


def init_process_group(backend: str = "mpi", *, world_size: int = -1, rank: int = -1) -> None:
    """Join the MPI job this process was launched in, as ``torch.distributed``'s function.

    Args:
        backend: ``"mpi"``, the only transport (PyTorch's name for it).
        world_size: the number of processes expected, or -1 to take the launcher's.
        rank: this process's rank expected, or -1 to take the launcher's.

    Raises:
        DistributedError: mpi4py or an MPI library is missing, the process was not started
            by an MPI launcher, the launcher's MPI is not the one mpi4py loaded, or the group
            already exists.
        ValueError: ``backend``, ``world_size`` or ``rank`` disagree with the job.
    """
    global _default_group
    if backend != "mpi":
        raise ValueError(f"init_process_group: backend must be 'mpi', got {backend!r}")
    if _default_group is not None:
        raise DistributedError(
            "init_process_group: the process group is already initialized (call "
            "destroy_process_group() first)"
        )
    if not launched_by_mpi():
        raise DistributedError(
            "distributed training needs an MPI launcher: start the program with "
            "`mpirun -n N ...` (or `srun` with an MPI plugin); none of "
            + ", ".join(LAUNCHER_VARIABLES)
            + " is set"
        )
    mpi = _load_mpi()
    group = ProcessGroup(mpi.COMM_WORLD.Dup(), mpi)
    for name in _LAUNCHED_SIZE_VARIABLES:
        launched = os.environ.get(name, "")
        if launched.isdigit() and int(launched) != group.size:
            raise DistributedError(
                f"the launcher started {launched} processes ({name}={launched}) but mpi4py's "
                f"MPI sees {group.size}: the mpirun on PATH belongs to another MPI than the "
                f"one mpi4py loaded ({mpi.Get_library_version().splitlines()[0].strip()}); "
                "use the mpirun of that MPI"
            )
    if world_size != -1 and world_size != group.size:
        raise ValueError(
            f"init_process_group: world_size={world_size} but the job has {group.size} processes"
        )
    if rank != -1 and rank != group.rank:
        raise ValueError(f"init_process_group: rank={rank} but this process is rank {group.rank}")
    _default_group = group


def is_initialized() -> bool:
    """Whether ``init_process_group`` has run (and ``destroy_process_group`` has not)."""
    return _default_group is not None


def get_process_group() -> ProcessGroup:
    """The default group, or a DistributedError when there is none."""
    if _default_group is None:
        raise DistributedError(
            "the default process group is not initialized: call "
            "convprop.distributed.init_process_group() first"
        )
    return _default_group


def _group_or_default(group: ProcessGroup | None) -> ProcessGroup:
    return get_process_group() if group is None else group


def get_rank(group: ProcessGroup | None = None) -> int:
    """This process's rank, 0 to world size - 1; 0 without a process group, a world of one
    (where ``torch.distributed.get_rank`` raises), so one code path serves both."""
    if group is None and _default_group is None:
        return 0
    return _group_or_default(group).rank


def get_world_size(group: ProcessGroup | None = None) -> int:
    """The number of processes; 1 without a process group."""
    if group is None and _default_group is None:
        return 1
    return _group_or_default(group).size


def destroy_process_group(group: ProcessGroup | None = None) -> None:
    """Release the group's communicator; afterwards ``is_initialized()`` is false. MPI itself
    is finalized when the process exits (mpi4py's rule)."""
    global _default_group
    target = _group_or_default(group)
    target.communicator.Free()
    if target is _default_group:
        _default_group = None


def _array_of(value: Any, func: str) -> np.ndarray:
    if isinstance(value, Tensor):
        return value.data
    if isinstance(value, np.ndarray):
        return value
    raise TypeError(f"{func}: tensor must be a NumPy array or a Tensor, got {type(value).__name__}")


def _check_buffer(array: np.ndarray, func: str, name: str) -> None:
    if not array.flags.c_contiguous:
        raise ValueError(
            f"{func}: {name} must be C-contiguous to be reduced in place, got an array of shape "
            f"{array.shape} with strides {array.strides} (np.ascontiguousarray makes a copy)"
        )
    if not array.flags.writeable:
        raise ValueError(f"{func}: {name} must be writeable, got a read-only array")


def all_reduce(
    tensor: np.ndarray | Tensor, op: ReduceOp = ReduceOp.SUM, group: ProcessGroup | None = None
) -> None:
    """Combine ``tensor`` (an ndarray or a Tensor's array) over every process, in place.

    ``ReduceOp.SUM`` (default) adds, ``AVG`` adds and divides by the world size, ``PRODUCT``,
    ``MIN`` and ``MAX`` combine element-wise.
    """
    if not isinstance(op, ReduceOp):
        raise TypeError(f"all_reduce: op must be a ReduceOp, got {op!r}")
    _group_or_default(group).all_reduce(_array_of(tensor, "all_reduce"), op)


def broadcast(tensor: np.ndarray | Tensor, src: int = 0, group: ProcessGroup | None = None) -> None:
    """Overwrite ``tensor`` on every process with the values of process ``src``, in place."""
    _group_or_default(group).broadcast(_array_of(tensor, "broadcast"), src)


def all_gather_into_tensor(
    output_tensor: np.ndarray | Tensor,
    input_tensor: np.ndarray | Tensor,
    group: ProcessGroup | None = None,
) -> None:
    """Every process's ``input_tensor`` concatenated along axis 0 in rank order, written into
    ``output_tensor`` (shape (world size * n, ...) for an input of shape (n, ...))."""
    target = _group_or_default(group)
    output = _array_of(output_tensor, "all_gather_into_tensor")
    local = _array_of(input_tensor, "all_gather_into_tensor")
    expected = (target.size * local.shape[0], *local.shape[1:]) if local.ndim else (target.size,)
    if output.shape != expected or output.dtype != local.dtype:
        raise ValueError(
            f"all_gather_into_tensor: output_tensor must have shape {expected} and dtype "
            f"{local.dtype} for an input of shape {local.shape} on {target.size} processes, got "
            f"shape {output.shape} and dtype {output.dtype}"
        )
    _check_buffer(output, "all_gather_into_tensor", "output_tensor")
    target.communicator.Allgather(np.ascontiguousarray(local), output)


def all_gather_object(object_list: list[Any], obj: Any, group: ProcessGroup | None = None) -> None:
    """Fill ``object_list`` (of world-size length) with every process's ``obj``, rank order."""
    target = _group_or_default(group)
    if len(object_list) != target.size:
        raise ValueError(
            f"all_gather_object: object_list must have one entry per process ({target.size}), "
            f"got {len(object_list)}"
        )
    object_list[:] = target.all_gather_object(obj)


def broadcast_object_list(
    object_list: list[Any], src: int = 0, group: ProcessGroup | None = None
) -> None:
    """Replace the entries of ``object_list`` on every process with process ``src``'s
    (picklable objects: an optimizer's state dict, a random generator's state)."""
    object_list[:] = _group_or_default(group).broadcast_object(list(object_list), src)


def barrier(group: ProcessGroup | None = None) -> None:
    """Wait until every process has reached this call."""
    _group_or_default(group).barrier()
