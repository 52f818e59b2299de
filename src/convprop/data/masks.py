"""Segmentation data: the bundled digit canvases, or a folder of images and their masks.

A mask folder holds ``images/NAME.png`` and ``masks/NAME.png`` for every sample (any image
format Pillow reads for the images; the masks 8-bit, mode ``L`` or ``P``, of the image's size),
where a mask pixel's value is its class index and ``IGNORE`` (255) marks pixels no loss or
metric counts. An optional ``classes.txt`` (one name per line, line i naming class i) names
the classes; without it the classes are ``0``..``K-1`` for the largest index K-1 found. Every
problem is a one-line :class:`DataError` naming the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from convprop.data.canvases import IGNORE, SegmentationDataset, make_canvases
from convprop.data.datasets import IMAGE_SUFFIXES, DataError, _picture_to_chw, _scale_images

# Bundled segmentation data: name -> (training canvases, held-out canvases).
CANVAS_SETS = {"mnist-canvases": (3000, 500)}
CANVAS_SEED = 0  # the same canvases for every run, as mnist-5k is the same digits


def is_mask_folder(path: Path) -> bool:
    """Whether ``path`` is laid out as a mask folder (``images/`` beside ``masks/``)."""
    return (path / "images").is_dir() and (path / "masks").is_dir()


def load_segmentation(
    spec: str, resize: tuple[int, int] | None = None
) -> tuple[SegmentationDataset, SegmentationDataset | None]:
    """(data, held-out data if the source provides it) for ``spec``: a bundled canvas set
    (``mnist-canvases``, which has its own held-out canvases) or a mask folder."""
    if spec in CANVAS_SETS:
        if resize is not None:
            raise DataError(f"{spec}: the bundled canvases are 64x64; --resize does not apply")
        train_count, test_count = CANVAS_SETS[spec]
        return (
            make_canvases(train_count, "train", CANVAS_SEED),
            make_canvases(test_count, "test", CANVAS_SEED),
        )
    path = Path(spec)
    if not path.exists():
        raise DataError(
            f"{spec}: no such directory (and not a bundled segmentation data set: "
            f"{', '.join(CANVAS_SETS)})"
        )
    if not path.is_dir() or not is_mask_folder(path):
        raise DataError(
            f"{spec}: not a mask folder (expected images/NAME.png and masks/NAME.png) "
            f"nor a bundled segmentation data set ({', '.join(CANVAS_SETS)})"
        )
    return load_mask_folder(path, resize), None


def _open(path: Path) -> Any:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
            return image.copy()
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise DataError(f"{path}: cannot read image ({error})") from None


def _files(folder: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in IMAGE_SUFFIXES or path.name.startswith("."):
            continue
        if path.stem in found:
            raise DataError(f"{path}: a second file named {path.stem} (also {found[path.stem]})")
        found[path.stem] = path
    return found


def _read_classes(root: Path) -> list[str] | None:
    path = root / "classes.txt"
    if not path.exists():
        return None
    try:
        names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: cannot read the class names ({error})") from None
    while names and not names[-1]:
        names.pop()
    if len(names) < 2 or not all(names):
        raise DataError(f"{path}: needs at least two class names, one per line, none empty")
    if len(set(names)) != len(names):
        raise DataError(f"{path}: names a class twice")
    if len(names) > IGNORE:
        raise DataError(f"{path}: names {len(names)} classes; masks hold at most {IGNORE}")
    return names


def _mask_array(path: Path, picture: Any, size: tuple[int, int] | None) -> np.ndarray:
    from PIL import Image

    if picture.mode not in ("L", "P"):
        raise DataError(
            f"{path}: a mask must be an 8-bit image of class indices (mode L or P), "
            f"got mode {picture.mode}"
        )
    if size is not None and picture.size != (size[1], size[0]):
        # Nearest neighbour: a class index is a label, not an intensity to interpolate.
        picture = picture.resize((size[1], size[0]), Image.Resampling.NEAREST)
    return np.asarray(picture, dtype=np.uint8)


def read_mask(path: str | Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """One mask file as an (H, W) int64 array of class indices (255: ignore), by the mask
    folder's rules (8-bit, mode L or P), resized by nearest neighbour to ``size`` if given."""
    path = Path(path)
    return _mask_array(path, _open(path), size).astype(np.int64)


def load_mask_folder(
    root: str | Path, resize: tuple[int, int] | None = None
) -> SegmentationDataset:
    """The samples of a mask folder (see the module docstring), sorted by name; images
    grey if every image is grey, else RGB, resized (bilinear; masks nearest) to ``resize``."""
    root = Path(root)
    images, masks = _files(root / "images"), _files(root / "masks")
    if not images:
        raise DataError(f"{root / 'images'}: no images ({'/'.join(IMAGE_SUFFIXES)})")
    for name in sorted(set(images) - set(masks)):
        raise DataError(f"{images[name]}: has no mask (expected {root / 'masks' / name}.png)")
    for name in sorted(set(masks) - set(images)):
        raise DataError(f"{masks[name]}: has no image (expected {root / 'images' / name}.png)")
    names = sorted(images)
    pictures = [_open(images[name]) for name in names]
    grey = all(p.mode in ("1", "L", "I", "I;16", "F") for p in pictures)
    first = pictures[0].size
    arrays, mask_arrays = [], []
    for name, picture in zip(names, pictures, strict=True):
        mask_picture = _open(masks[name])
        if mask_picture.size != picture.size:
            raise DataError(
                f"{masks[name]}: is {mask_picture.size[0]}x{mask_picture.size[1]} but its image "
                f"is {picture.size[0]}x{picture.size[1]}"
            )
        if resize is None and picture.size != first:
            raise DataError(
                f"{images[name]}: is {picture.size[0]}x{picture.size[1]} but "
                f"{images[names[0]].name} is {first[0]}x{first[1]}; pass --resize HxW"
            )
        arrays.append(_picture_to_chw(picture, "L" if grey else "RGB", resize))
        mask_arrays.append(_mask_array(masks[name], mask_picture, resize))
    mask_stack = np.stack(mask_arrays)
    classes = _read_classes(root)
    labelled = mask_stack[mask_stack != IGNORE]
    if labelled.size == 0:
        raise DataError(f"{root / 'masks'}: every pixel is {IGNORE} (ignore); nothing to learn")
    largest = int(labelled.max())
    if classes is None:
        if largest < 1:
            raise DataError(
                f"{root / 'masks'}: every labelled pixel is class 0; need at least two classes"
            )
        classes = [str(i) for i in range(largest + 1)]
    elif largest >= len(classes):
        outside = (mask_stack != IGNORE) & (mask_stack >= len(classes))
        first = int(np.flatnonzero(outside.any(axis=(1, 2)))[0])
        value = int(mask_stack[first][outside[first]].max())
        raise DataError(
            f"{masks[names[first]]}: has class {value}, but {root / 'classes.txt'} names only "
            f"{len(classes)} classes (0..{len(classes) - 1}, and {IGNORE} to ignore)"
        )
    return SegmentationDataset(
        _scale_images(np.stack(arrays)),
        mask_stack.astype(np.int64),
        classes,
        str(root),
        names=names,
        named=(root / "classes.txt").exists(),
    )
