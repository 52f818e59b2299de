"""Data larger than memory: image folders decoded on demand, and memory-mapped ``.npy`` arrays.

An image folder of 100,000 RGB images of 224x224 needs 60 GB as the float32 array the
in-memory loaders build. A :class:`LazyDataset` holds only what is needed to find each sample
(a file name, or a row of a memory-mapped file) and its label; its ``inputs`` are a
:class:`LazyArray`, which looks like the float32 array the in-memory loader would have built
(``len``, ``shape``, ``dtype``, slices, integer and boolean index arrays) and decodes the
samples it is asked for, to the same bytes. ``DataLoader(num_workers=N)`` decodes batches in
worker processes ahead of training (:mod:`convprop.data.workers`).

Two sources can be read lazily:

* an image folder (class-named subfolders of images, as :func:`load_image_folder` reads):
  opening it reads every image's header (its mode and size), not its pixels;
* a directory of ``.npy`` files, the arrays of a ``.npz`` side by side: ``images.npy``
  ((N, H, W) or (N, C, H, W)) or ``signals.npy`` / ``sequences.npy`` ((N, C, L)), with
  ``labels.npy`` ((N,) integers) and optionally ``classes.txt`` (one name per line) or
  ``classes.npy`` (strings). The inputs are opened with ``np.load(mmap_mode="r")`` and scaled
  like a ``.npz``'s (integers from 0..255 to [0, 1], floats as float32) as they are read.
  ``unzip data.npz -d data/`` turns a ``.npz`` written by ``numpy.savez`` into one. A ``.npz``
  itself cannot be memory-mapped: its arrays are members of a zip archive, compressed by
  ``savez_compressed``, and NumPy maps only plain ``.npy`` files.

Nothing is unpickled (``allow_pickle=False``): an object array is refused.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from convprop.data.datasets import (
    BUNDLED,
    GREY_MODES,
    ArrayDataset,
    DataError,
    _checked_arrays,
    _different_sizes,
    _find_idx,
    _picture_to_chw,
    _scale_images,
    image_folder_files,
    load,
)

INPUT_KEYS = ("images", "signals", "sequences")
# The memory budget is what loading data into memory may take, at its peak: three quarters of
# the memory available, unless CONVPROP_MEMORY_BUDGET says otherwise. That peak is several
# times the float32 array (the decoded pictures, the array being scaled, its train and test
# copies, with freed memory kept by the training process: 4.2 GB for a 0.98 GB array,
# measured in BENCHMARKS.md), so a data set is read into memory only while LOAD_PEAK_FACTOR
# times its array fits the budget (by default: an array up to a sixth of what is available).
BUDGET_FRACTION = 0.75
LOAD_PEAK_FACTOR = 4.5
BUDGET_VARIABLE = "CONVPROP_MEMORY_BUDGET"
# Bulk passes (statistics, fingerprint, a check for NaN) decode this many bytes at a time.
CHUNK_BYTES = 4 * 2**20
_NPY_MAGIC = b"\x93NUMPY"


# ----------------------------------------------------------------------------- readers
class _ImageFiles:
    """Images named relative to ``root``, decoded as the in-memory image folder does."""

    def __init__(
        self, root: str, names: np.ndarray, mode: str, size: tuple[int, int] | None, shape: tuple
    ) -> None:
        self.root = root
        self.names = names  # bytes "class/file", compact for a million files
        self.mode = mode
        self.size = size
        self.sample_shape: tuple[int, ...] = shape

    @property
    def count(self) -> int:
        return len(self.names)

    def path(self, index: int) -> str:
        return os.path.join(self.root, os.fsdecode(self.names[index]))

    def read(self, indices: np.ndarray) -> np.ndarray:
        batch = np.empty((len(indices), *self.sample_shape), np.uint8)
        for row, index in enumerate(indices):
            batch[row] = self._decode(self.path(int(index)))
        return _scale_images(batch)

    def _decode(self, path: str) -> np.ndarray:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as image:
                image.load()
                picture = image.copy()
        except (UnidentifiedImageError, OSError, SyntaxError) as error:
            raise DataError(f"{path}: cannot read image ({error})") from None
        array = _picture_to_chw(picture, self.mode, self.size)
        if array.shape != self.sample_shape:
            height, width = self.sample_shape[1:]
            raise DataError(
                f"{path}: is {array.shape[2]}x{array.shape[1]} now, not the {width}x{height} "
                "it was when the folder was opened"
            )
        return array

    def describe(self) -> str:
        return f"image folder {self.root}"


class _NpyFile:
    """The rows of a memory-mapped ``.npy`` array, scaled as a ``.npz``'s inputs are."""

    def __init__(self, path: str, channel_axis: bool) -> None:
        self.path = path
        self.channel_axis = channel_axis  # (N, H, W) images gain their channel axis
        self._open()

    def _open(self) -> None:
        array = open_npy(Path(self.path), mmap=True)
        self.array = array[:, None] if self.channel_axis else array
        self.sample_shape: tuple[int, ...] = tuple(int(n) for n in self.array.shape[1:])

    # A worker gets the file's name and maps it itself, instead of a pickled copy of the data.
    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "channel_axis": self.channel_axis}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path, self.channel_axis = state["path"], state["channel_axis"]
        self._open()

    @property
    def count(self) -> int:
        return len(self.array)

    def read(self, indices: np.ndarray) -> np.ndarray:
        contiguous = len(indices) > 0 and indices[-1] - indices[0] == len(indices) - 1
        if contiguous and np.all(np.diff(indices) == 1):
            rows = np.asarray(self.array[int(indices[0]) : int(indices[-1]) + 1])
        else:
            rows = np.asarray(self.array[indices])
        if rows.dtype.kind in "iu":
            return _scale_images(rows)
        return rows.astype(np.float32)

    def describe(self) -> str:
        return f"memory-mapped {self.path}"


# ----------------------------------------------------------------------------- arrays
class LazyArray:
    """A read-only float32 array of samples that are decoded when indexed.

    Indexing along the first axis (an int, a slice, an integer or boolean array, optionally
    followed by indices into each sample) returns an ordinary ndarray with the values the
    in-memory loader would hold; :meth:`view` selects samples and :meth:`reshape` changes the
    shape of each without decoding anything. ``np.asarray(lazy)`` decodes everything.
    """

    def __init__(
        self,
        reader: Any,
        index: np.ndarray | None = None,
        sample_shape: tuple[int, ...] | None = None,
    ) -> None:
        self._reader = reader
        self._index = index
        self._sample_shape = sample_shape if sample_shape is not None else reader.sample_shape

    # Array-like attributes.
    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self), *self._sample_shape)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.float32)

    @property
    def ndim(self) -> int:
        return 1 + len(self._sample_shape)

    @property
    def nbytes(self) -> int:
        """The bytes of the decoded array (what the in-memory loader would hold)."""
        return len(self) * self.sample_bytes

    @property
    def sample_bytes(self) -> int:
        return int(np.prod(self._sample_shape, dtype=np.int64)) * 4

    def __len__(self) -> int:
        return len(self._index) if self._index is not None else int(self._reader.count)

    def __repr__(self) -> str:
        return f"LazyArray(shape={self.shape}, dtype=float32, {self._reader.describe()})"

    def __getitem__(self, index: Any) -> np.ndarray:
        rest: tuple = ()
        if isinstance(index, tuple):
            if not index:
                index = slice(None)
            else:
                index, rest = index[0], index[1:]
        if isinstance(index, (int, np.integer)) and not isinstance(index, bool):
            position = int(index)
            if not -len(self) <= position < len(self):
                raise IndexError(f"index {position} is out of bounds for {len(self)} samples")
            sample = self._read(np.array([position % len(self)]))[0]
            return sample[rest] if rest else sample
        batch = self._read(self._positions(index))
        return batch[(slice(None), *rest)] if rest else batch

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        everything = self[:]
        return everything if dtype is None else everything.astype(dtype, copy=False)

    def view(self, indices: Any) -> LazyArray:
        """The samples at ``indices`` (as for ``__getitem__``), still lazy."""
        positions = self._positions(indices)
        base = self._index[positions] if self._index is not None else positions
        return LazyArray(self._reader, base, self._sample_shape)

    def reshape(self, *shape: Any) -> LazyArray:
        """Each sample reshaped: ``shape`` is (len(self), *sample shape), as ndarray's."""
        if len(shape) == 1 and isinstance(shape[0], tuple):
            shape = shape[0]
        count, *sample = (int(n) for n in shape)
        if count not in (len(self), -1) or np.prod(sample) != np.prod(self._sample_shape):
            raise ValueError(f"cannot reshape a lazy array of shape {self.shape} into {shape}")
        return LazyArray(self._reader, self._index, tuple(sample))

    def _positions(self, index: Any) -> np.ndarray:
        if isinstance(index, slice):
            return np.arange(len(self))[index]
        positions = np.asarray(index)
        if positions.size == 0:
            return np.zeros(0, np.int64)
        if positions.dtype == bool:
            if positions.shape != (len(self),):
                raise IndexError(
                    f"a boolean index must have shape ({len(self)},), got {positions.shape}"
                )
            return np.flatnonzero(positions)
        if positions.dtype.kind not in "iu" or positions.ndim != 1:
            raise IndexError(
                "a lazy array is indexed along its first axis by an int, a slice, or a 1-D "
                f"integer or boolean array; got {index!r}"
            )
        if len(positions) and not (-len(self) <= positions.min() and positions.max() < len(self)):
            raise IndexError(f"an index is out of bounds for {len(self)} samples")
        return positions.astype(np.int64) % max(len(self), 1)

    def _read(self, positions: np.ndarray) -> np.ndarray:
        base = self._index[positions] if self._index is not None else positions
        batch = self._reader.read(base)
        return batch.reshape(len(positions), *self._sample_shape)


def iter_decoded(
    inputs: LazyArray, num_workers: int = 0, chunk_bytes: int = CHUNK_BYTES
) -> Iterator[np.ndarray]:
    """Every sample of ``inputs`` in order, as consecutive C-contiguous chunks of about
    ``chunk_bytes``, decoded in ``num_workers`` processes (0: in this one)."""
    from convprop.data.workers import WorkerPool

    per_chunk = max(1, chunk_bytes // max(1, inputs.sample_bytes))
    count = len(inputs)
    chunks = (
        np.arange(start, min(start + per_chunk, count)) for start in range(0, count, per_chunk)
    )
    if num_workers == 0:
        for positions in chunks:
            yield inputs[positions]
        return
    with WorkerPool(inputs, num_workers, name="data pass") as pool:
        yield from pool.map(chunks)


class RunningStatistics:
    """Per-channel mean and standard deviation over batches seen one at a time.

    Each batch's mean and sum of squared deviations are computed in float64 and merged with
    Chan, Golub and LeVeque's pairwise update, which keeps the accuracy of the two-pass
    formula. The result equals :func:`~convprop.data.channel_statistics` on the whole array
    to float64 rounding (the order of the additions differs), not bitwise.
    """

    def __init__(self) -> None:
        self.count = 0
        self.mean: np.ndarray | None = None
        self.squares: np.ndarray | None = None  # sum of squared deviations from the mean

    def update(self, batch: np.ndarray) -> None:
        axes = (0, *range(2, batch.ndim))
        count = batch.size // batch.shape[1]
        if count == 0:
            return
        mean = batch.mean(axis=axes, dtype=np.float64)
        centred = batch - mean.reshape((1, -1) + (1,) * (batch.ndim - 2))
        centred = centred.reshape(len(batch), batch.shape[1], -1)
        squares = np.einsum("ncp,ncp->c", centred, centred)
        if self.mean is None or self.squares is None:
            self.count, self.mean, self.squares = count, mean, squares
            return
        total = self.count + count
        delta = mean - self.mean
        self.mean = self.mean + delta * (count / total)
        self.squares = self.squares + squares + delta**2 * (self.count * count / total)
        self.count = total

    def result(self) -> tuple[list[float], list[float]]:
        """(mean, std) per channel, as ``channel_statistics`` gives them."""
        if self.mean is None or self.squares is None:
            raise ValueError("RunningStatistics: no samples were seen")
        std = np.sqrt(self.squares / self.count)
        return [float(m) for m in self.mean], [float(max(s, 1e-8)) for s in std]


# ----------------------------------------------------------------------------- data sets
@dataclass
class LazyDataset(ArrayDataset):
    """An :class:`ArrayDataset` whose ``inputs`` are a :class:`LazyArray`: indexing it
    decodes, ``subset`` and ``relabelled`` stay lazy."""

    inputs: Any

    @property
    def lazy_inputs(self) -> LazyArray:
        inputs: LazyArray = self.inputs
        return inputs

    def subset(self, indices: np.ndarray) -> LazyDataset:
        return LazyDataset(
            self.lazy_inputs.view(indices),
            self.labels[indices],
            list(self.classes),
            self.source,
            self.named,
        )

    def relabelled(self, classes: Any) -> LazyDataset:
        relabelled = super().relabelled(classes)
        return LazyDataset(
            self.inputs, relabelled.labels, relabelled.classes, self.source, relabelled.named
        )

    def as_sequence(self) -> LazyDataset:
        """(N, C, H, W) images read as (N, C*H, W) sequences (a TDNN's frames: columns)."""
        count, channels, height, width = self.inputs.shape
        return LazyDataset(
            self.lazy_inputs.reshape(count, channels * height, width),
            self.labels,
            self.classes,
            self.source,
            self.named,
        )


def open_image_folder(root: str | Path, resize: tuple[int, int] | None = None) -> LazyDataset:
    """An image folder, as :func:`~convprop.data.load_image_folder` reads it (the same
    classes, order, channels and values), with its images decoded when indexed.

    Opening it reads every image's header: a file that is not an image, or of another size
    (without ``resize``), is refused now; an image whose pixel data is damaged when it is
    first decoded (both with a :class:`DataError` naming the file).
    """
    from PIL import Image, UnidentifiedImageError

    root = Path(root)
    class_dirs, names = image_folder_files(root)
    grey = True
    sizes: set[tuple[int, int]] = set()
    relative: list[bytes] = []
    for class_dir, members in zip(class_dirs, names, strict=True):
        for name in members:
            path = class_dir / name
            try:
                with Image.open(path) as image:
                    grey = grey and image.mode in GREY_MODES
                    if resize is None:
                        sizes.add(image.size)
            except (UnidentifiedImageError, OSError, SyntaxError) as error:
                raise DataError(f"{path}: cannot read image ({error})") from None
            relative.append(os.fsencode(os.path.join(class_dir.name, name)))
    if resize is None and len(sizes) > 1:
        raise _different_sizes(root, sizes)
    height, width = resize if resize is not None else next(iter(sizes))[::-1]
    reader = _ImageFiles(
        str(root),
        np.array(relative, dtype=bytes),
        "L" if grey else "RGB",
        resize,
        (1 if grey else 3, height, width),
    )
    labels = np.repeat(np.arange(len(class_dirs)), [len(m) for m in names])
    return LazyDataset(
        LazyArray(reader), labels.astype(np.int64), [d.name for d in class_dirs], str(root)
    )


def is_npy_directory(path: Path) -> bool:
    """Whether ``path`` is a directory of ``.npy`` arrays (see the module docstring)."""
    return path.is_dir() and any((path / f"{key}.npy").is_file() for key in (*INPUT_KEYS, "labels"))


def open_npy(path: Path, mmap: bool) -> np.ndarray:
    """One ``.npy`` file, memory-mapped (read-only) or read, never unpickled."""
    try:
        with path.open("rb") as handle:
            magic = handle.read(len(_NPY_MAGIC))
    except OSError as error:
        raise DataError(f"{path}: cannot read ({error.strerror or error})") from None
    if magic != _NPY_MAGIC:
        raise DataError(f"{path}: not a .npy file (as numpy.save writes)")
    try:
        array: np.ndarray = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except ValueError as error:
        if "pickle" in str(error) or "object" in str(error).lower():
            raise DataError(
                f"{path}: holds Python objects (pickled), which convprop never loads; save "
                "numeric arrays"
            ) from None
        raise DataError(f"{path}: not a readable .npy file ({error})") from None
    except (OSError, EOFError) as error:
        raise DataError(f"{path}: not a readable .npy file ({error})") from None
    return array


def _npy_classes(directory: Path) -> list[str]:
    text_file, array_file = directory / "classes.txt", directory / "classes.npy"
    if text_file.is_file():
        try:
            lines = text_file.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as error:
            raise DataError(f"{text_file}: cannot read ({error})") from None
        return [line.strip() for line in lines if line.strip()]
    if array_file.is_file():
        names = open_npy(array_file, mmap=False)
        if names.ndim != 1 or names.dtype.kind not in "US":
            raise DataError(
                f"{array_file}: must be a 1-D array of strings, got {names.dtype} {names.shape}"
            )
        return [n.decode() if isinstance(n, bytes) else str(n) for n in names.tolist()]
    return []


def open_npy_directory(directory: str | Path) -> LazyDataset:
    """A directory of ``.npy`` arrays (see the module docstring), its inputs memory-mapped.

    The rules are a ``.npz``'s; float inputs are checked for NaN and infinities now, a chunk
    at a time.
    """
    directory = Path(directory)
    input_key = next((k for k in INPUT_KEYS if (directory / f"{k}.npy").is_file()), None)
    if input_key is None or not (directory / "labels.npy").is_file():
        found = sorted(p.name for p in directory.glob("*.npy"))
        raise DataError(
            f"{directory}: expected images.npy (or signals.npy) and labels.npy, found "
            f"{', '.join(found) or 'no .npy files'}"
        )
    input_file = directory / f"{input_key}.npy"
    inputs = open_npy(input_file, mmap=True)
    labels = open_npy(directory / "labels.npy", mmap=False)
    classes = _npy_classes(directory)
    checked = _checked_arrays(directory, input_key, inputs, labels, classes)
    reader = _NpyFile(str(input_file), channel_axis=checked.ndim != inputs.ndim)
    lazy = LazyArray(reader)
    if checked.dtype.kind == "f":
        _check_finite_streaming(lazy, f"{directory}: {input_key}")
    return LazyDataset(lazy, labels.astype(np.int64), classes, str(directory))


def _check_finite_streaming(inputs: LazyArray, what: str) -> None:
    """``_check_finite`` over the whole array, a chunk at a time (the same message)."""
    bad_values = bad_samples = 0
    first = -1
    start = 0
    for chunk in iter_decoded(inputs):
        finite = np.isfinite(chunk)
        if not finite.all():
            bad = np.flatnonzero(~finite.reshape(len(chunk), -1).all(axis=1))
            bad_values += int((~finite).sum())
            bad_samples += len(bad)
            first = int(bad[0]) + start if first < 0 else first
        start += len(chunk)
    if bad_values:
        raise DataError(
            f"{what} hold {bad_values} NaN or infinite values (in {bad_samples} sample(s), "
            f"the first at index {first})"
        )


def load_npy_directory(directory: str | Path) -> ArrayDataset:
    """A directory of ``.npy`` arrays read into memory (``np.load`` without a memory map
    would hold the same values)."""
    lazy = open_npy_directory(directory)
    return ArrayDataset(np.asarray(lazy.inputs), lazy.labels, lazy.classes, lazy.source, lazy.named)


# ----------------------------------------------------------------------------- choosing
def open_lazy(spec: str, resize: tuple[int, int] | None = None) -> LazyDataset:
    """The data named by ``spec`` read lazily: an image folder or a directory of ``.npy``
    arrays; any other source is refused with the reason and what to do instead."""
    path = Path(spec)
    if spec in BUNDLED:
        raise DataError(
            f"{spec}: is bundled and small, held in memory; train on it without --stream"
        )
    if path.is_file() and path.suffix == ".npz":
        raise DataError(
            f"{spec}: a .npz cannot be memory-mapped (its arrays are zip members, often "
            f"compressed); unzip it into a directory of .npy files (unzip {path.name} -d "
            f"{path.stem}/) and stream that"
        )
    if not path.is_dir() or (path / "images").is_dir() and (path / "masks").is_dir():
        load(spec, resize)  # raises the in-memory loader's error: no such path, not data, masks
        raise DataError(f"{spec}: cannot be streamed")  # pragma: no cover - load raised
    if is_npy_directory(path):
        return open_npy_directory(path)
    if _find_idx(path, "train-images") is not None:
        raise DataError(
            f"{spec}: IDX files are read into memory; to stream them, save their arrays as "
            "images.npy and labels.npy in a directory"
        )
    if (path / "images").is_dir() and (path / "masks").is_dir():
        load(spec, resize)  # raises: segmentation data
    return open_image_folder(path, resize)


def decoded_size(spec: str, resize: tuple[int, int] | None = None) -> int | None:
    """Bytes of the float32 array an image folder or ``.npy`` directory decodes to, cheaply
    estimated (an image folder's: its number of files times the first image's size, with
    one channel if that image is grey, else three); None for other sources, or when the
    estimate cannot be made (the loader then says what is wrong)."""
    from PIL import Image

    path = Path(spec)
    if spec in BUNDLED or not path.is_dir():
        return None
    try:
        if is_npy_directory(path):
            key = next(k for k in INPUT_KEYS if (path / f"{k}.npy").is_file())
            return int(np.prod(open_npy(path / f"{key}.npy", mmap=True).shape)) * 4
        if _find_idx(path, "train-images") is not None or (path / "masks").is_dir():
            return None  # IDX files and segmentation data are read into memory
        class_dirs, names = image_folder_files(path)
        with Image.open(class_dirs[0] / names[0][0]) as image:
            channels = 1 if image.mode in GREY_MODES else 3
            height, width = resize if resize is not None else image.size[::-1]
    except (DataError, StopIteration, OSError, SyntaxError, ValueError):
        return None
    return sum(len(m) for m in names) * channels * height * width * 4


def parse_size(text: str) -> int:
    """``"512M"``, ``"2G"``, ``"1.5GiB"``, ``"1000000"`` as bytes (K, M, G, T: powers of
    1024)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", text, re.IGNORECASE)
    if match is None:
        raise DataError(f"{BUDGET_VARIABLE}: expected a size like 512M or 2G (bytes), got {text!r}")
    power = " kmgt".index(match.group(2).lower() or " ")
    return int(float(match.group(1)) * 1024**power)


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation: Linux's MemAvailable, else the free
    physical pages, else None."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def memory_budget() -> int | None:
    """The bytes loading a data set into memory may take: the ``CONVPROP_MEMORY_BUDGET``
    environment variable if set, else ``BUDGET_FRACTION`` of :func:`available_memory`
    (None: unknown, never stream unasked)."""
    text = os.environ.get(BUDGET_VARIABLE, "").strip()
    if text:
        return parse_size(text)
    available = available_memory()
    return int(available * BUDGET_FRACTION) if available is not None else None


def fits_in_memory(decoded_bytes: int, budget: int | None) -> bool:
    """Whether loading a float32 array of ``decoded_bytes`` stays within ``budget``."""
    return budget is None or LOAD_PEAK_FACTOR * decoded_bytes <= budget


def load_data(
    spec: str, resize: tuple[int, int] | None = None, stream: bool = False
) -> tuple[ArrayDataset, ArrayDataset | None]:
    """:func:`~convprop.data.load`, or the lazy data set when ``stream`` asks for it or when
    loading an image folder or ``.npy`` directory into memory would exceed
    :func:`memory_budget` (see :func:`fits_in_memory`)."""
    if stream:
        return open_lazy(spec, resize), None
    size = decoded_size(spec, resize)
    if size is not None and not fits_in_memory(size, memory_budget()):
        return open_lazy(spec, resize), None
    return load(spec, resize)


def is_lazy(data: ArrayDataset) -> bool:
    return isinstance(data.inputs, LazyArray)
