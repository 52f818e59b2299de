"""Segmentation runs: the metrics, the configuration, and ``train --task segment`` end to end
(checkpoints, resume, evaluate, predict --mask) through the command line."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from convprop.cli import main
from convprop.data.canvases import CLASSES, IGNORE, make_canvases
from convprop.io.files import load_arrays
from convprop.training import TrainConfig
from convprop.training.config import ConfigError
from convprop.training.evaluate import (
    confusion_matrix,
    intersection_over_union,
    segmentation_scores,
)
from convprop.training.segmentation import mask_destinations, predict_masks


# ---------------------------------------------------------------------------- metrics
def test_iou_of_a_hand_computed_example() -> None:
    truth = np.array([[0, 0, 1], [1, 2, IGNORE]])
    predicted = np.array([[0, 1, 1], [1, 1, 0]])
    confusion = confusion_matrix(truth, predicted, 4, ignore_index=IGNORE)
    # The ignored pixel is left out: 5 pairs (0,0) (0,1) (1,1) (1,1) (2,1).
    np.testing.assert_array_equal(
        confusion, [[1, 1, 0, 0], [0, 2, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0]]
    )
    # class 0: TP 1, union {2 true, 1 predicted} -> 1/2; class 1: TP 2, union 4 -> 1/2;
    # class 2: TP 0, union 1 -> 0; class 3: neither present nor predicted -> NaN.
    iou = intersection_over_union(confusion)
    np.testing.assert_allclose(iou[:3], [0.5, 0.5, 0.0])
    assert np.isnan(iou[3])
    scores = segmentation_scores(confusion, ["a", "b", "c", "d"])
    assert scores["test_pixel_accuracy"] == pytest.approx(3 / 5)
    assert scores["test_mean_iou"] == pytest.approx(1 / 3)  # the NaN class is not averaged
    assert list(scores) == [
        "test_pixel_accuracy",
        "test_mean_iou",
        "test_iou_a",
        "test_iou_b",
        "test_iou_c",
        "test_iou_d",
    ]


def test_classification_confusion_is_unchanged() -> None:
    labels, predictions = np.array([2, 0, 2, 1]), np.array([2, 1, 0, 1])
    expected = np.zeros((3, 3), np.int64)
    for t, p in zip(labels, predictions, strict=True):
        expected[t, p] += 1
    np.testing.assert_array_equal(confusion_matrix(labels, predictions, 3), expected)


# ---------------------------------------------------------------------------- configuration
def test_a_segment_task_takes_its_own_defaults() -> None:
    config = TrainConfig.from_dict({"task": "segment"})
    assert (config.model, config.data, config.augment) == ("fcn", "mnist-canvases", [])
    assert TrainConfig.from_dict({"task": "segment", "model": "unet"}).model == "unet"
    assert TrainConfig.from_dict({}).model == "lenet5"  # classification as before


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"task": "detect"}, "task must be one of classify, segment, got 'detect'"),
        ({"task": "segment", "model": "lenet5"}, "'lenet5' is a classifier"),
        ({"model": "unet"}, "'unet' is a segmenter; train it with --task segment"),
        ({"task": "segment", "augment": "rotate"}, "rotate would move the images but not"),
        ({"task": "segment", "model": "net.onnx"}, "an ONNX segmenter cannot be fine-tuned"),
    ],
)
def test_settings_that_do_not_suit_the_task(settings: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TrainConfig.from_dict(settings)


def test_mask_destinations() -> None:
    assert mask_destinations(Path("out/m.png"), ["a.png"]) == [
        (Path("out/m.png"), Path("out/m-overlay.png"))
    ]
    assert mask_destinations(Path("out"), ["x/a.png", "y/b.jpg"]) == [
        (Path("out/a.png"), Path("out/a-overlay.png")),
        (Path("out/b.png"), Path("out/b-overlay.png")),
    ]
    with pytest.raises(ValueError, match="must name a .png file"):
        mask_destinations(Path("m.jpg"), ["a.png"])
    with pytest.raises(ValueError, match="two images are named a"):
        mask_destinations(Path("out"), ["x/a.png", "y/a.png"])


# ---------------------------------------------------------------------------- end to end
TINY = ["--task", "segment", "--limit", "24", "--batch-size", "8", "--quiet", "--seed", "3"]


def _train(run: Path, epochs: int, capsys: pytest.CaptureFixture[str]) -> str:
    command = ["train", *TINY, "--epochs", str(epochs), "--out", str(run)]
    assert main(command) == 0, capsys.readouterr().err
    return capsys.readouterr().out


@pytest.fixture(scope="module")
def canvas_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("canvases")
    canvases = make_canvases(2, "test", seed=9)
    paths = []
    for i, image in enumerate(canvases.inputs[:, 0]):
        paths.append(folder / f"canvas{i}.png")
        Image.fromarray(np.round(image * 255).astype(np.uint8)).save(paths[-1])
    return paths


def test_train_resume_evaluate_predict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], canvas_files: list[Path]
) -> None:
    whole = tmp_path / "whole"
    out = _train(whole, 2, capsys)
    assert "final test mean IoU " in out and "(pixel accuracy " in out

    # metrics.csv: the classification columns, then the segmentation ones, one per class
    with open(whole / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2
    assert list(rows[0])[6:] == [
        "test_pixel_accuracy",
        "test_mean_iou",
        *(f"test_iou_{name}" for name in CLASSES),
    ]
    assert rows[1]["test_accuracy"] == rows[1]["test_pixel_accuracy"]
    assert (whole / "segmentation.png").stat().st_size > 10_000

    assert main(["evaluate", str(whole)]) == 0
    report = capsys.readouterr().out
    assert "mean IoU " in report and "background" in report
    mean_iou = float(report.split("mean IoU ")[1].split()[0])
    assert mean_iou == pytest.approx(float(rows[1]["test_mean_iou"]), abs=1e-4)
    assert main(["evaluate", str(whole), "--perturb", "shift=1"]) == 2
    assert "is a segmentation run; its masks would have to move" in capsys.readouterr().err

    mask_file = tmp_path / "mask.png"
    assert main(["predict", str(whole), str(canvas_files[0]), "--mask", str(mask_file)]) == 0
    assert capsys.readouterr().out.startswith(f"{canvas_files[0]}: ")
    with Image.open(mask_file) as picture:
        assert picture.mode == "P"
        written = np.asarray(picture)
    expected = predict_masks(whole, [canvas_files[0]])[0].mask
    np.testing.assert_array_equal(written, expected)
    assert (tmp_path / "mask-overlay.png").exists()


def test_resume_reaches_the_uninterrupted_weights(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    command = [*TINY, "--scheduler", "none"]  # a schedule that does not depend on --epochs
    whole, halves = tmp_path / "whole", tmp_path / "halves"
    assert main(["train", *command, "--epochs", "2", "--out", str(whole)]) == 0
    assert main(["train", *command, "--epochs", "1", "--out", str(halves)]) == 0
    assert main(["train", "--resume", str(halves), "--epochs", "2", "--quiet"]) == 0
    capsys.readouterr()
    ours, theirs = (
        load_arrays(halves / "model.safetensors"),
        load_arrays(whole / "model.safetensors"),
    )
    assert ours.keys() == theirs.keys()
    for key in ours:
        assert ours[key].tobytes() == theirs[key].tobytes(), key
    assert (halves / "metrics.csv").read_bytes() == (whole / "metrics.csv").read_bytes()


def test_a_mask_image_of_any_size_is_padded_and_cropped_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    _train(run, 1, capsys)
    odd = tmp_path / "odd.png"
    Image.fromarray(np.zeros((30, 45), np.uint8)).save(odd)
    (prediction,) = predict_masks(run, [odd])
    assert prediction.mask.shape == (30, 45)
    assert main(["predict", str(run), str(odd), str(odd), "--mask", str(tmp_path / "m")]) == 2
    assert "two images are named odd" in capsys.readouterr().err
    assert main(["predict", str(run), str(odd), "--top-k", "2"]) == 2
    assert "a segmentation run gives masks" in capsys.readouterr().err
    assert main(["predict", str(run), str(odd), "--scan", "--mask", str(tmp_path / "m.png")]) == 2
    assert "choose one" in capsys.readouterr().err


def test_mask_needs_a_segmentation_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "classifier"
    command = ["train", "--limit", "20", "--epochs", "1", "--quiet", "--out", str(run)]
    assert main(command) == 0
    image = tmp_path / "digit.png"
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(image)
    capsys.readouterr()
    assert main(["predict", str(run), str(image), "--mask", str(tmp_path / "m.png")]) == 2
    assert "a classifier gives one class per image, not a mask" in capsys.readouterr().err
    assert not (tmp_path / "m.png").exists()
