"""The run's classes and split: named classes by name, unnamed labels exactly 0..K-1."""

from __future__ import annotations

import numpy as np
import pytest

from convprop.data import ArrayDataset, DataError
from convprop.training import TrainConfig, prepare_data, resolve_classes


def dataset(labels: list[int], classes: list[str] | None = None, source: str = "d") -> ArrayDataset:
    inputs = np.zeros((len(labels), 1, 16, 16), np.float32)
    return ArrayDataset(inputs, np.array(labels), list(classes or []), source)


def test_named_classes_come_from_the_data() -> None:
    assert resolve_classes(dataset([0, 1, 1], ["cat", "dog"]), None, None) == ["cat", "dog"]
    with pytest.raises(DataError, match="names 2 classes but --num-classes is 3"):
        resolve_classes(dataset([0, 1], ["cat", "dog"]), None, 3)


def test_unnamed_labels_must_be_every_class_from_zero() -> None:
    assert resolve_classes(dataset([2, 0, 1, 1]), None, None) == ["0", "1", "2"]
    with pytest.raises(
        DataError, match=r"labels must be 0..K-1 for the K = 3 classes found, got 0, 1, 99"
    ):
        resolve_classes(dataset([0, 1, 99]), None, None)
    with pytest.raises(DataError, match="got 1, 2"):
        resolve_classes(dataset([1, 2]), None, None)
    assert resolve_classes(dataset([0, 1, 99]), None, 100)[-1] == "99"
    with pytest.raises(DataError, match="label 99 is outside --num-classes 50"):
        resolve_classes(dataset([0, 1, 99]), None, 50)
    # A separate unnamed test set counts: its labels complete the classes.
    assert resolve_classes(dataset([0, 1]), dataset([2, 0]), None) == ["0", "1", "2"]


def test_relabelled_finds_classes_by_name() -> None:
    folders = dataset([0, 0, 1], ["3", "7"])
    digits = [str(i) for i in range(10)]
    assert folders.relabelled(digits).labels.tolist() == [3, 3, 7]
    with pytest.raises(DataError, match=r"class\(es\) 'cat' are not among the 10 classes"):
        dataset([0, 1], ["3", "cat"]).relabelled(digits)
    with pytest.raises(DataError, match="label 12 is outside the 10 classes"):
        dataset([0, 12]).relabelled(digits)


def test_too_few_samples_to_split_names_the_sizes() -> None:
    config = TrainConfig(data="mnist-5k", test_fraction=0.0001)
    with pytest.raises(
        DataError, match="5000 samples are too few to split: a test fraction of 0.0001"
    ):
        prepare_data(config)


def test_fingerprint_follows_the_data() -> None:
    data = prepare_data(TrainConfig(limit=40))
    same = prepare_data(TrainConfig(limit=40))
    other = prepare_data(TrainConfig(limit=40, seed=1))
    assert data.fingerprint() == same.fingerprint() != other.fingerprint()
    assert data.fingerprint().startswith("sha256:")
