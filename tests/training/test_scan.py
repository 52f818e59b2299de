"""``predict --scan``: NMS, box decoding, the centring rule, the match rule and the command.

The references are independent of the code under test: hand-worked boxes and IoUs, the
classifier run on explicit crops of the zero-padded canvas, and centres of mass worked out
for square blobs of ink.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import convprop as cp
from convprop import nn
from convprop.cli import main
from convprop.data import Normalize
from convprop.data.canvases import Box, make_canvases
from convprop.models import fully_convolutional, resnet20
from convprop.nn import functional as F
from convprop.training.scan import (
    DEFAULT_THRESHOLD,
    Detection,
    box_iou,
    centred_windows,
    detect,
    match,
    non_max_suppression,
    scan,
    scanner,
    score_maps,
    window_box,
)

QUICK = ["--limit", "300", "--batch-size", "50", "--quiet", "--seed", "5"]


# ----------------------------------------------------------------------------- boxes, NMS
def test_box_iou_on_hand_worked_boxes() -> None:
    assert box_iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert box_iou((0, 0, 10, 10), (0, 10, 10, 20)) == 0.0  # sharing an edge only
    assert box_iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0
    assert box_iou((0, 0, 10, 10), (0, 5, 10, 15)) == pytest.approx(50 / 150)
    assert box_iou((0, 5, 10, 15), (1, 1, 11, 11)) == pytest.approx(54 / 146)


def test_non_max_suppression_on_a_hand_made_example() -> None:
    boxes = [(0, 0, 10, 10), (1, 1, 11, 11), (0, 20, 10, 30), (0, 5, 10, 15)]
    scores = [0.9, 0.8, 0.7, 0.95]
    # Best first: box 3 (0.95) is kept; box 0 overlaps it by 50/150, box 1 by 54/146, both
    # >= 0.3, so both go; box 2 touches nothing.
    assert non_max_suppression(boxes, scores, 0.3) == [3, 2]
    # At 0.4, box 0 (IoU 0.33 with box 3) stays and then removes box 1 (IoU 81/119 with it).
    assert non_max_suppression(boxes, scores, 0.4) == [3, 0, 2]
    assert non_max_suppression([], [], 0.3) == []
    # Equal scores: the earlier box wins.
    assert non_max_suppression([(0, 0, 4, 4), (0, 1, 4, 5)], [0.5, 0.5], 0.3) == [0]


def test_window_box_is_the_window_centred_at_the_pixel() -> None:
    assert window_box(14, 14, (28, 28)) == (0, 0, 28, 28)
    assert window_box(0, 0, (28, 28)) == (-14, -14, 14, 14)
    assert window_box(2, 7, (5, 4)) == (0, 5, 5, 9)


# ----------------------------------------------------------------------------- score maps
def tiny_classifier() -> nn.Sequential:
    """Window 6x7, total stride 2 (a strided conv), three classes."""
    return nn.Sequential(
        nn.Conv2d(1, 3, 3, stride=2),
        nn.ReLU(),
        nn.Conv2d(3, 4, 2),
        nn.Flatten(),
        nn.Linear(4 * 1 * 2, 5),
        nn.Tanh(),
        nn.Linear(5, 3),
    ).double()


def test_score_maps_hold_the_classifier_on_the_window_centred_at_every_pixel() -> None:
    model = tiny_classifier().eval()
    window = (6, 7)
    network = fully_convolutional(model, input_size=window)
    assert network.scan_stride == (2, 2)
    images = np.random.default_rng(0).uniform(0, 1, (2, 1, 9, 11))
    normalize = Normalize([0.3], [0.5])
    maps = score_maps(network, images, normalize, np.float64)
    assert maps.shape == (2, 3, 9, 11)
    # The reference: the canvas padded with background (raw zeros) by a window on every
    # side, the window of each pixel cut out, normalised, and classified on its own.
    margin = 8
    padded = np.pad(images, ((0, 0), (0, 0), (margin, margin), (margin, margin)))
    for row in range(9):
        for col in range(11):
            top, left, bottom, right = window_box(row, col, window)
            crop = padded[:, :, top + margin : bottom + margin, left + margin : right + margin]
            with cp.no_grad():
                logits = model(cp.from_numpy(np.ascontiguousarray(normalize(crop), np.float64)))
            expected = F.softmax(logits, 1).numpy()
            np.testing.assert_allclose(maps[:, :, row, col], expected, rtol=1e-12, atol=1e-14)


def test_score_maps_refuse_images_smaller_than_the_window() -> None:
    network = fully_convolutional(tiny_classifier(), input_size=(6, 7))
    with pytest.raises(ValueError, match="images are 6x6, smaller than the 6x7 window"):
        score_maps(network, np.zeros((1, 1, 6, 6)), lambda x: x)


# ----------------------------------------------------------------------------- centring
def test_a_blob_is_centred_in_the_windows_within_the_tolerance_of_its_centre_of_mass() -> None:
    canvas = np.zeros((1, 1, 40, 40))
    canvas[0, 0, 10:16, 20:26] = 1.0  # centre of mass (13.0, 23.0) in pixel coordinates
    mask = centred_windows(canvas, (28, 28), tolerance=1.5)[0]
    # Window (r, c) has its centre at (r, c) (pixel r spans [r, r + 1)): |r - 13| <= 1.5.
    expected = np.zeros((40, 40), dtype=bool)
    expected[12:15, 22:25] = True
    np.testing.assert_array_equal(mask, expected)
    loose = centred_windows(canvas, (28, 28), tolerance=None, centre_ink=None)[0]
    assert loose.all()
    # Ink within 3 pixels of the centre only: the window's central 6x6 must meet the blob.
    inked = centred_windows(canvas, (28, 28), tolerance=None)[0]
    expected = np.zeros((40, 40), dtype=bool)
    expected[8:19, 18:29] = True
    np.testing.assert_array_equal(inked, expected)


def test_the_window_between_two_digits_is_centred_by_mass_but_has_no_ink_there() -> None:
    canvas = np.zeros((1, 1, 40, 40))
    canvas[0, 0, 17:23, 8:14] = 1.0  # centres of mass (20, 11) and (20, 29): middle (20, 20)
    canvas[0, 0, 17:23, 26:32] = 1.0
    by_mass = centred_windows(canvas, (28, 28), tolerance=0.5, centre_ink=None)[0]
    assert by_mass[20, 20]
    assert not centred_windows(canvas, (28, 28), tolerance=0.5)[0][20, 20]


def test_centring_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="tolerance must be >= 0"):
        centred_windows(np.zeros((1, 1, 30, 30)), (28, 28), tolerance=-1)
    with pytest.raises(ValueError, match="centre_ink must be >= 1"):
        centred_windows(np.zeros((1, 1, 30, 30)), (28, 28), centre_ink=0)


# ----------------------------------------------------------------------------- detection
def test_detect_keeps_the_best_centred_window_of_each_place_in_reading_order() -> None:
    probabilities = np.full((3, 20, 20), 1 / 3)
    probabilities[:, 15, 15] = (0.01, 0.02, 0.97)
    probabilities[:, 5, 5] = (0.03, 0.95, 0.02)
    probabilities[:, 6, 6] = (0.04, 0.92, 0.04)  # the same place, less sure: suppressed
    probabilities[:, 5, 14] = (0.85, 0.1, 0.05)  # below the threshold
    probabilities[:, 12, 2] = (0.99, 0.005, 0.005)  # not a centred window
    centred = np.ones((20, 20), dtype=bool)
    centred[12, 2] = False
    found = detect(probabilities, centred, (8, 8), ["a", "b", "c"], threshold=0.9)
    assert found == [
        Detection(1, "b", 0.95, 1, 1, 9, 9),
        Detection(2, "c", 0.97, 11, 11, 19, 19),
    ]
    assert detect(probabilities, centred, (8, 8), ["a", "b", "c"], threshold=0.98) == []


def test_match_counts_found_digits_and_false_positives() -> None:
    digits = [Box(3, 10, 10, 30, 30), Box(3, 10, 40, 30, 60), Box(5, 40, 10, 60, 30)]

    def at(label: int, probability: float, row: int, col: int) -> Detection:
        return Detection(label, str(label), probability, *window_box(row, col, (28, 28)))

    detections = [
        at(3, 0.99, 20, 20),  # finds digit 0
        at(3, 0.98, 21, 21),  # a second detection of digit 0: false positive
        at(5, 0.97, 20, 50),  # right place, wrong class: false positive
        at(5, 0.96, 59, 29),  # the digit's last row and column are in the box: finds digit 2
        at(3, 0.95, 30, 45),  # the box's bottom is outside: false positive
    ]
    assert match(detections, digits) == ([True, False, True], 3)
    assert match([], digits) == ([False, False, False], 0)


# ----------------------------------------------------------------------------- the command
@pytest.fixture(scope="module")
def lenet_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("scan") / "lenet"
    # Three epochs on 1,000 digits (85% test accuracy): confident enough to find digits.
    assert main(["train", "--out", str(run), *QUICK, "--epochs", "3", "--limit", "1000"]) == 0
    return run


@pytest.fixture(scope="module")
def canvas(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("canvas") / "canvas.png"
    pixels = make_canvases(1, split="test", seed=3).inputs[0, 0]
    Image.fromarray((pixels * 255).round().astype(np.uint8)).save(path)
    return path


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "convprop", *args], capture_output=True, text=True, timeout=300
    )


ROW = re.compile(r"^(\S+) +(\d\.\d{4}) +(-?\d+) +(-?\d+) +(-?\d+) +(-?\d+)$")


def test_predict_scan_prints_each_digit_found_with_its_window(
    lenet_run: Path, canvas: Path, tmp_path: Path
) -> None:
    heatmap = tmp_path / "heat.png"
    result = run_cli(
        "predict", str(lenet_run), str(canvas), "--scan", "--threshold", "0.5",
        "--heatmap", str(heatmap),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    expected = scan(lenet_run, [canvas], 0.5)[0].detections
    assert expected, "the 1-epoch run finds nothing at 0.5: the format goes untested"
    assert lines[0] == (
        f"{canvas}: {len(expected)} found (probability >= 0.5; boxes are the 28x28 windows, "
        "in pixels)"
    )
    assert lines[1].split() == ["class", "probability", "top", "left", "bottom", "right"]
    rows = [ROW.match(line) for line in lines[2 : 2 + len(expected)]]
    for row, detection in zip(rows, expected, strict=True):
        assert row is not None
        name, probability, *box = row.groups()
        assert name == detection.name and float(probability) >= 0.5
        top, left, bottom, right = map(int, box)
        assert (top, left, bottom, right) == detection.box
        assert (bottom - top, right - left) == (28, 28)
    assert lines[2 + len(expected) :] == [f"heat map written to {heatmap}"]
    with Image.open(heatmap) as picture:
        assert picture.format == "PNG" and min(picture.size) > 300


def test_predict_scan_with_nothing_found_and_several_images(
    lenet_run: Path, canvas: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blank = tmp_path / "blank.png"
    Image.fromarray(np.zeros((40, 50), np.uint8)).save(blank)
    assert main(["predict", str(lenet_run), str(blank), str(canvas), "--scan"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(
        f"{blank}: nothing found (probability >= {DEFAULT_THRESHOLD:g}; boxes are the 28x28 "
        "windows, in pixels)\n"
    )
    assert f"\n{canvas}: " in out


@pytest.fixture(scope="module")
def tdnn_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("scan") / "tdnn"
    assert main(["train", "--model", "tdnn", "--out", str(run), *QUICK, "--epochs", "1"]) == 0
    return run


def test_bad_combinations_are_one_line_errors(
    lenet_run: Path, tdnn_run: Path, canvas: Path, tmp_path: Path
) -> None:
    small = tmp_path / "small.png"
    Image.fromarray(np.zeros((20, 40), np.uint8)).save(small)
    run, image = str(lenet_run), str(canvas)
    cases = {
        (run, image, "--heatmap", str(tmp_path / "h.png")): "--heatmap needs --scan",
        (run, image, "--threshold", "0.5"): "--threshold needs --scan",
        (run, image, "--scan", "--top-k", "2"): "--top-k ranks a whole image's classes",
        (run, image, image, "--scan", "--heatmap", str(tmp_path / "h.png")): (
            "--heatmap draws one image, got 2 IMAGEs"
        ),
        (run, image, "--scan", "--heatmap", str(tmp_path / "h.jpg")): "must name a .png",
        (run, image, "--scan", "--threshold", "1.5"): "must be a probability in [0, 1]",
        (run, str(small), "--scan"): (
            f"{small}: the image is 20x40, smaller than the 28x28 images the run was trained on"
        ),
        (str(tdnn_run), image, "--scan"): (
            "scanning needs a 2-D image classifier, but this run's model (tdnn) reads images "
            "as sequences"
        ),
    }
    for args, message in cases.items():
        result = run_cli("predict", *args)
        assert result.returncode == 2, (args, result.stderr)
        assert result.stdout == ""
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("convprop: error: ")
        assert message in result.stderr, (args, result.stderr)
    assert not (tmp_path / "h.png").exists()


def test_a_model_that_cannot_scan_is_named_in_one_line() -> None:
    with pytest.raises(ValueError, match=r"^RUN: its model cannot scan a canvas \(fully_conv"):
        scanner(resnet20(1), [1, 28, 28], "RUN")
