"""``python -m benchmarks``: convprop against PyTorch CPU, side by side, in one process."""

from __future__ import annotations

import os
import platform
import sys

import numpy as np
import torch

from benchmarks import engine
from benchmarks.harness import format_table


def main() -> int:
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", os.cpu_count() or 1)))
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores; "
        f"python {platform.python_version()}; "
        f"numpy {np.__version__}; torch {torch.__version__} ({torch.get_num_threads()} threads)"
    )
    print(format_table(engine.run()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
