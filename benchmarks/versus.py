"""Old code against new under the same load: ``python -m benchmarks.versus OLD_SRC [NEW_SRC]``.

Comparing two full runs of ``python -m benchmarks`` taken at different times mixes the code's
change with the machine's load. This times convprop's training steps with two source trees
(e.g. a ``git worktree`` of an older commit, then this one) in child processes that alternate,
so both see the same conditions; each child reports the median of its steps.

    git worktree add /tmp/old <commit>
    python -m benchmarks.versus /tmp/old/src            # against ./src
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NETWORKS = ("LeNet-5", "TDNN", "ResNet-20", "DenseNet-BC")
BATCHES = {"LeNet-5": 128, "TDNN": 64, "ResNet-20": 128, "DenseNet-BC": 64}


def _child(network: str, steps: int) -> None:
    """Print the median time of ``steps`` training steps of ``network`` (run in a child)."""
    import numpy as np

    import convprop as cp
    import convprop.nn.functional as F
    from benchmarks.harness import pause
    from convprop import models, optim

    build, shape = {
        "LeNet-5": (models.lenet5, (1, 28, 28)),
        "TDNN": (models.tdnn, (40, 200)),
        "ResNet-20": (models.resnet20, (3, 32, 32)),
        "DenseNet-BC": (models.densenet_bc, (3, 32, 32)),
    }[network]
    batch = BATCHES[network]
    cp.manual_seed(0)
    model = build()
    optimizer = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    rng = np.random.default_rng(3)
    x = cp.tensor(rng.standard_normal((batch, *shape), dtype=np.float32))
    labels = cp.tensor(np.arange(batch) % 10)

    def step() -> None:
        optimizer.zero_grad()
        F.cross_entropy(model(x), labels).backward()
        optimizer.step()

    step()
    step()
    times = []
    for _ in range(steps):
        pause()
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    print(statistics.median(times))


def _time(src: Path, network: str, steps: int) -> float:
    # Both trees run with glibc keeping freed memory, as convprop's training command does
    # (older trees cannot do it themselves), so the comparison is of the engine's code.
    env = {
        "MALLOC_MMAP_THRESHOLD_": str(1 << 30),
        "MALLOC_TRIM_THRESHOLD_": str(1 << 30),
        **os.environ,
        "PYTHONPATH": str(src),
    }
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.versus", "--child", network, "--steps", str(steps)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return float(result.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.versus", description=__doc__)
    parser.add_argument("old", nargs="?", help="the old source tree (its src directory)")
    parser.add_argument("new", nargs="?", default=str(ROOT / "src"))
    parser.add_argument("--rounds", type=int, default=3, help="alternations of old and new")
    parser.add_argument("--steps", type=int, default=9, help="timed steps per child")
    parser.add_argument("--filter", default="")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args.child, args.steps)
        return 0
    if args.old is None:
        parser.error("the old source tree is required")
    print(f"load average before: {Path('/proc/loadavg').read_text().split()[:3]}")
    print("| training step | old ms | new ms | speed-up |")
    print("|---|---:|---:|---:|")
    for network in NETWORKS:
        if args.filter.lower() not in network.lower():
            continue
        old, new = [], []
        for _ in range(args.rounds):
            old.append(_time(Path(args.old), network, args.steps))
            new.append(_time(Path(args.new), network, args.steps))
        old_ms, new_ms = statistics.median(old) * 1e3, statistics.median(new) * 1e3
        label = f"{network} b{BATCHES[network]}"
        print(f"| {label} | {old_ms:.1f} | {new_ms:.1f} | {old_ms / new_ms:.2f}x |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
