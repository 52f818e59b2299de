"""``DataLoader``: minibatches of an in-memory data set, shuffled reproducibly."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from convprop.data.datasets import ArrayDataset

Batch = tuple[np.ndarray, np.ndarray]


class DataLoader:
    """Iterate over ``dataset`` in batches of ``batch_size`` (inputs, labels) ndarrays.

    With ``shuffle`` each pass draws a fresh permutation from ``generator``, so the same seed
    gives the same batches; ``transform`` (e.g. augmentation) is applied to each input batch.
    """

    def __init__(
        self,
        dataset: ArrayDataset,
        batch_size: int = 1,
        shuffle: bool = False,
        drop_last: bool = False,
        generator: np.random.Generator | None = None,
        transform: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
            raise ValueError(f"DataLoader: batch_size must be a positive int, got {batch_size!r}")
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.generator = generator if generator is not None else np.random.default_rng()
        self.transform = transform

    def __len__(self) -> int:
        full, rest = divmod(len(self.dataset), self.batch_size)
        return full if self.drop_last or rest == 0 else full + 1

    def __iter__(self) -> Iterator[Batch]:
        count = len(self.dataset)
        order = self.generator.permutation(count) if self.shuffle else np.arange(count)
        for batch in range(len(self)):
            indices = order[batch * self.batch_size : (batch + 1) * self.batch_size]
            inputs, labels = self.dataset[indices]
            if self.transform is not None:
                inputs = self.transform(inputs)
            yield inputs, labels
