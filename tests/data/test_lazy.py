"""Lazy data: an image folder decoded on demand and memory-mapped .npy arrays hold the same
values as the in-memory loaders, and batch, split and describe themselves the same way."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from convprop.data import (
    DataError,
    DataLoader,
    LazyArray,
    LazyDataset,
    channel_statistics,
    load,
    load_image_folder,
    load_npz,
    open_image_folder,
    open_npy_directory,
    stratified_split,
)
from convprop.data.lazy import (
    RunningStatistics,
    iter_decoded,
    load_data,
    memory_budget,
    open_lazy,
    parse_size,
)


def noisy_folder(root: Path, counts: dict[str, int], mode: str = "RGB", size=(6, 5)) -> Path:
    """Class folders of random images (``size`` is width, height), so every pixel counts."""
    rng = np.random.default_rng(len(counts))
    shape = (size[1], size[0]) + ((3,) if mode == "RGB" else ())
    for name, count in counts.items():
        (root / name).mkdir(parents=True)
        for index in range(count):
            pixels = rng.integers(0, 256, shape, dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{index:03d}.png")
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return noisy_folder(tmp_path_factory.mktemp("lazy") / "rgb", {"cat": 9, "dog": 7, "emu": 8})


def test_lazy_folder_holds_the_in_memory_values(folder: Path) -> None:
    memory, lazy = load_image_folder(folder), open_image_folder(folder)
    assert isinstance(lazy, LazyDataset) and isinstance(lazy.inputs, LazyArray)
    assert lazy.inputs.shape == memory.inputs.shape == (24, 3, 5, 6)
    assert lazy.inputs.dtype == np.float32 and lazy.inputs.ndim == 4 and len(lazy) == 24
    assert lazy.classes == memory.classes and lazy.source == memory.source
    np.testing.assert_array_equal(lazy.labels, memory.labels)
    assert np.asarray(lazy.inputs).tobytes() == memory.inputs.tobytes()
    mask = np.arange(24) % 3 == 0
    for index in (5, -1, slice(3, 20, 4), slice(None), np.array([7, 2, 2, 23]), mask, []):
        np.testing.assert_array_equal(lazy.inputs[index], memory.inputs[index])
    np.testing.assert_array_equal(lazy.inputs[4, 1], memory.inputs[4, 1])
    np.testing.assert_array_equal(lazy.inputs[2:9, :, 0], memory.inputs[2:9, :, 0])
    inputs, labels = lazy[np.array([3, 1])]
    np.testing.assert_array_equal(inputs, memory.inputs[[3, 1]])
    np.testing.assert_array_equal(labels, memory.labels[[3, 1]])
    with pytest.raises(IndexError, match="out of bounds for 24 samples"):
        lazy.inputs[24]
    with pytest.raises(IndexError, match="out of bounds"):
        lazy.inputs[np.array([0, 30])]
    with pytest.raises(IndexError, match="first axis"):
        lazy.inputs[np.array([0.5])]


def test_grey_and_resized_folders(tmp_path: Path) -> None:
    grey = noisy_folder(tmp_path / "grey", {"a": 3, "b": 2}, mode="L")
    assert np.asarray(open_image_folder(grey).inputs).tobytes() == (
        load_image_folder(grey).inputs.tobytes()
    )
    mixed = noisy_folder(tmp_path / "mixed", {"a": 3}, size=(7, 4))
    noisy_folder(tmp_path / "mixed", {"b": 2}, mode="L", size=(5, 9))
    lazy, memory = open_image_folder(mixed, (6, 8)), load_image_folder(mixed, (6, 8))
    assert lazy.inputs.shape == (5, 3, 6, 8)
    assert np.asarray(lazy.inputs).tobytes() == memory.inputs.tobytes()


@pytest.mark.parametrize(
    ("counts", "message"),
    [
        ({"a": 2, "b": 0}, "empty class folder"),
        ({"a": 2}, r"only one class folder \(a\)"),
    ],
)
def test_bad_folders_are_refused_alike(tmp_path: Path, counts: dict, message: str) -> None:
    root = tmp_path / "data"
    noisy_folder(root, counts)
    with pytest.raises(DataError, match=message) as memory:
        load_image_folder(root)
    with pytest.raises(DataError, match=message) as lazy:
        open_image_folder(root)
    assert str(lazy.value) == str(memory.value)


def test_other_sizes_and_unreadable_headers_are_refused_when_opened(tmp_path: Path) -> None:
    root = noisy_folder(tmp_path / "data", {"a": 2})
    noisy_folder(root, {"b": 2}, size=(4, 4))
    with pytest.raises(DataError, match="different sizes .*--resize") as lazy:
        open_image_folder(root)
    with pytest.raises(DataError) as memory:
        load_image_folder(root)
    assert str(lazy.value) == str(memory.value)
    (root / "b" / "1.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(DataError, match=r"b/1.png: cannot read image"):
        open_image_folder(root, (4, 4))


def test_damaged_pixels_are_refused_when_decoded(tmp_path: Path) -> None:
    root = noisy_folder(tmp_path / "data", {"a": 3, "b": 3}, size=(40, 40))
    broken = root / "a" / "001.png"
    broken.write_bytes(broken.read_bytes()[:200])  # the header survives, the pixels do not
    lazy = open_image_folder(root)
    lazy.inputs[0]
    with pytest.raises(DataError, match=f"{broken}: cannot read image") as error:
        lazy.inputs[:3]
    with pytest.raises(DataError) as memory:
        load_image_folder(root)
    assert str(error.value) == str(memory.value)


def test_subset_relabelled_view_and_reshape_stay_lazy(folder: Path) -> None:
    memory, lazy = load_image_folder(folder), open_image_folder(folder)
    train, _ = stratified_split(lazy.labels, 0.25, seed=3)
    part = lazy.relabelled(["ant", "cat", "dog", "emu"]).subset(train)
    expected = memory.relabelled(["ant", "cat", "dog", "emu"]).subset(train)
    assert isinstance(part, LazyDataset) and part.classes == expected.classes
    np.testing.assert_array_equal(part.labels, expected.labels)
    assert np.asarray(part.inputs).tobytes() == expected.inputs.tobytes()
    smaller = part.subset(np.array([4, 0]))
    np.testing.assert_array_equal(smaller.inputs[:], expected.inputs[[4, 0]])
    sequences = part.as_sequence()
    assert sequences.inputs.shape == (len(train), 15, 6) and sequences.is_sequence
    np.testing.assert_array_equal(sequences.inputs[1:3], expected.inputs[1:3].reshape(2, 15, 6))
    with pytest.raises(ValueError, match="cannot reshape"):
        part.inputs.reshape(len(train), 7)


def test_a_lazy_array_pickles_as_names_not_pixels(folder: Path) -> None:
    lazy = open_image_folder(folder).inputs
    copy = pickle.loads(pickle.dumps(lazy))
    np.testing.assert_array_equal(copy[:], lazy[:])
    assert "image folder" in repr(lazy) and "(24, 3, 5, 6)" in repr(lazy)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_loader_batches_equal_the_in_memory_ones(folder: Path, num_workers: int) -> None:
    memory, lazy = load_image_folder(folder), open_image_folder(folder)

    def batches(data, workers: int, **options) -> list:
        loader = DataLoader(
            data,
            5,
            shuffle=True,
            generator=np.random.default_rng(11),
            num_workers=workers,
            transform=lambda x: x * 2,
            **options,
        )
        epochs = [list(loader) for _ in range(2)]  # two epochs: two permutations
        loader.close()
        return epochs

    expected = batches(memory, 0)
    for got in (batches(lazy, num_workers), batches(lazy, num_workers, drop_last=True)):
        for epoch, want in zip(got, expected, strict=True):
            assert len(epoch) in (len(want), len(want) - 1)
            for (inputs, labels), (want_inputs, want_labels) in zip(epoch, want, strict=False):
                assert inputs.tobytes() == want_inputs.tobytes()
                np.testing.assert_array_equal(labels, want_labels)
    if num_workers:  # in-memory data in workers, and workers kept from one epoch to the next
        loader = DataLoader(
            memory, 5, shuffle=True, generator=np.random.default_rng(11), num_workers=2,
            transform=lambda x: x * 2, persistent_workers=True,
        )  # fmt: skip
        first = list(loader)
        pids = loader._pool.pids
        second = list(loader)
        assert loader._pool.pids == pids
        loader.close()
        assert loader._pool is None
        for got, want in zip(first + second, expected[0] + expected[1], strict=True):
            assert got[0].tobytes() == want[0].tobytes()


def test_loader_arguments_are_checked(folder: Path) -> None:
    data = open_image_folder(folder)
    with pytest.raises(ValueError, match="num_workers must be a non-negative int, got -1"):
        DataLoader(data, 4, num_workers=-1)
    with pytest.raises(ValueError, match="prefetch_factor must be a positive int, got 0"):
        DataLoader(data, 4, num_workers=1, prefetch_factor=0)
    with pytest.raises(ValueError, match="persistent_workers needs num_workers > 0"):
        DataLoader(data, 4, persistent_workers=True)


def test_running_statistics_equal_channel_statistics_to_rounding() -> None:
    rng = np.random.default_rng(5)
    for shape in ((97, 3, 5, 4), (40, 2, 30)):
        inputs = rng.random(shape, dtype=np.float32) * rng.random(shape[1], np.float32).reshape(
            (1, -1) + (1,) * (len(shape) - 2)
        )
        running = RunningStatistics()
        for start in range(0, len(inputs), 13):
            running.update(inputs[start : start + 13])
        mean, std = running.result()
        want_mean, want_std = channel_statistics(inputs)
        np.testing.assert_allclose(mean, want_mean, rtol=1e-13)
        np.testing.assert_allclose(std, want_std, rtol=1e-13)
        # Normalize works in float32, where the two agree exactly.
        assert np.array_equal(np.float32(mean), np.float32(want_mean))
        assert np.array_equal(np.float32(std), np.float32(want_std))
    with pytest.raises(ValueError, match="no samples"):
        RunningStatistics().result()


def test_decoded_chunks_cover_everything_in_order(folder: Path) -> None:
    lazy = open_image_folder(folder).inputs
    chunks = list(iter_decoded(lazy, chunk_bytes=lazy.sample_bytes * 5))
    assert [len(c) for c in chunks] == [5, 5, 5, 5, 4]
    np.testing.assert_array_equal(np.concatenate(chunks), np.asarray(lazy))


# ----------------------------------------------------------------------------- .npy directories
def npy_directory(root: Path, **arrays: np.ndarray) -> Path:
    root.mkdir(parents=True)
    for name, array in arrays.items():
        np.save(root / f"{name}.npy", array)
    return root


@pytest.mark.parametrize(
    ("key", "inputs"),
    [
        ("images", np.random.default_rng(0).integers(0, 256, (30, 7, 6), dtype=np.uint8)),
        ("images", np.random.default_rng(1).random((30, 2, 4, 4))),  # float64 -> float32
        ("signals", np.random.default_rng(2).random((30, 3, 9), dtype=np.float32)),
    ],
)
def test_npy_directory_is_memory_mapped_and_equals_the_npz(
    tmp_path: Path, key: str, inputs: np.ndarray
) -> None:
    labels = np.arange(30) % 3
    directory = npy_directory(tmp_path / "data", **{key: inputs, "labels": labels})
    (directory / "classes.txt").write_text("red\ngreen\nblue\n")
    np.savez(
        tmp_path / "data.npz", **{key: inputs, "labels": labels}, classes=["red", "green", "blue"]
    )
    want = load_npz(tmp_path / "data.npz")
    lazy = open_npy_directory(directory)
    assert isinstance(lazy.inputs._reader.array, np.memmap)  # np.load(mmap_mode="r")
    assert lazy.classes == want.classes == ["red", "green", "blue"]
    assert lazy.inputs.shape == want.inputs.shape and lazy.is_sequence == want.is_sequence
    np.testing.assert_array_equal(lazy.labels, want.labels)
    assert np.asarray(lazy.inputs).tobytes() == want.inputs.tobytes()
    np.testing.assert_array_equal(lazy.inputs[np.array([29, 0, 4])], want.inputs[[29, 0, 4]])
    memory, _ = load(str(directory))  # read into memory: the same again
    assert isinstance(memory.inputs, np.ndarray) and memory.inputs.tobytes() == (
        want.inputs.tobytes()
    )
    # A worker maps the file itself: the pickle holds its name, not its bytes.
    assert len(pickle.dumps(lazy.inputs)) < 1000
    batches = list(DataLoader(lazy, 8, shuffle=True, generator=np.random.default_rng(1)))
    expected = list(DataLoader(want, 8, shuffle=True, generator=np.random.default_rng(1)))
    assert all(a[0].tobytes() == b[0].tobytes() for a, b in zip(batches, expected, strict=True))


def test_an_unzipped_npz_is_an_npy_directory(tmp_path: Path) -> None:
    images = np.random.default_rng(3).integers(0, 256, (12, 5, 5), dtype=np.uint8)
    np.savez(tmp_path / "data.npz", images=images, labels=np.arange(12) % 2, classes=["a", "b"])
    with zipfile.ZipFile(tmp_path / "data.npz") as archive:
        archive.extractall(tmp_path / "data")
    lazy = open_npy_directory(tmp_path / "data")
    assert lazy.classes == ["a", "b"]
    assert np.asarray(lazy.inputs).tobytes() == load_npz(tmp_path / "data.npz").inputs.tobytes()


def test_bad_npy_directories(tmp_path: Path) -> None:
    images, labels = np.zeros((4, 3, 3), np.uint8), np.array([0, 1, 0, 1])
    only_labels = npy_directory(tmp_path / "a", labels=labels)
    with pytest.raises(DataError, match="expected images.npy .* and labels.npy, found labels.npy"):
        open_npy_directory(only_labels)
    short = npy_directory(tmp_path / "b", images=images, labels=labels[:3])
    with pytest.raises(DataError, match="4 inputs but 3 labels"):
        open_npy_directory(short)
    objects = npy_directory(tmp_path / "c", labels=labels)
    np.save(objects / "images.npy", np.array([{}, 1, 2, 3], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="images.npy: holds Python objects"):
        open_npy_directory(objects)
    not_npy = npy_directory(tmp_path / "d", labels=labels)
    (not_npy / "images.npy").write_bytes(b"hello")
    with pytest.raises(DataError, match="images.npy: not a .npy file"):
        open_npy_directory(not_npy)
    nan = np.zeros((4, 3, 3), np.float32)
    nan[2, 1, 1] = np.nan
    with pytest.raises(
        DataError,
        match=r"hold 1 NaN or infinite values \(in 1 sample\(s\), "
        "the first at index 2\\)",
    ):
        open_npy_directory(npy_directory(tmp_path / "e", images=nan, labels=labels))
    two_d = npy_directory(tmp_path / "f", images=images, labels=labels[:, None])
    with pytest.raises(DataError, match="labels must be a 1-D integer array"):
        open_npy_directory(two_d)
    unnamed = npy_directory(tmp_path / "g", images=images, labels=labels * 2)
    (unnamed / "classes.txt").write_text("one\n")
    with pytest.raises(DataError, match="label 2 has no name among its 1 classes"):
        open_npy_directory(unnamed)


# ----------------------------------------------------------------------------- choosing
def test_only_folders_and_npy_directories_stream(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="mnist-5k: is bundled and small"):
        open_lazy("mnist-5k")
    np.savez(tmp_path / "d.npz", images=np.zeros((2, 3, 3)), labels=np.array([0, 1]))
    with pytest.raises(DataError, match="cannot be memory-mapped .*unzip d.npz -d d/"):
        open_lazy(str(tmp_path / "d.npz"))
    with pytest.raises(DataError, match="no such file or directory"):
        open_lazy(str(tmp_path / "nowhere"))
    (tmp_path / "idx").mkdir()
    (tmp_path / "idx" / "train-images-idx3-ubyte").write_bytes(b"")
    with pytest.raises(DataError, match="IDX files are read into memory"):
        open_lazy(str(tmp_path / "idx"))


def test_the_memory_budget_picks_the_lazy_path(folder: Path, monkeypatch) -> None:
    assert parse_size("512M") == 512 * 2**20 and parse_size("1.5 GiB") == 3 * 2**29
    assert parse_size("1000") == 1000 and parse_size("2k") == 2048
    monkeypatch.setenv("CONVPROP_MEMORY_BUDGET", "lots")
    with pytest.raises(DataError, match="CONVPROP_MEMORY_BUDGET: expected a size like 512M"):
        memory_budget()
    # The folder decodes to 8,640 bytes; loading it is taken to need 4.5 times that, 38,880.
    monkeypatch.setenv("CONVPROP_MEMORY_BUDGET", "38000")
    data, _ = load_data(str(folder))
    assert isinstance(data, LazyDataset)
    monkeypatch.setenv("CONVPROP_MEMORY_BUDGET", "38880")
    data, _ = load_data(str(folder))
    assert isinstance(data.inputs, np.ndarray)
    assert isinstance(load_data(str(folder), stream=True)[0], LazyDataset)
    monkeypatch.delenv("CONVPROP_MEMORY_BUDGET")
    budget = memory_budget()
    assert budget is not None and budget > 0
