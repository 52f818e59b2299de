"""``predict`` for a segmentation run: a class per pixel of each image, as a mask file.

The segmenter is fully convolutional, so an image of any size is read at its own size: it is
padded with zeros (the canvases' background) at the bottom and right to a multiple of the
network's total stride, and the scores are cropped back. The mask file is an 8-bit PNG whose
pixel values are the class indices, with the run's palette (``plots.class_palette``) so that
it also looks right; the overlay beside it paints the image with the classes' colours.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import convprop as cp
from convprop.data import DataError, Normalize, load_image
from convprop.io.files import atomic_write_bytes
from convprop.training.checkpoint import load_run


@dataclass
class PredictedMask:
    """One image's predicted classes: ``mask`` (H, W) indices into ``classes``."""

    path: Path
    image: np.ndarray  # (C, H, W) in [0, 1], as read
    mask: np.ndarray
    classes: list[str]

    def summary(self) -> str:
        """The classes found, by pixel count, background left out: ``3 (312 px), 7 (250 px)``."""
        counts = np.bincount(self.mask.ravel(), minlength=len(self.classes))
        found = [
            (int(counts[i]), name)
            for i, name in enumerate(self.classes)
            if counts[i] and name != "background"
        ]
        if not found:
            return "no class but background"
        return ", ".join(f"{name} ({count} px)" for count, name in sorted(found, reverse=True))


def predict_masks(
    run_dir: str | Path, images: Sequence[str | Path], weights: str = "latest"
) -> list[PredictedMask]:
    """The predicted mask of each image file (see the module docstring)."""
    model, checkpoint = load_run(run_dir, weights)
    if checkpoint.config.task != "segment":
        raise ValueError(
            f"{run_dir}: a classifier gives one class per image, not a mask; --mask needs a run "
            "of convprop train --task segment"
        )
    channels = checkpoint.input_shape[0]
    multiple = 2 ** (int(getattr(model, "levels", 1)) - 1)
    normalize = Normalize(checkpoint.mean, checkpoint.std)
    dtype = np.dtype(checkpoint.config.dtype)
    results = []
    for path in images:
        image = load_image(path, channels, None)
        height, width = image.shape[1:]
        padded = np.zeros(
            (channels, -(-height // multiple) * multiple, -(-width // multiple) * multiple),
            dtype=np.float32,
        )
        padded[:, :height, :width] = image
        with cp.no_grad():
            batch = np.ascontiguousarray(normalize(padded[None]), dtype=dtype)
            scores = model(cp.from_numpy(batch)).numpy()[0, :, :height, :width]
        results.append(
            PredictedMask(Path(path), image, np.argmax(scores, axis=0), list(checkpoint.classes))
        )
    return results


def mask_png(mask: np.ndarray, classes: Sequence[str]) -> bytes:
    """An 8-bit palette PNG whose pixel values are the class indices."""
    from PIL import Image

    from convprop.plots import class_palette

    picture = Image.fromarray(mask.astype(np.uint8), mode="P")
    palette = np.zeros((256, 3), dtype=np.uint8)
    palette[: len(classes)] = class_palette(classes)
    palette[len(classes) :] = 255
    picture.putpalette(palette.ravel().tolist())
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def overlay_png(image: np.ndarray, mask: np.ndarray, classes: Sequence[str]) -> bytes:
    """The image (grey or RGB) with every pixel not of class ``background`` tinted by its
    class's colour, half and half."""
    from PIL import Image

    from convprop.plots import class_palette

    rgb = np.repeat(image, 3, axis=0) if image.shape[0] == 1 else image
    picture = rgb.transpose(1, 2, 0) * 255.0
    colours = class_palette(classes)[mask].astype(np.float64)
    tinted = np.array([name != "background" for name in classes])[mask]
    picture[tinted] = 0.5 * picture[tinted] + 0.5 * colours[tinted]
    buffer = io.BytesIO()
    Image.fromarray(np.clip(np.round(picture), 0, 255).astype(np.uint8), mode="RGB").save(
        buffer, format="PNG"
    )
    return buffer.getvalue()


def mask_destinations(output: Path, images: Sequence[str | Path]) -> list[tuple[Path, Path]]:
    """Where each image's mask and overlay go: ``OUT.png`` and ``OUT-overlay.png`` for one
    image, ``OUT/NAME.png`` and ``OUT/NAME-overlay.png`` for several (``OUT`` a directory)."""
    if len(images) == 1:
        if output.suffix.lower() != ".png":
            raise DataError(f"--mask {output}: must name a .png file")
        if output.is_dir():
            raise DataError(f"--mask {output}: is a directory; name the .png file to write")
        return [(output, output.with_name(f"{output.stem}-overlay.png"))]
    if output.exists() and not output.is_dir():
        raise DataError(f"--mask {output}: with {len(images)} images it must be a directory")
    stems = [Path(image).stem for image in images]
    repeated = sorted({stem for stem in stems if stems.count(stem) > 1})
    if repeated:
        raise DataError(
            f"--mask {output}: two images are named {repeated[0]}; their masks would collide"
        )
    return [(output / f"{stem}.png", output / f"{stem}-overlay.png") for stem in stems]


def write_masks(predicted: Sequence[PredictedMask], output: Path) -> list[Path]:
    """Write each prediction's mask and overlay (``mask_destinations``); the files written."""
    destinations = mask_destinations(output, [p.path for p in predicted])
    if len(predicted) > 1:
        try:
            output.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise DataError(f"--mask {output}: cannot create the directory ({error})") from None
    written = []
    for prediction, (mask_path, overlay_path) in zip(predicted, destinations, strict=True):
        atomic_write_bytes(mask_path, mask_png(prediction.mask, prediction.classes))
        atomic_write_bytes(
            overlay_path, overlay_png(prediction.image, prediction.mask, prediction.classes)
        )
        written += [mask_path, overlay_path]
    return written
