"""Augmentations: exact on known cases, seeded, and label-preserving in size and range."""

from __future__ import annotations

import numpy as np
import pytest

from convprop.data import (
    ElasticDeformation,
    Normalize,
    RandomAffine,
    build_augmentation,
    channel_statistics,
)
from convprop.data.transforms import bilinear_sample


def test_bilinear_sample_identity_and_integer_shift() -> None:
    batch = np.random.default_rng(0).random((2, 3, 5, 6)).astype(np.float32)
    rows, cols = np.meshgrid(np.arange(5), np.arange(6), indexing="ij")
    np.testing.assert_allclose(bilinear_sample(batch, rows[None] + 0.0, cols[None] + 0.0), batch)
    shifted = bilinear_sample(batch, rows[None] - 1.0, cols[None] + 0.0)
    np.testing.assert_allclose(shifted[:, :, 1:], batch[:, :, :-1], rtol=1e-6)
    assert np.all(shifted[:, :, 0] == 0)


def test_half_pixel_sample_is_the_average() -> None:
    batch = np.arange(4, dtype=np.float32).reshape(1, 1, 2, 2)
    out = bilinear_sample(batch, np.array([[[0.5]]]), np.array([[[0.5]]]))
    np.testing.assert_allclose(out, [[[[1.5]]]])


def test_affine_without_randomness_is_identity_and_rotation_of_180_flips() -> None:
    batch = np.random.default_rng(1).random((2, 1, 7, 7)).astype(np.float32)
    np.testing.assert_allclose(RandomAffine()(batch), batch, atol=1e-6)

    rotate = RandomAffine(max_rotation=180.0, generator=_ConstantGenerator(180.0))
    np.testing.assert_allclose(rotate(batch), batch[:, :, ::-1, ::-1], atol=1e-5)


class _ConstantGenerator:
    """Returns the upper bound for every uniform draw (rotation = +max, others neutral)."""

    def __init__(self, angle: float) -> None:
        self.angle = angle

    def uniform(self, low, high, size):
        if np.isscalar(low) and low == -self.angle:
            return np.full(size, self.angle)
        if np.isscalar(low) and low == high:
            return np.full(size, low)
        return np.zeros(size)


def test_augmentations_are_seeded_and_keep_shape_dtype() -> None:
    batch = np.random.default_rng(2).random((4, 1, 12, 12)).astype(np.float32)
    first = build_augmentation(["all"], np.random.default_rng(5))(batch)
    second = build_augmentation(["all"], np.random.default_rng(5))(batch)
    np.testing.assert_array_equal(first, second)
    assert first.shape == batch.shape and first.dtype == np.float32
    assert not np.allclose(first, batch)
    assert build_augmentation([], np.random.default_rng(0)) is None
    with pytest.raises(ValueError, match="unknown augmentation\\(s\\) flip"):
        build_augmentation(["flip"], np.random.default_rng(0))


def test_elastic_with_zero_alpha_is_identity() -> None:
    batch = np.random.default_rng(3).random((2, 2, 6, 6)).astype(np.float32)
    np.testing.assert_allclose(ElasticDeformation(alpha=0.0)(batch), batch, atol=1e-6)


def test_normalize_with_data_statistics() -> None:
    inputs = np.random.default_rng(4).random((50, 3, 4, 4)).astype(np.float32) * 3 + 1
    mean, std = channel_statistics(inputs)
    out = Normalize(mean, std)(inputs)
    np.testing.assert_allclose(out.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=(0, 2, 3)), 1, atol=1e-4)
    with pytest.raises(ValueError, match="std must be positive"):
        Normalize([0.0], [0.0])


@pytest.mark.parametrize("world", [1, 2, 3, 11])
def test_a_share_of_the_batch_is_augmented_as_in_the_whole(world: int) -> None:
    """What a process of a distributed run does: the draws of the whole batch, the images of
    its strided share only, bitwise those of one process augmenting the whole batch; every
    process's generator ends in the same state (an empty share included)."""
    batch = np.random.default_rng(0).random((10, 2, 9, 8)).astype(np.float32)
    whole = build_augmentation(["all"], np.random.default_rng(5))
    assert whole is not None
    expected = whole(batch)
    for rank in range(world):
        generator = np.random.default_rng(5)
        part = build_augmentation(["all"], generator)
        assert part is not None
        positions = slice(rank, None, world)
        np.testing.assert_array_equal(
            part.share(batch[positions], 10, positions), expected[positions]
        )
        assert generator.bit_generator.state == whole.transforms[0].generator.bit_generator.state
