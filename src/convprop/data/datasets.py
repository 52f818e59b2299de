"""Data sets: the bundled MNIST subset, ``.npz`` arrays, MNIST's IDX files, image folders.

Every loader returns an :class:`ArrayDataset` of float32 inputs scaled to [0, 1] (images as
(N, C, H, W), sequences as (N, C, L)) and int64 labels. Files are read without ever executing
code (``np.load(..., allow_pickle=False)``, a hand-written IDX parser, Pillow for images).
A bad file raises :class:`DataError` naming the file and what is wrong with it.
"""

from __future__ import annotations

import gzip
import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

BUNDLED = ("mnist-5k",)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff")
# Pillow's modes of a grey image: a folder of only these is read as one channel.
GREY_MODES = ("1", "L", "I", "I;16", "F")


class DataError(ValueError):
    """A data file or folder that cannot be used, with the reason."""


@dataclass
class ArrayDataset:
    """Inputs and integer labels held in memory.

    Attributes:
        inputs: float32 (N, C, H, W) images or (N, C, L) sequences.
        labels: int64 (N,) class indices in [0, len(classes)).
        classes: the class names, index i naming label i.
        source: where the data came from (shown in messages and saved with a run).
        named: whether the source named its classes (folder names, a ``.npz``'s ``classes``,
            the bundled digits); when it did not, ``classes`` is "0", "1", ... up to the
            largest label, and the labels are all there is to go by.
    """

    inputs: np.ndarray
    labels: np.ndarray
    classes: list[str] = field(default_factory=list)
    source: str = ""
    named: bool = True

    def __post_init__(self) -> None:
        if len(self.inputs) != len(self.labels):
            raise DataError(
                f"{self.source or 'data'}: {len(self.inputs)} inputs but {len(self.labels)} labels"
            )
        if not self.classes:
            count = int(self.labels.max()) + 1 if len(self.labels) else 0
            self.classes = [str(i) for i in range(count)]
            self.named = False

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int | slice | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.inputs[index], self.labels[index]

    @property
    def is_sequence(self) -> bool:
        return self.inputs.ndim == 3

    def subset(self, indices: np.ndarray) -> ArrayDataset:
        return ArrayDataset(
            self.inputs[indices], self.labels[indices], list(self.classes), self.source, self.named
        )

    def relabelled(self, classes: Sequence[str]) -> ArrayDataset:
        """The same samples with labels indexing ``classes`` instead of ``self.classes``:
        a named class is found by its name (folders ``3/`` and ``7/`` become labels 3 and 7 of
        the ten digits), unnamed labels must already lie in ``range(len(classes))``.

        Raises:
            DataError: a class name that ``classes`` lacks, or a label outside it.
        """
        if not self.named:
            if len(self.labels) and int(self.labels.max()) >= len(classes):
                raise DataError(
                    f"{self.source}: label {int(self.labels.max())} is outside the "
                    f"{len(classes)} classes (0..{len(classes) - 1})"
                )
            return ArrayDataset(self.inputs, self.labels, list(classes), self.source)
        index = {name: i for i, name in enumerate(classes)}
        unknown = [name for name in self.classes if name not in index]
        if unknown:
            raise DataError(
                f"{self.source}: class(es) {', '.join(map(repr, unknown[:5]))} are not among "
                f"the {len(classes)} classes ({', '.join(classes[:12])}"
                f"{', ...' if len(classes) > 12 else ''})"
            )
        mapping = np.array([index[name] for name in self.classes], dtype=np.int64)
        return ArrayDataset(self.inputs, mapping[self.labels], list(classes), self.source)


def stratified_split(
    labels: np.ndarray, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Train and test indices with each class split in the same proportion, reproducibly.

    For 500 digits per class and ``test_fraction=0.2`` this gives 400 + 100 of each class.
    """
    if not 0 < test_fraction < 1:
        raise ValueError(f"stratified_split: test_fraction must be in (0, 1), got {test_fraction}")
    rng = np.random.default_rng(seed)
    train, test = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        n_test = int(round(len(members) * test_fraction))
        test.append(members[:n_test])
        train.append(members[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


# ----------------------------------------------------------------------------- loading
def load(
    spec: str, resize: tuple[int, int] | None = None
) -> tuple[ArrayDataset, ArrayDataset | None]:
    """Load a data set by name or path; returns (data, test data if the source provides one).

    ``spec`` is a bundled name (``mnist-5k``), a ``.npz`` file, a directory of ``.npy`` files
    (``images.npy`` and ``labels.npy``: :mod:`convprop.data.lazy`), a directory of MNIST IDX
    files or a directory of class-named image folders.
    """
    if spec in BUNDLED:
        return load_mnist_5k(), None
    path = Path(spec)
    if not path.exists():
        raise DataError(
            f"{spec}: no such file or directory (and not a bundled data set: {', '.join(BUNDLED)})"
        )
    if path.is_file():
        if path.suffix != ".npz":
            raise DataError(
                f"{spec}: unsupported data file "
                "(expected .npz, an IDX directory or an image folder)"
            )
        return load_npz(path), None
    from convprop.data.lazy import is_npy_directory, load_npy_directory

    if is_npy_directory(path):
        return load_npy_directory(path), None
    if _find_idx(path, "train-images") is not None:
        return load_idx_directory(path)
    if (path / "images").is_dir() and (path / "masks").is_dir():
        raise DataError(
            f"{spec}: holds images/ and masks/, segmentation data; train on it with --task segment"
        )
    return load_image_folder(path, resize), None


def load_mnist_5k() -> ArrayDataset:
    """The bundled 5,000-digit MNIST subset (500 per class), as (5000, 1, 28, 28) in [0, 1]."""
    with resources.files("convprop.data").joinpath("mnist_5k.npz").open("rb") as handle:
        with np.load(handle, allow_pickle=False) as archive:
            images, labels = archive["images"], archive["labels"]
    return ArrayDataset(
        _scale_images(images[:, None]),
        labels.astype(np.int64),
        [str(i) for i in range(10)],
        "mnist-5k",
    )


def load_npz(path: str | Path) -> ArrayDataset:
    """A ``.npz`` with ``labels`` (N,) and either ``images`` ((N, H, W) or (N, C, H, W)) or
    ``signals`` / ``sequences`` ((N, C, L), for the TDNN).

    Integer inputs are scaled from 0..255 to [0, 1]; float inputs are kept as they are and
    must be finite. An optional ``classes`` array of strings names the classes.
    """
    path = Path(path)
    try:
        with path.open("rb") as handle:
            magic = handle.read(4)
    except OSError as error:
        raise DataError(f"{path}: cannot read ({error.strerror or error})") from None
    if magic != b"PK\x03\x04":
        kind = "a single .npy array" if magic.startswith(b"\x93NUM") else "not a zip archive"
        raise DataError(
            f"{path}: not a .npz file ({kind}; a .npz is a zip of .npy arrays, as "
            "numpy.savez writes)"
        )
    try:
        with np.load(path, allow_pickle=False) as archive:
            keys = set(archive.files)
            input_key = next((k for k in ("images", "signals", "sequences") if k in keys), None)
            if input_key is None or "labels" not in keys:
                raise DataError(
                    f"{path}: expected arrays 'images' (or 'signals') and 'labels', found "
                    f"{sorted(keys) or 'none'}"
                )
            inputs, labels = archive[input_key], archive["labels"]
            classes = [str(c) for c in archive["classes"]] if "classes" in keys else []
    except DataError:
        raise
    except ValueError as error:
        if "pickle" in str(error):  # an object array: NumPy will not load it without pickle
            raise DataError(
                f"{path}: holds Python objects (pickled), which convprop never loads; save "
                "numeric arrays"
            ) from None
        raise DataError(f"{path}: not a readable .npz file ({error})") from None
    except (OSError, zipfile.BadZipFile, EOFError, KeyError) as error:
        raise DataError(f"{path}: not a readable .npz file ({error})") from None
    inputs = _checked_arrays(path, input_key, inputs, labels, classes)
    data = _scale_images(inputs) if inputs.dtype.kind in "iu" else inputs.astype(np.float32)
    _check_finite(data, f"{path}: {input_key}")
    return ArrayDataset(data, labels.astype(np.int64), classes, str(path))


def _checked_arrays(
    path: Path, input_key: str, inputs: np.ndarray, labels: np.ndarray, classes: list[str]
) -> np.ndarray:
    """Refuse labels, inputs and class names that do not make a data set (the rules of a
    ``.npz``, shared by a directory of ``.npy`` files); returns the inputs, (N, H, W) images
    given their channel axis. Reads the labels but only the inputs' shape and dtype, so the
    inputs may be memory-mapped."""
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise DataError(
            f"{path}: labels must be a 1-D integer array, got {labels.dtype} {labels.shape}"
        )
    if len(labels) == 0:
        raise DataError(f"{path}: holds no samples ({input_key} {inputs.shape}, labels (0,))")
    if labels.min() < 0:
        raise DataError(f"{path}: labels must be non-negative, found {int(labels.min())}")
    if input_key == "images":
        if inputs.ndim == 3:
            inputs = inputs[:, None]
        if inputs.ndim != 4:
            raise DataError(
                f"{path}: images must be (N, H, W) or (N, C, H, W), got shape {inputs.shape}"
            )
    elif inputs.ndim != 3:
        raise DataError(f"{path}: {input_key} must be (N, C, L), got shape {inputs.shape}")
    if inputs.dtype.kind not in "iuf":
        raise DataError(f"{path}: {input_key} must be numeric, got {inputs.dtype}")
    if 0 in inputs.shape[1:]:
        raise DataError(f"{path}: {input_key} have an empty dimension, shape {inputs.shape}")
    if classes and len(labels) and int(labels.max()) >= len(classes):
        raise DataError(
            f"{path}: label {int(labels.max())} has no name among its {len(classes)} classes"
        )
    return inputs


def _check_finite(inputs: np.ndarray, what: str) -> None:
    """Refuse NaN and infinite inputs (they would only show up later as a non-finite loss)."""
    finite = np.isfinite(inputs)
    if not finite.all():
        bad = np.flatnonzero(~finite.reshape(len(inputs), -1).all(axis=1))
        raise DataError(
            f"{what} hold {int((~finite).sum())} NaN or infinite values (in {len(bad)} "
            f"sample(s), the first at index {int(bad[0])})"
        )


# ----------------------------------------------------------------------------- IDX
_IDX_DTYPES: dict[int, type | str] = {
    0x08: np.uint8,
    0x09: np.int8,
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (the format of the original MNIST distribution), gzipped or not.

    Layout: two zero bytes, a type code, the number of dimensions, each dimension as a
    big-endian uint32, then the values in row-major order.
    """
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as error:
        raise DataError(f"{path}: cannot read IDX file ({error})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataError(f"{path}: not an IDX file (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(
            f"{path}: truncated or corrupt IDX data ({len(raw) - header} bytes for shape {shape}, "
            f"expected {expected})"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)


def _find_idx(directory: Path, stem: str) -> Path | None:
    """The file for e.g. ``train-images`` among ``train-images-idx3-ubyte[.gz]`` spellings."""
    for candidate in sorted(directory.iterdir()):
        name = candidate.name.replace(".", "-")
        if candidate.is_file() and name.startswith(stem + "-idx"):
            return candidate
    return None


def load_idx_directory(directory: str | Path) -> tuple[ArrayDataset, ArrayDataset | None]:
    """MNIST-style IDX files: train images and labels, and t10k (test) ones if present."""
    directory = Path(directory)
    sets: list[ArrayDataset | None] = []
    for prefix in ("train", "t10k"):
        images_path = _find_idx(directory, f"{prefix}-images")
        labels_path = _find_idx(directory, f"{prefix}-labels")
        if images_path is None and labels_path is None and prefix == "t10k":
            sets.append(None)
            continue
        if images_path is None or labels_path is None:
            missing = f"{prefix}-images" if images_path is None else f"{prefix}-labels"
            raise DataError(f"{directory}: found no {missing}-idx*-ubyte file")
        images, labels = read_idx(images_path), read_idx(labels_path)
        if images.ndim != 3 or labels.ndim != 1:
            raise DataError(
                f"{images_path}: expected (N, H, W) images and (N,) labels, got {images.shape} "
                f"and {labels.shape}"
            )
        if len(images) != len(labels):
            raise DataError(
                f"{directory}: {images_path.name} holds {len(images)} images but "
                f"{labels_path.name} "
                f"holds {len(labels)} labels"
            )
        if len(images) == 0:
            raise DataError(f"{images_path}: holds no images")
        data = (
            _scale_images(images[:, None])
            if images.dtype.kind in "iu"
            else images[:, None].astype(np.float32)
        )
        _check_finite(data, f"{images_path}: images")
        sets.append(ArrayDataset(data, labels.astype(np.int64), [], str(images_path)))
    train, test = sets
    # The train pair is never None: a missing one raised above.
    assert train is not None
    if test is not None:
        classes = [str(i) for i in range(max(len(train.classes), len(test.classes)))]
        train.classes, test.classes = classes, list(classes)
    return train, test


# ----------------------------------------------------------------------------- image folders
def load_image_folder(root: str | Path, resize: tuple[int, int] | None = None) -> ArrayDataset:
    """Class-named subfolders of images (the ImageFolder convention), via Pillow.

    Classes are the sorted folder names. Images are grey if every image is grey, else RGB.
    All images must have one size unless ``resize`` (height, width) is given.
    """
    from PIL import Image, UnidentifiedImageError

    root = Path(root)
    class_dirs, names = image_folder_files(root)
    files = [
        (class_dir / name, label)
        for label, (class_dir, members) in enumerate(zip(class_dirs, names, strict=True))
        for name in members
    ]
    pictures = []
    for path, _ in files:
        try:
            with Image.open(path) as image:
                image.load()
                pictures.append(image.copy())
        except (UnidentifiedImageError, OSError, SyntaxError) as error:
            raise DataError(f"{path}: cannot read image ({error})") from None
    grey = all(p.mode in GREY_MODES for p in pictures)
    mode = "L" if grey else "RGB"
    sizes = {p.size for p in pictures}
    if resize is None and len(sizes) > 1:
        raise _different_sizes(root, sizes)
    arrays = [_picture_to_chw(picture, mode, resize) for picture in pictures]
    labels = np.array([label for _, label in files], dtype=np.int64)
    return ArrayDataset(
        _scale_images(np.stack(arrays)), labels, [d.name for d in class_dirs], str(root)
    )


def image_folder_files(root: Path) -> tuple[list[Path], list[list[str]]]:
    """The class folders of an image folder, sorted by name, and the sorted names of each
    one's image files: the order the data set holds them in (by class, then by file name).
    Names, not paths, so that a folder of a million images lists in little memory."""
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise DataError(
            f"{root}: no class folders found (expected one subfolder of images per class)"
        )
    if len(class_dirs) < 2:
        raise DataError(
            f"{root}: only one class folder ({class_dirs[0].name}); need at least two classes"
        )
    names = []
    for class_dir in class_dirs:
        members = sorted(
            name for name in os.listdir(class_dir) if Path(name).suffix.lower() in IMAGE_SUFFIXES
        )
        if not members:
            raise DataError(
                f"{class_dir}: empty class folder (no {'/'.join(IMAGE_SUFFIXES)} images)"
            )
        names.append(members)
    return class_dirs, names


def _different_sizes(root: Path, sizes: set[tuple[int, int]]) -> DataError:
    examples = ", ".join(f"{w}x{h}" for w, h in sorted(sizes)[:3])
    return DataError(
        f"{root}: images have different sizes ({examples}, ...); pass --resize HxW to resize them"
    )


def load_image(path: str | Path, channels: int, size: tuple[int, int] | None) -> np.ndarray:
    """One image file as a (channels, H, W) float32 array in [0, 1], resized to ``size``
    (None: kept at its own size)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
            picture = image.copy()
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise DataError(f"{path}: cannot read image ({error})") from None
    return _scale_images(_picture_to_chw(picture, "L" if channels == 1 else "RGB", size))


def _picture_to_chw(picture: Any, mode: str, size: tuple[int, int] | None) -> np.ndarray:
    """A Pillow image as a uint8 (C, H, W) array in ``mode`` ("L" or "RGB"), resized
    bilinearly to ``size`` (height, width) if given: one conversion for training images and
    for the images ``predict`` reads, so both are prepared alike."""
    from PIL import Image

    picture = picture.convert(mode)
    if size is not None and picture.size != (size[1], size[0]):
        picture = picture.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    array = np.asarray(picture, dtype=np.uint8)
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def _scale_images(images: np.ndarray) -> np.ndarray:
    return (images.astype(np.float32) / np.float32(255.0)).astype(np.float32)
