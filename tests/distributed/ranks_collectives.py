"""Rank script: the collectives' semantics, and a sharded evaluation's reduction.

Run as ``mpirun -n N python ranks_collectives.py OUT``; each rank writes ``OUT/rank<R>.npz``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

import convprop as cp
from convprop import distributed as dist

# The sharded evaluation: a fixed "test set" of labels and predictions over 4 classes.
SAMPLES, CLASSES = 103, 4


def evaluation_set() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    labels = rng.integers(0, CLASSES, SAMPLES)
    predictions = np.where(rng.random(SAMPLES) < 0.7, labels, rng.integers(0, CLASSES, SAMPLES))
    losses = rng.random(SAMPLES)
    return labels, predictions, losses


def confusion(labels: np.ndarray, predictions: np.ndarray) -> np.ndarray:
    matrix = np.zeros((CLASSES, CLASSES), dtype=np.int64)
    np.add.at(matrix, (labels, predictions), 1)
    return matrix


def main(out: Path) -> None:
    dist.install_fault_handler()
    dist.init_process_group()
    rank, world = dist.get_rank(), dist.get_world_size()
    results: dict[str, np.ndarray] = {"rank": np.array(rank), "world": np.array(world)}

    summed = np.arange(5, dtype=np.float64) + 10 * rank
    dist.all_reduce(summed)
    results["sum"] = summed
    averaged = np.full((2, 3), rank + 1.0, dtype=np.float32)
    dist.all_reduce(averaged, dist.ReduceOp.AVG)
    results["avg"] = averaged
    largest = np.array([rank, -rank], dtype=np.int64)
    dist.all_reduce(largest, dist.ReduceOp.MAX)
    results["max"] = largest
    counts = np.array([rank + 1, 2], dtype=np.int64)
    dist.all_reduce(counts)
    results["int_sum"] = counts
    tensor = cp.tensor(np.full(3, float(rank + 1)))
    dist.all_reduce(tensor)
    results["tensor_sum"] = tensor.numpy()

    broadcast = np.arange(4, dtype=np.float64) * (rank + 1)
    dist.broadcast(broadcast, src=world - 1)
    results["broadcast"] = broadcast
    scalar = np.array(rank + 5, dtype=np.int64)
    dist.broadcast(scalar, src=0)
    results["broadcast_scalar"] = scalar

    gathered = np.empty((2 * world, 3))
    dist.all_gather_into_tensor(gathered, np.full((2, 3), float(rank)))
    results["all_gather"] = gathered
    objects: list[object] = [None] * world
    dist.all_gather_object(objects, {"rank": rank})
    results["all_gather_object"] = np.array([entry["rank"] for entry in objects])  # type: ignore[index]
    shared: list[object] = [f"from {rank}", rank * 3]
    dist.broadcast_object_list(shared, src=0)
    results["broadcast_object"] = np.array([shared[0] == "from 0", shared[1] == 0])
    dist.barrier()

    try:
        dist.all_reduce(np.zeros((4, 4))[:, ::2])
    except ValueError as error:
        results["non_contiguous_error"] = np.array(str(error))

    labels, predictions, losses = evaluation_set()
    shard = dist.shard_range(SAMPLES)
    reduced = dist.all_reduce_metrics(
        {
            "loss_sum": float(losses[shard].sum()),
            "correct": int((labels[shard] == predictions[shard]).sum()),
            "count": shard.stop - shard.start,
            "confusion": confusion(labels[shard], predictions[shard]),
        }
    )
    results.update({f"eval_{name}": np.asarray(value) for name, value in reduced.items()})
    results["eval_predictions"] = dist.gather_shards(predictions[shard])
    results["eval_types"] = np.array([type(reduced[name]).__name__ for name in sorted(reduced)])

    np.savez(out / f"rank{rank}.npz", **results)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
