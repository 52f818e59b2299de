"""Worker processes that compute ``source[indices]`` ahead of the consumer, in order.

This is what ``DataLoader(num_workers=N)`` runs on: each worker holds its own copy of the
data set (a lazy one is a list of file names, so the copy is small) and decodes the batches
it is given; the parent hands batch ``b`` to worker ``b % N`` and yields the results in the
order of the batches, whatever order they arrive in, so the batches are the same as with no
workers. At most ``N * prefetch_factor`` batches are in flight, which bounds the memory.

Shutdown is always clean: the consumer stopping early, an error in a worker (raised in the
parent as one line, a :class:`~convprop.data.DataError` naming the file), a worker killed from
outside, Ctrl-C (the workers ignore SIGINT and the parent stops them) and the parent dying
(each worker notices within a second and exits) leave no process behind.

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
import queue
import signal
import threading
import time
import traceback
import weakref
from collections.abc import Iterable, Iterator
from typing import Any

from convprop.data.datasets import DataError

# How often a waiting parent checks that its workers are alive, and a waiting worker that its
# parent is (seconds): the longest a dead process can go unnoticed.
POLL_SECONDS = 0.5
# How long shutdown waits for workers to exit after asking them to, before terminating them.
JOIN_SECONDS = 5.0
# The batch number of the message a worker sends when it cannot start.
_STARTUP = -1


class WorkerPool:
    """``num_workers`` processes computing ``source[indices]`` for the parent.

    Args:
        source: anything indexable by an integer array whose items pickle (a data set, a
            lazy array); each worker receives a pickled copy once, when it starts.
        num_workers: how many processes (at least 1).
        prefetch_factor: batches each worker may have in flight.
        name: how messages name the pool's owner (``DataLoader``).
    """

    def __init__(
        self, source: Any, num_workers: int, prefetch_factor: int = 2, name: str = "DataLoader"
    ) -> None:
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 1:
            raise ValueError(f"WorkerPool: num_workers must be a positive int, got {num_workers!r}")
        self.name = name
        self.prefetch_factor = prefetch_factor
        self._runs = 0
        context = multiprocessing.get_context("spawn")
        # Unpickled by the worker itself, so that a source that cannot be rebuilt there (a
        # memory-mapped file gone missing) is reported as one line, not a worker traceback.
        pickled = pickle.dumps(source, protocol=pickle.HIGHEST_PROTOCOL)
        self._results: Any = context.Queue()
        self._tasks: list[Any] = [context.Queue() for _ in range(num_workers)]
        self._workers = [
            context.Process(
                target=_work,
                args=(pickled, tasks, self._results),
                name=f"{name} worker {number}",
                daemon=True,  # ended by multiprocessing's exit handler if all else failed
            )
            for number, tasks in enumerate(self._tasks)
        ]
        # Registered before any worker starts: whatever happens next, they are shut down.
        self._finalizer = weakref.finalize(
            self, _shut_down, self._workers, self._tasks, self._results
        )
        with _sigint_ignored():  # a worker ignores Ctrl-C from its first instruction on
            for worker in self._workers:
                worker.start()

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
        self._runs += 1
        run = self._runs
        pending = iter(enumerate(batches))
        limit = self.num_workers * self.prefetch_factor
        ready: dict[int, Any] = {}
        sent = wanted = 0
        exhausted = False
        try:
            while True:
                while not exhausted and sent - wanted < limit:
                    item = next(pending, None)
                    if item is None:
                        exhausted = True
                        break
                    number, indices = item
                    self._tasks[number % self.num_workers].put((run, number, indices))
                    sent += 1
                if wanted == sent:
                    return
                while wanted not in ready:
                    message = self._receive()
                    if message[0] == run:
                        ready[message[1]] = message
                _, _, succeeded, value = ready.pop(wanted)
                if not succeeded:
                    raise DataError(value)
                wanted += 1
                yield value
        except BaseException:
            self.close()  # an error, Ctrl-C, or the consumer abandoning the iteration
            raise

    def _receive(self) -> tuple[int, int, bool, Any]:
        """The next result any worker sends, checking meanwhile that all are alive."""
        while True:
            try:
                message: tuple[int, int, bool, Any] = self._results.get(timeout=POLL_SECONDS)
            except queue.Empty:
                for number, worker in enumerate(self._workers):
                    if not worker.is_alive():
                        raise DataError(
                            f"{self.name}: worker {number} (pid {worker.pid}) exited "
                            f"unexpectedly ({_how_it_ended(worker.exitcode)})"
                        ) from None
                continue
            if message[1] == _STARTUP:
                raise DataError(message[3])
            return message


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
    sends to every process of the job, reaches only the parent, which stops the workers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _shut_down(workers: list[Any], tasks: list[Any], results: Any) -> None:
    """Ask every worker to stop, drain what they still send, terminate the stragglers."""
    for task_queue, worker in zip(tasks, workers, strict=True):
        if worker.is_alive():
            with contextlib.suppress(Exception):
                task_queue.put(None)
    deadline = time.monotonic() + JOIN_SECONDS
    while any(worker.is_alive() for worker in workers) and time.monotonic() < deadline:
        # A worker blocked writing a large batch into the pipe exits once it is read.
        with contextlib.suppress(Exception):
            results.get(timeout=0.05)
    for worker in workers:
        if worker.is_alive():
            worker.terminate()
        worker.join(timeout=JOIN_SECONDS)
        if worker.is_alive():  # pragma: no cover - ignored SIGTERM
            worker.kill()
            worker.join()
    for channel in (*tasks, results):
        channel.cancel_join_thread()
        channel.close()


def _work(pickled: bytes, tasks: Any, results: Any) -> None:
    """A worker's loop: compute ``source[indices]`` for each task until told to stop (None),
    or until the parent is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Data still buffered when this process exits is not needed: the parent only stops its
    # workers once it has what it asked for, or is gone. Waiting to flush it could hang.
    results.cancel_join_thread()
    try:
        source = pickle.loads(pickled)
    except Exception as error:
        results.put((0, _STARTUP, False, _one_line(error)))
        return
    parent = multiprocessing.parent_process()
    while True:
        try:
            task = tasks.get(timeout=POLL_SECONDS)
        except queue.Empty:
            if parent is not None and not parent.is_alive():
                return
            continue
        if task is None:
            return
        run, number, indices = task
        try:
            results.put((run, number, True, source[indices]))
        except Exception as error:
            results.put((run, number, False, _one_line(error)))


def _one_line(error: Exception) -> str:
    """The message the parent raises: a DataError's (it names the file) as it is; anything
    else with its type and where it happened, on one line."""
    if isinstance(error, DataError):
        return str(error)
    frames = traceback.extract_tb(error.__traceback__)
    where = f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""
    return f"a data loading worker failed: {type(error).__name__}: {error}{where}"
