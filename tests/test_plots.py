"""The run's PNG figures: bounded and legible for every zoo model, what they show, same bytes."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import convprop
from convprop import nn, plots
from convprop.training import EpochMetrics, build_model

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


def row_labels(figure) -> list[str]:
    """The feature-map figure's texts but its title: one label per row."""
    return [t.get_text() for t in figure.texts if t.get_text() != figure.get_suptitle()]


def conv_count(model: nn.Module) -> int:
    return sum(isinstance(m, (nn.Conv1d, nn.Conv2d)) for m in model.modules())


# ----------------------------------------------------------------------------- selections
def test_spread_keeps_first_and_last_and_is_even() -> None:
    assert plots.spread(5, 12) == [0, 1, 2, 3, 4]
    chosen = plots.spread(57, 12)
    assert len(chosen) == 12 and chosen[0] == 0 and chosen[-1] == 56
    assert sorted(set(chosen)) == chosen
    steps = np.diff(chosen)
    assert steps.max() - steps.min() <= 1
    assert plots.spread(9, 1) == [0]


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
@pytest.mark.parametrize("min_gap", [1, 2])
def test_filter_grid_fits_the_bound(shape: tuple[int, int, int], min_gap: int) -> None:
    count, height, width = shape
    shown, cols, cell, gap_x, gap_y = plots.filter_grid(count, height, width, min_gap=min_gap)
    assert gap_x >= min_gap
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


@pytest.mark.parametrize(("name", "shape"), ZOO, ids=ZOO_IDS)
def test_feature_maps_bounded_one_labelled_row_per_shown_layer(
    tmp_path: Path, name: str, shape: tuple[int, ...]
) -> None:
    model = zoo_model(name, shape)
    image = one_input(shape)
    figure = plots.save_feature_maps(tmp_path / "maps.png", model, image)
    assert_bounded_png(tmp_path / "maps.png")
    assert figure is not None
    layers = conv_count(model)
    rows = min(layers, plots.MAX_LAYERS)
    labels = row_labels(figure)
    assert len(labels) == 1 + rows and labels[0].startswith("input")
    title = figure.get_suptitle()
    if layers > plots.MAX_LAYERS:
        assert f"{rows} of {layers} convolution layers, evenly spread" in title
    else:
        assert f"all {layers} convolution layers" in title
    if len(shape) == 2:  # each 1-D layer is one channels x time image
        assert all("channels x" in label for label in labels)


def test_feature_maps_show_the_first_and_last_layers() -> None:
    model = zoo_model("resnet56", (1, 28, 28))
    figure = plots.feature_maps_figure(model, one_input((1, 28, 28)))
    assert figure is not None
    names = [label.split(":")[0] for label in row_labels(figure)]
    assert names[1] == "conv1" and names[-1] == "layer3.8.conv2"


def test_feature_map_rows_of_the_same_width_line_up() -> None:
    model = zoo_model("lenet5", (1, 28, 28))
    figure = plots.feature_maps_figure(model, one_input((1, 28, 28)), per_layer=4)
    assert figure is not None
    labels = row_labels(figure)
    assert labels[1] == "features.0: 6 maps 28x28, first 4"


@pytest.mark.parametrize(
    ("save", "name", "shape"),
    [
        (lambda path, model, image: plots.save_filters(path, model), "tdnn", (28, 28)),
        (plots.save_feature_maps, "tdnn", (40, 100)),
        (plots.save_feature_maps, "resnet20", (3, 32, 32)),
    ],
    ids=["filters-tdnn", "maps-tdnn", "maps-resnet20-rgb"],
)
def test_same_inputs_give_the_same_bytes(tmp_path: Path, save, name, shape) -> None:
    model = zoo_model(name, shape)
    image = one_input(shape)
    save(tmp_path / "a.png", model, image)
    save(tmp_path / "b.png", model, image)
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()


# ----------------------------------------------------------------------------- other layers
def test_huge_first_layers_stay_bounded(tmp_path: Path) -> None:
    convprop.manual_seed(0)
    wide_1d = nn.Sequential(nn.Conv1d(300, 256, 9), nn.ReLU(), nn.Conv1d(256, 200, 3))
    filters = plots.save_filters(tmp_path / "f1.png", wide_1d)
    plots.save_feature_maps(tmp_path / "m1.png", wide_1d, one_input((300, 50)))
    deep_2d = nn.Sequential(*[nn.Conv2d(3 if i == 0 else 4, 4, 3, padding=1) for i in range(24)])
    deep_2d.add_module("wide", nn.Conv2d(4, 256, 11))
    figure = plots.save_feature_maps(
        tmp_path / "m2.png", deep_2d, one_input((3, 24, 40)), max_layers=40
    )
    assert figure is not None and len(row_labels(figure)) == 26  # shrunk to fit, not dropped
    for name in ("f1.png", "m1.png", "m2.png"):
        assert_bounded_png(tmp_path / name)
    assert filters is not None and "filters 0-" in filters.get_suptitle()
    assert "of 256" in filters.get_suptitle()


def test_a_model_without_convolutions_writes_no_conv_figures(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    assert plots.save_filters(tmp_path / "f.png", model) is None
    assert plots.save_feature_maps(tmp_path / "m.png", model, np.zeros((1, 4), np.float32)) is None
    assert not (tmp_path / "f.png").exists() and not (tmp_path / "m.png").exists()


# ----------------------------------------------------------------------------- curves, confusion
def history(epochs: int) -> list[EpochMetrics]:
    return [
        EpochMetrics(e, 2.3 - 0.1 * e, 0.1 + 0.04 * e, 2.3 - 0.09 * e, 0.1 + 0.03 * e, 1e-3)
        for e in range(1, epochs + 1)
    ]


@pytest.mark.parametrize("epochs", [1, 3, 60])
def test_curves_bounded_with_whole_epoch_ticks(tmp_path: Path, epochs: int) -> None:
    figure = plots.save_curves(tmp_path / "curves.png", history(epochs))
    assert_bounded_png(tmp_path / "curves.png")
    assert figure is not None
    assert len(figure.axes) == 2
    for axis in figure.axes:
        ticks = [t for t in axis.get_xticks() if axis.get_xlim()[0] <= t <= axis.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks)
    if epochs == 1:
        assert [float(t) for t in ticks] == [1.0]


def confusion(classes: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    off_diagonal = (rng.random((classes, classes)) < 0.15) * rng.integers(1, 20, (classes,) * 2)
    return np.diag(rng.integers(50, 300, classes)) + off_diagonal


@pytest.mark.parametrize("classes", [2, 10, 30, 100])
def test_confusion_bounded_counts_where_they_fit(tmp_path: Path, classes: int) -> None:
    matrix = confusion(classes)
    names = [f"class{i}" for i in range(classes)]
    figure = plots.save_confusion(tmp_path / "confusion.png", matrix, names)
    assert_bounded_png(tmp_path / "confusion.png")
    assert figure is not None
    axis = figure.axes[0]
    written = sorted(int(text.get_text()) for text in axis.texts)
    nonzero = int((matrix != 0).sum())
    if nonzero <= plots.MAX_COUNTS:
        assert written == sorted(matrix[matrix != 0].tolist())
    else:
        assert written == []
    assert f"{int(matrix.sum())} test samples" in axis.get_title()
    labels = [label.get_text() for label in axis.get_xticklabels()]
    assert labels[0] == "class0" and len(labels) <= 60  # thinned out, never overlapping


def test_curves_and_confusion_same_bytes(tmp_path: Path) -> None:
    names = [str(i) for i in range(10)]
    for run in ("a", "b"):
        plots.save_curves(tmp_path / f"curves-{run}.png", history(3))
        plots.save_confusion(tmp_path / f"confusion-{run}.png", confusion(10), names)
    for name in ("curves", "confusion"):
        first, second = (tmp_path / f"{name}-{run}.png" for run in ("a", "b"))
        assert first.read_bytes() == second.read_bytes()
