"""Rank script: one rank fails while the others wait in a collective.

``mpirun -n N python ranks_faults.py OUT MODE`` with MODE ``raise`` (rank 1 raises, caught by
the fault handler), ``exit`` (rank 1 exits with status 3 inside ``abort_on_error``) or
``kill`` (rank 1 kills itself with SIGKILL). The other ranks block in an Allreduce that
never completes; the job must end anyway.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import numpy as np

from convprop import distributed as dist


def main(out: Path, mode: str) -> None:
    dist.install_fault_handler()
    dist.init_process_group()
    rank = dist.get_rank()
    dist.barrier()
    if rank == 1:
        time.sleep(0.2)  # let the others enter the collective first
        if mode == "raise":
            raise ValueError("rank one fails on purpose")
        if mode == "exit":
            with dist.abort_on_error():
                sys.exit(3)
        if mode == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
    dist.all_reduce(np.zeros(4))  # never completes: rank 1 is gone
    (out / f"rank{rank}-finished").write_text("a rank got past a collective it should not")


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
