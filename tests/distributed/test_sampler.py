"""The shard rules: every process's share of each global batch, their union the batch."""

from __future__ import annotations

import numpy as np
import pytest

from convprop.data import ArrayDataset, DataLoader
from convprop.distributed import DistributedSampler, shard_batch, shard_range


@pytest.mark.parametrize("world", [1, 2, 3, 4])
@pytest.mark.parametrize("samples", [0, 1, 11, 24, 25])
def test_the_shares_of_a_batch_are_the_loaders_batch(world: int, samples: int) -> None:
    batch_size = 4 * world if world != 3 else 6
    loader_batches = [
        labels
        for _, labels in DataLoader(
            ArrayDataset(np.zeros((samples, 1)), np.arange(samples)),
            batch_size,
            shuffle=True,
            generator=np.random.default_rng(5),
        )
    ]
    shares = [
        list(
            DistributedSampler(samples, batch_size, world, rank, generator=np.random.default_rng(5))
        )
        for rank in range(world)
    ]
    assert all(len(rank_shares) == len(loader_batches) for rank_shares in shares)
    for step, batch in enumerate(loader_batches):
        step_shares = [rank_shares[step] for rank_shares in shares]
        # strided: rank r takes positions r, r + N, ... of the global batch
        for rank, share in enumerate(step_shares):
            np.testing.assert_array_equal(share, batch[rank::world])
        sizes = [len(share) for share in step_shares]
        assert max(sizes) - min(sizes) <= 1
    if world == 1:  # a world of one is the loader, batch for batch
        for share, batch in zip(shares[0], loader_batches, strict=True):
            np.testing.assert_array_equal(share, batch)


def test_seeded_epochs_as_torch_distributed_sampler() -> None:
    sampler = DistributedSampler(10, 2, num_replicas=2, rank=0, seed=3)
    first = np.concatenate(list(sampler))
    np.testing.assert_array_equal(first, np.concatenate(list(sampler)))  # same epoch, same order
    sampler.set_epoch(1)
    assert not np.array_equal(first, np.concatenate(list(sampler)))
    unshuffled = DistributedSampler(10, 4, num_replicas=2, rank=1, shuffle=False, drop_last=True)
    assert [share.tolist() for share in unshuffled] == [[1, 3], [5, 7]]
    assert len(unshuffled) == 2


def test_a_batch_size_that_does_not_divide_is_refused_naming_both() -> None:
    with pytest.raises(
        ValueError, match="batch size 10 is not divisible by the number of processes 4"
    ):
        DistributedSampler(100, 10, num_replicas=4, rank=0)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"num_replicas": 0, "rank": 0}, "num_replicas must be a positive int, got 0"),
        ({"num_replicas": 2, "rank": 2}, r"rank must be below num_replicas \(2\), got 2"),
        ({"num_replicas": 2, "rank": -1}, "rank must be an int >= 0, got -1"),
    ],
)
def test_bad_ranks_are_refused(arguments: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DistributedSampler(10, 2, **arguments)


def test_without_a_group_the_world_is_one() -> None:
    sampler = DistributedSampler(5, 2, shuffle=False)
    assert (sampler.num_replicas, sampler.rank) == (1, 0)
    inputs, labels = shard_batch(np.arange(6).reshape(3, 2), np.arange(3))
    np.testing.assert_array_equal(labels, [0, 1, 2])


@pytest.mark.parametrize("world", [1, 2, 3, 7])
@pytest.mark.parametrize("count", [0, 5, 103])
def test_evaluation_slices_cover_the_set_in_order(world: int, count: int) -> None:
    slices = [shard_range(count, world, rank) for rank in range(world)]
    np.testing.assert_array_equal(
        np.concatenate([np.arange(count)[s] for s in slices]), np.arange(count)
    )
    sizes = [s.stop - s.start for s in slices]
    assert max(sizes) - min(sizes) <= 1
