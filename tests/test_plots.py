"""The run's PNG figures: bounded for every zoo model, what they show, same bytes."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import convprop
from convprop import nn, plots
from convprop.train import EpochMetrics, build_model

MIN_PIXELS = 300  # a figure smaller than this has squeezed its text out

ZOO = [
    ("lenet5", (1, 28, 28)),
    ("resnet20", (1, 28, 28)),
    ("resnet20", (3, 32, 32)),
    ("resnet32", (1, 28, 28)),
    ("resnet56", (1, 28, 28)),
    ("densenet_bc", (1, 28, 28)),
    ("tdnn", (28, 28)),
    ("tdnn", (40, 100)),
]
ZOO_IDS = [f"{name}-{'x'.join(map(str, shape))}" for name, shape in ZOO]


@cache
def zoo_model(name: str, shape: tuple[int, ...]) -> nn.Module:
    convprop.manual_seed(0)
    return build_model(name, shape, 10)


def one_input(shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((1, *shape)).astype(np.float32)


def assert_bounded_png(path: Path) -> None:
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        width, height = image.size
        assert "Software" not in image.info  # no matplotlib version: the bytes are the figure's
    assert MIN_PIXELS <= width <= plots.MAX_PIXELS, (path.name, width)
    assert MIN_PIXELS <= height <= plots.MAX_PIXELS, (path.name, height)


# ----------------------------------------------------------------------------- selections
def test_filter_tiles_one_per_output_filter() -> None:
    tiles, shows = plots.filter_tiles(np.ones((64, 28, 5)))
    assert tiles.shape == (64, 28, 5) and "28 input channels" in shows
    tiles, _ = plots.filter_tiles(np.ones((100, 1, 3, 3)))
    assert tiles.shape == (plots.MAX_FILTERS, 3, 3)
    tiles, shows = plots.filter_tiles(np.ones((16, 3, 5, 5)))
    assert tiles.shape == (16, 5, 3 * 6 - 1) and "side by side" in shows
    assert np.isnan(tiles[:, :, 5]).all()  # the blank column between two input channels
    tiles, shows = plots.filter_tiles(np.ones((4, 300, 9)))
    assert tiles.shape == (4, plots.MAX_CHANNELS, 9) and f"first {plots.MAX_CHANNELS}" in shows


@pytest.mark.parametrize("shape", [(64, 3, 3), (64, 28, 5), (6, 5, 5), (64, 300, 9), (3, 1, 200)])
def test_filter_grid_fits_the_bound(shape: tuple[int, int, int]) -> None:
    count, height, width = shape
    shown, cols, cell, gap_x, gap_y = plots.filter_grid(count, height, width)
    rows = -(-shown // cols)
    assert 1 <= shown <= count and 1 <= cols <= shown
    assert cols * (width + gap_x) * cell <= plots.MAX_PIXELS
    assert rows * (height + gap_y) * cell <= plots.MAX_PIXELS


# ----------------------------------------------------------------------------- zoo figures
@pytest.mark.parametrize(("name", "shape"), ZOO, ids=ZOO_IDS)
def test_filters_bounded_and_state_what_they_show(
    tmp_path: Path, name: str, shape: tuple[int, ...]
) -> None:
    model = zoo_model(name, shape)
    figure = plots.save_filters(tmp_path / "filters.png", model)
    assert_bounded_png(tmp_path / "filters.png")
    assert figure is not None
    conv_name, conv = plots.first_conv(model) or ("", None)
    total = conv.weight.shape[0]
    image_axis = figure.axes[0]
    assert len(figure.axes) == 2  # the tiles and their colorbar
    assert len(image_axis.images) == 1
    labels = [text.get_text() for text in image_axis.texts]
    assert labels == [str(i) for i in range(min(total, plots.MAX_FILTERS))]
    title = figure.get_suptitle()
    assert conv_name in title and str(tuple(conv.weight.shape)) in title
    assert f"all {total} filters" in title or f"of {total}" in title


def test_huge_first_layers_stay_bounded(tmp_path: Path) -> None:
    convprop.manual_seed(0)
    wide_1d = nn.Sequential(nn.Conv1d(300, 256, 9), nn.ReLU(), nn.Conv1d(256, 200, 3))
    filters = plots.save_filters(tmp_path / "f1.png", wide_1d)
    assert_bounded_png(tmp_path / "f1.png")
    assert filters is not None and "filters 0-" in filters.get_suptitle()
    assert "of 256" in filters.get_suptitle()


def history(epochs: int) -> list[EpochMetrics]:
    return [
        EpochMetrics(e, 2.3 - 0.1 * e, 0.1 + 0.04 * e, 2.3 - 0.09 * e, 0.1 + 0.03 * e, 1e-3, 1.0)
        for e in range(1, epochs + 1)
    ]


def test_same_inputs_give_the_same_bytes_and_no_version_stamp(tmp_path: Path) -> None:
    convprop.manual_seed(0)
    model = build_model("lenet5", (1, 28, 28), 10)
    image = np.random.default_rng(0).standard_normal((1, 1, 28, 28)).astype(np.float32)
    matrix = np.diag(np.arange(10, 20))
    for run in ("a", "b"):
        (tmp_path / run).mkdir()
        plots.save_curves(tmp_path / run / "curves.png", history(3))
        plots.save_confusion(tmp_path / run / "confusion.png", matrix, [str(i) for i in range(10)])
        plots.save_filters(tmp_path / run / "filters.png", model)
        plots.save_feature_maps(tmp_path / run / "maps.png", model, image)
    for name in ("curves.png", "confusion.png", "filters.png", "maps.png"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
        with Image.open(tmp_path / "a" / name) as png:
            assert "Software" not in png.info


def test_a_model_without_convolutions_writes_no_conv_figures(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    assert plots.save_filters(tmp_path / "f.png", model) is None
    assert plots.save_feature_maps(tmp_path / "m.png", model, np.zeros((1, 4), np.float32)) is None
    assert not (tmp_path / "f.png").exists() and not (tmp_path / "m.png").exists()
