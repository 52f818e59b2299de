"""Canvases of several digits with pixel-wise labels: data for segmentation and localization.

The recipe of M2NIST: each canvas is a blank ``size`` x ``size`` image on which one to three
digits from the bundled MNIST subset are pasted at random places where they do not touch; the
mask gives every pixel the class of the digit whose ink covers it (``0``-``9``) or
``BACKGROUND`` (10). A pixel is ink when its intensity is at least ``INK`` (half the scale),
the same rule for every digit, so the mask is a function of the image and the digit's class.

Canvases are deterministic: canvas ``i`` of a split depends only on the seed, the split and
``i`` (not on how many canvases are made), and the training and held-out splits draw from
disjoint halves of the digits (a stratified split of the 5,000), so a held-out canvas never
shows a digit seen in training.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from convprop.data.datasets import ArrayDataset, DataError, load_mnist_5k, stratified_split

BACKGROUND = 10
CLASSES = [*(str(i) for i in range(10)), "background"]
INK = 0.5
IGNORE = 255  # a mask value that no loss or metric counts (the mask folder format's convention)


@dataclass(frozen=True)
class Box:
    """Where one digit lies on a canvas: its class and its ink's bounding box, in pixels,
    ``top``/``left`` inclusive and ``bottom``/``right`` exclusive."""

    label: int
    top: int
    left: int
    bottom: int
    right: int


@dataclass
class SegmentationDataset:
    """Images with a class index per pixel.

    Attributes:
        inputs: float32 (N, C, H, W) images in [0, 1].
        masks: int64 (N, H, W) class indices in [0, len(classes)), or ``IGNORE``.
        classes: the class names, index i naming mask value i.
        source: where the data came from (shown in messages and saved with a run).
        boxes: for generated canvases, each canvas's digits (empty for a user's folder).
        names: for a folder, each image's file name stem (empty for generated canvases).
    """

    inputs: np.ndarray
    masks: np.ndarray
    classes: list[str]
    source: str = ""
    boxes: list[list[Box]] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    named: bool = True  # False: the classes are only the indices found ("0", "1", ...)

    def __post_init__(self) -> None:
        if len(self.inputs) != len(self.masks):
            raise DataError(
                f"{self.source or 'data'}: {len(self.inputs)} images but {len(self.masks)} masks"
            )
        if self.inputs.shape[2:] != self.masks.shape[1:]:
            raise DataError(
                f"{self.source or 'data'}: images are {self.inputs.shape[2:]} but masks are "
                f"{self.masks.shape[1:]}"
            )

    def __len__(self) -> int:
        return len(self.masks)

    def __getitem__(self, index: int | slice | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.inputs[index], self.masks[index]

    @property
    def labels(self) -> np.ndarray:
        """The masks, under the name a classification data set gives its targets."""
        return self.masks

    def subset(self, indices: np.ndarray) -> SegmentationDataset:
        return SegmentationDataset(
            self.inputs[indices],
            self.masks[indices],
            list(self.classes),
            self.source,
            [self.boxes[i] for i in indices] if self.boxes else [],
            [self.names[i] for i in indices] if self.names else [],
            self.named,
        )

    def relabelled(self, classes: list[str]) -> SegmentationDataset:
        """The same data with mask values renumbered into ``classes`` (a trained run's): by
        class name when the data names its classes, else kept as indices, which must be
        below ``len(classes)``. A name or index the run does not know is a DataError."""
        if not self.named:
            labelled = self.masks[self.masks != IGNORE]
            if labelled.size and int(labelled.max()) >= len(classes):
                raise DataError(
                    f"{self.source}: has class index {int(labelled.max())}, but the run knows "
                    f"{len(classes)} classes (0..{len(classes) - 1})"
                )
            return SegmentationDataset(
                self.inputs, self.masks, list(classes), self.source, self.boxes, self.names
            )
        unknown = [name for name in self.classes if name not in classes]
        if unknown:
            raise DataError(
                f"{self.source}: names classes the run does not know: {', '.join(unknown)} "
                f"(the run's classes: {', '.join(classes)})"
            )
        lookup = np.full(256, IGNORE, dtype=np.int64)
        lookup[: len(self.classes)] = [classes.index(name) for name in self.classes]
        masks = np.where(self.masks == IGNORE, IGNORE, lookup[np.clip(self.masks, 0, 255)])
        return SegmentationDataset(
            self.inputs, masks, list(classes), self.source, self.boxes, self.names
        )


def digit_pools(seed: int = 0) -> tuple[ArrayDataset, ArrayDataset]:
    """The bundled digits split in two halves, 250 of each class in each: the training
    canvases' digits and the held-out canvases' digits."""
    digits = load_mnist_5k()
    train, held_out = stratified_split(digits.labels, 0.5, seed)
    return digits.subset(train), digits.subset(held_out)


def _ink_crop(image: np.ndarray) -> np.ndarray:
    """The digit cut to the bounding box of its ink (so a 28x28 digit takes ~20x20)."""
    rows = np.flatnonzero((image >= INK).any(axis=1))
    columns = np.flatnonzero((image >= INK).any(axis=0))
    return image[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1]


def _place(
    rng: np.random.Generator, shape: tuple[int, int], size: int, taken: list[Box], margin: int
) -> tuple[int, int] | None:
    """A top-left corner where a ``shape`` patch keeps ``margin`` pixels from every box in
    ``taken``, or None after a bounded number of tries."""
    height, width = shape
    for _ in range(50):
        top = int(rng.integers(0, size - height + 1))
        left = int(rng.integers(0, size - width + 1))
        if all(
            top >= box.bottom + margin
            or box.top >= top + height + margin
            or left >= box.right + margin
            or box.left >= left + width + margin
            for box in taken
        ):
            return top, left
    return None


def make_canvas(
    pool: ArrayDataset,
    rng: np.random.Generator,
    size: int = 64,
    digits: tuple[int, int] = (1, 3),
    margin: int = 2,
) -> tuple[np.ndarray, np.ndarray, list[Box]]:
    """One (size, size) canvas, its mask and its boxes, with between ``digits[0]`` and
    ``digits[1]`` digits drawn from ``pool`` (fewer when no free place is found)."""
    image = np.zeros((size, size), dtype=np.float32)
    mask = np.full((size, size), BACKGROUND, dtype=np.int64)
    boxes: list[Box] = []
    for _ in range(int(rng.integers(digits[0], digits[1] + 1))):
        index = int(rng.integers(len(pool)))
        crop = _ink_crop(pool.inputs[index, 0])
        corner = _place(rng, crop.shape, size, boxes, margin)
        if corner is None:
            continue
        top, left = corner
        bottom, right = top + crop.shape[0], left + crop.shape[1]
        image[top:bottom, left:right] = crop
        label = int(pool.labels[index])
        mask[top:bottom, left:right][crop >= INK] = label
        boxes.append(Box(label, top, left, bottom, right))
    return image, mask, boxes


def make_canvases(
    count: int,
    split: str = "train",
    seed: int = 0,
    size: int = 64,
    digits: tuple[int, int] = (1, 3),
) -> SegmentationDataset:
    """``count`` canvases of the ``train`` or ``test`` split (see the module docstring).

    Raises:
        ValueError: a count, size or digit range that cannot make canvases.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ValueError(f"count must be a non-negative integer, got {count!r}")
    if isinstance(size, bool) or not isinstance(size, int) or size < 28:
        raise ValueError(f"size must be an integer of at least 28 (one digit), got {size!r}")
    low, high = digits
    if not 1 <= low <= high:
        raise ValueError(f"digits must be a range 1 <= low <= high, got {digits!r}")
    pool = digit_pools(seed)[0 if split == "train" else 1]
    inputs = np.zeros((count, 1, size, size), dtype=np.float32)
    masks = np.zeros((count, size, size), dtype=np.int64)
    boxes = []
    stream = 0 if split == "train" else 1
    for i in range(count):
        rng = np.random.default_rng([seed, stream, i])
        inputs[i, 0], masks[i], canvas_boxes = make_canvas(pool, rng, size, digits)
        boxes.append(canvas_boxes)
    return SegmentationDataset(
        inputs, masks, list(CLASSES), f"mnist-canvases ({split}, seed {seed})", boxes
    )
