"""Timing both libraries fairly on a shared machine.

Both sides run in one process with the same thread count, after a warm-up, alternating call by
call so that drift in the machine's load hits both; each timed call is preceded by a short
pause so that the idle BLAS/OpenMP threads of the library that ran last stop spinning. The
figure reported is the median of the repetitions.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

PAUSE_SECONDS = 0.05


@dataclass
class Timing:
    name: str
    ours: float  # seconds, median
    theirs: float

    @property
    def ratio(self) -> float:
        return self.ours / self.theirs


def _time_once(fn: Callable[[], object]) -> float:
    time.sleep(PAUSE_SECONDS)
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def compare(
    name: str,
    ours: Callable[[], object],
    theirs: Callable[[], object],
    repeats: int = 7,
    warmup: int = 2,
) -> Timing:
    """Median time of ``ours`` and ``theirs``, interleaved."""
    for _ in range(warmup):
        ours()
        theirs()
    our_times, their_times = [], []
    for _ in range(repeats):
        our_times.append(_time_once(ours))
        their_times.append(_time_once(theirs))
    return Timing(name, statistics.median(our_times), statistics.median(their_times))


def format_table(timings: list[Timing]) -> str:
    width = max(len(t.name) for t in timings)
    lines = [
        f"{'case'.ljust(width)}  convprop ms  pytorch ms  ratio",
        f"{'-' * width}  -----------  ----------  -----",
    ]
    for t in timings:
        lines.append(
            f"{t.name.ljust(width)}  {t.ours * 1e3:11.2f}  {t.theirs * 1e3:10.2f}  {t.ratio:5.2f}"
        )
    ratios = [t.ratio for t in timings]
    geometric = statistics.geometric_mean(ratios)
    lines.append(f"geometric mean of ratios: {geometric:.2f}")
    return "\n".join(lines)
