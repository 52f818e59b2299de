"""The digit canvases of convprop.data.canvases: deterministic, disjoint splits, masks that
match the ink and boxes that match the masks."""

from __future__ import annotations

import numpy as np
import pytest

from convprop.data.canvases import (
    BACKGROUND,
    CLASSES,
    INK,
    SegmentationDataset,
    digit_pools,
    make_canvases,
)
from convprop.data.datasets import DataError


def test_canvas_i_depends_only_on_seed_split_and_i() -> None:
    few = make_canvases(5, "train", seed=3)
    many = make_canvases(12, "train", seed=3)
    np.testing.assert_array_equal(few.inputs, many.inputs[:5])
    np.testing.assert_array_equal(few.masks, many.masks[:5])
    assert few.boxes == many.boxes[:5]
    other_seed = make_canvases(5, "train", seed=4)
    assert not np.array_equal(few.inputs, other_seed.inputs)
    held_out = make_canvases(5, "test", seed=3)
    assert not np.array_equal(few.inputs, held_out.inputs)


def test_the_two_splits_draw_from_disjoint_digits() -> None:
    train, held_out = digit_pools(seed=0)
    assert len(train) == len(held_out) == 2500
    for digit in range(10):
        assert (train.labels == digit).sum() == (held_out.labels == digit).sum() == 250
    train_images = {image.tobytes() for image in train.inputs}
    assert not any(image.tobytes() in train_images for image in held_out.inputs)


def test_masks_label_exactly_the_ink_of_each_box() -> None:
    canvases = make_canvases(40, "test", seed=0)
    assert canvases.inputs.shape == (40, 1, 64, 64) and canvases.inputs.dtype == np.float32
    assert canvases.masks.shape == (40, 64, 64) and canvases.masks.dtype == np.int64
    assert canvases.classes == CLASSES and len(CLASSES) == 11
    for image, mask, boxes in zip(
        canvases.inputs[:, 0], canvases.masks, canvases.boxes, strict=True
    ):
        assert 1 <= len(boxes) <= 3
        np.testing.assert_array_equal(mask != BACKGROUND, image >= INK)
        covered = np.zeros(mask.shape, dtype=bool)
        for box in boxes:
            window = (slice(box.top, box.bottom), slice(box.left, box.right))
            assert not covered[window].any(), "digits must not overlap"
            covered[window] = True
            ink = mask[window] != BACKGROUND
            assert ink.any() and (mask[window][ink] == box.label).all()
            # the box is the ink's bounding box: every edge row and column has ink
            assert ink[0].any() and ink[-1].any() and ink[:, 0].any() and ink[:, -1].any()
        assert (mask[~covered] == BACKGROUND).all()


def test_digit_counts_follow_the_range() -> None:
    counts = [len(b) for b in make_canvases(60, "train", digits=(2, 2)).boxes]
    assert set(counts) == {2}
    counts = [len(b) for b in make_canvases(200, "train").boxes]
    assert set(counts) == {1, 2, 3}


def test_subset_keeps_boxes_and_labels_alias() -> None:
    canvases = make_canvases(6, "train")
    part = canvases.subset(np.array([4, 1]))
    assert part.boxes == [canvases.boxes[4], canvases.boxes[1]]
    np.testing.assert_array_equal(part.labels, canvases.masks[[4, 1]])
    assert len(part) == 2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"count": -1}, "count must be a non-negative integer, got -1"),
        ({"count": 2, "split": "val"}, "split must be 'train' or 'test', got 'val'"),
        ({"count": 2, "size": 20}, "size must be an integer of at least 28"),
        ({"count": 2, "digits": (3, 1)}, "digits must be a range"),
    ],
)
def test_bad_arguments_name_themselves(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make_canvases(**kwargs)


def test_dataset_refuses_images_and_masks_that_do_not_pair() -> None:
    with pytest.raises(DataError, match="3 images but 2 masks"):
        SegmentationDataset(np.zeros((3, 1, 8, 8)), np.zeros((2, 8, 8)), ["a"], "here")
    with pytest.raises(DataError, match=r"images are \(8, 8\) but masks are \(8, 9\)"):
        SegmentationDataset(np.zeros((2, 1, 8, 8)), np.zeros((2, 8, 9)), ["a"], "here")
