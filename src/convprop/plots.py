"""PNG figures of a run (matplotlib, no display needed): curves, filters, confusion matrix,
feature maps. Each figure is built by a ``*_figure`` function (matplotlib's object API: no pyplot
state), rendered to memory and written atomically by the matching ``save_*``; the PNG carries no
metadata, so the same inputs give the same bytes."""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from convprop.autograd import Tensor, no_grad
from convprop.io.files import atomic_write_bytes
from convprop.nn import Conv1d, Conv2d, Module

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DPI = 110


def _new_figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI)


def _save(figure: Figure | None, path: Path) -> Figure | None:
    """Write ``figure`` (if any) to ``path`` as a PNG and return it."""
    if figure is None:
        return None
    buffer = io.BytesIO()
    # No "Software" entry (matplotlib's version): the bytes depend only on the figure.
    figure.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    atomic_write_bytes(path, buffer.getvalue())
    return figure


def curves_figure(history: Sequence[Any]) -> Figure:
    """Loss and accuracy per epoch, train and test."""
    epochs = [m.epoch for m in history]
    figure = _new_figure(10, 4)
    loss_axis, accuracy_axis = figure.subplots(1, 2)
    loss_axis.plot(epochs, [m.train_loss for m in history], "o-", label="train")
    loss_axis.plot(epochs, [m.test_loss for m in history], "s-", label="test")
    loss_axis.set(xlabel="epoch", ylabel="cross-entropy", title="Loss")
    accuracy_axis.plot(epochs, [m.train_accuracy for m in history], "o-", label="train")
    accuracy_axis.plot(epochs, [m.test_accuracy for m in history], "s-", label="test")
    accuracy_axis.set(xlabel="epoch", ylabel="accuracy", title="Accuracy")
    for axis in (loss_axis, accuracy_axis):
        axis.grid(alpha=0.3)
        axis.legend()
        axis.xaxis.get_major_locator().set_params(integer=True)
    return figure


def save_curves(path: Path, history: Sequence[Any]) -> Figure | None:
    """Loss and accuracy per epoch, train and test; returns the figure written."""
    return _save(curves_figure(history), path)


def confusion_figure(matrix: np.ndarray, classes: Sequence[str]) -> Figure:
    """The confusion matrix with counts written in each cell."""
    size = max(4.0, 0.5 * len(classes) + 2)
    figure = _new_figure(size, size)
    axis = figure.subplots()
    axis.imshow(matrix, cmap="Blues")
    axis.set(
        xticks=range(len(classes)),
        yticks=range(len(classes)),
        xticklabels=classes,
        yticklabels=classes,
        xlabel="predicted",
        ylabel="true",
        title="Confusion matrix",
    )
    threshold = matrix.max() / 2 if matrix.size else 0
    for (row, col), count in np.ndenumerate(matrix):
        axis.text(
            col,
            row,
            str(count),
            ha="center",
            va="center",
            fontsize=8,
            color="white" if count > threshold else "black",
        )
    return figure


def save_confusion(path: Path, matrix: np.ndarray, classes: Sequence[str]) -> Figure | None:
    """The confusion matrix with counts written in each cell; returns the figure."""
    return _save(confusion_figure(matrix, classes), path)


def _first_conv(model: Module) -> Module | None:
    return next((m for m in model.modules() if isinstance(m, (Conv1d, Conv2d))), None)


def filters_figure(model: Module) -> Figure | None:
    """The first convolution's kernels on one colour scale (red positive, blue negative): one
    tile per output channel when it reads one input channel, else one row per output channel
    and one column per input channel (at most 8 shown)."""
    conv = _first_conv(model)
    if conv is None:
        return None
    weights = conv.weight.numpy()
    if weights.ndim == 3:  # Conv1d: show each kernel as a one-row image
        weights = weights[:, :, None, :]
    limit = float(np.abs(weights).max()) or 1.0
    if weights.shape[1] == 1:
        tiles = [(f"{f}", weights[f, 0]) for f in range(weights.shape[0])]
        cols = min(8, len(tiles))
        rows = -(-len(tiles) // cols)
    else:
        rows, cols = weights.shape[0], min(weights.shape[1], 8)
        tiles = [(f"{f},{c}", weights[f, c]) for f in range(rows) for c in range(cols)]
    figure = _new_figure(1.3 * cols + 0.5, 1.4 * rows + 0.6)
    axes = figure.subplots(rows, cols, squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for axis, (label, kernel) in zip(axes.flat, tiles, strict=False):
        axis.imshow(kernel, cmap="RdBu_r", vmin=-limit, vmax=limit)
        axis.set_title(label, fontsize=8)
    figure.suptitle(f"First-layer filters, weight shape {tuple(conv.weight.shape)}")
    return figure


def save_filters(path: Path, model: Module) -> Figure | None:
    """The first convolution's kernels (see ``filters_figure``); returns the figure, or
    ``None`` and writes nothing when the model has no convolution."""
    return _save(filters_figure(model), path)


def feature_maps_figure(model: Module, image: np.ndarray, per_layer: int = 8) -> Figure | None:
    """For one input, the first ``per_layer`` output maps of every convolution layer."""
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
            model(Tensor(image))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    if not captured:
        return None
    shown = captured[:12]
    cols = per_layer + 1
    figure = _new_figure(1.2 * cols, 1.3 * len(shown) + 0.4)
    axes = figure.subplots(len(shown), cols, squeeze=False)
    for axis in axes.flat:
        axis.set_xticks([])
        axis.set_yticks([])
    source = image[0]
    axes[0, 0].imshow(source[0] if source.ndim == 3 else source, cmap="gray", aspect="auto")
    axes[0, 0].set_title("input", fontsize=8)
    for row in range(1, len(shown)):
        axes[row, 0].axis("off")
    for row, (name, maps) in enumerate(shown):
        for col in range(1, cols):
            axis = axes[row, col]
            if col - 1 >= maps.shape[0]:
                axis.axis("off")
                continue
            tile = maps[col - 1]
            axis.imshow(tile if tile.ndim == 2 else tile[None], cmap="viridis", aspect="auto")
        axes[row, 1].set_title(f"{name} ({maps.shape[0]} maps)", fontsize=8, loc="left")
    figure.suptitle("Feature maps of each convolution layer for one test input", y=1.06)
    return figure


def save_feature_maps(
    path: Path, model: Module, image: np.ndarray, per_layer: int = 8
) -> Figure | None:
    """For one input, the first ``per_layer`` output maps of every convolution layer; returns
    the figure, or ``None`` and writes nothing when the model has no convolution."""
    return _save(feature_maps_figure(model, image, per_layer), path)
