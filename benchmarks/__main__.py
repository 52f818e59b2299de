"""``python -m benchmarks``: convprop against PyTorch CPU, side by side, in one process.

Options: ``--quick`` (fewer repetitions), ``--filter SUBSTRING`` (only the cases whose name
contains it), ``--out DIR`` (where the JSON record goes, default ``benchmarks/results``),
``--baseline JSON`` (a former record to compare convprop's times with; default: the oldest
record in the output directory), ``--markdown PATH`` (default ``BENCHMARKS.md``; only the part
between its ``results`` markers is rewritten, the hand-written analysis around it is kept).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from benchmarks import layers, networks
from benchmarks.harness import (
    Timing,
    compare,
    format_table,
    gemm_peak_gflops,
    numpy_peak_bytes,
    torch_peak_bytes,
)
from convprop.ops.kernels.memory import keep_freed_memory

ROOT = Path(__file__).resolve().parent.parent
START, END = "<!-- results:start -->", "<!-- results:end -->"


def _git_commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=False
        ).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--", "src", "benchmarks")
    return commit + ("-dirty" if dirty else "")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def _blas() -> str:
    try:
        config = np.show_config(mode="dicts")
        blas = config["Build Dependencies"]["blas"]
        return (
            f"{blas.get('name')} {blas.get('version')} ({blas.get('openblas configuration', '')})"
        )
    except Exception:  # noqa: BLE001 - informational only
        return "unknown"


def environment(threads: int) -> dict[str, object]:
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": _git_commit(),
        "machine": f"{_cpu_model()}, {os.cpu_count()} logical cores, {platform.system()}",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "blas": _blas(),
        "torch": torch.__version__,
        "threads": threads,
        "openblas_num_threads": os.environ.get("OPENBLAS_NUM_THREADS", "unset (all cores)"),
        # A machine may pin OpenBLAS's kernels (this one sets Haswell: AVX2 on an AVX-512 CPU).
        "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE", "unset (detected)"),
        "command": "python -m benchmarks " + " ".join(sys.argv[1:]),
    }


def _baseline_path(out: Path, given: str | None) -> Path | None:
    if given:
        return Path(given)
    records = sorted(out.glob("*.json"))
    return records[0] if records else None


def _baseline_table(timings: list[Timing], baseline: dict[str, object]) -> str:
    before = {case["name"]: case for case in baseline["cases"]}  # type: ignore[index]
    lines = [
        f"convprop now against the record of commit {baseline['environment']['commit']} "  # type: ignore[index]
        f"({baseline['environment']['date']}); ratios are each run's own convprop/PyTorch.",  # type: ignore[index]
        "",
        "| case | before ms | now ms | speed-up | ratio before | ratio now |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for t in timings:
        old = before.get(t.name)
        if old is None:
            continue
        lines.append(
            f"| {t.name} | {old['ours'] * 1e3:.2f} | {t.ours * 1e3:.2f} | "
            f"{old['ours'] / t.ours:.2f}x | {old['ratio']:.2f} | {t.ratio:.2f} |"
        )
    return "\n".join(lines)


def _shown(path: Path) -> Path:
    return path.relative_to(ROOT) if path.resolve().is_relative_to(ROOT) else path


def write_markdown(path: Path, text: str) -> None:
    block = f"{START}\n{text}\n{END}"
    if path.exists() and START in (old := path.read_text()) and END in old:
        head, rest = old.split(START, 1)
        tail = rest.split(END, 1)[1]
        path.write_text(head + block + tail)
    else:
        path.write_text(f"# Benchmarks: convprop against PyTorch CPU\n\n{block}\n")


def main(argv: list[str] | None = None) -> int:
    keep_freed_memory()  # as the training job does: the steps re-allocate the same buffers
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--filter", default="", help="run only cases whose name contains this")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--baseline", default=None)
    parser.add_argument("--markdown", default=str(ROOT / "BENCHMARKS.md"))
    args = parser.parse_args(argv)

    threads = int(os.environ.get("BENCH_THREADS", os.cpu_count() or 1))
    torch.set_num_threads(threads)
    env = environment(threads)
    env["load_before"] = _load()
    print(f"{env['machine']}; numpy {env['numpy']} ({env['blas']}); torch {env['torch']}")
    print(f"threads {threads}; load average before: {env['load_before']}", flush=True)

    peak = gemm_peak_gflops()
    env["gemm_peak_gflops"] = peak
    print(f"float32 GEMM peak (np.matmul 2048^3): {peak:.0f} GFLOP/s", flush=True)

    timings: list[Timing] = []
    for case in layers.cases() + networks.cases():
        if args.filter.lower() not in case.name.lower():
            continue
        ours, theirs, flops, batch = case.setup()
        repeats = max(3, case.repeats // 3) if args.quick else case.repeats
        timing = compare(
            case.name, case.group, ours, theirs, repeats=repeats, flops=flops, batch=batch
        )
        if case.memory:
            timing.ours_peak_bytes = numpy_peak_bytes(ours)
            timing.theirs_peak_bytes = torch_peak_bytes(theirs)
        timings.append(timing)
        print(
            f"{case.name}: convprop {timing.ours * 1e3:.2f} ms, pytorch "
            f"{timing.theirs * 1e3:.2f} ms, ratio {timing.ratio:.2f}",
            flush=True,
        )
    env["load_after"] = _load()
    if not timings:
        print(f"no case matches {args.filter!r}")
        return 1

    table = format_table(timings, peak)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    baseline_path = _baseline_path(out, args.baseline)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d-%H%M")
    record_path = out / f"{stamp}-{env['commit']}.json"
    record = {"environment": env, "cases": [t.to_json() for t in timings]}
    record_path.write_text(json.dumps(record, indent=1) + "\n")

    sections = [
        f"Run {env['date']} on commit `{env['commit']}`: `{env['command'].strip()}`",
        "",
        f"- machine: {env['machine']}; load average before {env['load_before']}, "
        f"after {env['load_after']} (1/5/15 min)",
        f"- python {env['python']}, numpy {env['numpy']}, BLAS {env['blas']}",
        f"- torch {env['torch']}, {threads} threads (torch.set_num_threads); NumPy's BLAS "
        f"threads: OPENBLAS_NUM_THREADS {env['openblas_num_threads']}; OpenBLAS kernels: "
        f"OPENBLAS_CORETYPE {env.get('openblas_coretype', 'not recorded')}",
        f"- measured float32 GEMM peak (np.matmul, 2048^3, best of 5): {peak:.0f} GFLOP/s",
        f"- JSON record: `{_shown(record_path)}`",
        "",
        table,
    ]
    if baseline_path is not None and baseline_path.resolve() != record_path.resolve():
        baseline = json.loads(baseline_path.read_text())
        sections += ["", "### Against the baseline", "", _baseline_table(timings, baseline)]
    text = "\n".join(sections)
    print()
    print(text)
    if not args.filter:
        write_markdown(Path(args.markdown), text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
