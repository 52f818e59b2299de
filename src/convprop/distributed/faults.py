"""Faults: one failing process ends the whole job, at once, with one line saying why.

In an MPI job a process that raises and exits leaves the others waiting in their next
collective (an ``Allreduce`` of gradients) for a partner that will never come: the job hangs
until someone kills it. So a distributed program reports the error in one line and calls
``MPI_Abort``, which makes the launcher end every process of the job within a second or two;
``mpirun`` then exits with a non-zero status.

* :func:`abort_on_error`, a context manager around the whole program (the CLI's ``main``):
  an exception prints ``convprop: error: rank R: <message>`` on stderr and aborts the job
  with exit status 2; a ``SystemExit`` with a non-zero status (the CLI's own one-line
  errors) and ``KeyboardInterrupt`` (130) abort with their status, silently, since the
  message is already out.
* :func:`install_fault_handler`: the same for exceptions nobody catches, as
  ``sys.excepthook`` (what a script that calls the library directly wants).

A process killed outright (SIGKILL, out of memory) cannot say anything; the launcher notices
its death and ends the others itself (Open MPI's ``mpirun`` prints which rank died, on which
signal).

Without a process group (one ordinary process), both leave errors to Python's usual handling.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from types import TracebackType

from convprop.distributed import process_group as pg

__all__ = ["ERROR_STATUS", "abort_on_error", "error_line", "install_fault_handler"]

# The exit status of a job aborted by an exception: the CLI's status for an error it reports.
ERROR_STATUS = 2
INTERRUPTED_STATUS = 130

# Errors whose message says all (the library's argument errors, OS errors): shown alone;
# any other exception is shown with its type, as it is likely a bug.
_SELF_EXPLAINING = (ValueError, TypeError, OSError, pg.DistributedError)


def error_line(message: str, program: str = "convprop") -> str:
    """``program: error: rank R: message`` in a job of several processes, else
    ``program: error: message``; the message on one line."""
    text = " ".join(message.split())
    if pg.is_initialized() and pg.get_world_size() > 1:
        return f"{program}: error: rank {pg.get_rank()}: {text}"
    return f"{program}: error: {text}"


def _describe(error: BaseException) -> str:
    message = str(error).strip() or type(error).__name__
    if isinstance(error, _SELF_EXPLAINING):
        return message
    return f"{type(error).__name__}: {message}"


def _print_and_abort(line: str | None, status: int) -> None:
    """Print ``line`` (if any) on stderr and abort the job with ``status``."""
    if line is not None:
        with contextlib.suppress(Exception):  # a closed stderr must not stop the abort
            print(line, file=sys.stderr, flush=True)
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    pg.get_process_group().abort(status)


def _exit_status(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int) and not isinstance(code, bool):
        return code
    return 1  # sys.exit("message"): Python prints the message and exits with 1


@contextlib.contextmanager
def abort_on_error(program: str = "convprop") -> Iterator[None]:
    """Run the ``with`` block; if it fails in a process group, report and abort the job.

    An exception: one line ``program: error: rank R: <message>`` and exit status 2.
    ``SystemExit`` with a non-zero status: that status, no line (the program said why).
    ``KeyboardInterrupt``: status 130. ``SystemExit(0)`` and a normal exit pass through.
    Without a process group every exception propagates unchanged.
    """
    try:
        yield
    except SystemExit as stop:
        status = _exit_status(stop.code)
        if status != 0 and pg.is_initialized():
            if not isinstance(stop.code, int) and stop.code is not None:
                _print_and_abort(error_line(str(stop.code), program), status)
            _print_and_abort(None, status)
        raise
    except KeyboardInterrupt:
        if pg.is_initialized():
            _print_and_abort(None, INTERRUPTED_STATUS)
        raise
    except BaseException as error:
        if pg.is_initialized():
            _print_and_abort(error_line(_describe(error), program), ERROR_STATUS)
        raise


def install_fault_handler(program: str = "convprop") -> None:
    """Make an uncaught exception in a process group print one line and abort the job
    (``sys.excepthook``); without a group, the previous hook runs (Python's traceback)."""
    previous = sys.excepthook

    def abort_job(
        kind: type[BaseException], error: BaseException, trace: TracebackType | None
    ) -> None:
        if not pg.is_initialized():
            previous(kind, error, trace)
            return
        if isinstance(error, KeyboardInterrupt):
            _print_and_abort(None, INTERRUPTED_STATUS)
        _print_and_abort(error_line(_describe(error), program), ERROR_STATUS)

    sys.excepthook = abort_job
