"""Loaders for the bundled data, npz, IDX and image folders; splitting and batching."""

from __future__ import annotations

import gzip
import hashlib
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from convprop.data import (
    DataError,
    DataLoader,
    load,
    load_image,
    load_mnist_5k,
    read_idx,
    stratified_split,
)


def write_idx(path: Path, array: np.ndarray, compress: bool = False) -> None:
    codes = {np.dtype(np.uint8): 0x08, np.dtype(">i4"): 0x0C}
    header = bytes([0, 0, codes[array.dtype], array.ndim]) + b"".join(
        int(s).to_bytes(4, "big") for s in array.shape
    )
    raw = header + array.tobytes()
    path.write_bytes(gzip.compress(raw) if compress else raw)


def test_bundled_mnist_is_the_documented_file() -> None:
    digest = hashlib.sha256(resources.files("convprop.data").joinpath("mnist_5k.npz").read_bytes())
    assert digest.hexdigest() == "246e0c30eeea57c8d0037d3f38c8e00651ec204cc61b8022563e9aeeb9d756f4"
    data = load_mnist_5k()
    assert data.inputs.shape == (5000, 1, 28, 28) and data.inputs.dtype == np.float32
    assert data.inputs.min() == 0.0 and data.inputs.max() == 1.0
    np.testing.assert_array_equal(np.bincount(data.labels), [500] * 10)


def test_stratified_split_is_balanced_disjoint_and_seeded() -> None:
    labels = load_mnist_5k().labels
    train, test = stratified_split(labels, 0.2, seed=0)
    assert len(train) == 4000 and len(test) == 1000
    np.testing.assert_array_equal(np.bincount(labels[test]), [100] * 10)
    assert not set(train) & set(test)
    again = stratified_split(labels, 0.2, seed=0)
    np.testing.assert_array_equal(again[1], test)
    assert not np.array_equal(stratified_split(labels, 0.2, seed=1)[1], test)


@pytest.mark.parametrize("compress", [False, True])
def test_idx_directory_round_trip(tmp_path: Path, compress: bool) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (7, 5, 4), dtype=np.uint8)
    labels = rng.integers(0, 3, 7).astype(np.uint8)
    suffix = ".gz" if compress else ""
    write_idx(tmp_path / f"train-images-idx3-ubyte{suffix}", images, compress)
    write_idx(tmp_path / f"train-labels-idx1-ubyte{suffix}", labels, compress)
    write_idx(tmp_path / f"t10k-images-idx3-ubyte{suffix}", images[:2], compress)
    write_idx(tmp_path / f"t10k-labels-idx1-ubyte{suffix}", labels[:2], compress)
    train, test = load(str(tmp_path))
    np.testing.assert_allclose(train.inputs[:, 0] * 255, images)
    np.testing.assert_array_equal(train.labels, labels)
    assert test is not None and len(test) == 2


def test_truncated_or_corrupt_idx_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "train-images-idx3-ubyte"
    write_idx(path, np.zeros((3, 2, 2), dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(DataError, match=rf"{path.name}: truncated or corrupt IDX data"):
        read_idx(path)
    path.write_bytes(b"\x01\x02\x03")
    with pytest.raises(DataError, match="not an IDX file"):
        read_idx(path)
    gz = tmp_path / "x.gz"
    gz.write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="cannot read IDX file"):
        read_idx(gz)


def test_idx_with_mismatched_lengths(tmp_path: Path) -> None:
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((3, 2, 2), dtype=np.uint8))
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(4, dtype=np.uint8))
    with pytest.raises(
        DataError, match="holds 3 images but train-labels-idx1-ubyte holds 4 labels"
    ):
        load(str(tmp_path))


def test_npz_images_and_sequences(tmp_path: Path) -> None:
    np.savez(
        tmp_path / "img.npz", images=np.full((4, 6, 5), 255, np.uint8), labels=np.arange(4) % 2
    )
    data, test = load(str(tmp_path / "img.npz"))
    assert data.inputs.shape == (4, 1, 6, 5) and test is None and np.all(data.inputs == 1)
    np.savez(
        tmp_path / "seq.npz",
        signals=np.ones((3, 2, 20), np.float32),
        labels=np.array([0, 1, 2]),
        classes=np.array(["a", "b", "c"]),
    )
    seq, _ = load(str(tmp_path / "seq.npz"))
    assert seq.is_sequence and seq.classes == ["a", "b", "c"]


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        (
            {"images": np.zeros((3, 2, 2))},
            "expected arrays 'images' \\(or 'signals'\\) and 'labels'",
        ),
        ({"images": np.zeros((3, 2, 2)), "labels": np.zeros(2, int)}, "3 inputs but 2 labels"),
        ({"images": np.zeros((3, 2)), "labels": np.zeros(3, int)}, "images must be"),
        (
            {"images": np.zeros((3, 2, 2)), "labels": np.zeros(3)},
            "labels must be a 1-D integer array",
        ),
        (
            {"images": np.zeros((2, 2, 2)), "labels": np.array([0, -1])},
            "labels must be non-negative",
        ),
    ],
)
def test_bad_npz_files(tmp_path: Path, arrays: dict, message: str) -> None:
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError, match=message):
        load(str(path))


def test_npz_with_pickled_objects_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "objects.npz"
    np.savez(path, images=np.array([{"a": 1}], dtype=object), labels=np.array([0]))
    with pytest.raises(DataError, match="objects.npz: holds Python objects .* never loads"):
        load(str(path))


def test_truncated_npz(tmp_path: Path) -> None:
    path = tmp_path / "cut.npz"
    np.savez(path, images=np.zeros((10, 4, 4)), labels=np.zeros(10, int))
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(DataError, match="cut.npz: not a readable .npz file"):
        load(str(path))


def make_folder(root: Path, spec: dict[str, list[tuple[str, tuple[int, int]]]]) -> None:
    for class_name, images in spec.items():
        (root / class_name).mkdir(parents=True)
        for i, (mode, size) in enumerate(images):
            value = 200 if mode == "L" else (200, 10, 10)
            Image.new(mode, size, value).save(root / class_name / f"{i}.png")


def test_image_folder_grey_and_rgb(tmp_path: Path) -> None:
    make_folder(tmp_path / "grey", {"cat": [("L", (5, 4))] * 2, "dog": [("L", (5, 4))]})
    data, _ = load(str(tmp_path / "grey"))
    assert data.inputs.shape == (3, 1, 4, 5) and data.classes == ["cat", "dog"]
    np.testing.assert_array_equal(data.labels, [0, 0, 1])
    make_folder(tmp_path / "rgb", {"a": [("RGB", (3, 3))], "b": [("L", (3, 3))]})
    rgb, _ = load(str(tmp_path / "rgb"))
    assert rgb.inputs.shape == (2, 3, 3, 3)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"a": [("L", (3, 3))], "b": []}, "empty class folder"),
        ({"a": [("L", (3, 3))]}, "only one class folder \\(a\\)"),
        ({"a": [("L", (3, 3))], "b": [("L", (4, 4))]}, "different sizes .*--resize"),
    ],
)
def test_bad_image_folders(tmp_path: Path, spec: dict, message: str) -> None:
    make_folder(tmp_path / "data", spec)
    with pytest.raises(DataError, match=message):
        load(str(tmp_path / "data"))


def test_resize_and_corrupt_images(tmp_path: Path) -> None:
    make_folder(tmp_path / "data", {"a": [("L", (3, 3))], "b": [("L", (4, 6))]})
    data, _ = load(str(tmp_path / "data"), resize=(8, 8))
    assert data.inputs.shape == (2, 1, 8, 8)
    (tmp_path / "data" / "b" / "broken.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(DataError, match="broken.png: cannot read image"):
        load(str(tmp_path / "data"), resize=(8, 8))
    with pytest.raises(DataError, match="broken.png: cannot read image"):
        load_image(tmp_path / "data" / "b" / "broken.png", 1, (8, 8))
    assert load_image(tmp_path / "data" / "a" / "0.png", 3, (5, 5)).shape == (3, 5, 5)


def test_missing_path() -> None:
    with pytest.raises(DataError, match="nowhere: no such file or directory"):
        load("nowhere")


def test_data_loader_batches_and_seeded_shuffle() -> None:
    data = load_mnist_5k().subset(np.arange(10))
    loader = DataLoader(data, batch_size=4, shuffle=True, generator=np.random.default_rng(3))
    batches = list(loader)
    assert [len(labels) for _, labels in batches] == [4, 4, 2] and len(loader) == 3
    seen = np.concatenate([labels for _, labels in batches])
    np.testing.assert_array_equal(np.sort(seen), np.sort(data.labels))
    again = list(DataLoader(data, batch_size=4, shuffle=True, generator=np.random.default_rng(3)))
    for (a, _), (b, _) in zip(batches, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert len(DataLoader(data, batch_size=4, drop_last=True)) == 2
    with pytest.raises(ValueError, match="batch_size must be a positive int, got 0"):
        DataLoader(data, batch_size=0)
