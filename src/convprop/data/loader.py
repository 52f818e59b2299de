"""``DataLoader``: minibatches of a data set, shuffled reproducibly, optionally decoded ahead
in worker processes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from convprop.data.datasets import ArrayDataset

Batch = tuple[np.ndarray, np.ndarray]


class DataLoader:
    """Iterate over ``dataset`` in batches of ``batch_size`` (inputs, labels) ndarrays.

    With ``shuffle`` each pass draws a fresh permutation from ``generator``, so the same seed
    gives the same batches; ``transform`` (e.g. augmentation) is applied to each input batch.

    With ``num_workers`` > 0, ``num_workers`` processes compute ``dataset[indices]`` (for a
    :class:`~convprop.data.lazy.LazyDataset`: read and decode its images) while the caller
    trains, each up to ``prefetch_factor`` batches ahead; the batches, and their order, are
    the same as with ``num_workers=0``, since the permutation is drawn and ``transform`` is
    applied here, in the caller's process. The workers start with each pass and stop at its
    end, or live as long as the loader with ``persistent_workers`` (then :meth:`close` it,
    or let it be collected). Each worker holds a pickled copy of ``dataset``: small for a
    lazy data set, the whole array for an in-memory one. See :mod:`convprop.data.workers`.
    """

    def __init__(
        self,
        dataset: ArrayDataset,
        batch_size: int = 1,
        shuffle: bool = False,
        drop_last: bool = False,
        generator: np.random.Generator | None = None,
        transform: Callable[[np.ndarray], np.ndarray] | None = None,
        num_workers: int = 0,
        prefetch_factor: int = 2,
        persistent_workers: bool = False,
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
            raise ValueError(f"DataLoader: batch_size must be a positive int, got {batch_size!r}")
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError(
                f"DataLoader: num_workers must be a non-negative int, got {num_workers!r}"
            )
        if (
            isinstance(prefetch_factor, bool)
            or not isinstance(prefetch_factor, int)
            or prefetch_factor < 1
        ):
            raise ValueError(
                f"DataLoader: prefetch_factor must be a positive int, got {prefetch_factor!r}"
            )
        if persistent_workers and num_workers == 0:
            raise ValueError("DataLoader: persistent_workers needs num_workers > 0")
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.generator = generator if generator is not None else np.random.default_rng()
        self.transform = transform
        self.num_workers = num_workers
        self.prefetch_factor = prefetch_factor
        self.persistent_workers = persistent_workers
        self._pool: Any = None

    def __len__(self) -> int:
        full, rest = divmod(len(self.dataset), self.batch_size)
        return full if self.drop_last or rest == 0 else full + 1

    def __iter__(self) -> Iterator[Batch]:
        count = len(self.dataset)
        order = self.generator.permutation(count) if self.shuffle else np.arange(count)
        batches = (
            order[batch * self.batch_size : (batch + 1) * self.batch_size]
            for batch in range(len(self))
        )
        if self.num_workers == 0:
            loaded: Iterator[Batch] = (self.dataset[indices] for indices in batches)
            for inputs, labels in loaded:
                yield self._transformed(inputs), labels
            return
        pool = self._workers()
        try:
            for inputs, labels in pool.map(batches):
                yield self._transformed(inputs), labels
        finally:
            if not self.persistent_workers:
                self.close()

    def close(self) -> None:
        """Stop the worker processes, if any are running."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def _workers(self) -> Any:
        from convprop.data.workers import WorkerPool

        if self._pool is None or self._pool.closed:
            self._pool = WorkerPool(self.dataset, self.num_workers, self.prefetch_factor)
        return self._pool

    def _transformed(self, inputs: np.ndarray) -> np.ndarray:
        return self.transform(inputs) if self.transform is not None else inputs
