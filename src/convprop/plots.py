"""PNG figures of a run: the learning curves, the confusion matrix, the first convolution's
filters and the feature maps of one input.

Each figure is built by a ``*_figure`` function (matplotlib's object API: no display, no pyplot
state) and written by the matching ``save_*``, rendered to memory and written atomically. Every
figure is legible at its natural size and bounded whatever the model: at most ``MAX_PIXELS``
pixels a side, large layers showing a selection the title states. The PNG carries no metadata,
so the same inputs give the same bytes.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from convprop.autograd import Tensor, no_grad
from convprop.io.files import atomic_write_bytes
from convprop.nn import Conv1d, Conv2d, Module

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

DPI = 100
MAX_PIXELS = 1600
"""The longest side of any figure, in pixels."""
MAX_FILTERS = 64
"""First-layer filters shown at most (the first ones)."""
MAX_FILTER_INPUTS = 8
"""Input-channel kernels shown side by side in one 2-D filter's tile."""
MAX_LAYERS = 12
"""Convolution layers whose feature maps are shown at most (evenly spread from first to last)."""
MAX_CHANNELS = 64
"""Channels shown at most for a 1-D layer (rows of its channels x time image)."""
MAX_COUNTS = 256
"""Cells of a confusion matrix written as numbers at most (drawing text is the slow part)."""

_MAX_INCHES = MAX_PIXELS / DPI
_TITLE_SIZE = 11
_LABEL_SIZE = 9
_SMALL_SIZE = 8


def _new_figure(width: float, height: float, constrained: bool = True) -> Figure:
    """A figure of at most ``MAX_PIXELS`` a side; matplotlib's constrained layout keeps its
    titles, labels and colorbars apart (with a little more room at the edges than by default)."""
    from matplotlib.figure import Figure
    from matplotlib.layout_engine import ConstrainedLayoutEngine

    size = (min(max(width, 1.0), _MAX_INCHES), min(max(height, 1.0), _MAX_INCHES))
    layout = ConstrainedLayoutEngine(h_pad=0.08, w_pad=0.08) if constrained else None
    return Figure(figsize=size, dpi=DPI, layout=layout)


def _save(figure: Figure | None, path: Path) -> Figure | None:
    """Write ``figure`` (if any) to ``path`` as a PNG and return it."""
    if figure is None:
        return None
    buffer = io.BytesIO()
    # No "Software" entry (matplotlib's version): the bytes depend only on the figure.
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    atomic_write_bytes(path, buffer.getvalue())
    return figure


def spread(count: int, limit: int) -> list[int]:
    """``limit`` indices of ``range(count)`` evenly spread from the first to the last (all of
    them when ``count <= limit``)."""
    if count <= limit:
        return list(range(count))
    if limit == 1:
        return [0]
    return [round(i * (count - 1) / (limit - 1)) for i in range(limit)]


# ----------------------------------------------------------------------------- curves
def curves_figure(history: Sequence[Any]) -> Figure:
    """Loss and accuracy per epoch, train and test."""
    from matplotlib.ticker import MaxNLocator

    epochs = [m.epoch for m in history]
    train_style, test_style = ("o-", "s-") if len(epochs) <= 30 else ("-", "-")
    figure = _new_figure(10, 4)
    loss_axis, accuracy_axis = figure.subplots(1, 2)
    loss_axis.plot(epochs, [m.train_loss for m in history], train_style, label="train")
    loss_axis.plot(epochs, [m.test_loss for m in history], test_style, label="test")
    loss_axis.set(xlabel="epoch", ylabel="cross-entropy", title="Loss")
    accuracy_axis.plot(epochs, [m.train_accuracy for m in history], train_style, label="train")
    accuracy_axis.plot(epochs, [m.test_accuracy for m in history], test_style, label="test")
    accuracy_axis.set(xlabel="epoch", ylabel="accuracy", title="Accuracy")
    for axis in (loss_axis, accuracy_axis):
        axis.grid(alpha=0.3)
        axis.legend()
        # min_n_ticks=1: a one-epoch run gets the tick "1", not 0.96, 0.98, ...
        axis.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    return figure


def save_curves(path: Path, history: Sequence[Any]) -> Figure | None:
    """Loss and accuracy per epoch, train and test; returns the figure written."""
    return _save(curves_figure(history), path)


# ----------------------------------------------------------------------------- confusion
def confusion_figure(matrix: np.ndarray, classes: Sequence[str], unit: str = "samples") -> Figure:
    """The confusion matrix, one colour scale of counts; the non-zero counts are written in
    their cells while there are at most ``MAX_COUNTS`` of them and the cells are large enough
    to hold them."""
    matrix = np.asarray(matrix)
    count = len(classes)
    cell = min(0.55, 9.0 / max(count, 1))  # inches
    longest = max((len(str(name)) for name in classes), default=1)
    rotate = count > 3 and longest > 2
    label_inches = 0.09 * min(longest, 24)  # room for the tick labels, at 9 pt
    side = cell * count
    figure = _new_figure(
        max(4.5, side + label_inches + 2.0), max(4.0, side + (label_inches if rotate else 0) + 1.2)
    )
    axis = figure.subplots()
    image = axis.imshow(matrix, cmap="Blues", vmin=0, interpolation="nearest")
    figure.colorbar(image, ax=axis, shrink=0.8, label=unit)
    ticks = list(range(0, count, math.ceil(0.17 / cell)))  # 9 pt labels 0.17 in apart
    axis.set_xticks(ticks, [str(classes[i]) for i in ticks], rotation=90 if rotate else 0)
    axis.set_yticks(ticks, [str(classes[i]) for i in ticks])
    axis.tick_params(labelsize=_LABEL_SIZE)
    axis.set(xlabel="predicted", ylabel="true")
    total = int(matrix.sum())
    correct = int(np.trace(matrix)) if matrix.size else 0
    title = f"Confusion matrix\n{total} test {unit}, {correct / max(total, 1):.1%} correct"
    nonzero = np.argwhere(matrix != 0)
    font_size = min(9.0, cell * 72 * 0.33)
    if 0 < len(nonzero) <= MAX_COUNTS and font_size >= 6:
        threshold = matrix.max() / 2
        integer = np.issubdtype(matrix.dtype, np.integer)
        for row, col in nonzero:
            value = matrix[row, col]
            axis.text(
                col,
                row,
                f"{value:d}" if integer else f"{value:.2g}",
                ha="center",
                va="center",
                fontsize=font_size,
                color="white" if value > threshold else "black",
            ).set_in_layout(False)
        title += "; blank cells: 0"
    axis.set_title(title, fontsize=_TITLE_SIZE)
    return figure


def save_confusion(
    path: Path, matrix: np.ndarray, classes: Sequence[str], unit: str = "samples"
) -> Figure | None:
    """The confusion matrix, with the counts written in its cells; returns the figure."""
    return _save(confusion_figure(matrix, classes, unit), path)


# ----------------------------------------------------------------------------- segmentation
IGNORE_COLOUR = (255, 255, 255)
"""The colour of a mask's ignored pixels (value 255)."""


def class_palette(classes: Sequence[str]) -> np.ndarray:
    """One RGB colour (uint8) per class: a class named ``background`` black, the others
    matplotlib's tab10 (tab20 beyond ten classes) in order."""
    from matplotlib import colormaps

    others = [i for i, name in enumerate(classes) if name != "background"]
    cmap = colormaps["tab10" if len(others) <= 10 else "tab20"]
    palette = np.zeros((len(classes), 3), dtype=np.uint8)
    for order, index in enumerate(others):
        rgb = cmap(order % cmap.N)[:3]
        palette[index] = np.round(np.array(rgb) * 255).astype(np.uint8)
    return palette


def mask_rgb(mask: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """An (H, W) mask of class indices as an (H, W, 3) uint8 image; out-of-range values
    (the ignored 255) in ``IGNORE_COLOUR``."""
    known = mask < len(palette)
    image = np.empty((*mask.shape, 3), dtype=np.uint8)
    image[:] = IGNORE_COLOUR
    image[known] = palette[mask[known]]
    return image


def segmentation_figure(
    images: np.ndarray, truths: np.ndarray, predictions: np.ndarray, classes: Sequence[str]
) -> Figure:
    """One row per sample: the image, its true mask and the predicted mask, with a legend of
    the classes that appear."""
    from matplotlib.patches import Patch

    palette = class_palette(classes)
    rows = len(images)
    figure = _new_figure(7.5, 2.3 * rows + 0.6)
    axes = np.atleast_2d(figure.subplots(rows, 3))
    for row in range(rows):
        image = images[row]
        shown = image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)
        correct = truths[row] == predictions[row]
        labelled = truths[row] < len(classes)
        accuracy = correct[labelled].mean() if labelled.any() else float("nan")
        for column, (picture, title) in enumerate(
            (
                (shown, "image"),
                (mask_rgb(truths[row], palette), "true mask"),
                (mask_rgb(predictions[row], palette), f"predicted ({accuracy:.1%} of pixels)"),
            )
        ):
            axis = axes[row, column]
            axis.imshow(
                picture, cmap="gray" if picture.ndim == 2 else None, interpolation="nearest"
            )
            axis.set_title(title, fontsize=_LABEL_SIZE)
            _hide_axes(axis)
    present = sorted(set(np.unique(truths)) | set(np.unique(predictions)))
    handles = [
        Patch(color=palette[i] / 255, label=str(classes[i])) for i in present if i < len(classes)
    ]
    figure.legend(
        handles=handles,
        loc="outside lower center",
        ncols=min(len(handles), 11),
        fontsize=_SMALL_SIZE,
    )
    figure.suptitle("Held-out test images: true and predicted masks", fontsize=_TITLE_SIZE)
    return figure


def save_segmentation(
    path: Path,
    images: np.ndarray,
    truths: np.ndarray,
    predictions: np.ndarray,
    classes: Sequence[str],
) -> Figure | None:
    """A few test images with their true and predicted masks (``segmentation_figure``)."""
    return _save(segmentation_figure(images, truths, predictions, classes), path)


def _hide_axes(axis: Axes) -> None:
    """No frame, ticks or tick labels around an image. Emptying the tick lists as well spares
    the layout computing ticks nobody sees (most of a many-row figure's drawing time)."""
    axis.set_axis_off()
    axis.set_xticks([])
    axis.set_yticks([])


# ----------------------------------------------------------------------------- mosaics
def _mosaic(tiles: np.ndarray, cols: int, gap_x: int, gap_y: int = 0) -> np.ndarray:
    """The (n, h, w) ``tiles`` in rows of ``cols`` on one NaN canvas (drawn blank), ``gap_x``
    columns between tiles and ``gap_y`` rows above each row of tiles (room for labels)."""
    count, height, width = tiles.shape
    rows = -(-count // cols)
    canvas = np.full(
        (rows * (height + gap_y), cols * (width + gap_x) - gap_x), np.nan, dtype=np.float64
    )
    for index, tile in enumerate(tiles):
        top, left = _tile_origin(index, cols, height, width, gap_x, gap_y)
        canvas[top : top + height, left : left + width] = tile
    return canvas


def _tile_origin(
    index: int, cols: int, height: int, width: int, gap_x: int, gap_y: int
) -> tuple[int, int]:
    row, col = divmod(index, cols)
    return row * (height + gap_y) + gap_y, col * (width + gap_x)


# ----------------------------------------------------------------------------- filters
def first_conv(model: Module) -> tuple[str, Module] | None:
    """The first Conv1d or Conv2d of ``model`` and its name, if it has one."""
    return next(
        ((name, m) for name, m in model.named_modules() if isinstance(m, (Conv1d, Conv2d))),
        None,
    )


def filter_tiles(weight: np.ndarray, max_filters: int = MAX_FILTERS) -> tuple[np.ndarray, str]:
    """One 2-D tile per output filter (the first ``max_filters``) of a convolution's weight,
    shape (shown, h, w), and what a tile shows.

    A Conv1d filter (in_channels, kernel) is one image, input channels down and taps across (at
    most ``MAX_CHANNELS`` channels); a Conv2d filter of one input channel is its kernel; one of
    several input channels shows their kernels side by side (at most ``MAX_FILTER_INPUTS``),
    one blank column apart.
    """
    filters = np.asarray(weight, dtype=np.float64)[:max_filters]
    if filters.ndim == 3:
        inputs = min(filters.shape[1], MAX_CHANNELS)
        kept = "" if inputs == filters.shape[1] else f" (first {inputs} of {filters.shape[1]})"
        return (
            filters[:, :inputs],
            f"{inputs} input channels{kept} down x {filters.shape[2]} taps across",
        )
    if filters.ndim != 4:
        raise ValueError(f"filter_tiles: weight must be 3-D or 4-D, got shape {weight.shape}")
    count, in_channels, height, width = filters.shape
    if in_channels == 1:
        return filters[:, 0], f"its {height}x{width} kernel"
    inputs = min(in_channels, MAX_FILTER_INPUTS)
    padded = np.pad(filters[:, :inputs], ((0, 0), (0, 0), (0, 0), (0, 1)), constant_values=np.nan)
    tiles = padded.transpose(0, 2, 1, 3).reshape(count, height, inputs * (width + 1))[:, :, :-1]
    kept = "" if inputs == in_channels else f" (first {inputs} of {in_channels})"
    return tiles, f"its {height}x{width} kernels for {inputs} input channels{kept}, side by side"


def filter_grid(
    count: int, height: int, width: int, bound: float = MAX_PIXELS - 300, min_gap: int = 1
) -> tuple[int, int, float, int, int]:
    """How to lay out ``count`` tiles of ``height`` x ``width`` cells within ``bound`` pixels a
    side: (tiles shown, columns, cell size in pixels, gap between tiles and gap above each row
    for its labels, both in cells). Tiles are at least ``min_gap`` cells apart (2 keeps tiles
    with blank columns of their own apart)."""
    cell = min(24.0, max(5.0, 160 / max(height, width)))
    cell = min(cell, bound / (height + min_gap), bound / (width + min_gap))  # huge kernels fit
    gap_x = max(min_gap, math.ceil(6 / cell))
    gap_y = max(1, math.ceil(15 / cell))
    box_w, box_h = (width + gap_x) * cell, (height + gap_y) * cell
    widest = max(1, min(count, 16, int(bound // box_w)))
    ideal = min(widest, math.sqrt(count * box_h / box_w * 1.6))  # a landscape grid
    # Near the ideal width, the one that leaves the fewest empty places in the last row.
    nearby = [c for c in range(1, widest + 1) if ideal / 1.6 <= c <= ideal * 1.6] or [widest]
    cols = min(nearby, key=lambda c: (-count % c, abs(c - ideal)))
    max_rows = max(1, int(bound // box_h))
    shown = min(count, cols * max_rows)
    return shown, cols, cell, gap_x, gap_y


def filters_figure(model: Module, max_filters: int = MAX_FILTERS) -> Figure | None:
    """The first convolution's filters (the first ``max_filters``), one tile each, on one
    colour scale (red positive, blue negative); ``None`` when the model has no convolution."""
    found = first_conv(model)
    if found is None:
        return None
    from matplotlib import colormaps

    name, conv = found
    weight = conv.weight.numpy()
    tiles, tile_shows = filter_tiles(weight, max_filters)
    separated = bool(np.isnan(tiles).any())  # kernels side by side, one blank column apart
    count, height, width = tiles.shape
    shown, cols, cell, gap_x, gap_y = filter_grid(
        count, height, width, min_gap=2 if separated else 1
    )
    tiles = tiles[:shown]
    canvas = _mosaic(tiles, cols, gap_x, gap_y)
    limit = float(np.nanmax(np.abs(tiles))) if np.isfinite(tiles).any() else 1.0
    figure = _new_figure(
        max(6.0, canvas.shape[1] * cell / DPI + 1.4), canvas.shape[0] * cell / DPI + 1.0
    )
    axis = figure.subplots()
    image = axis.imshow(
        canvas,
        cmap=colormaps["RdBu_r"].with_extremes(bad="white"),  # NaN: the gaps between tiles
        vmin=-limit,
        vmax=limit,
        interpolation="nearest",
        aspect="equal",
    )
    _hide_axes(axis)
    figure.colorbar(image, ax=axis, shrink=min(0.8, max(0.3, 3.0 / figure.get_figheight())))
    for index in range(shown):
        top, left = _tile_origin(index, cols, height, width, gap_x, gap_y)
        axis.text(
            left + (width - 1) / 2,
            top - 0.6,
            str(index),
            ha="center",
            va="bottom",
            fontsize=_SMALL_SIZE,
        ).set_in_layout(False)
    total = weight.shape[0]
    which = f"all {total} filters" if shown == total else f"filters 0-{shown - 1} of {total}"
    figure.suptitle(
        f"First convolution {name}, weight {tuple(weight.shape)}: {which}\n"
        f"each tile: one output filter, {tile_shows}",
        fontsize=_TITLE_SIZE,
    )
    return figure


def save_filters(path: Path, model: Module, max_filters: int = MAX_FILTERS) -> Figure | None:
    """The first convolution's filters on one colour scale (see ``filters_figure``); returns
    the figure, or ``None`` and writes nothing when the model has no convolution."""
    return _save(filters_figure(model, max_filters), path)


# ----------------------------------------------------------------------------- feature maps
def conv_outputs(model: Module, image: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """The output of every Conv1d and Conv2d of ``model`` (in evaluation mode) for the first
    sample of ``image``, in the order they run, with the layers' names."""
    captured: list[tuple[str, np.ndarray]] = []

    def capture(name: str) -> Callable[[Module, Any, Tensor], None]:
        def hook(module: Module, inputs: Any, output: Tensor) -> None:
            captured.append((name, output.numpy()[0]))

        return hook

    handles = [
        module.register_forward_hook(capture(name))
        for name, module in model.named_modules()
        if isinstance(module, (Conv1d, Conv2d))
    ]
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            model(Tensor(image[:1]))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return captured


def _scaled(maps: np.ndarray) -> np.ndarray:
    """Each map (leading axis) min-max scaled to [0, 1] on its own; a constant map is 0.5."""
    maps = np.asarray(maps, dtype=np.float64)
    axes = tuple(range(1, maps.ndim))
    low = maps.min(axis=axes, keepdims=True)
    span = maps.max(axis=axes, keepdims=True) - low
    return np.divide(maps - low, span, out=np.full_like(maps, 0.5), where=span > 0)


# The feature-map figure is laid out in pixels and drawn as one image (``figimage``, no
# resampling), with the labels in bands above the rows: exact, and a fraction of the time that
# one matplotlib Axes per row takes to lay out and draw.
_TILE = 96  # pixels of a 2-D map's longer side
_GAP = 8  # pixels between two maps, and between a row and the next row's label
_LABEL_BAND = 20  # pixels above each row for its label (9 pt)
_TITLE_BAND = 52  # pixels above everything for the two-line title (11 pt)
_MARGIN = 10  # pixels left and right
_CHANNEL_PIXELS = 3  # pixels of one channel of a 1-D layer's channels x time image


def _resized(values: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resampling of a 2-D (or 2-D x colour) array to height x width."""
    rows = np.arange(height) * values.shape[0] // height
    cols = np.arange(width) * values.shape[1] // width
    return values[rows[:, None], cols[None, :]]


def _fitted(height: int, width: int, tile: int) -> tuple[int, int]:
    """A map's size in pixels: its aspect kept, the longer side ``tile``."""
    scale = tile / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def _colour(values: np.ndarray, cmap: str) -> np.ndarray:
    """RGBA of ``values`` in [0, 1] (RGB arrays pass through with an opaque alpha)."""
    if values.ndim == 3:
        return np.concatenate([values, np.ones((*values.shape[:2], 1))], axis=-1)
    from matplotlib import colormaps

    return np.asarray(colormaps[cmap](values))


def _row_height(maps: np.ndarray, tile: int) -> int:
    """Pixels of one layer's row (without its label) when 2-D maps are ``tile`` pixels."""
    if maps.ndim == 2:
        return max(_TILE, min(len(maps), MAX_CHANNELS) * _CHANNEL_PIXELS) * tile // _TILE
    return _fitted(maps.shape[1], maps.shape[2], tile)[0]


def _tile_size(layers: Sequence[np.ndarray]) -> int:
    """The largest map size (at most ``_TILE`` pixels) whose rows fit under ``MAX_PIXELS``."""
    fixed = _TITLE_BAND + len(layers) * (_LABEL_BAND + _GAP)
    tile = _TILE
    while tile > 8 and fixed + sum(_row_height(maps, tile) for maps in layers) > MAX_PIXELS:
        tile -= 1
    return tile


def _map_row(
    maps: np.ndarray, cmap: str, per_layer: int, tile: int, width: int
) -> tuple[np.ndarray, str]:
    """One row of the figure, RGBA pixels (height, ``width``), and what it shows: the first
    ``per_layer`` 2-D maps side by side, or a 1-D output as one channels x time image."""
    height = _row_height(maps, tile)
    if maps.ndim == 2:
        channels = min(len(maps), MAX_CHANNELS)
        pixels = _colour(_resized(_scaled(maps[:channels]), height, width), cmap)
        kept = "" if channels == len(maps) else f" (first {channels})"
        return pixels, f"{len(maps)} channels{kept} x {maps.shape[1]} frames"
    count, map_height, map_width = maps.shape[:3]
    across = _fitted(map_height, map_width, tile)[1]
    row = np.ones((height, width, 4))
    for index, values in enumerate(_scaled(maps[:per_layer])):
        left = index * (tile + _GAP)
        row[:, left : left + across] = _colour(_resized(values, height, across), cmap)
    kept = "" if count <= per_layer else f", first {per_layer}"
    return row, f"{count} maps {map_height}x{map_width}{kept}"


def _input_maps(source: np.ndarray) -> tuple[np.ndarray, str | None]:
    """The input as maps to draw (RGB as one colour image) and its label (``None``: the one
    a layer's output of that shape gets)."""
    if source.ndim == 2:
        return source, None
    channels, height, width = source.shape
    if channels == 3:
        rgb = _scaled(np.moveaxis(source, 0, -1)[None])[0]
        return rgb[None], f"input: RGB {height}x{width}"
    label = f"input: {height}x{width}" + (f" (channel 0 of {channels})" if channels > 1 else "")
    return source[:1], label


def _shortened(text: str, limit: int = 110) -> str:
    """``text``, cut to ``limit`` characters (a very long layer name stays in the figure)."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def feature_maps_figure(
    model: Module, image: np.ndarray, per_layer: int = 8, max_layers: int = MAX_LAYERS
) -> Figure | None:
    """For one input (the first sample of ``image``), a row with the input, then one row per
    convolution layer (at most ``max_layers``, evenly spread): the first ``per_layer`` maps of
    a 2-D layer side by side, a 1-D layer's output as one channels x time image, each map (each
    channel) on its own colour scale. ``None`` when the model has no convolution."""
    outputs = conv_outputs(model, image)
    if not outputs:
        return None
    shown = spread(len(outputs), max_layers)
    input_maps, input_label = _input_maps(np.asarray(image[0]))
    layers = [("input", input_maps, "gray", input_label)]
    layers += [(name, maps, "viridis", None) for name, maps in (outputs[i] for i in shown)]
    width = per_layer * (_TILE + _GAP) - _GAP
    tile = _tile_size([maps for _, maps, _, _ in layers])
    rows = [_map_row(maps, cmap, per_layer, tile, width) for _, maps, cmap, _ in layers]
    height = _TITLE_BAND + sum(len(pixels) + _LABEL_BAND + _GAP for pixels, _ in rows)
    canvas = np.ones((height, width + 2 * _MARGIN, 4))
    figure = _new_figure(canvas.shape[1] / DPI, height / DPI, constrained=False)
    top = _TITLE_BAND
    for (name, _, _, label), (pixels, shows) in zip(layers, rows, strict=True):
        figure.text(
            _MARGIN / canvas.shape[1],
            1 - (top + _LABEL_BAND - 5) / height,
            _shortened(label or f"{name}: {shows}"),
            fontsize=_LABEL_SIZE,
            va="baseline",
        )
        top += _LABEL_BAND
        canvas[top : top + len(pixels), _MARGIN : _MARGIN + width] = pixels
        top += len(pixels) + _GAP
    figure.figimage((canvas * 255).round().astype(np.uint8), origin="upper")
    which = (
        f"all {len(outputs)} convolution layers"
        if len(shown) == len(outputs)
        else f"{len(shown)} of {len(outputs)} convolution layers, evenly spread"
    )
    figure.suptitle(
        f"Feature maps for one test input: {which}\n"
        "each map (each channel of a 1-D layer) on its own colour scale, dark low, bright high",
        fontsize=_TITLE_SIZE,
        y=1 - 6 / height,
        va="top",
    )
    return figure


def save_feature_maps(
    path: Path, model: Module, image: np.ndarray, per_layer: int = 8, max_layers: int = MAX_LAYERS
) -> Figure | None:
    """For one input, the maps of the convolution layers (see ``feature_maps_figure``);
    returns the figure, or ``None`` and writes nothing when the model has no convolution."""
    return _save(feature_maps_figure(model, image, per_layer, max_layers), path)
