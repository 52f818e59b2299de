"""Figures are valid, non-trivial PNGs."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import convprop.explain as explain


@pytest.mark.parametrize(
    "make",
    [
        lambda: explain.conv((4, 4), (3, 3), stride=2, padding=1, convention="convolution"),
        lambda: explain.matrix((3, 3), (3, 3), padding="same"),
        lambda: explain.pool("max", (4, 4), 2, stride=1),
        lambda: explain.network(),
    ],
    ids=["conv", "matrix", "pool", "network"],
)
def test_png_is_valid_and_not_blank(make, tmp_path):
    path = make().figure(tmp_path / "figure.png")
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG"
        width, height = image.size
        pixels = np.asarray(image.convert("L"), dtype=np.float64)
    assert width > 300 and height > 200
    # Grids and text: a good share of the pixels is not background.
    assert (pixels < 200).mean() > 0.01
    assert pixels.std() > 10


def test_figure_path_must_be_png(tmp_path):
    with pytest.raises(ValueError, match="must end in .png"):
        explain.conv(4, 2).figure(tmp_path / "figure.jpg")
