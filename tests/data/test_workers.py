"""Worker processes: errors come back as one line naming the file, and no worker outlives a
failure, an interrupted consumer, Ctrl-C or its parent."""

from __future__ import annotations

import _thread
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from convprop.data import DataError, DataLoader, open_image_folder, open_npy_directory
from convprop.data.workers import WorkerPool
from tests.data.test_lazy import noisy_folder


class Slow:
    """A source whose items take ``seconds`` each (picklable: the workers import this)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __getitem__(self, indices: np.ndarray) -> np.ndarray:
        time.sleep(self.seconds)
        return np.asarray(indices) * 2


class Broken:
    def __getitem__(self, indices: np.ndarray) -> np.ndarray:
        raise ZeroDivisionError("no luck")


def gone(pids: list[int], within: float = 10.0) -> bool:
    """Whether every process in ``pids`` has exited (and been reaped) within ``within`` s."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        alive = [pid for pid in pids if Path(f"/proc/{pid}").exists() and not _zombie(pid)]
        if not alive:
            return True
        time.sleep(0.05)
    return False


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return False


def test_results_come_in_order_and_the_pool_persists() -> None:
    with WorkerPool(Slow(0.0), num_workers=2, prefetch_factor=1) as pool:
        pids = pool.pids
        for _ in range(2):
            batches = [np.arange(start, start + 3) for start in range(0, 30, 3)]
            got = list(pool.map(batches))
            assert [b.tolist() for b in got] == [(b * 2).tolist() for b in batches]
        assert pool.pids == pids and len(pids) == 2
    assert pool.closed and gone(pids)


def test_a_corrupt_image_in_the_middle_is_one_line_naming_it(tmp_path: Path) -> None:
    root = noisy_folder(tmp_path / "data", {"a": 20, "b": 20}, size=(40, 40))
    broken = root / "b" / "004.png"
    broken.write_bytes(broken.read_bytes()[:200])
    loader = DataLoader(open_image_folder(root), 4, num_workers=2)
    seen = 0
    with pytest.raises(DataError) as error:
        for _ in loader:
            seen += 1
    assert str(error.value).startswith(f"{broken}: cannot read image (")
    assert "\n" not in str(error.value) and seen == 6  # batches 0-5 came first, in order
    assert multiprocessing.active_children() == []


def test_an_unexpected_worker_error_names_its_type() -> None:
    pool = WorkerPool(Broken(), 1)
    with pytest.raises(DataError, match="worker failed: ZeroDivisionError: no luck \\(at .*"):
        list(pool.map([np.arange(2)]))
    assert pool.closed and gone(pool.pids)


def test_a_killed_worker_is_reported_not_waited_for() -> None:
    pool = WorkerPool(Slow(0.2), 2)
    pids = pool.pids
    started = time.monotonic()
    with pytest.raises(
        DataError,
        match=r"worker 1 \(pid \d+\) exited unexpectedly \(killed by "
        "SIGKILL; out of memory\\?\\)",
    ):
        for number, _ in enumerate(pool.map(np.arange(100).reshape(50, 2))):
            if number == 1:
                os.kill(pids[1], signal.SIGKILL)
    assert time.monotonic() - started < 10
    assert gone(pids)


def test_an_abandoned_pass_and_ctrl_c_stop_the_workers(tmp_path: Path) -> None:
    loader = DataLoader(
        open_image_folder(noisy_folder(tmp_path, {"a": 9, "b": 9})), 2, num_workers=2
    )
    batches = iter(loader)
    next(batches)
    pids = loader._pool.pids
    batches.close()  # e.g. the loop broke out of its for
    assert loader._pool is None and gone(pids)
    pool = WorkerPool(Slow(0.5), 2)
    threading.Timer(1.5, _thread.interrupt_main).start()  # Ctrl-C while the parent waits
    with pytest.raises(KeyboardInterrupt):
        list(pool.map(np.arange(40).reshape(20, 2)))
    assert pool.closed and gone(pool.pids)


def test_workers_exit_when_their_parent_dies(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import os, signal, sys
        import numpy as np
        from convprop.data.workers import WorkerPool
        from tests.data.test_workers import Slow

        if __name__ == "__main__":
            pool = WorkerPool(Slow(0.05), 2)
            results = pool.map(np.arange(400).reshape(200, 2))
            next(results)
            print(*pool.pids, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    (tmp_path / "parent.py").write_text(script)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, str(tmp_path / "parent.py")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    pids = [int(pid) for pid in done.stdout.split()]
    assert len(pids) == 2 and gone(pids)


def test_a_source_a_worker_cannot_rebuild_is_one_line(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    np.save(folder / "images.npy", np.zeros((6, 4, 4), np.uint8))
    np.save(folder / "labels.npy", np.arange(6) % 2)
    data = open_npy_directory(folder)
    (folder / "images.npy").unlink()  # still mapped here, gone for a worker mapping it anew
    with pytest.raises(DataError, match=r"images.npy: cannot read \(No such file or directory\)"):
        list(DataLoader(data, 2, num_workers=1))
    assert multiprocessing.active_children() == []
