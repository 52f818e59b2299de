"""``explain model``'s inputs from a run: its network, an image or a test sample, the label."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from convprop.data import DataError, load_image
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


def explain_run(
    run_dir: Path,
    image: Path | None,
    index: int | None,
    label: str | None,
    weights: str = "latest",
    checks: int = 2,
    seed: int = 0,
) -> Trace:
    """The trace of a run's network on an image file or on test sample ``index``."""
    from convprop.training.data import prepare_data

    if checks < 0:
        raise ValueError(f"explain model: --checks must be non-negative, got {checks}")
    network, checkpoint = load_run(run_dir, weights)
    target = _label(label, checkpoint)
    if image is not None:
        if checkpoint.image_shape is None:
            raise ValueError(f"{run_dir}: this model reads 1-D sequences, not images; use --index")
        channels, height, width = checkpoint.image_shape
        picture = load_image(image, channels, (height, width))
        if checkpoint.as_sequence:
            picture = picture.reshape(channels * height, width)
        name = str(image)
    else:
        assert index is not None
        test = prepare_data(checkpoint.config).test
        if not 0 <= index < len(test):
            raise DataError(
                f"explain model: --index {index} is outside the run's {len(test)} test samples"
            )
        picture = test.inputs[index]
        name = f"test sample {index}"
        if target is None:
            target = int(test.labels[index])
    spatial = (1,) * (picture.ndim - 1)
    mean = np.array(checkpoint.mean, np.float32).reshape(-1, *spatial)
    std = np.array(checkpoint.std, np.float32).reshape(-1, *spatial)
    normalized = ((picture - mean) / std).astype(checkpoint.config.dtype)
    return trace(network, normalized, target, checks=checks, seed=seed, run=str(run_dir), name=name)
