"""The data of a run: loaded, labelled, split, limited and shaped as its configuration asks.

The classes are decided here, once: the names the data gives (class folders, a ``.npz``'s
``classes``, the bundled digits), else ``--num-classes`` when the user says it, else the
labels found, which must then be exactly 0..K-1 (a stray label 99 would otherwise make a
100-class model). A separate test set is relabelled by class name, never by position.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

import numpy as np

from convprop.data import ArrayDataset, DataError, channel_statistics, stratified_split
from convprop.data.lazy import LazyArray, LazyDataset, RunningStatistics, iter_decoded, load_data
from convprop.data.masks import load_segmentation
from convprop.training.config import TrainConfig
from convprop.training.registry import SEQUENCE_MODELS


@dataclass
class PreparedData:
    train: ArrayDataset
    test: ArrayDataset
    input_shape: tuple[int, ...]
    classes: list[str]
    mean: list[float]
    std: list[float]
    as_sequence: bool
    image_shape: tuple[int, ...] | None  # (C, H, W) of images read as sequences by a TDNN
    # Lazy data's fingerprint, computed once (by prepare_data, in the pass that also gives
    # the statistics): decoding every image again at each epoch's commit would be slow.
    known_fingerprint: str | None = field(default=None, repr=False, compare=False)

    def fingerprint(self) -> str:
        """A digest of every input, label and class name, train and test: resuming a run
        on data that changed since it started is refused by comparing these."""
        if self.known_fingerprint is not None:
            return self.known_fingerprint
        return data_fingerprint(self.train, self.test, self.classes)


def data_fingerprint(
    train: ArrayDataset,
    test: ArrayDataset,
    classes: list[str],
    num_workers: int = 0,
    observe_train: Callable[[np.ndarray], None] | None = None,
) -> str:
    """The digest of :meth:`PreparedData.fingerprint`. Lazy inputs are decoded and hashed a
    chunk at a time (in ``num_workers`` processes), which gives the digest of the array the
    in-memory path holds; ``observe_train`` sees each decoded chunk of the training inputs."""
    digest = hashlib.sha256()
    for part in (train, test):
        digest.update(str((part.inputs.shape, part.inputs.dtype.str)).encode())
        if isinstance(part.inputs, LazyArray):
            for chunk in iter_decoded(part.inputs, num_workers):
                digest.update(np.ascontiguousarray(chunk).data)
                if observe_train is not None and part is train:
                    observe_train(chunk)
        else:
            digest.update(np.ascontiguousarray(part.inputs).data)
        digest.update(np.ascontiguousarray(part.labels, dtype="<i8").data)
    digest.update("\0".join(classes).encode())
    return "sha256:" + digest.hexdigest()


def resolve_classes(
    train: ArrayDataset, test: ArrayDataset | None, num_classes: int | None
) -> list[str]:
    """The class names of a run (see the module docstring), or a DataError saying why the
    labels do not define them."""
    if train.named:
        if num_classes is not None and num_classes != len(train.classes):
            raise DataError(
                f"{train.source}: names {len(train.classes)} classes but --num-classes is "
                f"{num_classes}"
            )
        return list(train.classes)
    if num_classes is not None:
        for part in (train, test):
            if part is not None and int(part.labels.max()) >= num_classes:
                raise DataError(
                    f"{part.source}: label {int(part.labels.max())} is outside --num-classes "
                    f"{num_classes} (labels 0..{num_classes - 1})"
                )
        return [str(i) for i in range(num_classes)]
    found = np.unique(train.labels)
    if test is not None and not test.named:
        found = np.union1d(found, test.labels)
    if not np.array_equal(found, np.arange(len(found))):
        shown = ", ".join(str(int(v)) for v in found[:8]) + (", ..." if len(found) > 8 else "")
        raise DataError(
            f"{train.source}: labels must be 0..K-1 for the K = {len(found)} classes found, got "
            f"{shown}; relabel them, or pass --num-classes to say how many classes there are"
        )
    return [str(i) for i in range(len(found))]


def prepare_data(config: TrainConfig) -> PreparedData:
    """Load, label, split, limit and shape the data the way ``config`` asks."""
    if config.task == "segment":
        return prepare_segmentation_data(config)
    resize = (config.resize[0], config.resize[1]) if config.resize else None
    # An image folder or .npy directory is read lazily with --stream, or when too big.
    data, given_test = load_data(config.data, resize, config.stream)
    if config.test_data is not None:
        given_test, _ = load_data(config.test_data, resize, config.stream)
    classes = resolve_classes(data, given_test, config.num_classes)
    data = data.relabelled(classes)
    if given_test is None:
        train_index, test_index = stratified_split(data.labels, config.test_fraction, config.seed)
        train, test = data.subset(train_index), data.subset(test_index)
        if len(test) == 0 or len(train) == 0:
            raise DataError(
                f"{config.data}: {len(data)} samples are too few to split: a test fraction of "
                f"{config.test_fraction} leaves {len(train)} for training and {len(test)} for "
                "testing; use more data, another --test-fraction, or --test-data"
            )
    else:
        train, test = data, given_test.relabelled(classes)
    if train.inputs.shape[1:] != test.inputs.shape[1:]:
        raise DataError(
            f"{config.test_data or config.data}: test inputs have shape {test.inputs.shape[1:]} "
            f"but training inputs have {train.inputs.shape[1:]}"
        )
    if len(classes) < 2:
        raise DataError(f"{config.data}: need at least two classes, found {len(classes)}")
    if config.limit is not None:
        rng = np.random.default_rng([config.seed, 7])
        train = train.subset(np.sort(rng.permutation(len(train))[: config.limit]))
        test_count = max(10, int(round(config.limit * config.test_fraction)))
        test = test.subset(np.sort(rng.permutation(len(test))[:test_count]))
    sequence_model = config.model in SEQUENCE_MODELS
    as_sequence = sequence_model and not train.is_sequence
    image_shape = tuple(train.inputs.shape[1:]) if not train.is_sequence else None
    if as_sequence:
        # A TDNN reads an image as a sequence over its columns, each column's pixels (of every
        # channel) being one frame's features.
        train, test = image_as_sequence(train), image_as_sequence(test)
    elif not sequence_model and train.is_sequence:
        raise DataError(
            f"{config.data}: holds 1-D sequences (N, C, L); only --model tdnn accepts them"
        )
    fingerprint, running = None, None
    if isinstance(train, LazyDataset) or isinstance(test, LazyDataset):
        # One pass decodes everything: the fingerprint, and the statistics on the way (equal
        # to the in-memory ones to float64 rounding; see RunningStatistics).
        running = RunningStatistics() if isinstance(train, LazyDataset) else None
        observe = running.update if running is not None else None
        fingerprint = data_fingerprint(train, test, classes, config.num_workers, observe)
    mean, std = running.result() if running is not None else channel_statistics(train.inputs)
    return PreparedData(
        train,
        test,
        tuple(train.inputs.shape[1:]),
        classes,
        mean,
        std,
        as_sequence,
        image_shape,
        fingerprint,
    )


def image_as_sequence(data: ArrayDataset) -> ArrayDataset:
    """(N, C, H, W) images as (N, C*H, W) sequences: one frame per column."""
    if isinstance(data, LazyDataset):
        return data.as_sequence()
    count, channels, height, width = data.inputs.shape
    inputs = np.ascontiguousarray(data.inputs.reshape(count, channels * height, width))
    return ArrayDataset(inputs, data.labels, data.classes, data.source, data.named)


def prepare_segmentation_data(config: TrainConfig) -> PreparedData:
    """The images and masks of a segmentation run: the source's own held-out part (the
    canvases' held-out digits), else ``--test-data``, else a random ``--test-fraction`` of the
    samples; class names must agree between the two parts."""
    resize = (config.resize[0], config.resize[1]) if config.resize else None
    data, test = load_segmentation(config.data, resize)
    if config.test_data is not None:
        test, _ = load_segmentation(config.test_data, resize)
    if config.num_classes is not None and config.num_classes != len(data.classes):
        raise DataError(
            f"{data.source}: has {len(data.classes)} classes but --num-classes is "
            f"{config.num_classes}"
        )
    if test is None:
        order = np.random.default_rng([config.seed, 8]).permutation(len(data))
        test_count = int(round(len(data) * config.test_fraction))
        if test_count == 0 or test_count == len(data):
            raise DataError(
                f"{config.data}: {len(data)} samples are too few to split: a test fraction of "
                f"{config.test_fraction} leaves {len(data) - test_count} for training and "
                f"{test_count} for testing; use more data, another --test-fraction, or --test-data"
            )
        data, test = (
            data.subset(np.sort(order[test_count:])),
            data.subset(np.sort(order[:test_count])),
        )
    elif test.classes != data.classes:
        raise DataError(
            f"{test.source}: names the classes {', '.join(test.classes)} but the training data "
            f"names {', '.join(data.classes)}"
        )
    if data.inputs.shape[1] != test.inputs.shape[1]:
        raise DataError(
            f"{test.source}: images have {test.inputs.shape[1]} channels but the training "
            f"images have {data.inputs.shape[1]}"
        )
    if config.limit is not None:
        rng = np.random.default_rng([config.seed, 7])
        data = data.subset(np.sort(rng.permutation(len(data))[: config.limit]))
        test_count = max(10, int(round(config.limit * config.test_fraction)))
        test = test.subset(np.sort(rng.permutation(len(test))[:test_count]))
    mean, std = channel_statistics(data.inputs)
    shape = tuple(data.inputs.shape[1:])
    # Typed as classification data: a SegmentationDataset has the same inputs, labels (its
    # masks), subset and source, which is all that training and checkpoints read.
    return PreparedData(
        cast(ArrayDataset, data),
        cast(ArrayDataset, test),
        shape,
        list(data.classes),
        mean,
        std,
        False,
        shape,
    )
