"""``predict --scan``: find the digits on a canvas by scanning a trained classifier over it.

Deck 004 names the task ("segmentation and localization") and its recap gives the method:
pattern classification "is best performed by scanning for the target pattern", and
"scanning an input with a network ... is equivalent to scanning with individual neurons
hierarchically". :func:`convprop.models.fully_convolutional` turns the run's classifier into
that scanner, a network of convolutions whose output at (i, j) is the classifier's logits on
the window at (S i, S j), S the features' total stride. This module reads those maps and
decides where the digits are.

1. **Score maps at every pixel.** The canvas is first padded with background (zeros, before
   normalisation) by half a window on each side, so that every canvas pixel is the centre of
   one window and a digit at the border can be centred too. The scanner runs on the S x S
   shifts of the padded canvas (the offsets (dy, dx) the stride skips), whose maps interleave
   into one map with a window per pixel: ``probabilities[k, r, c]`` is the classifier's
   softmax probability of class k on the window whose centre pixel is (r, c) (top-left at
   (r - H // 2, c - W // 2)). The maps line up with the canvas pixel for pixel.
2. **Centred windows only.** The classifier has no "background" class and was trained on
   digits centred in their image, so it also gives confident answers on windows that hold half
   a digit, or parts of two: measured on held-out canvases, most wrong detections sit on such
   windows. MNIST centres each digit by its centre of mass, so a window counts only where the
   digit in it is centred by that rule: the centre of mass of the intensities in the window's
   central ``DIGIT_FRAME`` part (MNIST's 20x20 digit box in 28x28) lies within
   ``CENTRE_TOLERANCE`` pixels of the window's centre (in each axis), and some ink (a pixel of at
   least ``INK``) lies within ``CENTRE_INK`` pixels of the centre (which removes the centred
   windows that fall in the gap between two digits). This assumes light ink on a dark
   background, as the bundled digits are.
3. **A threshold and non-maximum suppression.** A centred window whose largest class
   probability is at least ``threshold`` is a candidate; candidates are taken in decreasing
   probability and one is dropped when its window overlaps an already kept one by an IoU of
   ``NMS_IOU`` or more (whatever their classes: two digits do not share a place).

Every constant here was chosen by measurement (``python -m benchmarks.scan``, whose figures
``docs/localization.md`` lists); each step's share is shown there too.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

import convprop as cp
from convprop import nn
from convprop.data import DataError, Normalize, load_image
from convprop.data.canvases import Box
from convprop.models.fully_convolutional import FullyConvolutional, fully_convolutional
from convprop.nn import functional as F
from convprop.training.checkpoint import load_run

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DEFAULT_THRESHOLD = 0.9
"""The smallest class probability a detection may have (``--threshold``)."""
NMS_IOU = 0.3
"""Windows overlapping a better one by this IoU or more are suppressed."""
CENTRE_TOLERANCE = 1.5
"""How far (pixels, in each axis) the centre of mass may lie from a window's centre."""
DIGIT_FRAME = 20 / 28
"""The part of a window, about its centre, whose ink is weighed (MNIST's 20x20 in 28x28)."""
CENTRE_INK = 3
"""Some ink must lie within this many pixels of the window's centre."""
INK = 0.5
"""The intensity from which a pixel is ink (as ``data.canvases`` draws its masks)."""


@dataclass(frozen=True)
class Detection:
    """One digit found: its class, the probability the classifier gave it and the window it
    was found in, in canvas pixels (``top``/``left`` inclusive, ``bottom``/``right``
    exclusive). A window at the border extends past the canvas (negative ``top``, ...), where
    the canvas was padded with background."""

    label: int
    name: str
    probability: float
    top: int
    left: int
    bottom: int
    right: int

    @property
    def box(self) -> tuple[int, int, int, int]:
        return self.top, self.left, self.bottom, self.right


@dataclass
class ScanResult:
    """A scanned canvas: the image (C, H, W) in [0, 1], the probability maps (K, H, W) (one
    window centred at every pixel), the detections in reading order, the class names and the
    window size."""

    image: np.ndarray
    probabilities: np.ndarray
    detections: list[Detection]
    classes: list[str]
    window: tuple[int, int]
    threshold: float


def window_box(row: int, col: int, window: tuple[int, int]) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) of the window whose centre pixel is (row, col)."""
    height, width = window
    top, left = row - height // 2, col - width // 2
    return top, left, top + height, left + width


def _pad_widths(window: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
    """Half a window before, the rest after: the padded canvas has one window per pixel."""
    height, width = window
    return (height // 2, height - 1 - height // 2), (width // 2, width - 1 - width // 2)


def score_maps(
    network: FullyConvolutional,
    images: np.ndarray,
    normalize: Callable[[np.ndarray], np.ndarray],
    dtype: np.dtype | type = np.float32,
) -> np.ndarray:
    """(N, K, H, W) class probabilities of the window centred at every pixel of ``images``.

    ``images`` (N, C, H, W) in [0, 1], each at least one window large, are padded with zeros
    (background) by half a window on each side, normalised and scanned at the
    ``scan_stride`` shifts (dy, dx) of the padded canvas; the scanner's map of shift (dy, dx)
    holds the windows centred at rows dy, dy + S_h, ... and columns dx, dx + S_w, ...
    """
    count, _, height, width = images.shape
    if height < network.window[0] or width < network.window[1]:
        raise ValueError(
            f"score_maps: images are {height}x{width}, smaller than the "
            f"{network.window[0]}x{network.window[1]} window the classifier reads"
        )
    pad_rows, pad_cols = _pad_widths(network.window)
    padded = normalize(np.pad(images, ((0, 0), (0, 0), pad_rows, pad_cols)))
    stride_rows, stride_cols = network.scan_stride
    probabilities: np.ndarray | None = None
    with cp.no_grad():
        for dy in range(stride_rows):
            for dx in range(stride_cols):
                shifted = np.ascontiguousarray(padded[:, :, dy:, dx:], dtype=dtype)
                maps = F.softmax(network(cp.from_numpy(shifted)), 1).numpy()
                if probabilities is None:
                    probabilities = np.zeros((count, maps.shape[1], height, width), maps.dtype)
                rows, cols = len(range(dy, height, stride_rows)), len(range(dx, width, stride_cols))
                # A training size with rows beyond the receptive field gives spare positions
                # whose windows pass the padded canvas's end: not windows of this canvas.
                probabilities[:, :, dy::stride_rows, dx::stride_cols] = maps[:, :, :rows, :cols]
    assert probabilities is not None  # the stride is at least 1
    return probabilities


def _window_sums(values: np.ndarray, height: int, width: int) -> np.ndarray:
    """The sum over every height x width window of (N, H, W) ``values``, by an integral
    image: (N, H - height + 1, W - width + 1), indexed by the window's top-left corner."""
    integral = np.zeros((values.shape[0], values.shape[1] + 1, values.shape[2] + 1))
    integral[:, 1:, 1:] = values.cumsum(axis=1, dtype=np.float64).cumsum(axis=2)
    return (
        integral[:, height:, width:]
        - integral[:, :-height, width:]
        - integral[:, height:, :-width]
        + integral[:, :-height, :-width]
    )


def centred_windows(
    images: np.ndarray,
    window: tuple[int, int],
    tolerance: float | None = CENTRE_TOLERANCE,
    frame: float = DIGIT_FRAME,
    centre_ink: int | None = CENTRE_INK,
) -> np.ndarray:
    """(N, H, W) booleans: is the window centred at each pixel centred on a digit?

    True where the centre of mass of the intensity (the channels' mean) inside the window's
    central ``frame`` part lies within ``tolerance`` pixels of the window's centre in each
    axis, and some pixel of at least ``INK`` lies within ``centre_ink`` pixels of the centre
    (see the module docstring). Outside the canvas is background (zero). ``None`` leaves a
    test out (``benchmarks/scan.py`` measures what each one does).
    """
    if tolerance is not None and not tolerance >= 0:
        raise ValueError(f"centred_windows: tolerance must be >= 0 or None, got {tolerance!r}")
    if centre_ink is not None and (isinstance(centre_ink, bool) or centre_ink < 1):
        raise ValueError(f"centred_windows: centre_ink must be >= 1 or None, got {centre_ink!r}")
    count, _, height, width = images.shape
    pad_rows, pad_cols = _pad_widths(window)
    intensity = np.pad(images.mean(axis=1, dtype=np.float64), ((0, 0), pad_rows, pad_cols))
    frame_rows = max(1, round(window[0] * frame))
    frame_cols = max(1, round(window[1] * frame))
    # Window (r, c) covers padded rows r .. r + H - 1; its centre is at r + H / 2 in pixel
    # coordinates (pixel i spans [i, i + 1)), and its frame starts (H - frame) // 2 below r.
    frame_top = (window[0] - frame_rows) // 2
    frame_left = (window[1] - frame_cols) // 2
    rows = np.arange(intensity.shape[1], dtype=np.float64)[None, :, None] + 0.5
    cols = np.arange(intensity.shape[2], dtype=np.float64)[None, None, :] + 0.5

    def framed(values: np.ndarray) -> np.ndarray:
        sums = _window_sums(values, frame_rows, frame_cols)
        return sums[:, frame_top : frame_top + height, frame_left : frame_left + width]

    centred = np.ones((count, height, width), dtype=bool)
    if tolerance is not None:
        mass = framed(intensity)
        with np.errstate(invalid="ignore", divide="ignore"):
            centre_row = framed(intensity * rows) / mass
            centre_col = framed(intensity * cols) / mass
        row_offset = np.abs(centre_row - (np.arange(height)[None, :, None] + window[0] / 2))
        col_offset = np.abs(centre_col - (np.arange(width)[None, None, :] + window[1] / 2))
        centred &= (mass > 0) & (row_offset <= tolerance) & (col_offset <= tolerance)
    if centre_ink is not None:
        side = 2 * centre_ink
        ink = _window_sums((intensity >= INK).astype(np.float64), side, side)
        ink_top, ink_left = window[0] // 2 - centre_ink, window[1] // 2 - centre_ink
        centred &= ink[:, ink_top : ink_top + height, ink_left : ink_left + width] > 0
    return centred


def box_iou(first: Sequence[float], second: Sequence[float]) -> float:
    """Intersection over union of two (top, left, bottom, right) boxes (0 when disjoint)."""
    rows = min(first[2], second[2]) - max(first[0], second[0])
    cols = min(first[3], second[3]) - max(first[1], second[1])
    intersection = max(0.0, rows) * max(0.0, cols)
    area_first = (first[2] - first[0]) * (first[3] - first[1])
    area_second = (second[2] - second[0]) * (second[3] - second[1])
    union = area_first + area_second - intersection
    return float(intersection / union) if union > 0 else 0.0


def non_max_suppression(
    boxes: Sequence[Sequence[float]], scores: Sequence[float], iou_threshold: float = NMS_IOU
) -> list[int]:
    """Greedy NMS: the indices kept, best score first (ties: the earlier box first); a box is
    dropped when its IoU with a kept box is ``iou_threshold`` or more."""
    order = sorted(range(len(scores)), key=lambda index: -scores[index])
    kept: list[int] = []
    for index in order:
        if all(box_iou(boxes[index], boxes[other]) < iou_threshold for other in kept):
            kept.append(index)
    return kept


def detect(
    probabilities: np.ndarray,
    centred: np.ndarray,
    window: tuple[int, int],
    classes: Sequence[str],
    threshold: float = DEFAULT_THRESHOLD,
    iou_threshold: float = NMS_IOU,
) -> list[Detection]:
    """The detections of one canvas from its (K, H, W) probability maps and (H, W) centred
    windows (steps 2 and 3 of the module docstring), in reading order (top, then left)."""
    best = probabilities.max(axis=0)
    label = probabilities.argmax(axis=0)
    rows, cols = np.nonzero(centred & (best >= threshold))
    boxes = [window_box(int(r), int(c), window) for r, c in zip(rows, cols, strict=True)]
    scores = [float(best[r, c]) for r, c in zip(rows, cols, strict=True)]
    detections = []
    for index in non_max_suppression(boxes, scores, iou_threshold):
        k = int(label[rows[index], cols[index]])
        detections.append(Detection(k, classes[k], scores[index], *boxes[index]))
    return sorted(detections, key=lambda found: (found.top, found.left))


def match(detections: Sequence[Detection], digits: Sequence[Box]) -> tuple[list[bool], int]:
    """Which digits were found, and how many detections are false positives.

    A detection finds a digit when its class is the digit's and its window's centre lies in
    the digit's box (``top <= centre < bottom``, likewise across). (An IoU rule, "or IoU >=
    0.5", would add nothing: a box whose centre lies outside another box overlaps it by at
    most half of its own area, so their IoU is at most 0.5, and exactly 0.5 only when the
    other box is the box's half.) Detections are taken in decreasing probability, each
    finding at most one digit not yet found; a detection that finds none (wrong class, wrong
    place or a second detection of a found digit) is a false positive.
    """
    found = [False] * len(digits)
    false_positives = 0
    for detection in sorted(detections, key=lambda d: -d.probability):
        centre_row = (detection.top + detection.bottom) / 2
        centre_col = (detection.left + detection.right) / 2
        for index, digit in enumerate(digits):
            if (
                not found[index]
                and digit.label == detection.label
                and digit.top <= centre_row < digit.bottom
                and digit.left <= centre_col < digit.right
            ):
                found[index] = True
                break
        else:
            false_positives += 1
    return found, false_positives


def scanner(model: nn.Module, input_shape: Sequence[int], source: str) -> FullyConvolutional:
    """The run's classifier as a scanner, or a one-line error saying why it cannot be."""
    try:
        return fully_convolutional(model, tuple(input_shape[1:]))
    except (TypeError, ValueError) as error:
        raise ValueError(f"{source}: its model cannot scan a canvas ({error})") from None


def scan(
    run_dir: str | Path,
    images: Sequence[str | Path],
    threshold: float = DEFAULT_THRESHOLD,
    weights: str = "latest",
) -> list[ScanResult]:
    """The digits on each image file, found by scanning the run's classifier over it.

    Each image is read at its own size (grey or RGB as the run was trained) and normalised
    with the run's mean and std, as ``predict`` does; it must be at least as large as the
    run's training images.
    """
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        raise ValueError(f"threshold must be a probability in [0, 1], got {threshold!r}")
    if not 0 <= threshold <= 1:
        raise ValueError(f"threshold must be a probability in [0, 1], got {threshold!r}")
    run_dir = Path(run_dir)
    model, checkpoint = load_run(run_dir, weights)
    if checkpoint.image_shape is None or checkpoint.as_sequence:
        what = "1-D sequences" if checkpoint.image_shape is None else "images as sequences"
        raise ValueError(
            f"{run_dir}: scanning needs a 2-D image classifier, but this run's model "
            f"({checkpoint.config.model}) reads {what}"
        )
    network = scanner(model, checkpoint.input_shape, str(run_dir))
    channels, height, width = checkpoint.image_shape
    normalize = Normalize(checkpoint.mean, checkpoint.std)
    dtype = np.dtype(checkpoint.config.dtype)
    classes = list(checkpoint.classes)
    results = []
    for image in images:
        pixels = load_image(image, channels, None)  # at its own size
        if pixels.shape[1] < height or pixels.shape[2] < width:
            raise DataError(
                f"{image}: the image is {pixels.shape[1]}x{pixels.shape[2]}, smaller than the "
                f"{height}x{width} images the run was trained on (the window it scans)"
            )
        probabilities = score_maps(network, pixels[None], normalize, dtype)[0]
        centred = centred_windows(pixels[None], network.window)[0]
        found = detect(probabilities, centred, network.window, classes, threshold)
        results.append(ScanResult(pixels, probabilities, found, classes, network.window, threshold))
    return results


def report(path: str | Path, result: ScanResult) -> str:
    """What ``predict --scan`` prints for one image: a summary line, then one line per digit
    found (class, probability, window: top, left, bottom, right)."""
    height, width = result.window
    found = len(result.detections)
    summary = (
        f"{path}: {found} found" if found else f"{path}: nothing found"
    ) + f" (probability >= {result.threshold:g}; boxes are the {height}x{width} windows, in pixels)"
    if not found:
        return summary
    width_name = max(5, *(len(d.name) for d in result.detections))
    lines = [summary, f"{'class'.ljust(width_name)}  probability   top  left  bottom  right"]
    for d in result.detections:
        lines.append(
            f"{d.name.ljust(width_name)}  {d.probability:11.4f}  {d.top:4d}  {d.left:4d}  "
            f"{d.bottom:6d}  {d.right:5d}"
        )
    return "\n".join(lines)


# ----------------------------------------------------------------------------- heat map
def heatmap_figure(result: ScanResult, title: str = "") -> Figure:
    """The canvas with each class's score map over it, one panel per class, and the
    detections boxed on their class's panel (plus every detection on the canvas panel)."""
    from matplotlib.patches import Rectangle

    from convprop.plots import _hide_axes, _new_figure

    classes = result.classes
    panels = len(classes) + 1
    columns = min(6, panels)
    rows = math.ceil(panels / columns)
    figure = _new_figure(2.0 * columns + 0.8, 2.1 * rows + 0.6)
    axes = figure.subplots(rows, columns, squeeze=False)
    grey = result.image.mean(axis=0)
    height, width = grey.shape
    extent = (-0.5, width - 0.5, height - 0.5, -0.5)
    shown = None
    for index, axis in enumerate(axes.flat):
        _hide_axes(axis)
        if index >= panels:
            continue
        axis.imshow(grey, cmap="gray", vmin=0, vmax=1, extent=extent, interpolation="nearest")
        if index == 0:
            boxed = result.detections
            axis.set_title("canvas, all found", fontsize=8)
        else:
            k = index - 1
            scores = result.probabilities[k]
            shown = axis.imshow(
                scores,
                cmap="magma",
                vmin=0,
                vmax=1,
                alpha=np.clip(scores, 0.0, 1.0) * 0.85,
                extent=extent,
                interpolation="nearest",
            )
            boxed = [d for d in result.detections if d.label == k]
            axis.set_title(f"{classes[k]} (max {scores.max():.2f})", fontsize=8)
        for d in boxed:
            axis.add_patch(
                Rectangle(
                    (d.left - 0.5, d.top - 0.5),
                    d.right - d.left,
                    d.bottom - d.top,
                    fill=False,
                    edgecolor="#2ca02c",
                    linewidth=1.2,
                )
            )
            axis.text(d.left, d.top, d.name, color="#2ca02c", fontsize=7, va="bottom")
        axis.set_xlim(-0.5, width - 0.5)
        axis.set_ylim(height - 0.5, -0.5)
    if shown is not None:
        figure.colorbar(shown, ax=axes, shrink=0.6, label="probability of the class")
    figure.suptitle(
        title
        or (
            f"Scan: class probability of the {result.window[0]}x{result.window[1]} window "
            f"centred at each pixel; boxes: found (>= {result.threshold:g})"
        ),
        fontsize=10,
    )
    return figure


def save_heatmap(path: Path, result: ScanResult) -> Figure:
    """Write :func:`heatmap_figure` of ``result`` to ``path`` as a PNG; returns the figure."""
    from convprop.plots import _save

    figure = heatmap_figure(result)
    _save(figure, path)
    return figure
