"""Timing and measuring both libraries fairly on a shared machine.

Time: both sides run in one process with the same thread count, after a warm-up, alternating
call by call so that drift in the machine's load hits both; each timed call is preceded by a
pause (0.2 s: OpenBLAS's idle threads spin for about 2^28 cycles, ~0.1 s) so that the
idle BLAS/OpenMP threads of the library that ran last stop spinning. The pause busy-waits
rather than sleeps: on the benchmark's virtual machine a step that follows a sleep runs slower
throughout (the idle core is clocked or scheduled down), which is not the state of a training
loop. Measured on the TDNN step, convprop / PyTorch in ms: back to back 46.3 / 22.6, after a
busy pause 46.6 / 22.9, after a 0.2 s sleep 62.0 / 25.0.
The figure reported is the median of the repetitions.

Memory (whole-network cases only, in a separate untimed call of each side, because tracing
slows the call down):

* convprop: ``tracemalloc``'s peak over the call, minus the traced size before it. NumPy
  reports every array buffer to tracemalloc, so this is the peak of NumPy arrays (plus the
  small Python objects) alive during the step above what already existed (parameters,
  optimiser state, the input batch). It does not see OpenBLAS's own work buffers (allocated
  once at start-up, outside NumPy).
* PyTorch: ``torch.profiler`` with ``profile_memory=True``; the peak of the running sum of its
  allocation/free events over the call, i.e. the peak of tensors allocated by torch's CPU
  allocator above what existed before the call. It does not see oneDNN/MKL work buffers that do
  not go through that allocator.

Both are therefore "peak extra bytes of tensors/arrays during one call", measured the same way
in spirit; neither is RSS (RSS deltas are dominated by allocator caching and are not
comparable between the two libraries).
"""

from __future__ import annotations

import itertools
import statistics
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

PAUSE_SECONDS = 0.2


@dataclass
class Timing:
    name: str
    group: str  # "layer", "step" or "inference"
    ours: float  # seconds, median
    theirs: float
    flops: float | None = None  # analytic FLOPs of one call (None: memory-bound, not counted)
    batch: int | None = None  # images per call, for the inference throughput
    ours_peak_bytes: int | None = None
    theirs_peak_bytes: int | None = None
    ours_all: list[float] = field(default_factory=list)
    theirs_all: list[float] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        return self.ours / self.theirs

    def gflops(self, seconds: float) -> float | None:
        return None if self.flops is None else self.flops / seconds / 1e9

    def to_json(self) -> dict[str, object]:
        record = asdict(self)
        record["ratio"] = self.ratio
        record["ours_gflops"] = self.gflops(self.ours)
        record["theirs_gflops"] = self.gflops(self.theirs)
        return record


def pause(seconds: float = PAUSE_SECONDS) -> None:
    """Busy-wait ``seconds`` (see the module's docstring for why not sleep)."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def _time_once(fn: Callable[[], object]) -> float:
    pause()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def compare(
    name: str,
    group: str,
    ours: Callable[[], object],
    theirs: Callable[[], object],
    repeats: int = 7,
    warmup: int = 2,
    flops: float | None = None,
    batch: int | None = None,
) -> Timing:
    """Median time of ``ours`` and ``theirs``, interleaved."""
    for _ in range(warmup):
        ours()
        theirs()
    our_times, their_times = [], []
    for _ in range(repeats):
        our_times.append(_time_once(ours))
        their_times.append(_time_once(theirs))
    return Timing(
        name,
        group,
        statistics.median(our_times),
        statistics.median(their_times),
        flops=flops,
        batch=batch,
        ours_all=our_times,
        theirs_all=their_times,
    )


def numpy_peak_bytes(fn: Callable[[], object]) -> int:
    """Peak bytes traced by tracemalloc during ``fn()`` above the traced size before it."""
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak - before


def torch_peak_bytes(fn: Callable[[], object]) -> int:
    """Peak of the running sum of torch's CPU allocator events during ``fn()``."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted(
        (e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"),
        key=lambda e: e.start_ns(),
    )
    return max(itertools.accumulate((e.nbytes() for e in events), initial=0))


def gemm_peak_gflops(size: int = 2048, repeats: int = 5) -> float:
    """The machine's float32 GEMM rate through NumPy's BLAS: best of ``repeats`` products of
    two ``size`` x ``size`` matrices (2 size^3 FLOPs each)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    out = np.empty_like(a)
    np.matmul(a, b, out=out)
    best = min(_time_once(lambda: np.matmul(a, b, out=out)) for _ in range(repeats))
    return 2 * size**3 / best / 1e9


def _mb(n: int | None) -> str:
    return "" if n is None else f"{n / 2**20:.1f}"


def format_table(timings: list[Timing], peak_gflops: float) -> str:
    """A Markdown table: one row per case, then the geometric means of the ratios."""
    lines = [
        "| case | convprop ms | pytorch ms | ratio | convprop GFLOP/s | % of peak "
        "| pytorch GFLOP/s | convprop MiB | pytorch MiB | img/s convprop | img/s pytorch |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for t in timings:
        ours_g, theirs_g = t.gflops(t.ours), t.gflops(t.theirs)
        cells = [
            t.name,
            f"{t.ours * 1e3:.2f}",
            f"{t.theirs * 1e3:.2f}",
            f"{t.ratio:.2f}",
            "" if ours_g is None else f"{ours_g:.1f}",
            "" if ours_g is None else f"{100 * ours_g / peak_gflops:.0f}%",
            "" if theirs_g is None else f"{theirs_g:.1f}",
            _mb(t.ours_peak_bytes),
            _mb(t.theirs_peak_bytes),
            "" if t.batch is None else f"{t.batch / t.ours:.0f}",
            "" if t.batch is None else f"{t.batch / t.theirs:.0f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for group in ("layer", "step", "inference"):
        ratios = [t.ratio for t in timings if t.group == group]
        if ratios:
            lines.append(
                f"- {group} cases: geometric mean of ratios {statistics.geometric_mean(ratios):.2f}"
                f", worst {max(ratios):.2f}"
            )
    return "\n".join(lines)
