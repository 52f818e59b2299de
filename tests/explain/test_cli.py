"""``convprop explain ...`` through ``convprop.cli.main``: exit 0 with the derivation; bad
configurations exit 2 with one line."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from convprop.cli import main
from tests.explain.helpers import flat


def test_conv_deck000(capsys):
    assert (
        main(
            ["explain", "conv", "--input", "3x3", "--kernel", "2x2", "--convention", "convolution"]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "h11 = x11 w22 + x12 w21 + x21 w12 + x22 w11 + b" in out


def test_conv_1d_json(capsys):
    assert main(["explain", "conv", "--input", "4", "--kernel", "2", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["forward"]["y1"] == "w1*x1 + w2*x2 + b"
    assert data["backward"]["bias"]["db"] == "dy1 + dy2 + dy3"


def test_matrix_pool_network(capsys):
    assert (
        main(
            [
                "explain",
                "matrix",
                "--input",
                "3x3",
                "--kernel",
                "3x3",
                "--padding",
                "same",
                "--format",
                "markdown",
            ]
        )
        == 0
    )
    assert r"\begin{pmatrix}" in capsys.readouterr().out
    assert (
        main(
            [
                "explain",
                "pool",
                "--mode",
                "max",
                "--input",
                "3x3",
                "--kernel",
                "2",
                "--stride",
                "1",
                "--values",
                "1,2,3,4,9,5,6,7,8",
            ]
        )
        == 0
    )
    assert "x22 <- dy11 + dy12 + dy21 + dy22" in flat(capsys.readouterr().out)
    assert (
        main(["explain", "network", "--seed", "2", "--activation", "sigmoid", "--target", "2"]) == 0
    )
    assert "target class d = 2" in flat(capsys.readouterr().out)


def test_figure_option(tmp_path, capsys):
    path = tmp_path / "pool.png"
    assert main(["explain", "pool", "--mode", "mean", "--figure", str(path)]) == 0
    captured = capsys.readouterr()
    assert "figure written to" in captured.err
    with Image.open(path) as image:
        image.verify()


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["conv", "--input", "3x3", "--kernel", "2x2", "--stride", "0"],
            "conv2d: stride must be positive",
        ),
        (["conv", "--input", "3x3", "--kernel", "4x4"], "kernel size can't be greater"),
        (["conv", "--input", "3x3", "--kernel", "2", "--padding", "wide"], "--padding"),
        (["conv", "--input", "40x40", "--kernel", "3"], "too long to read"),
        (["pool", "--mode", "median"], "invalid choice: 'median'"),
        (["pool", "--mode", "max", "--values", "1,2"], "values has 2 numbers"),
        (["matrix", "--input", "6x6", "--kernel", "2"], "matrix's larger side"),
        (["network", "--target", "5"], "--target must be a class 1..3"),
        (["conv", "--input", "3x3", "--kernel", "2", "--figure", "out.svg"], "must name a .png"),
        (["conv", "--kernel", "2"], "--input"),
    ],
)
def test_bad_configurations_exit_2_with_one_line(argv, message, capsys):
    assert main(["explain", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("convprop: error:")
    assert message in err
