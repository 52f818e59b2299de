"""What averaging the gradients costs per step: ``mpirun -n 2 python -m benchmarks.allreduce``.

For LeNet-5 and ResNet-20 (float32, a global batch of 128, so 64 samples per process on 2
processes) it times, on every process, one forward and backward pass on the process's share
and ``DistributedDataParallel.synchronize_gradients`` in a few large buckets (the default
25 MB cap: one bucket for either network) and one parameter per bucket (one ``Allreduce`` per
parameter, as a naive loop would do), interleaved in alternating order, each after a
barrier, after warm-up; rank 0 prints the medians and the minima (on a loaded machine the
median of a collective measures mostly how long a descheduled partner keeps it waiting; the
minimum, what it costs).
Add ``--mca btl tcp,self`` to mpirun to send the bytes over TCP loopback instead of shared
memory, as between two hosts.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import convprop as cp
from convprop import distributed as dist
from convprop import models
from convprop.nn import functional as F
from convprop.nn.parallel import DistributedDataParallel

NETWORKS = {"LeNet-5": (models.lenet5, (1, 28, 28)), "ResNet-20": (models.resnet20, (3, 32, 32))}


def seconds(work: object) -> float:
    """The wall time of ``work()``, started when every process is ready (so that a
    collective's time is not the wait for a slower process to finish its step)."""
    dist.barrier()
    started = time.perf_counter()
    work()  # type: ignore[operator]
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=128, help="the global batch")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    dist.install_fault_handler()
    dist.init_process_group()
    world, rank = dist.get_world_size(), dist.get_rank()
    dist.check_batch_size(args.batch_size, world)
    share = args.batch_size // world
    rng = np.random.default_rng(rank)
    for name, (build, shape) in NETWORKS.items():
        cp.manual_seed(0)
        network = build()
        bucketed = DistributedDataParallel(network)
        per_parameter = DistributedDataParallel(network, bucket_cap_mb=1e-9, init_sync=False)
        inputs = cp.tensor(rng.standard_normal((share, *shape)).astype(np.float32))
        labels = cp.tensor(rng.integers(0, 10, share))

        def step(
            model: DistributedDataParallel = bucketed,
            inputs: cp.Tensor = inputs,
            labels: cp.Tensor = labels,
        ) -> None:
            model.zero_grad()
            F.cross_entropy(model(inputs), labels).backward()

        times: dict[str, list[float]] = {"step": [], "bucketed": [], "per_parameter": []}
        for repeat in range(args.repeats + 2):
            measured = {"step": seconds(step)}
            variants = [("bucketed", bucketed), ("per_parameter", per_parameter)]
            for key, model in variants[:: 1 if repeat % 2 else -1]:  # alternate the order
                measured[key] = seconds(model.synchronize_gradients)
            if repeat >= 2:  # the first two are warm-up
                for key, value in measured.items():
                    times[key].append(value)
        medians = {key: statistics.median(values) * 1e3 for key, values in times.items()}
        fastest = {key: min(values) * 1e3 for key, values in times.items()}
        slowest = {
            key: dist.all_reduce_metrics({"t": value})["t"] for key, value in medians.items()
        }
        best = {key: dist.all_reduce_metrics({"t": value})["t"] for key, value in fastest.items()}
        if rank == 0:
            parameters = list(network.parameters())
            megabytes = sum(p.data.nbytes for p in parameters) / 2**20
            print(
                f"{name}: {len(parameters)} parameters, {megabytes:.2f} MB of gradients; "
                f"{world} processes x {share} samples; medians over {args.repeats} steps "
                f"(median / minimum, mean of the processes):\n"
                f"  forward + backward            {slowest['step'] / world:8.2f} / "
                f"{best['step'] / world:8.2f} ms\n"
                f"  allreduce in buckets ({len(bucketed._buckets)})      "
                f"{slowest['bucketed'] / world:8.3f} / {best['bucketed'] / world:8.3f} ms\n"
                f"  allreduce per parameter ({len(per_parameter._buckets)})"
                f"{slowest['per_parameter'] / world:8.3f} / {best['per_parameter'] / world:8.3f} ms"
            )


if __name__ == "__main__":
    main()
