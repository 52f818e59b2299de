"""``convprop explain model`` on a segmentation run, through ``convprop.cli.main``: a test
sample against its own mask, an image of any size (padded, the padding ignored) against a
mask file or its predicted mask, and the one-line errors of a bad mask, of --label and of
--mask where it does not apply."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import convprop as cp
from convprop.cli import main
from convprop.data.canvases import CLASSES, IGNORE, make_canvases
from convprop.nn import functional as F
from convprop.training import TrainConfig, fit, load_run
from convprop.training.data import prepare_data

SIDE = 16  # the canvases shrunk to 16x16, so that a trace of the default fcn is quick


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-epoch fcn run on a mask folder of 24 small canvases."""
    folder = tmp_path_factory.mktemp("canvases")
    (folder / "images").mkdir()
    (folder / "masks").mkdir()
    canvases = make_canvases(24, "train", seed=5)
    for i, (image, mask) in enumerate(zip(canvases.inputs[:, 0], canvases.masks, strict=True)):
        picture = Image.fromarray(np.round(image * 255).astype(np.uint8))
        picture.resize((SIDE, SIDE), Image.Resampling.BILINEAR).save(folder / f"images/{i}.png")
        labels = Image.fromarray(mask.astype(np.uint8))
        labels.resize((SIDE, SIDE), Image.Resampling.NEAREST).save(folder / f"masks/{i}.png")
    (folder / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    out = tmp_path_factory.mktemp("run") / "fcn"
    config = TrainConfig.from_dict(
        {"task": "segment", "data": str(folder), "epochs": 1, "batch_size": 8, "seed": 1}
    )
    fit(config, out, progress=False, log=lambda line: None)
    return out


def explain(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(["explain", "model", *argv, "--checks", "1"])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def training_loss(run: Path, image: np.ndarray, mask: np.ndarray) -> float:
    """The loss training takes of a (C, H, W) image in [0, 1] and its (H, W) mask."""
    network, checkpoint = load_run(run)
    network.eval()
    mean = np.array(checkpoint.mean, np.float32)[:, None, None]
    std = np.array(checkpoint.std, np.float32)[:, None, None]
    x = cp.tensor(((image - mean) / std)[None].astype(np.float32))
    with cp.no_grad():
        loss = F.cross_entropy(network(x), cp.tensor(mask[None]), ignore_index=IGNORE)
    return float(loss.item())


def test_a_test_sample_against_its_own_mask(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = explain(capsys, str(run), "--index", "0", "--format", "json")
    assert status == 0, err
    document = json.loads(out)
    assert list(document) == [
        "run",
        "image",
        "task",
        "label",
        "prediction",
        "probabilities",
        "loss",
        "layers",
    ]
    assert document["task"] == "segment" and document["image"] == "test sample 0"
    network, checkpoint = load_run(run)
    test = prepare_data(checkpoint.config).test
    np.testing.assert_array_equal(document["label"], test.masks[0])
    assert np.shape(document["prediction"]) == (SIDE, SIDE)
    assert np.shape(document["probabilities"]) == (len(CLASSES), SIDE, SIDE)
    assert document["loss"] == pytest.approx(
        training_loss(run, test.inputs[0], test.masks[0]), rel=1e-6
    )
    types = [layer["type"] for layer in document["layers"]]
    assert types.count("ConvTranspose2d") == 2 and types.count("cat") == 2
    loss = document["layers"][-1]
    assert loss["rule"].startswith(
        f"per-pixel softmax + cross-entropy, the mean over the {SIDE * SIDE} labelled pixels"
    )
    assert max(layer["check"]["max_rel_error"] for layer in document["layers"]) < 1e-3


def test_an_image_of_any_size_with_its_mask(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 14x18 image is padded to 16x20 (the fcn's multiple is 4); the padding is ignored."""
    canvas = make_canvases(1, "test", seed=6)
    picture = Image.fromarray(np.round(canvas.inputs[0, 0] * 255).astype(np.uint8))
    picture = picture.resize((18, 14), Image.Resampling.BILINEAR)
    labels = Image.fromarray(canvas.masks[0].astype(np.uint8))
    labels = labels.resize((18, 14), Image.Resampling.NEAREST)
    image_file, mask_file = tmp_path / "canvas.png", tmp_path / "mask.png"
    picture.save(image_file)
    labels.save(mask_file)
    page, figure = tmp_path / "page.html", tmp_path / "maps.png"
    status, out, err = explain(
        capsys,
        str(run),
        "--image",
        str(image_file),
        "--mask",
        str(mask_file),
        "--html",
        str(page),
        "--figure",
        str(figure),
    )
    assert status == 0, err
    padding = 16 * 20 - 14 * 18
    assert out.startswith(f"explain model: {run}, {image_file}\nprediction ")
    assert f", {padding} ignored; pixel accuracy " in out
    assert f"the per-pixel cross-entropy over {14 * 18} labelled pixels" in out
    assert page.read_text().startswith("<!DOCTYPE html>") and figure.stat().st_size > 1000

    status, out, _ = explain(
        capsys, str(run), "--image", str(image_file), "--mask", str(mask_file), "--format", "json"
    )
    document = json.loads(out)
    label = np.array(document["label"])
    mask = np.asarray(labels, dtype=np.int64)
    np.testing.assert_array_equal(label[:14, :18], mask)
    assert (label[14:] == IGNORE).all() and (label[:, 18:] == IGNORE).all()
    padded = np.zeros((1, 16, 20), np.float32)
    padded[0, :14, :18] = np.asarray(picture, np.float32) / 255
    assert document["loss"] == pytest.approx(training_loss(run, padded, label), rel=1e-6)


def test_an_image_without_a_mask_is_explained_against_its_prediction(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image_file = tmp_path / "odd.png"
    Image.fromarray(np.full((10, 13), 40, np.uint8)).save(image_file)
    status, out, err = explain(capsys, str(run), "--image", str(image_file), "--format", "json")
    assert status == 0, err
    document = json.loads(out)
    label, prediction = np.array(document["label"]), np.array(document["prediction"])
    assert label.shape == (12, 16)
    np.testing.assert_array_equal(label[:10, :13], prediction[:10, :13])
    assert (label[10:] == IGNORE).all() and (label[:, 13:] == IGNORE).all()


@pytest.mark.parametrize(
    ("write", "message"),
    [
        (lambda path: Image.new("L", (SIDE, SIDE + 1)).save(path), "is 16x17 but the image is"),
        (lambda path: Image.new("RGB", (SIDE, SIDE)).save(path), "got mode RGB"),
        (
            lambda path: Image.new("L", (SIDE, SIDE), 11).save(path),
            "has the value 11, but the run's classes are 0..10 (and 255 to ignore a pixel)",
        ),
        (lambda path: Image.new("L", (SIDE, SIDE), IGNORE).save(path), "every pixel is 255"),
        (lambda path: path.write_bytes(b"not a picture"), "cannot read image"),
    ],
)
def test_a_bad_mask_is_one_line(
    run: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    write: Callable[[Path], None],
    message: str,
) -> None:
    image_file, mask_file = tmp_path / "image.png", tmp_path / "mask.png"
    Image.new("L", (SIDE, SIDE)).save(image_file)
    write(mask_file)
    status, _, err = explain(capsys, str(run), "--image", str(image_file), "--mask", str(mask_file))
    assert status == 2 and err.count("\n") == 1 and err.startswith("convprop: error:")
    assert f"--mask {mask_file}: " in err and message in err


def test_label_and_mask_where_they_do_not_apply(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, err = explain(capsys, str(run), "--index", "0", "--label", "3")
    assert status == 2 and err.count("\n") == 1
    assert "is a segmentation run, whose label is a class per pixel" in err and "--mask" in err
    mask_file = tmp_path / "mask.png"
    Image.new("L", (SIDE, SIDE)).save(mask_file)
    status, _, err = explain(capsys, str(run), "--index", "0", "--mask", str(mask_file))
    assert status == 2 and "--mask goes with --image" in err
    classifier = tmp_path / "classifier"
    command = ["train", "--limit", "20", "--epochs", "1", "--quiet", "--out", str(classifier)]
    assert main(command) == 0
    image_file = tmp_path / "digit.png"
    Image.new("L", (28, 28)).save(image_file)
    capsys.readouterr()
    status, _, err = explain(
        capsys, str(classifier), "--image", str(image_file), "--mask", str(mask_file)
    )
    assert status == 2 and "--mask is for segmentation runs" in err
