"""Worker processes that compute ``source[indices]`` ahead of the consumer, in order.

This is what ``DataLoader(num_workers=N)`` runs on: each worker holds its own copy of the
data set (a lazy one is a list of file names, so the copy is small) and decodes the batches
it is given; batch ``b`` goes to worker ``b % N``, and the parent reads the results worker by
worker in the order of the batches, so they are the same batches as with no workers. A
worker computes a batch only once the parent has consumed all but ``prefetch_factor - 1`` of
its earlier ones, which bounds the memory.

Each worker talks to the parent over two pipes of its own (no queues: no feeder threads, no
named semaphores, nothing a Ctrl-C in the middle of a read could leave locked). Shutdown is
always clean: the consumer stopping early, an error in a worker (raised in the parent as one
line, a :class:`~convprop.data.DataError` naming the file), a worker killed from outside,
Ctrl-C (the workers ignore SIGINT and the parent stops them) and the parent dying (a worker
then reads the end of its pipe, or fails to write to it, and exits) leave no process behind.

Workers are started with the ``spawn`` method: a fresh interpreter inherits no threads or
locks of the parent (a training process runs BLAS and numba thread pools, under which
``fork`` can deadlock), and it behaves the same on Linux and macOS. A script that iterates a
loader with workers must therefore guard its entry point with ``if __name__ == "__main__":``,
as with PyTorch's DataLoader.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import pickle
import signal
import threading
import traceback
import weakref
from collections.abc import Iterable, Iterator
from typing import Any

from convprop.data.datasets import DataError

# How long a waiting parent sleeps between checks for Ctrl-C (which another thread may have
# received) and for its workers' deaths (seconds).
POLL_SECONDS = 0.2
# How long shutdown waits for workers to exit after asking them to, before terminating them.
JOIN_SECONDS = 5.0
_PICKLE = pickle.HIGHEST_PROTOCOL


class WorkerPool:
    """``num_workers`` processes computing ``source[indices]`` for the parent.

    Args:
        source: anything indexable by an integer array whose items pickle (a data set, a
            lazy array); each worker receives a pickled copy once, when it starts.
        num_workers: how many processes (at least 1).
        prefetch_factor: batches each worker may compute ahead of the consumer.
        name: how messages name the pool's owner (``DataLoader``).
    """

    def __init__(
        self, source: Any, num_workers: int, prefetch_factor: int = 2, name: str = "DataLoader"
    ) -> None:
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 1:
            raise ValueError(f"WorkerPool: num_workers must be a positive int, got {num_workers!r}")
        self.name = name
        self.prefetch_factor = prefetch_factor
        context = multiprocessing.get_context("spawn")
        # The source goes down the task pipe once the workers run, not as a Process argument:
        # starting a process then writes only a few bytes, which keeps the moment Ctrl-C is
        # ignored short (see _sigint_ignored), and a source that cannot be rebuilt in a worker
        # (a memory-mapped file gone missing) is reported as one line, not a worker traceback.
        pickled = pickle.dumps(source, protocol=_PICKLE)
        task_pipes = [context.Pipe(duplex=False) for _ in range(num_workers)]
        result_pipes = [context.Pipe(duplex=False) for _ in range(num_workers)]
        self._tasks = [writer for _, writer in task_pipes]
        self._results = [reader for reader, _ in result_pipes]
        self._workers = [
            context.Process(
                target=_work,
                args=(task_reader, result_writer),
                name=f"{name} worker {number}",
                daemon=True,  # ended by multiprocessing's exit handler if all else failed
            )
            for number, ((task_reader, _), (_, result_writer)) in enumerate(
                zip(task_pipes, result_pipes, strict=True)
            )
        ]
        # Registered before any worker starts: whatever happens next, they are shut down.
        self._abrupt = [False]
        self._finalizer = weakref.finalize(
            self, _shut_down, self._workers, self._tasks, self._results, self._abrupt
        )
        try:
            with _sigint_ignored():  # a worker ignores Ctrl-C from its first instruction on
                for worker in self._workers:
                    worker.start()
            # The workers hold their own ends: a worker that dies closes its pipes for good.
            for (task_reader, _), (_, result_writer) in zip(task_pipes, result_pipes, strict=True):
                task_reader.close()
                result_writer.close()
            for number in range(num_workers):
                self._send(number, pickled)
        except BaseException:
            self._abort()
            raise

    @property
    def num_workers(self) -> int:
        return len(self._workers)

    @property
    def pids(self) -> list[int]:
        """The workers' process ids (for tests and monitoring)."""
        return [worker.pid for worker in self._workers if worker.pid is not None]

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    def close(self) -> None:
        """Stop the workers and wait for them (terminating any that do not stop in time)."""
        self._finalizer()

    def _abort(self) -> None:
        """Terminate the workers at once: after an error or Ctrl-C, when a pipe may hold half
        a message and nothing a worker still has is wanted."""
        self._abrupt[0] = True
        self._finalizer()

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def map(self, batches: Iterable[Any]) -> Iterator[Any]:
        """``source[indices]`` for each ``indices`` of ``batches``, in order.

        A worker's error is raised here as a :class:`DataError` (the pool is closed first);
        so is a worker that died. A pool runs one ``map`` at a time.
        """
        if self.closed:
            raise ValueError(f"{self.name}: its worker processes were shut down")
        count = self.num_workers
        # A pool shut down while a pass is unfinished (its consumer gone without closing it)
        # is terminated: a worker may be blocked writing a batch nobody will read.
        self._abrupt[0] = True
        try:
            # Each worker is told its share of the pass up front, while it is idle (so a large
            # message cannot meet a worker busy writing), then computes a batch per credit.
            shares: list[list[Any]] = [[] for _ in range(count)]
            for number, indices in enumerate(batches):
                shares[number % count].append(indices)
            for worker, share in enumerate(shares):
                self._send(worker, pickle.dumps(("map", share, self.prefetch_factor), _PICKLE))
            done = [0] * count
            for number in range(sum(len(share) for share in shares)):
                worker = number % count
                succeeded, value = self._receive(worker)
                if not succeeded:
                    raise DataError(value)
                done[worker] += 1
                if done[worker] + self.prefetch_factor <= len(shares[worker]):
                    self._send(worker, b"")  # a credit: compute one more batch
                yield value
            self._abrupt[0] = False
        except BaseException:
            self._abort()  # an error, Ctrl-C, or the consumer abandoning the iteration
            raise

    def _send(self, number: int, message: bytes) -> None:
        try:
            self._tasks[number].send_bytes(message)
        except OSError:
            raise self._died(number) from None

    def _receive(self, number: int) -> tuple[bool, Any]:
        """Worker ``number``'s next message, waiting in short sleeps (a Ctrl-C that another
        thread received is raised between them) and reporting a worker that died."""
        connection = self._results[number]
        while not connection.poll(POLL_SECONDS):
            pass
        try:
            message: tuple[bool, Any] = pickle.loads(connection.recv_bytes())
        except (EOFError, OSError):
            raise self._died(number) from None
        return message

    def _died(self, number: int) -> DataError:
        """The error of a worker whose pipe closed: the one it reported before it exited
        (it could not rebuild the source), else how it ended."""
        with contextlib.suppress(EOFError, OSError, pickle.UnpicklingError):
            if self._results[number].poll(0):
                succeeded, value = pickle.loads(self._results[number].recv_bytes())
                if not succeeded:
                    return DataError(value)
        worker = self._workers[number]
        worker.join(JOIN_SECONDS)
        return DataError(
            f"{self.name}: worker {number} (pid {worker.pid}) exited unexpectedly "
            f"({_how_it_ended(worker.exitcode)})"
        )


def _how_it_ended(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        number = -exitcode
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        hint = "; out of memory?" if number == signal.SIGKILL else ""
        return f"killed by {name}{hint}"
    return f"exit status {exitcode}"


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    """SIGINT ignored while workers start: an ignored signal stays ignored in a spawned child
    (and Python then installs no KeyboardInterrupt handler), so Ctrl-C, which the terminal
    sends to every process of the job, reaches only the parent, which stops the workers,
    and no worker prints a traceback. Starting a worker takes a few milliseconds (a fork, an
    exec and a short write); a Ctrl-C in them is lost, and a second one stops the run."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _shut_down(
    workers: list[Any], tasks: list[Any], results: list[Any], abrupt: list[bool]
) -> None:
    """Stop every worker: close its task pipe (it exits when it reads the end), or after an
    error or Ctrl-C terminate it; then wait for them and close the pipes."""
    if abrupt[0]:
        for worker in workers:
            if worker.is_alive():
                worker.terminate()
    for connection in tasks:
        connection.close()
    for worker in workers:
        worker.join(timeout=JOIN_SECONDS)
        if worker.is_alive():
            worker.terminate()
            worker.join(timeout=JOIN_SECONDS)
        if worker.is_alive():  # pragma: no cover - a worker that ignores SIGTERM
            worker.kill()
            worker.join()
    for connection in results:
        connection.close()


def _work(tasks: Any, results: Any) -> None:
    """A worker's loop: receive the source, then compute ``source[indices]`` for each batch
    of each pass, one per credit, until the parent closes the pipe or is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        source = pickle.loads(tasks.recv_bytes())
    except EOFError:
        return  # the parent is gone
    except Exception as error:
        _reply(results, (False, _one_line(error)))
        return
    while True:
        try:
            message = tasks.recv_bytes()
        except (EOFError, OSError):
            return
        _, share, credits = pickle.loads(message)
        for indices in share:
            if credits == 0:
                try:
                    tasks.recv_bytes()
                except (EOFError, OSError):
                    return
                credits = 1
            credits -= 1
            try:
                reply: tuple[bool, Any] = (True, source[indices])
            except Exception as error:
                reply = (False, _one_line(error))
            if not _reply(results, reply):
                return


def _reply(results: Any, reply: tuple[bool, Any]) -> bool:
    """Send ``reply``; False once the parent is gone (its end of the pipe closed)."""
    try:
        results.send_bytes(pickle.dumps(reply, _PICKLE))
    except OSError:
        return False
    return True


def _one_line(error: Exception) -> str:
    """The message the parent raises: a DataError's (it names the file) as it is; anything
    else with its type and where it happened, on one line."""
    if isinstance(error, DataError):
        return str(error)
    frames = traceback.extract_tb(error.__traceback__)
    where = f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""
    return f"a data loading worker failed: {type(error).__name__}: {error}{where}"
