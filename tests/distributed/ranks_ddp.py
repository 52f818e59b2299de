"""Rank script: DistributedDataParallel's gradient averaging, and training on shares.

``mpirun -n 2 python ranks_ddp.py OUT``; each rank writes ``OUT/rank<R>.npz`` with

* ``known/<setting>/<parameter>``: the gradients after ``synchronize_gradients`` when every
  rank set known gradients (ChainerMN's test: the exact mean is expected);
* ``train/<model>/<parameter>``: the parameters after a few SGD steps on this rank's shares
  of the batches (the test trains the same model in one process on the whole batches);
* ``state/...``: a model and an optimizer state broadcast from rank 0.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

import convprop as cp
from convprop import distributed as dist
from convprop import nn, optim
from convprop.nn import functional as F
from convprop.nn.parallel import DistributedDataParallel

SAMPLES, BATCH_SIZE, EPOCHS = 15, 6, 2  # batches of 6, 6, 3: the last one's shares are 2 and 1


class KnownGradients(nn.Module):
    """Parameters of both dtypes, one never given a gradient, one given a gradient on rank 0
    only, one frozen."""

    def __init__(self) -> None:
        super().__init__()
        self.wide = nn.Parameter(np.zeros((3, 4)))
        self.short = nn.Parameter(np.zeros(5))
        self.single = nn.Parameter(np.zeros((2, 2), dtype=np.float32))
        self.unused = nn.Parameter(np.zeros(3))
        self.rank0_only = nn.Parameter(np.zeros(2))
        self.frozen = nn.Parameter(np.zeros(2), requires_grad=False)


def known_gradient(name: str, shape: tuple[int, ...], rank: int) -> np.ndarray:
    """Rank r's gradient of parameter ``name``: small integers and halves (exact in any sum)."""
    base = np.arange(int(np.prod(shape)), dtype=np.float64).reshape(shape)
    return (rank + 1) * base + 0.5 * rank + len(name)


def set_known_gradients(model: KnownGradients, rank: int) -> None:
    for name, param in model.named_parameters():
        if name in ("unused", "frozen") or (name == "rank0_only" and rank != 0):
            param.grad = None
            continue
        gradient = known_gradient(name, param.shape, rank).astype(param.dtype)
        param.grad = cp.tensor(gradient)


def known_results(rank: int) -> dict[str, np.ndarray]:
    results: dict[str, np.ndarray] = {}
    for setting, cap in {"default": 25.0, "one_bucket_per_parameter": 1e-6}.items():
        model = DistributedDataParallel(KnownGradients(), bucket_cap_mb=cap)
        for _ in range(2):  # twice: the buckets are reused
            set_known_gradients(model.module, rank)
            model.synchronize_gradients()
        results[f"known/{setting}/buckets"] = np.array(len(model._buckets))
        for name, param in model.module.named_parameters():
            if param.grad is not None:
                results[f"known/{setting}/{name}"] = param.grad.numpy()
    return results


def build_model(kind: str, seed: int) -> nn.Module:
    cp.manual_seed(seed)
    layers: list[nn.Module] = [nn.Conv2d(1, 4, 3)]
    if kind == "batch_norm":
        layers.append(nn.BatchNorm2d(4))
    layers += [nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4 * 3 * 3, 3)]
    return nn.Sequential(*layers).double()


def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(11)
    return rng.standard_normal((SAMPLES, 1, 8, 8)), rng.integers(0, 3, SAMPLES)


def train(model: nn.Module, num_replicas: int, rank: int) -> nn.Module:
    """A few SGD steps with momentum and weight decay on this rank's shares (the whole
    batches when ``num_replicas`` is 1): what the training loop will do."""
    inputs, labels = data()
    wrapped = DistributedDataParallel(model)
    optimizer = optim.SGD(wrapped.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    sampler = dist.DistributedSampler(
        SAMPLES, BATCH_SIZE, num_replicas, rank, generator=np.random.default_rng(4)
    )
    wrapped.train()
    for _ in range(EPOCHS):
        for batch in sampler.global_batches():
            (share,) = dist.shard_batch(batch, num_replicas=num_replicas, rank=rank)
            logits = wrapped(cp.tensor(inputs[share]))
            loss = F.cross_entropy(logits, cp.tensor(labels[share]))
            weight = dist.share_weight(len(share), len(batch), num_replicas)
            if weight != 1:  # the last batch's unequal shares
                loss = loss * weight
            optimizer.zero_grad()
            loss.backward()
            wrapped.synchronize_gradients()
            optimizer.step()
    return model


def main(out: Path) -> None:
    dist.install_fault_handler()
    dist.init_process_group()
    rank, world = dist.get_rank(), dist.get_world_size()
    results = known_results(rank)

    for kind in ("plain", "batch_norm"):
        # Each rank starts from other weights: DistributedDataParallel broadcasts rank 0's.
        model = build_model(kind, seed=100 + rank)
        if kind == "batch_norm":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        train(model, world, rank)
        for name, value in model.state_dict().items():
            results[f"train/{kind}/{name}"] = value

    # State broadcasts: rank 0's model and optimizer state reach rank 1.
    model = build_model("plain", seed=200 + rank)
    optimizer = optim.Adam(model.parameters(), lr=0.01)
    if rank == 0:
        for param in model.parameters():
            param.grad = cp.tensor(np.ones_like(param.data))
        optimizer.step()
    dist.broadcast_module(model)
    dist.broadcast_optimizer(optimizer)
    for name, value in model.state_dict().items():
        results[f"state/model/{name}"] = value
    for index, state in optimizer.state_dict()["state"].items():
        results[f"state/optimizer/{index}/exp_avg"] = state["exp_avg"]
        results[f"state/optimizer/{index}/step"] = np.array(state["step"])

    # Buffers: rank 0's reach every rank at wrapping and on synchronize_buffers.
    unwrapped = build_model("batch_norm", seed=300 + rank)
    unwrapped[1].running_mean.data[...] = rank + 5.0
    wrapped = DistributedDataParallel(unwrapped)
    running_mean = wrapped.module[1].running_mean
    results["buffers/at_wrapping"] = running_mean.numpy().copy()
    running_mean.data[...] = rank + 1.0
    wrapped.module[1].num_batches_tracked.data[...] = 7 * (rank + 1)
    wrapped.synchronize_buffers()
    results["buffers/synchronized"] = running_mean.numpy().copy()
    results["buffers/count"] = wrapped.module[1].num_batches_tracked.numpy().copy()

    np.savez(out / f"rank{rank}.npz", **results)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
