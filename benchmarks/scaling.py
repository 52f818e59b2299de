"""Training epochs on 1 process against 2, and a model of many: ``python -m benchmarks.scaling``.

For LeNet-5 and ResNet-20 on the bundled MNIST subset (``--limit`` samples, a global batch of
128, float32, the CLI's default augmentation unless ``--augment none``), it trains
``--epochs`` epochs (the first is warm-up) through ``convprop.training.fit`` in three
settings, interleaved for ``--rounds`` rounds:

* 1 process, the thread pool and OpenBLAS on both cores (and, for reference, on one);
* ``mpirun -n 2 --bind-to core`` (one core, one thread each), Open MPI's shared-memory
  transport (``--mca btl sm,self``);
* the same over TCP loopback (``--mca btl tcp,self --mca btl_tcp_if_include lo``), as
  between two hosts.

It prints, per setting, the training samples per second of the measured epochs (each
epoch's wall time, its test evaluation and checkpoint included) and, for two processes, the
time per step rank 0 spent averaging gradients (``synchronize_gradients``) and in any
collective (the step's figures, the batch-norm buffer broadcast, the evaluation's gathers),
waiting for its partner included. Then the paper model of ``BENCHMARKS.md``: the step time
at 8, 64 and 256 processes over 10 and 100 Gbit/s links, from the per-sample costs measured
here.

On a shared machine run it under ``nice`` and compare the settings by their ratio within
one run; absolute figures drift with the load.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

NETWORKS = {"LeNet-5": ("lenet5", 4000), "ResNet-20": ("resnet20", 1024)}
NETWORKS_LIMIT = dict(NETWORKS.values())
SHARED_MEMORY = ["--mca", "pml", "ob1", "--mca", "btl", "sm,self"]
TCP_LOOPBACK = ["--mca", "pml", "ob1", "--mca", "btl", "tcp,self", "--mca"]
TCP_LOOPBACK += ["btl_tcp_if_include", "lo"]
ONE_CORE = ["one core"]  # not mpirun's flags: one process, pinned to one core
SETTINGS: dict[str, list[str] | None] = {
    "1 process x 2 threads": None,
    "1 process x 1 thread": ONE_CORE,
    "2 processes x 1 thread, shared memory": SHARED_MEMORY,
    "2 processes x 1 thread, TCP loopback": TCP_LOOPBACK,
}
# The collectives a training run calls on its process group (all_reduce_sum and the
# module-level functions go through these).
COLLECTIVES = (
    "all_reduce",
    "broadcast",
    "all_gather",
    "all_gather_varying",
    "broadcast_object",
    "all_gather_object",
    "barrier",
)


# ----------------------------------------------------------------------------- one run
def _timed(method: Callable[..., Any], clock: list[float]) -> Callable[..., Any]:
    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            clock[0] += time.perf_counter() - started

    return timed


def run_worker(args: argparse.Namespace) -> None:
    """One training run (under mpirun with ``--distributed``); rank 0 writes the timings."""
    from convprop import distributed as dist
    from convprop.distributed.process_group import ProcessGroup
    from convprop.nn.parallel import DistributedDataParallel
    from convprop.training import TrainConfig, fit

    if args.distributed:
        dist.install_fault_handler()
        dist.init_process_group()
    in_collectives, in_gradients = [0.0], [0.0]
    for name in COLLECTIVES:  # benchmark instrumentation: time spent communicating
        setattr(ProcessGroup, name, _timed(getattr(ProcessGroup, name), in_collectives))
    DistributedDataParallel.synchronize_gradients = _timed(  # type: ignore[method-assign]
        DistributedDataParallel.synchronize_gradients, in_gradients
    )
    config = TrainConfig.from_dict(
        {
            "model": args.model,
            "limit": args.limit,
            "batch_size": args.batch_size,
            "epochs": args.epochs,
            "augment": args.augment,
        }
    )
    marks: list[tuple[float, float, float]] = []

    def log(line: str) -> None:  # called on rank 0 as each epoch is committed
        if line.startswith("epoch"):
            marks.append((time.perf_counter(), in_collectives[0], in_gradients[0]))

    fit(config, Path(args.run_dir), progress=False, log=log)
    if dist.get_rank() != 0:
        return
    samples = _train_samples(config)
    steps = math.ceil(samples / config.batch_size)
    (first, comm0, grad0), (last, comm1, grad1) = marks[0], marks[-1]
    measured = len(marks) - 1
    Path(args.result).write_text(
        json.dumps(
            {
                "samples_per_epoch": samples,
                "steps_per_epoch": steps,
                "epoch_seconds": [b[0] - a[0] for a, b in zip(marks, marks[1:], strict=False)],
                "samples_per_second": samples * measured / (last - first),
                "collectives_ms_per_step": (comm1 - comm0) / (measured * steps) * 1e3,
                "gradients_ms_per_step": (grad1 - grad0) / (measured * steps) * 1e3,
                "cores": len(os.sched_getaffinity(0)),
                "processes": dist.get_world_size(),
            }
        )
    )


def _train_samples(config: Any) -> int:
    from convprop.training import prepare_data

    return len(prepare_data(config).train)


def launch(setting: list[str] | None, model: str, args: argparse.Namespace) -> dict[str, Any]:
    """One run in ``setting`` (None: one process; else mpirun's transport flags)."""
    with tempfile.TemporaryDirectory(prefix="scaling-") as folder:
        result = Path(folder) / "result.json"
        worker = [sys.executable, "-m", "benchmarks.scaling", "--worker", "--model", model]
        worker += ["--limit", str(NETWORKS_LIMIT[model]), "--batch-size", str(args.batch_size)]
        worker += ["--epochs", str(args.epochs), "--augment", args.augment]
        worker += ["--run-dir", str(Path(folder) / "run"), "--result", str(result)]
        environment = dict(os.environ)
        pin: Callable[[], None] | None = None
        if setting is None:
            command = worker
        elif setting is ONE_CORE:
            command = worker
            core = max(os.sched_getaffinity(0))
            environment.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")

            def pin() -> None:
                os.sched_setaffinity(0, {core})

        else:
            mpirun = shutil.which("mpirun", path=str(Path(sys.executable).parent)) or "mpirun"
            command = [mpirun, "-n", "2", "--bind-to", "core", *setting]
            if hasattr(os, "geteuid") and os.geteuid() == 0:
                command.append("--allow-run-as-root")
            command += ["-x", "PYTHONPATH"] if "PYTHONPATH" in environment else []
            command += [*worker[:3], "--distributed", *worker[3:]]
            environment.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
        finished = subprocess.run(
            command,
            env=environment,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
            preexec_fn=pin,
        )
        if finished.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed:\n{finished.stderr}")
        timings: dict[str, Any] = json.loads(result.read_text())
        return timings


# ----------------------------------------------------------------------------- the model
def gradient_megabytes(model: str) -> float:
    from convprop.training import build_model

    network = build_model(model, [1, 28, 28], 10)
    return sum(p.data.size for p in network.parameters()) * 4 / 1e6


def preparation_seconds_per_sample(augment: str, repeats: int = 5) -> tuple[float, float]:
    """Two per-sample costs of a step before the network, on one core: what a process pays
    per sample of the *global* batch (the loader's copy of the batch, the augmentation's
    draws for every image: each process makes them all, so that the images do not depend on
    the number of processes), and per sample of its share (augmenting and normalising it)."""
    from convprop.data import ArrayDataset, DataLoader, Normalize, build_augmentation

    generator = np.random.default_rng(0)
    images = generator.random((4096, 1, 28, 28)).astype(np.float32)
    data = ArrayDataset(images, generator.integers(0, 10, 4096), [str(i) for i in range(10)])
    names = [] if augment == "none" else augment.split(",")
    augmentation = build_augmentation(names, np.random.default_rng(1))
    normalize = Normalize([0.5], [0.25])
    per_batch, per_share = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        batches = list(DataLoader(data, 128, shuffle=True, generator=generator))
        for _, labels in batches:
            if augmentation is not None:  # the draws alone: an empty share
                augmentation.share(images[:0], len(labels), slice(0, 0))
        per_batch.append((time.perf_counter() - started) / len(images))
        batch = batches[0][0]
        started = time.perf_counter()
        augmented = augmentation(batch) if augmentation is not None else batch
        normalize(augmented)
        per_share.append((time.perf_counter() - started) / len(batch))
    return min(per_batch), min(per_share)


def step_model(
    processes: int,
    share: int,
    compute: float,
    per_batch: float,
    megabytes: float,
    gigabits: float,
    latency: float,
    small_collectives: int,
) -> dict[str, float]:
    """A step's time in seconds: the share's compute (augmentation included), the global
    batch's part every process repeats, a ring allreduce of the gradients (2(N-1)/N of the
    bytes in and out of each process, in 2(N-1) messages) and the small collectives (the
    step's figures, the buffer broadcast), log2 N latencies each."""
    n = processes
    transfer = 2 * (n - 1) / n * megabytes * 8e6 / (gigabits * 1e9)
    ring_latency = 2 * (n - 1) * latency
    small = small_collectives * math.ceil(math.log2(n)) * latency if n > 1 else 0.0
    parts = {
        "compute": share * compute,
        "repeated": share * n * per_batch,
        "transfer": transfer,
        "latency": ring_latency + small,
    }
    parts["step"] = sum(parts.values())
    return parts


def print_model(
    name: str, model: str, measured: dict[str, Any], per_batch: float, per_share: float
) -> None:
    # The per-sample compute on one core, from the one-core process (its epoch's test
    # evaluation and checkpoint included, as in every setting).
    compute = 1 / measured["1 process x 1 thread"]["samples_per_second"] - per_batch
    megabytes = gradient_megabytes(model)
    small = 2 if model == "resnet20" else 1  # ResNet-20 broadcasts its batch-norm buffers
    print(
        f"\n{name}: model inputs: {compute * 1e3:.3f} ms per sample of the share on one core "
        f"(of which augmenting and normalising {per_share * 1e3:.3f} ms), "
        f"{per_batch * 1e6:.1f} us per sample of the global batch, {megabytes:.3f} MB of "
        "float32 gradients"
    )
    links = {"10 Gbit/s (TCP, 25 us)": (10, 25e-6), "100 Gbit/s (RDMA, 2 us)": (100, 2e-6)}
    for scenario, shares in (
        ("global batch 2048", {8: 256, 64: 32, 256: 8}),
        ("64 samples per process", {8: 64, 64: 64, 256: 64}),
    ):
        print(f"  {scenario}:")
        for link, (gigabits, latency) in links.items():
            for n, per in shares.items():
                parts = step_model(n, per, compute, per_batch, megabytes, gigabits, latency, small)
                # Against one process (one core) computing the same global batch.
                speedup = per * n * (compute + per_batch) / parts["step"]
                print(
                    f"    {link:24} N={n:<4} share {per:>3}: step {parts['step'] * 1e3:8.2f} ms "
                    f"(compute {parts['compute'] * 1e3:7.2f}, repeated "
                    f"{parts['repeated'] * 1e3:6.2f}, transfer {parts['transfer'] * 1e3:5.2f}, "
                    f"latency {parts['latency'] * 1e3:5.2f}); speed-up {speedup:6.1f} "
                    f"= {speedup / n:5.1%} of N"
                )


# ----------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3, help="the first is warm-up")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128, help="the global batch")
    parser.add_argument("--augment", default="shift,rotate,scale", help="or none")
    parser.add_argument("--networks", default=",".join(NETWORKS), help="comma list")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--distributed", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--limit", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--run-dir", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        run_worker(args)
        return
    per_batch, per_share = preparation_seconds_per_sample(args.augment)
    for name in args.networks.split(","):
        model, limit = NETWORKS[name]
        runs: dict[str, list[dict[str, Any]]] = {setting: [] for setting in SETTINGS}
        for round_index in range(args.rounds):
            order = list(SETTINGS.items())
            order = order if round_index % 2 == 0 else order[::-1]  # interleaved
            for setting, flags in order:
                runs[setting].append(launch(flags, model, args))
        print(
            f"{name}: {limit} samples (or all the training split holds), global batch "
            f"{args.batch_size}, augment {args.augment}, {args.epochs - 1} measured epochs x "
            f"{args.rounds} rounds (best / median samples/s)"
        )
        base = max(r["samples_per_second"] for r in runs["1 process x 2 threads"])
        best: dict[str, Any] = {}
        for setting, results in runs.items():
            rates = [r["samples_per_second"] for r in results]
            top = max(results, key=lambda r: r["samples_per_second"])
            best[setting] = top
            line = (
                f"  {setting:40} {max(rates):8.1f} / {statistics.median(rates):8.1f} samples/s"
                f"  ({max(rates) / base:.2f}x)  cores per process {top['cores']}"
            )
            if top["processes"] > 1:
                gradients = statistics.median(r["gradients_ms_per_step"] for r in results)
                collectives = statistics.median(r["collectives_ms_per_step"] for r in results)
                step = top["samples_per_epoch"] / max(rates) / top["steps_per_epoch"] * 1e3
                line += (
                    f"; per step {step:.1f} ms, gradient allreduce {gradients:.2f} ms, all "
                    f"collectives {collectives:.2f} ms"
                )
            print(line)
        print_model(name, model, best, per_batch, per_share)


if __name__ == "__main__":
    main()
