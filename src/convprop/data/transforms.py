"""Batch transforms: normalisation and the augmentations behind deck 004's invariances.

Deck 004 asks for invariance to shift, scale, rotation and deformation. A CNN gets shift
invariance partly from weight sharing and pooling; the rest is taught by showing it shifted,
scaled, rotated and elastically deformed copies of the training images. Every random
transform draws from its own seeded ``numpy.random.Generator``, so the same seed gives the
same augmented batches. All transforms take and return float32 (N, C, H, W) batches.

The random transforms draw every image's parameters for the whole batch, then transform each
image on its own, so :meth:`RandomAffine.share` (and ``ElasticDeformation.share``,
``Compose.share``) can make the same draws and transform only some of the images: what a
process of a distributed run does with its share of the global batch, getting exactly the
images one process would, at 1/N of the cost.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

Transform = Callable[[np.ndarray], np.ndarray]
AUGMENTATIONS = ("shift", "scale", "rotate", "elastic")


class Compose:
    """Apply transforms in order."""

    def __init__(self, transforms: Sequence[Transform]) -> None:
        self.transforms = list(transforms)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        for transform in self.transforms:
            batch = transform(batch)
        return batch

    def share(self, images: np.ndarray, count: int, positions: slice) -> np.ndarray:
        """``self(batch)[positions]`` for the ``images = batch[positions]`` of a batch of
        ``count``, transforming only those (every transform must have ``share``)."""
        for transform in self.transforms:
            share = getattr(transform, "share", None)
            if share is None:
                raise TypeError(
                    f"Compose.share: {type(transform).__name__} cannot transform part of a batch "
                    "(it has no share method)"
                )
            images = share(images, count, positions)
        return images


class Normalize:
    """(x - mean[c]) / std[c] per channel."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)
        if np.any(self.std <= 0):
            raise ValueError(f"Normalize: std must be positive, got {list(std)}")

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        shape = (1, -1) + (1,) * (batch.ndim - 2)
        return ((batch - self.mean.reshape(shape)) / self.std.reshape(shape)).astype(np.float32)


def channel_statistics(inputs: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation over a data set (for ``Normalize``)."""
    axes = (0,) + tuple(range(2, inputs.ndim))
    mean = inputs.mean(axis=axes, dtype=np.float64)
    std = inputs.std(axis=axes, dtype=np.float64)
    return [float(m) for m in mean], [float(max(s, 1e-8)) for s in std]


class RandomAffine:
    """Random shift (pixels), scale and rotation (degrees) of each image, bilinear, zero fill."""

    def __init__(
        self,
        max_shift: float = 0.0,
        scale: tuple[float, float] = (1.0, 1.0),
        max_rotation: float = 0.0,
        generator: np.random.Generator | None = None,
    ) -> None:
        if max_shift < 0 or max_rotation < 0 or not 0 < scale[0] <= scale[1]:
            raise ValueError(
                f"RandomAffine: need max_shift >= 0, max_rotation >= 0 and 0 < scale[0] <= "
                f"scale[1], got {max_shift}, {max_rotation}, {scale}"
            )
        self.max_shift = max_shift
        self.scale = scale
        self.max_rotation = max_rotation
        self.generator = generator if generator is not None else np.random.default_rng()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.share(batch, len(batch), slice(None))

    def share(self, images: np.ndarray, count: int, positions: slice) -> np.ndarray:
        """Draw the parameters of a batch of ``count`` images, as a call on it would, and
        transform the ``images`` at ``positions`` of it only: ``self(batch)[positions]``
        for ``images = batch[positions]``, bitwise."""
        rng = self.generator
        angle = np.radians(rng.uniform(-self.max_rotation, self.max_rotation, count))
        zoom = rng.uniform(self.scale[0], self.scale[1], count)
        shift = rng.uniform(-self.max_shift, self.max_shift, (count, 2))
        if not len(images):
            return images
        # The coefficients of the whole batch, then the share's: the same numbers, whatever
        # the share (a vectorised cosine need not round alike at every position).
        cos, sin = np.cos(angle) / zoom, np.sin(angle) / zoom
        return _affine_resample(images, cos[positions], sin[positions], shift[positions])


def affine_sample(
    batch: np.ndarray, angle: np.ndarray, zoom: np.ndarray, shift: np.ndarray
) -> np.ndarray:
    """Each image ``n`` of an (N, C, H, W) batch rotated by ``angle[n]`` radians about its
    centre, scaled by ``zoom[n]`` and moved by ``shift[n] = (rows, columns)`` pixels; bilinear,
    zero fill.

    Output pixel p reads the source at R(-angle) (p - centre - shift) / zoom + centre, with
    rows pointing down: a positive angle turns the image clockwise as it is displayed, and an
    angle of 90 degrees is ``np.rot90(image, -1)``. A whole-pixel shift at angle 0 and zoom 1
    reads exact pixels (a translation with zero fill).
    """
    return _affine_resample(batch, np.cos(angle) / zoom, np.sin(angle) / zoom, shift)


def _affine_resample(
    batch: np.ndarray, cos: np.ndarray, sin: np.ndarray, shift: np.ndarray
) -> np.ndarray:
    """``affine_sample`` given cos(angle) / zoom and sin(angle) / zoom per image."""
    _, _, height, width = batch.shape
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    centre_row, centre_col = (height - 1) / 2, (width - 1) / 2
    rel_row = rows[None] - centre_row - shift[:, 0, None, None]
    rel_col = cols[None] - centre_col - shift[:, 1, None, None]
    cos, sin = cos[:, None, None], sin[:, None, None]
    source_row = cos * rel_row - sin * rel_col + centre_row
    source_col = sin * rel_row + cos * rel_col + centre_col
    return bilinear_sample(batch, source_row, source_col)


class ElasticDeformation:
    """Simard et al. (2003): displace every pixel by a smooth random field (Gaussian-filtered
    uniform noise of width ``sigma``, scaled by ``alpha``), sampled bilinearly."""

    def __init__(
        self, alpha: float = 8.0, sigma: float = 3.0, generator: np.random.Generator | None = None
    ) -> None:
        if alpha < 0 or sigma <= 0:
            raise ValueError(
                f"ElasticDeformation: need alpha >= 0 and sigma > 0, got {alpha}, {sigma}"
            )
        self.alpha = alpha
        self.sigma = sigma
        self.generator = generator if generator is not None else np.random.default_rng()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.share(batch, len(batch), slice(None))

    def share(self, images: np.ndarray, count: int, positions: slice) -> np.ndarray:
        """``self(batch)[positions]`` for the ``images = batch[positions]`` of a batch of
        ``count``, bitwise: the noise of the whole batch drawn, the share's images deformed."""
        _, _, height, width = images.shape
        noise = self.generator.uniform(-1, 1, (2, count, height, width))
        if not len(images):
            return images
        return elastic_sample(images, noise[:, positions], self.alpha, self.sigma)


def elastic_sample(batch: np.ndarray, noise: np.ndarray, alpha: float, sigma: float) -> np.ndarray:
    """An (N, C, H, W) batch displaced by the smooth field ``alpha`` * (``noise`` blurred by a
    Gaussian of width ``sigma``); ``noise`` is (2, N, H, W), row and column displacements
    before smoothing (uniform in [-1, 1] for Simard et al.'s deformation)."""
    _, _, height, width = batch.shape
    field = _gaussian_blur(noise, sigma) * alpha
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    return bilinear_sample(batch, rows[None] + field[0], cols[None] + field[1])


def _gaussian_blur(maps: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian filter over the last two axes (zero padding at the borders)."""
    radius = max(1, int(math.ceil(3 * sigma)))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps /= taps.sum()
    for axis in (-2, -1):
        moved = np.moveaxis(maps, axis, -1)
        padded = np.pad(moved, [(0, 0)] * (moved.ndim - 1) + [(radius, radius)])
        size = moved.shape[-1]
        blurred = sum(weight * padded[..., tap : tap + size] for tap, weight in enumerate(taps))
        maps = np.moveaxis(blurred, -1, axis)
    return maps


def bilinear_sample(
    batch: np.ndarray, source_row: np.ndarray, source_col: np.ndarray
) -> np.ndarray:
    """out[n, c, i, j] = batch[n, c] interpolated at (source_row[n, i, j], source_col[n, i, j]);
    points outside the image read zeros."""
    count, channels, height, width = batch.shape
    source_row, source_col = np.broadcast_arrays(source_row, source_col)
    out_shape = source_row.shape[-2:]
    source_row = np.broadcast_to(source_row, (count, *out_shape))
    source_col = np.broadcast_to(source_col, (count, *out_shape))
    row0, col0 = np.floor(source_row), np.floor(source_col)
    row_weight, col_weight = source_row - row0, source_col - col0
    row0, col0 = row0.astype(np.int64), col0.astype(np.int64)
    flat = batch.reshape(count, channels, height * width)
    points = out_shape[0] * out_shape[1]
    result = np.zeros((count, channels, points), dtype=np.float64)
    for d_row, d_col, weight in (
        (0, 0, (1 - row_weight) * (1 - col_weight)),
        (0, 1, (1 - row_weight) * col_weight),
        (1, 0, row_weight * (1 - col_weight)),
        (1, 1, row_weight * col_weight),
    ):
        r, c = row0 + d_row, col0 + d_col
        inside = (r >= 0) & (r < height) & (c >= 0) & (c < width)
        index = (np.clip(r, 0, height - 1) * width + np.clip(c, 0, width - 1)).reshape(count, 1, -1)
        values = np.take_along_axis(flat, np.broadcast_to(index, (count, channels, points)), 2)
        result += values * (weight * inside).reshape(count, 1, -1)
    return result.reshape(count, channels, *out_shape).astype(batch.dtype)


def build_augmentation(names: Sequence[str], generator: np.random.Generator) -> Compose | None:
    """The augmentation for a list of names from ``AUGMENTATIONS`` (``all`` selects every one).

    Shift of up to 2 pixels, scale 0.9-1.1, rotation up to 10 degrees, elastic alpha 8 sigma 3:
    mild enough that a 28x28 digit stays readable.
    """
    chosen = set(AUGMENTATIONS) if "all" in names else set(names)
    unknown = chosen - set(AUGMENTATIONS)
    if unknown:
        raise ValueError(
            f"augment: unknown augmentation(s) {', '.join(sorted(unknown))} (choose from "
            f"{', '.join(AUGMENTATIONS)}, or all)"
        )
    transforms: list[Transform] = []
    if chosen & {"shift", "scale", "rotate"}:
        transforms.append(
            RandomAffine(
                max_shift=2.0 if "shift" in chosen else 0.0,
                scale=(0.9, 1.1) if "scale" in chosen else (1.0, 1.0),
                max_rotation=10.0 if "rotate" in chosen else 0.0,
                generator=generator,
            )
        )
    if "elastic" in chosen:
        transforms.append(ElasticDeformation(generator=generator))
    return Compose(transforms) if transforms else None
