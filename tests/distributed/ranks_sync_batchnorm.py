"""Rank script: SyncBatchNorm on each rank's share of a batch, for comparison with PyTorch's
batch norm on the whole batch.

``mpirun -n 2 python ranks_sync_batchnorm.py OUT``; each rank writes ``OUT/rank<R>.npz``
with, per case and algorithm, its output, input gradient, weight and bias gradients (its own
parts), the running statistics after the training steps, and an evaluation-mode output.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import convprop as cp
from convprop import distributed as dist
from convprop import nn
from convprop.ops import use_algorithm


@dataclass(frozen=True)
class Case:
    """A batch norm of ``shape`` (the whole batch), split between two ranks at ``split``."""

    name: str
    shape: tuple[int, ...]
    split: int  # rank 0 takes samples [0, split), rank 1 the rest
    steps: int = 2
    offset: float = 0.0  # added to x: a mean far from 0 tests the statistics' accuracy


CASES = [
    Case("maps", (6, 3, 4, 5), 4, offset=1000.0),
    Case("sequences", (5, 2, 7), 3, steps=1),
    Case("empty_share", (4, 3, 2, 2), 4),
]
MOMENTUM, EPS = 0.3, 1e-5


def case_data(case: Case) -> dict[str, np.ndarray]:
    """The whole batch of every step, its output gradients, the layer's weights."""
    rng = np.random.default_rng([len(case.shape), *case.shape])
    channels = case.shape[1]
    return {
        "inputs": rng.standard_normal((case.steps, *case.shape)) * 2.0 + case.offset,
        "grads": rng.standard_normal((case.steps, *case.shape)),
        "weight": rng.uniform(0.5, 1.5, channels),
        "bias": rng.standard_normal(channels),
        "eval_input": rng.standard_normal(case.shape) + case.offset,
    }


def share(case: Case, rank: int) -> slice:
    return slice(0, case.split) if rank == 0 else slice(case.split, case.shape[0])


def run_case(case: Case, rank: int) -> dict[str, np.ndarray]:
    data = case_data(case)
    layer = nn.SyncBatchNorm(case.shape[1], eps=EPS, momentum=MOMENTUM, dtype=np.float64)
    layer.weight.data[...] = data["weight"]
    layer.bias.data[...] = data["bias"]
    mine = share(case, rank)
    results: dict[str, np.ndarray] = {}
    for step in range(case.steps):
        x = cp.tensor(np.ascontiguousarray(data["inputs"][step][mine]), requires_grad=True)
        layer.zero_grad()
        y = layer(x)
        y.backward(cp.tensor(np.ascontiguousarray(data["grads"][step][mine])))
        results[f"output{step}"] = y.numpy()
        results[f"input_grad{step}"] = x.grad.numpy()
        results[f"weight_grad{step}"] = layer.weight.grad.numpy()
        results[f"bias_grad{step}"] = layer.bias.grad.numpy()
    results["running_mean"] = layer.running_mean.numpy()
    results["running_var"] = layer.running_var.numpy()
    results["num_batches_tracked"] = layer.num_batches_tracked.numpy()
    layer.eval()
    with cp.no_grad():
        results["eval_output"] = layer(cp.tensor(data["eval_input"][mine])).numpy()
    return results


def main(out: Path) -> None:
    dist.install_fault_handler()
    dist.init_process_group()
    rank = dist.get_rank()
    results: dict[str, np.ndarray] = {}
    for algorithm in ("fast", "reference"):
        with use_algorithm(algorithm):
            for case in CASES:
                for name, value in run_case(case, rank).items():
                    results[f"{algorithm}/{case.name}/{name}"] = value
    np.savez(out / f"rank{rank}.npz", **results)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
