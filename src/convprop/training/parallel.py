"""How a training run's processes agree, so that an error is said once and no process hangs.

A distributed run (``convprop train --distributed`` under ``mpirun``) is N copies of the same
program. Most of what can go wrong before training starts goes wrong on every process alike
(a batch size that does not divide, a missing data file) or on process 0 alone (the run
directory, which only process 0 touches). Reported naively, the first gives N copies of one
line, and the second leaves the other processes waiting for a collective that never comes.
So the setup runs in *agreed steps*:

* :func:`from_leader`: a step only process 0 runs (checking and opening the run directory);
  its result, or the news that it failed, is broadcast.
* :func:`together`: a step every process runs (loading the data, building the model); then
  every process learns which failed.

When a step fails anywhere, the lowest failing process raises its own error (the CLI prints
it, one line) and every other process raises :class:`PeerFailed`, which the CLI turns into
the same exit status without a line. Since every process knows, nobody is left waiting and
the job can end normally (:func:`failure_is_shared`), without ``MPI_Abort``'s banner.
:func:`raise_together` does the same for an error every process detects at once (a
non-finite loss, from figures reduced over the processes).

Errors at any other point (a full disk while process 0 commits an epoch, a killed process)
are not agreed: the failing process reports and aborts the job
(``convprop.distributed.abort_on_error``).

Without a process group, or in a world of one, every step simply runs and raises as usual.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from convprop import distributed as dist

__all__ = [
    "PeerFailed",
    "failed_everywhere",
    "failure_is_shared",
    "from_leader",
    "is_leader",
    "raise_together",
    "together",
    "world_size",
]

T = TypeVar("T")

_USAGE_ERROR = 2
_shared_failure = False
_failed_everywhere = False


class PeerFailed(Exception):
    """Another process of the job failed at the same agreed step and reports it; this one
    ends quietly with ``status``."""

    def __init__(self, rank: int, status: int = _USAGE_ERROR) -> None:
        super().__init__(f"rank {rank} failed and reports why")
        self.rank = rank
        self.status = status


def world_size() -> int:
    """The number of processes of the run (1 without a process group)."""
    return dist.get_world_size()


def is_leader() -> bool:
    """Whether this process is rank 0, the one that writes the run directory and logs (true
    without a process group)."""
    return dist.get_rank() == 0


def failure_is_shared() -> bool:
    """Whether the error this process is ending with was agreed: every process of the job
    knows of it and ends too, so no ``MPI_Abort`` is needed."""
    return _shared_failure


def failed_everywhere() -> bool:
    """Whether every process failed at the same agreed step (the error is then no one
    process's: the CLI's line names no rank)."""
    return _failed_everywhere


def _mark_shared(everywhere: bool = False) -> None:
    global _shared_failure, _failed_everywhere
    _shared_failure = True
    _failed_everywhere = everywhere


def from_leader(step: Callable[[], T]) -> T:
    """Run ``step`` on process 0 only and give its result to every process (it must be
    picklable); if it fails, process 0 raises its error and the others :class:`PeerFailed`."""
    if world_size() == 1:
        return step()
    group = dist.get_process_group()
    failure: BaseException | None = None
    result: T | None = None
    if is_leader():
        try:
            result = step()
        except Exception as error:
            failure = error
    failed, result = group.broadcast_object((failure is not None, result), 0)
    if failed:
        _mark_shared()
        if failure is not None:
            raise failure
        raise PeerFailed(0)
    return result


def together(step: Callable[[], T]) -> T:
    """Run ``step`` on every process; if it fails on any, the lowest failing process raises
    its error and the others :class:`PeerFailed`. ``step`` must not call collectives (a
    process that failed early would never join them)."""
    if world_size() == 1:
        return step()
    group = dist.get_process_group()
    failure: BaseException | None = None
    result: T | None = None
    try:
        result = step()
    except Exception as error:
        failure = error
    failed = [rank for rank, bad in enumerate(group.all_gather_object(failure is not None)) if bad]
    if failed:
        _mark_shared(everywhere=len(failed) == group.size)
        if failure is not None and group.rank == failed[0]:
            raise failure
        raise PeerFailed(failed[0])
    return result  # type: ignore[return-value]


def raise_together(error: BaseException, status: int) -> None:
    """Every process calls this with the same ``error`` (detected from figures reduced over
    the processes): process 0 raises it, the others :class:`PeerFailed` with ``status``."""
    if world_size() > 1:
        _mark_shared()
        if not is_leader():
            raise PeerFailed(0, status) from error
    raise error
