"""Old code against new under the same load: ``python -m benchmarks.versus OLD_SRC [NEW_SRC]``.

Comparing two full runs of ``python -m benchmarks`` taken at different times mixes the code's
change with the machine's load. This times convprop's side of the benchmark's cases with two
source trees (e.g. a ``git worktree`` of an older commit, then this one) in child processes
that alternate, so both see the same conditions; each child runs one case of one tree (no
other code's threads are left spinning under it), with the benchmark's warm-up and pause, and
reports the median of its calls.

    git worktree add /tmp/old <commit>
    python -m benchmarks.versus /tmp/old/src                     # training steps, against ./src
    python -m benchmarks.versus /tmp/old/src --cases all         # every case of the benchmark
    python -m benchmarks.versus /tmp/old/src --cases layer --filter "stage 2"
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the cases import torch: only children and the case list load them
    from benchmarks.layers import Case

ROOT = Path(__file__).resolve().parent.parent
GROUPS = ("layer", "step", "inference")


def _all_cases() -> list[Case]:
    from benchmarks import layers, networks

    return layers.cases() + networks.cases()


def _child(name: str, repeats: int) -> None:
    """Print the median time of ``repeats`` calls of convprop's side of case ``name``."""
    from benchmarks.harness import _time_once

    (case,) = [case for case in _all_cases() if case.name == name]
    ours = case.setup()[0]
    ours()
    ours()
    print(statistics.median(_time_once(ours) for _ in range(repeats)))


def _time(src: Path, name: str, repeats: int) -> float:
    # Both trees run with glibc keeping freed memory, as convprop's training command does
    # (older trees cannot do it themselves), so the comparison is of the engine's code.
    env = {
        "MALLOC_MMAP_THRESHOLD_": str(1 << 30),
        "MALLOC_TRIM_THRESHOLD_": str(1 << 30),
        **os.environ,
        "PYTHONPATH": os.pathsep.join((str(src), str(ROOT))),
    }
    command = [sys.executable, "-m", "benchmarks.versus", "--child", name]
    result = subprocess.run(
        [*command, "--repeats", str(repeats)],
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
    parser.add_argument("--rounds", type=int, default=4, help="alternations of old and new")
    parser.add_argument("--repeats", type=int, default=9, help="timed calls per child")
    parser.add_argument(
        "--cases", default="step", choices=(*GROUPS, "all"), help="which group of cases"
    )
    parser.add_argument("--filter", default="", help="only cases whose name contains this")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args.child, args.repeats)
        return 0
    if args.old is None:
        parser.error("the old source tree is required")
    with open("/proc/loadavg") as loadavg:
        print(f"load average before: {loadavg.read().split()[:3]}")
    print("| case | old ms | new ms | speed-up |")
    print("|---|---:|---:|---:|")
    for case in _all_cases():
        if args.cases not in ("all", case.group) or args.filter.lower() not in case.name.lower():
            continue
        old: list[float] = []
        new: list[float] = []
        for round_ in range(args.rounds):
            # Alternate which tree goes first: the second process of a pair measured up to
            # ~10% slower on the smallest cases whichever tree it ran.
            order = ((args.old, old), (args.new, new))
            for src, times in order if round_ % 2 == 0 else order[::-1]:
                times.append(_time(Path(src), case.name, args.repeats))
        old_ms, new_ms = statistics.median(old) * 1e3, statistics.median(new) * 1e3
        print(f"| {case.name} | {old_ms:.2f} | {new_ms:.2f} | {old_ms / new_ms:.2f}x |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
