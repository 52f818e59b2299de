"""The mask folder loader of convprop.data.masks: what it reads, and one line per bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from convprop.data import DataError, load
from convprop.data.canvases import IGNORE
from convprop.data.masks import load_mask_folder, load_segmentation


def write_sample(root: Path, name: str, image: np.ndarray, mask: np.ndarray) -> None:
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(root / "images" / f"{name}.png")
    Image.fromarray(mask, mode="L").save(root / "masks" / f"{name}.png")


def sample(seed: int, size: tuple[int, int] = (8, 6)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, size, dtype=np.uint8)
    mask = rng.integers(0, 3, size, dtype=np.uint8)
    return image, mask


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    for i, name in enumerate(["b", "a", "c"]):
        write_sample(root, name, *sample(i))
    return root


def test_reads_images_and_masks_sorted_by_name(folder: Path) -> None:
    data = load_mask_folder(folder)
    assert data.names == ["a", "b", "c"]
    assert data.inputs.shape == (3, 1, 8, 6) and data.inputs.dtype == np.float32
    assert data.masks.shape == (3, 8, 6) and data.masks.dtype == np.int64
    image, mask = sample(1)  # "a" was written second
    np.testing.assert_array_equal(data.inputs[0, 0], image.astype(np.float32) / 255)
    np.testing.assert_array_equal(data.masks[0], mask)
    assert data.classes == ["0", "1", "2"] and not data.named


def test_classes_txt_names_the_classes_and_ignore_is_kept(folder: Path) -> None:
    image, mask = sample(5)
    mask[0, 0] = IGNORE
    write_sample(folder, "d", image, mask)
    (folder / "classes.txt").write_text("sky\nroad\ncar\nperson\n")
    data = load_mask_folder(folder)
    assert data.classes == ["sky", "road", "car", "person"] and data.named
    assert data.masks[3, 0, 0] == IGNORE


def test_relabelled_maps_classes_by_name(folder: Path) -> None:
    (folder / "classes.txt").write_text("sky\nroad\ncar\n")
    data = load_mask_folder(folder)
    moved = data.relabelled(["car", "sky", "road", "person"])
    expected = np.array([1, 2, 0])[data.masks]
    np.testing.assert_array_equal(moved.masks, expected)
    with pytest.raises(DataError, match="names classes the run does not know: road"):
        data.relabelled(["car", "sky"])
    (folder / "classes.txt").unlink()
    unnamed = load_mask_folder(folder)
    np.testing.assert_array_equal(unnamed.relabelled(["x", "y", "z"]).masks, unnamed.masks)
    with pytest.raises(DataError, match=r"has class index 2, but the run knows 2 classes"):
        unnamed.relabelled(["x", "y"])


def test_resize_is_bilinear_for_images_and_nearest_for_masks(folder: Path) -> None:
    data = load_mask_folder(folder, resize=(16, 12))
    assert data.inputs.shape == (3, 1, 16, 12)
    assert set(np.unique(data.masks)) <= {0, 1, 2}  # no interpolated class values
    _, mask = sample(1)
    np.testing.assert_array_equal(data.masks[0], np.repeat(np.repeat(mask, 2, 0), 2, 1))


def test_the_bundled_canvases_come_with_their_held_out_part() -> None:
    train, test = load_segmentation("mnist-canvases")
    assert len(train) == 3000 and test is not None and len(test) == 500
    assert train.classes[-1] == "background"


def test_a_classification_loader_points_a_mask_folder_to_task_segment(folder: Path) -> None:
    with pytest.raises(DataError, match="segmentation data; train on it with --task segment"):
        load(str(folder))


def _broken(folder: Path, how: str) -> str:
    """Break ``folder`` in one way; return the message expected."""
    if how == "no mask":
        (folder / "masks" / "b.png").unlink()
        return r"images/b.png: has no mask \(expected .*masks/b.png\)"
    if how == "no image":
        (folder / "images" / "c.png").unlink()
        return r"masks/c.png: has no image"
    if how == "size mismatch":
        Image.fromarray(np.zeros((8, 7), np.uint8), mode="L").save(folder / "masks" / "a.png")
        return r"masks/a.png: is 7x8 but its image is 6x8"
    if how == "sizes differ":
        write_sample(folder, "d", *sample(3, (9, 6)))
        return r"images/d.png: is 6x9 but a.png is 6x8; pass --resize HxW"
    if how == "rgb mask":
        Image.fromarray(np.zeros((8, 6, 3), np.uint8)).save(folder / "masks" / "a.png")
        return r"masks/a.png: a mask must be an 8-bit image of class indices \(mode L or P\)"
    if how == "class outside classes.txt":
        (folder / "classes.txt").write_text("sky\nroad\n")
        return r"masks/a.png: has class 2, but .*classes.txt names only 2 classes"
    if how == "classes.txt too short":
        (folder / "classes.txt").write_text("sky\n")
        return r"classes.txt: needs at least two class names"
    if how == "classes.txt repeats":
        (folder / "classes.txt").write_text("sky\nsky\nroad\n")
        return r"classes.txt: names a class twice"
    if how == "all ignored":
        for name in "abc":
            image, _ = sample(0)
            write_sample(folder, name, image, np.full((8, 6), IGNORE, np.uint8))
        return r"every pixel is 255 \(ignore\); nothing to learn"
    if how == "one class":
        for name in "abc":
            image, _ = sample(0)
            write_sample(folder, name, image, np.zeros((8, 6), np.uint8))
        return r"every labelled pixel is class 0; need at least two classes"
    if how == "not an image":
        (folder / "images" / "a.png").write_text("not a png")
        return r"images/a.png: cannot read image"
    if how == "empty":
        for path in (folder / "images").iterdir():
            path.unlink()
        return r"images: no images"
    raise AssertionError(how)


@pytest.mark.parametrize(
    "how",
    [
        "no mask",
        "no image",
        "size mismatch",
        "sizes differ",
        "rgb mask",
        "class outside classes.txt",
        "classes.txt too short",
        "classes.txt repeats",
        "all ignored",
        "one class",
        "not an image",
        "empty",
    ],
)
def test_bad_folders_are_one_line_errors_naming_the_file(folder: Path, how: str) -> None:
    expected = _broken(folder, how)
    with pytest.raises(DataError, match=expected) as caught:
        load_segmentation(str(folder))
    assert "\n" not in str(caught.value)


def test_not_a_mask_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such directory"):
        load_segmentation(str(tmp_path / "missing"))
    (tmp_path / "images").mkdir()
    with pytest.raises(DataError, match="not a mask folder"):
        load_segmentation(str(tmp_path))
    with pytest.raises(DataError, match="the bundled canvases are 64x64"):
        load_segmentation("mnist-canvases", resize=(32, 32))
