"""``explain model``'s inputs from a run: its network, an image or a test sample, the label.

For a segmentation run the label is a mask: a test sample's own (``--index``), a mask file
(``--mask`` with ``--image``), or by default the predicted mask. An image of any size is read
at its own size and padded with zeros (the canvases' background) at the bottom and right to a
multiple of the network's total stride, as ``predict --mask`` reads it; the padding's pixels
are ignored by the loss (``IGNORE`` in the mask).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

import convprop as cp
from convprop import nn
from convprop.data import DataError, load_image
from convprop.data.canvases import IGNORE
from convprop.explain.trace import Trace, trace
from convprop.training.checkpoint import Checkpoint, load_run


def _label(text: str | None, checkpoint: Checkpoint) -> int | None:
    """A class given by name or index."""
    if text is None:
        return None
    if text in checkpoint.classes:
        return checkpoint.classes.index(text)
    if text.lstrip("-").isdigit() and 0 <= int(text) < len(checkpoint.classes):
        return int(text)
    raise ValueError(
        f"explain model: --label {text!r} is not a class of the run "
        f"({', '.join(checkpoint.classes[:12])})"
    )


def read_mask(path: Path, size: tuple[int, int], classes: int) -> np.ndarray:
    """A mask file as an int64 (H, W) array: 8-bit (mode L or P) class indices of the image's
    ``size`` (H, W), each below ``classes`` or ``IGNORE``; anything else is a DataError."""
    from convprop.data import masks

    try:
        mask = masks.read_mask(path)
    except DataError as error:  # "PATH: cannot read image", "PATH: a mask must be 8-bit ..."
        raise DataError(f"--mask {error}") from None
    if mask.shape != size:
        raise DataError(
            f"--mask {path}: is {mask.shape[1]}x{mask.shape[0]} but the image is "
            f"{size[1]}x{size[0]} (width x height)"
        )
    outside = (mask != IGNORE) & (mask >= classes)
    if outside.any():
        raise DataError(
            f"--mask {path}: has the value {int(mask[outside].max())}, but the run's classes are "
            f"0..{classes - 1} (and {IGNORE} to ignore a pixel)"
        )
    if not (mask != IGNORE).any():
        raise DataError(f"--mask {path}: every pixel is {IGNORE} (ignored); nothing to explain")
    return mask


def _padded(picture: np.ndarray, multiple: int) -> np.ndarray:
    """The (C, H, W) image with zeros below and to the right up to multiples of ``multiple``."""
    channels, height, width = picture.shape
    padded = np.zeros(
        (channels, -(-height // multiple) * multiple, -(-width // multiple) * multiple),
        dtype=picture.dtype,
    )
    padded[:, :height, :width] = picture
    return padded


def _segmentation_input(
    network: nn.Module,
    checkpoint: Checkpoint,
    image: Path,
    mask: Path | None,
    normalize: Callable[[np.ndarray], np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    """A segmenter's normalised, padded image and the mask to take the loss against: the
    file's, or the predicted one; the padding ignored."""
    channels = checkpoint.input_shape[0]
    picture = load_image(image, channels, None)
    height, width = picture.shape[1:]
    target = None if mask is None else read_mask(mask, (height, width), len(checkpoint.classes))
    multiple = 2 ** (int(getattr(network, "levels", 1)) - 1)
    normalized = normalize(_padded(picture, multiple))
    if target is None:
        network.eval()
        with cp.no_grad():
            scores = network(cp.tensor(normalized[np.newaxis])).numpy()[0]
        target = np.argmax(scores[:, :height, :width], axis=0).astype(np.int64)
    full = np.full(normalized.shape[1:], IGNORE, dtype=np.int64)
    full[:height, :width] = target
    return normalized, full


def explain_run(
    run_dir: Path,
    image: Path | None,
    index: int | None,
    label: str | None,
    weights: str = "latest",
    checks: int = 2,
    seed: int = 0,
    mask: Path | None = None,
) -> Trace:
    """The trace of a run's network on an image file or on test sample ``index``; for a
    segmentation run against a mask (the sample's, ``mask`` or the predicted one)."""
    from convprop.training.data import prepare_data

    if checks < 0:
        raise ValueError(f"explain model: --checks must be non-negative, got {checks}")
    network, checkpoint = load_run(run_dir, weights)
    segment = checkpoint.config.task == "segment"
    if segment and label is not None:
        raise ValueError(
            f"explain model: {run_dir} is a segmentation run, whose label is a class per pixel: "
            "give a mask file with --image IMAGE --mask MASK.png, or use --index (the sample's "
            "own mask); without either the loss is against the predicted mask"
        )
    if mask is not None and not segment:
        raise ValueError(
            f"explain model: --mask is for segmentation runs; {run_dir} is a classifier "
            "(use --label)"
        )
    if mask is not None and image is None:
        raise ValueError(
            "explain model: --mask goes with --image; with --index the test sample's own mask "
            "is used"
        )
    dtype = checkpoint.config.dtype

    def normalize(picture: np.ndarray) -> np.ndarray:
        spatial = (1,) * (picture.ndim - 1)
        mean = np.array(checkpoint.mean, np.float32).reshape(-1, *spatial)
        std = np.array(checkpoint.std, np.float32).reshape(-1, *spatial)
        return ((picture - mean) / std).astype(dtype)

    target: int | np.ndarray | None = _label(label, checkpoint)
    if image is not None and segment:
        normalized, target = _segmentation_input(network, checkpoint, image, mask, normalize)
        name = str(image)
    elif image is not None:
        if checkpoint.image_shape is None:
            raise ValueError(f"{run_dir}: this model reads 1-D sequences, not images; use --index")
        channels, height, width = checkpoint.image_shape
        picture = load_image(image, channels, (height, width))
        if checkpoint.as_sequence:
            picture = picture.reshape(channels * height, width)
        normalized = normalize(picture)
        name = str(image)
    else:
        assert index is not None
        test = prepare_data(checkpoint.config).test
        if not 0 <= index < len(test):
            raise DataError(
                f"explain model: --index {index} is outside the run's {len(test)} test samples"
            )
        normalized = normalize(test.inputs[index])
        name = f"test sample {index}"
        if segment:
            target = np.asarray(test.labels[index], dtype=np.int64)
        elif target is None:
            target = int(test.labels[index])
    return trace(
        network,
        normalized,
        target,
        checks=checks,
        seed=seed,
        run=str(run_dir),
        name=name,
        classes=list(checkpoint.classes),
    )
