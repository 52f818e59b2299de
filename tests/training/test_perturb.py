"""evaluate --perturb: strict specs, exact and deterministic transforms, the report end to end.

The transforms are checked against references that do not use the sampling code: a
zero-filled ``np.roll`` for whole-pixel shifts, ``np.rot90`` for quarter turns, a mirror
symmetry for any angle, and single pixels for scaling.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from convprop import nn
from convprop.cli import main
from convprop.data import Normalize
from convprop.training import evaluate
from convprop.training.perturb import (
    Perturbation,
    PerturbationError,
    evaluate_perturbations,
    parse_perturbation,
    parse_perturbations,
)

QUICK = ["--limit", "300", "--batch-size", "50", "--quiet", "--seed", "5", "--epochs", "1"]


def _images(shape: tuple[int, ...] = (3, 2, 7, 9), seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random(shape).astype(np.float32)


def _copies(spec: str, images: np.ndarray) -> list[np.ndarray]:
    perturbation = parse_perturbation(spec)
    return [perturbation.transform(images, copy) for copy in range(perturbation.copies)]


# ----------------------------------------------------------------------------- parsing
@pytest.mark.parametrize(
    ("text", "kind", "amount", "spec", "copies"),
    [
        ("shift=4", "shift", (4.0,), "shift=4", 8),
        ("shift=0", "shift", (0.0,), "shift=0", 1),
        ("rotate=20", "rotate", (20.0,), "rotate=20", 2),
        ("rotate=12.5", "rotate", (12.5,), "rotate=12.5", 2),
        ("rotate=0", "rotate", (0.0,), "rotate=0", 1),
        ("rotate=180", "rotate", (180.0,), "rotate=180", 2),
        ("scale=0.8,1.2", "scale", (0.8, 1.2), "scale=0.8,1.2", 2),
        ("scale=1,1", "scale", (1.0, 1.0), "scale=1,1", 1),
        ("scale=.5,2e0", "scale", (0.5, 2.0), "scale=0.5,2", 2),
        ("elastic", "elastic", (8.0, 3.0), "elastic=8,3", 1),
        ("elastic=4,1.5", "elastic", (4.0, 1.5), "elastic=4,1.5", 1),
    ],
)
def test_valid_specs(text: str, kind: str, amount: tuple, spec: str, copies: int) -> None:
    perturbation = parse_perturbation(text)
    assert (perturbation.kind, perturbation.amount) == (kind, amount)
    assert perturbation.spec == spec and perturbation.copies == copies
    assert parse_perturbation(perturbation.spec) == perturbation


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("rotate=abc", "rotate=DEG takes an angle in degrees, 0 <= DEG <= 180, got 'abc'"),
        ("rotate=-5", "got '-5'"),
        ("rotate=181", "got '181'"),
        ("rotate=nan", "got 'nan'"),
        ("rotate=1e999", "got '1e999'"),
        ("shift=-1", "shift=N takes a whole number of pixels N >= 0, got '-1'"),
        ("shift=1.5", "got '1.5'"),
        ("shift=", "got ''"),
        ("shift", "got no value"),
        ("scale=1.2", "scale=LO,HI takes two factors with 0 < LO <= HI"),
        ("scale=1.2,0.8", "got '1.2,0.8'"),
        ("scale=0,1", "got '0,1'"),
        ("scale=0.8,1.2,1.5", "got '0.8,1.2,1.5'"),
        ("elastic=", "elastic=ALPHA,SIGMA takes a strength ALPHA >= 0 and a width SIGMA > 0"),
        ("elastic=8", "got '8'"),
        ("elastic=8,0", "got '8,0'"),
        ("warp=3", "unknown perturbation 'warp' (the forms: shift=N, rotate=DEG, scale=LO,HI"),
        ("Shift=2", "unknown perturbation 'Shift'"),
        ("", "unknown perturbation ''"),
    ],
)
def test_invalid_specs_name_the_flag_the_value_and_the_rule(text: str, rule: str) -> None:
    with pytest.raises(PerturbationError) as caught:
        parse_perturbation(text)
    assert isinstance(caught.value, ValueError)
    assert str(caught.value).startswith(f"--perturb {text!r}: ") and rule in str(caught.value)


def test_perturbations_are_checked_when_built_and_given_as_a_list() -> None:
    with pytest.raises(PerturbationError, match="whole number of pixels"):
        Perturbation("shift", (1.5,))
    with pytest.raises(PerturbationError, match="unknown perturbation 'blur'"):
        Perturbation("blur", (1.0,))
    with pytest.raises(TypeError, match="a list of specs, got a single one: 'shift=1'"):
        parse_perturbations("shift=1")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="expected a spec like 'shift=4', got 3"):
        parse_perturbation(3)  # type: ignore[arg-type]
    shift = Perturbation("shift", (2.0,))
    assert parse_perturbations(None) == [] and parse_perturbations(()) == []
    assert parse_perturbations([shift, "rotate=5"]) == [shift, Perturbation("rotate", (5.0,))]


# ----------------------------------------------------------------------------- transforms
@pytest.mark.parametrize("spec", ["shift=0", "rotate=0", "scale=1,1", "elastic=0,3"])
def test_zero_perturbations_leave_images_unchanged(spec: str) -> None:
    images = _images()
    (copy,) = _copies(spec, images)
    np.testing.assert_array_equal(copy, images)
    assert copy.dtype == images.dtype


def _translated(image: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """``image`` (..., H, W) moved down by ``rows`` and right by ``cols``, zeros moved in."""
    moved = np.roll(image, (rows, cols), axis=(-2, -1))
    height, width = image.shape[-2:]
    row_index, col_index = np.arange(height), np.arange(width)
    wrapped_rows = (row_index < rows) | (row_index >= height + rows)
    wrapped_cols = (col_index < cols) | (col_index >= width + cols)
    moved[..., wrapped_rows, :] = 0
    moved[..., :, wrapped_cols] = 0
    return moved


@pytest.mark.parametrize("n", [1, 2, 6])
def test_shift_is_an_exact_translation_in_the_8_compass_directions(n: int) -> None:
    images = _images()
    directions = [(-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1)]
    copies = _copies(f"shift={n}", images)
    assert len(copies) == 8
    for copy, (down, right) in zip(copies, directions, strict=True):
        np.testing.assert_array_equal(copy, _translated(images, n * down, n * right))


def test_shift_of_the_whole_frame_is_refused() -> None:
    with pytest.raises(PerturbationError, match="moves a 7x9 image wholly out of its frame"):
        _copies("shift=7", _images())
    assert len(_copies("shift=6", _images())) == 8


@pytest.mark.parametrize("size", [6, 7])
def test_rotate_by_90_is_a_quarter_turn(size: int) -> None:
    images = _images((2, 3, size, size))
    clockwise, anticlockwise = _copies("rotate=90", images)
    np.testing.assert_allclose(clockwise, np.rot90(images, -1, axes=(-2, -1)), atol=1e-6)
    np.testing.assert_allclose(anticlockwise, np.rot90(images, 1, axes=(-2, -1)), atol=1e-6)


@pytest.mark.parametrize("degrees", [13.0, 37.5])
def test_rotations_by_plus_and_minus_deg_mirror_each_other(degrees: float) -> None:
    """Mirroring left-right turns a clockwise rotation into an anticlockwise one, about the
    same centre: the two copies of a mirrored image are the mirrored copies."""
    images = _images((2, 1, 8, 11))
    clockwise, anticlockwise = _copies(f"rotate={degrees}", images)
    mirrored_clockwise, mirrored_anticlockwise = _copies(f"rotate={degrees}", images[..., ::-1])
    np.testing.assert_allclose(mirrored_clockwise, anticlockwise[..., ::-1], atol=1e-6)
    np.testing.assert_allclose(mirrored_anticlockwise, clockwise[..., ::-1], atol=1e-6)
    assert not np.allclose(clockwise, anticlockwise, atol=1e-2)


def test_scale_about_the_centre() -> None:
    """A 9x9 image, centre (4, 4), with one lit pixel two rows below it: scaled by 0.5 the
    pixel lands one row below the centre; by 2 it is four rows below and two pixels wide and
    high, output (r, c) reading the source at (4 + (r - 4) / 2, 4 + (c - 4) / 2)."""
    image = np.zeros((1, 1, 9, 9), np.float32)
    image[0, 0, 6, 4] = 1.0
    half, double = _copies("scale=0.5,2", image)
    expected_half, expected_double = np.zeros((9, 9)), np.zeros((9, 9))
    expected_half[5, 4] = 1.0
    expected_double[7:9, 3:6] = np.outer([0.5, 1.0], [0.5, 1.0, 0.5])
    np.testing.assert_allclose(half[0, 0], expected_half, atol=1e-7)
    np.testing.assert_allclose(double[0, 0], expected_double, atol=1e-7)


def test_elastic_fields_are_seeded_by_position_only() -> None:
    """The same image at two positions is deformed differently; at one position it is
    deformed the same way on every call, alone or in a batch."""
    images = np.repeat(_images((1, 1, 12, 12)), 4, axis=0)
    elastic = parse_perturbation("elastic")
    whole = elastic.transform(images, 0)
    np.testing.assert_array_equal(whole, elastic.transform(images, 0))
    np.testing.assert_array_equal(whole[2:3], elastic.transform(images[2:3], 0, first_index=2))
    assert not np.allclose(whole[0], whole[1], atol=1e-3)
    assert not np.allclose(whole[0], images[0], atol=1e-3)


def test_transform_refuses_what_is_not_a_batch_of_images() -> None:
    rotate = parse_perturbation("rotate=5")
    with pytest.raises(ValueError, match=r"must be an \(N, C, H, W\) batch, got shape \(3, 7\)"):
        rotate.transform(np.zeros((3, 7)), 0)
    with pytest.raises(ValueError, match="copy must be in 0..1, got 2"):
        rotate.transform(_images(), 2)


# ----------------------------------------------------------------------------- evaluation
def _corner_model() -> nn.Module:
    """Class 1 when the top-left pixel of a 6x6 image is lit, else class 0 (a model whose
    accuracy under a perturbation is known)."""
    linear = nn.Linear(36, 2)
    linear.weight.data[...] = 0.0
    linear.weight.data[1, 0] = 1.0
    linear.bias.data[...] = [0.5, 0.0]
    return nn.Sequential(nn.Flatten(), linear)


def _corner_data(count: int = 10) -> tuple[np.ndarray, np.ndarray]:
    images = np.zeros((count, 1, 6, 6), np.float32)
    labels = np.arange(count) % 2
    images[labels == 1, 0, 0, 0] = 1.0
    return images, labels


def test_evaluation_counts_every_copy() -> None:
    """Class 1 keeps its lit corner only when moved up or left by nothing: of shift=1's
    8 copies, none keeps it, so every class-1 copy becomes class 0 (accuracy 1/2); and no
    result depends on how many images are transformed at once."""
    images, labels = _corner_data()
    identity = Normalize([0.0], [1.0])
    for batch_size in (3, 512):
        shifted, unmoved = evaluate_perturbations(
            _corner_model(),
            images,
            labels,
            identity,
            np.dtype(np.float32),
            parse_perturbations(["shift=1", "rotate=0"]),
            (1, 6, 6),
            batch_size=batch_size,
        )
        assert (shifted.accuracy, shifted.samples) == (0.5, 80)
        assert (unmoved.accuracy, unmoved.samples) == (1.0, 10)


def test_one_dimensional_sequences_are_refused() -> None:
    with pytest.raises(PerturbationError, match="trained on 1-D sequences, not images"):
        evaluate_perturbations(
            _corner_model(),
            np.zeros((4, 3, 20), np.float32),
            np.zeros(4, np.int64),
            Normalize([0.0] * 3, [1.0] * 3),
            np.dtype(np.float32),
            parse_perturbations(["shift=1"]),
            None,
        )


# ----------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def lenet_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("perturb") / "run"
    assert main(["train", "--out", str(run), *QUICK]) == 0
    return run


def test_report_shows_clean_and_each_perturbation(lenet_run: Path, capsys) -> None:
    capsys.readouterr()
    flags = ["--perturb", "shift=2", "--perturb", "rotate=0", "--perturb", "elastic"]
    assert main(["evaluate", str(lenet_run), *flags]) == 0
    report = capsys.readouterr().out
    table = report[report.index("\nperturbation ") + 1 :].splitlines()
    assert table[0].split() == ["perturbation", "accuracy", "loss", "drop", "samples", "each"] + [
        "image"
    ]
    clean, shift, rotate, elastic = (line.split() for line in table[1:])
    assert len(table) == 5 and clean[0] == "clean" and clean[3] == "60"  # --limit 300 * 0.2
    assert (shift[0], shift[4]) == ("shift=2", "480") and elastic[:1] == ["elastic=8,3"]
    assert rotate[1:5] == [clean[1], clean[2], "+0.0000", "60"]
    assert float(shift[3]) == pytest.approx(float(shift[1]) - float(clean[1]), abs=2e-4)
    assert report.startswith("weights: ") and f"accuracy {clean[1]}  loss {clean[2]}" in report

    evaluation = evaluate(lenet_run, perturb=["shift=2", "rotate=0", "elastic"])
    assert [row.perturbation.spec for row in evaluation.perturbed] == [
        "shift=2",
        "rotate=0",
        "elastic=8,3",
    ]
    assert evaluation.perturbed[1].accuracy == evaluation.accuracy
    assert evaluation.perturbed[1].loss == pytest.approx(evaluation.loss, rel=1e-12)
    assert f"{evaluation.perturbed[0].accuracy:.4f}" == shift[1]
    assert not evaluate(lenet_run).perturbed and "perturbation" not in evaluate(lenet_run).report()


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs os.sched_setaffinity")
def test_reports_are_identical_on_one_core_and_on_all(lenet_run: Path) -> None:
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        pytest.skip("a single core: nothing to compare one core with")
    reports = []
    for allowed in (cores[:1], cores):
        result = subprocess.run(
            [sys.executable, "-m", "convprop", "evaluate", str(lenet_run)]
            + ["--perturb", "elastic", "--perturb", "rotate=15", "--perturb", "scale=0.8,1.2"],
            capture_output=True,
            text=True,
            timeout=300,
            preexec_fn=lambda allowed=allowed: os.sched_setaffinity(0, allowed),
        )
        assert result.returncode == 0, result.stderr
        reports.append(result.stdout)
    assert reports[0] == reports[1] and "rotate=15" in reports[0]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("rotate=abc", "--perturb 'rotate=abc': rotate=DEG takes an angle in degrees"),
        ("shift=-1", "--perturb 'shift=-1': shift=N takes a whole number of pixels N >= 0"),
        ("scale=1.2", "--perturb 'scale=1.2': scale=LO,HI takes two factors"),
        ("warp=3", "--perturb 'warp=3': unknown perturbation 'warp'"),
        ("shift=28", "--perturb 'shift=28': moves a 28x28 image wholly out of its frame"),
    ],
)
def test_bad_specs_are_one_line_errors(lenet_run: Path, spec: str, message: str, capsys) -> None:
    capsys.readouterr()
    assert main(["evaluate", str(lenet_run), "--perturb", "shift=1", "--perturb", spec]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith(f"convprop: error: {message}")
    assert captured.err.count("\n") == 1


def test_bad_spec_in_a_subprocess_gives_no_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "convprop", "evaluate", str(tmp_path), "--perturb", "rotate=abc"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("convprop: error: --perturb 'rotate=abc': ")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_sequence_runs_are_refused_and_image_tdnn_runs_perturbed(tmp_path: Path, capsys) -> None:
    """A TDNN on 1-D signals cannot be shifted or rotated as an image; a TDNN that reads
    images column by column is evaluated on transformed images."""
    rng = np.random.default_rng(0)
    signals = tmp_path / "signals.npz"
    np.savez(signals, signals=rng.random((40, 4, 24)).astype(np.float32), labels=np.arange(40) % 2)
    tiny = ["--model", "tdnn", "--epochs", "1", "--limit", "30", "--batch-size", "10", "--quiet"]
    sequence_run, image_run = tmp_path / "sequences", tmp_path / "images"
    assert main(["train", *tiny, "--data", str(signals), "--out", str(sequence_run)]) == 0
    assert main(["train", *tiny, "--augment", "none", "--out", str(image_run)]) == 0
    capsys.readouterr()

    assert main(["evaluate", str(sequence_run), "--perturb", "shift=1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("convprop: error: --perturb 'shift=1': this model was trained on 1-D")
    assert err.count("\n") == 1

    evaluation = evaluate(image_run, perturb=["rotate=0", "shift=3"])
    unmoved, shifted = evaluation.perturbed
    assert (unmoved.accuracy, unmoved.samples) == (evaluation.accuracy, 10)
    assert shifted.samples == 80
