"""Shards: which samples each process takes, so that N processes train as one.

**Training: a strided share of every global batch.** Every process draws the same
permutation of the epoch (the same seed, or generators in the same state) and cuts it into
the same global batches of ``batch_size``; process r of N takes positions r, r + N, r + 2N, ...
of each batch (``global_batch[r::N]``). The union of the shares is the global batch, so the
averaged gradient is the gradient of the mean loss over the global batch, what one process
computes (up to the order of the additions); with N = 1 the share *is* the batch, in the
same order, so a world of one trains exactly as the single-process loop.

Why strided rather than contiguous (``global_batch[r * B/N : (r + 1) * B/N]``): both give
the same union, but on the last, partial batch of an epoch (``drop_last=False``) the strided
shares differ in size by at most one sample, while contiguous shares would give the first
processes full shares and leave the last ones with nothing. It is also
``torch.utils.data.DistributedSampler``'s rule: striding the whole epoch by N is striding
each batch by N when N divides the batch size.

``batch_size`` is the global batch and must be a multiple of the number of processes.
Where the shares of a batch differ in size (the last, partial batch), each process scales
its mean loss by :func:`share_weight` before ``backward``, so that the average of the
gradients is the gradient of the mean loss over the whole batch.

**Evaluation: contiguous slices** (``shard_range``): the processes' sums (loss, correct
predictions, confusion matrix) add up to the whole set's whatever the split, and contiguous
slices put gathered predictions back in the data set's order.
"""

from __future__ import annotations

from collections.abc import Iterator, Sized

import numpy as np

from convprop.distributed import process_group as pg

__all__ = ["DistributedSampler", "check_batch_size", "shard_batch", "shard_range", "share_weight"]


def _check_count(value: object, func: str, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        kind = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        raise ValueError(f"{func}: {name} must be {kind}, got {value!r}")
    return int(value)


def _world(num_replicas: int | None, rank: int | None, func: str) -> tuple[int, int]:
    """(number of processes, this rank): the arguments where given, else the default group's
    (a world of one without a group)."""
    world = pg.get_world_size() if num_replicas is None else num_replicas
    world = _check_count(world, func, "num_replicas", 1)
    this = pg.get_rank() if rank is None else rank
    this = _check_count(this, func, "rank", 0)
    if this >= world:
        raise ValueError(f"{func}: rank must be below num_replicas ({world}), got {this}")
    return world, this


def check_batch_size(batch_size: int, world_size: int) -> None:
    """A ValueError naming both numbers unless the global batch splits evenly."""
    if batch_size % world_size:
        raise ValueError(
            f"batch size {batch_size} is not divisible by the number of processes {world_size}: "
            "the batch size is the global batch, split evenly between the processes; choose a "
            f"multiple of {world_size}"
        )


class DistributedSampler:
    """This process's share of every global batch of each epoch: index arrays, one per step.

    Args:
        dataset: the data set (anything with ``len``) or its number of samples.
        batch_size: the global batch size, a multiple of ``num_replicas``.
        num_replicas: the number of processes (default: the process group's, 1 without one).
        rank: this process's rank (default: the process group's, 0 without one).
        shuffle: draw a permutation per epoch (else the samples in order).
        seed: with no ``generator``, epoch e's permutation is drawn from
            ``np.random.default_rng([seed, e])`` (``set_epoch(e)``, as
            ``torch.utils.data.DistributedSampler``).
        drop_last: leave out the last, partial global batch.
        generator: draw each epoch's permutation from this generator instead, as
            ``convprop.data.DataLoader(shuffle=True, generator=...)`` does, so the shares of
            every process together are exactly the loader's batches for the same generator
            state. Every process must hold a generator in the same state.

    Iterating yields, for each global batch, the indices of this process's share (strided,
    see the module's docstring); ``len`` is the number of steps, the same on every process.
    The last share of an epoch may be smaller than the others, or empty when the last
    batch has fewer samples than there are processes.

    >>> sampler = DistributedSampler(10, batch_size=4, num_replicas=2, rank=1, shuffle=False)
    >>> [share.tolist() for share in sampler]
    [[1, 3], [5, 7], [9]]
    """

    def __init__(
        self,
        dataset: Sized | int,
        batch_size: int,
        num_replicas: int | None = None,
        rank: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        generator: np.random.Generator | None = None,
    ) -> None:
        name = "DistributedSampler"
        size = dataset if isinstance(dataset, (int, np.integer)) else len(dataset)
        self.dataset_size = _check_count(size, name, "dataset size", 0)
        self.batch_size = _check_count(batch_size, name, "batch_size", 1)
        self.num_replicas, self.rank = _world(num_replicas, rank, name)
        check_batch_size(self.batch_size, self.num_replicas)
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.generator = generator
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Make the next pass draw epoch ``epoch``'s permutation (without a ``generator``)."""
        self.epoch = epoch

    def __len__(self) -> int:
        full, rest = divmod(self.dataset_size, self.batch_size)
        return full if self.drop_last or rest == 0 else full + 1

    def _order(self) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.dataset_size)
        if self.generator is not None:
            return self.generator.permutation(self.dataset_size)
        return np.random.default_rng([self.seed, self.epoch]).permutation(self.dataset_size)

    def global_batches(self) -> Iterator[np.ndarray]:
        """The epoch's global batches (draws the permutation, as ``iter`` does): what every
        process computes on together."""
        order = self._order()
        for step in range(len(self)):
            yield order[step * self.batch_size : (step + 1) * self.batch_size]

    def __iter__(self) -> Iterator[np.ndarray]:
        for batch in self.global_batches():
            yield batch[self.rank :: self.num_replicas]


def shard_batch(
    *arrays: np.ndarray, num_replicas: int | None = None, rank: int | None = None
) -> tuple[np.ndarray, ...]:
    """This process's strided share of a global batch: ``array[rank::num_replicas]`` of each
    array (inputs, labels). A training loop that loads and augments the whole global batch on
    every process, as one process would, then takes its share this way keeps every
    augmentation draw independent of the number of processes.

    >>> inputs, labels = np.arange(10).reshape(5, 2), np.arange(5)
    >>> shard_batch(inputs, labels, num_replicas=2, rank=0)[1]
    array([0, 2, 4])
    """
    world, this = _world(num_replicas, rank, "shard_batch")
    return tuple(array[this::world] for array in arrays)


def share_weight(share_size: int, batch_size: int, num_replicas: int | None = None) -> float:
    """The factor of this process's mean loss, n_r N / B for a share of n_r samples of a
    global batch of B on N processes, so that the processes' average gradient is the
    gradient of the mean loss over the batch: (1/N) sum_r n_r N / B L_r = (1/B) sum_i l_i.
    It is 1 when the shares are equal, and 0 for an empty share.

    >>> share_weight(2, 3, num_replicas=2), share_weight(1, 3, num_replicas=2)
    (1.3333333333333333, 0.6666666666666666)
    """
    world, _ = _world(num_replicas, 0, "share_weight")
    share_size = _check_count(share_size, "share_weight", "share_size", 0)
    batch_size = _check_count(batch_size, "share_weight", "batch_size", 1)
    if share_size > batch_size:
        raise ValueError(
            f"share_weight: share_size {share_size} is larger than the batch size {batch_size}"
        )
    return share_size * world / batch_size


def shard_range(count: int, num_replicas: int | None = None, rank: int | None = None) -> slice:
    """This process's contiguous slice of ``count`` samples for evaluation, the slices of
    consecutive ranks adjacent, their sizes differing by at most one.

    >>> [shard_range(10, num_replicas=3, rank=r) for r in range(3)]
    [slice(0, 3, None), slice(3, 6, None), slice(6, 10, None)]
    """
    world, this = _world(num_replicas, rank, "shard_range")
    count = _check_count(count, "shard_range", "count", 0)
    return slice(this * count // world, (this + 1) * count // world)
