"""``python -m benchmarks.scan RUN_DIR``: how many digits ``predict --scan`` finds.

Scans ``--canvases`` held-out canvases (1-3 digits each, 64x64) with the run's classifier
exactly as ``convprop predict RUN_DIR CANVAS.png --scan`` does (``convprop.training.scan``) and
counts, with :func:`convprop.training.scan.match`'s rule (right class, and the window's centre
in the digit's box):

- found: the share of digits found, and the share of canvases with every digit found;
- false positives per canvas: detections that find no digit (wrong class, wrong place or a
  second detection of one digit).

Two sources of digits (``--digits``):

- ``held-out`` (default): ``data.canvases.make_canvases(N, "test", seed)``, whose digits are
  disjoint from the training canvases' digits. A classifier trained by ``convprop train`` on
  ``mnist-5k`` has seen most of them, though (it trains on 80% of the same 5,000 digits).
- ``run-test``: canvases drawn the same way from the run's own test split, digits the
  classifier never saw; the honest figure for new handwriting.

The table also shows what each step of the detection rule contributes (the module docstring
of ``convprop.training.scan``), and the found-rate at other thresholds. This is a measured
figure, not a timed test; it takes under a minute for the default 1,000 canvases on two cores.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np

from convprop.data import Normalize
from convprop.data.canvases import Box, make_canvas, make_canvases
from convprop.training.checkpoint import load_run
from convprop.training.data import prepare_data
from convprop.training.scan import (
    DEFAULT_THRESHOLD,
    centred_windows,
    detect,
    match,
    scanner,
    score_maps,
    window_box,
)


def canvases(
    run_dir: Path, source: str, count: int, seed: int
) -> tuple[np.ndarray, list[list[Box]]]:
    """(N, 1, 64, 64) canvases and their digits' boxes."""
    if source == "held-out":
        made = make_canvases(count, split="test", seed=seed)
        return made.inputs, made.boxes
    _, checkpoint = load_run(run_dir)
    pool = prepare_data(checkpoint.config).test
    images = np.zeros((count, 1, 64, 64), dtype=np.float32)
    boxes = []
    for index in range(count):
        rng = np.random.default_rng([seed, 2, index])  # streams 0 and 1 are make_canvases'
        images[index, 0], _, digits = make_canvas(pool, rng)
        boxes.append(digits)
    return images, boxes


def measure(
    probabilities: np.ndarray,
    allowed: np.ndarray,
    window: tuple[int, int],
    classes: list[str],
    boxes: list[list[Box]],
    threshold: float,
) -> tuple[float, float, float]:
    """(share of digits found, share of canvases with all found, false positives per canvas)."""
    found = total = complete = false_positives = 0
    for index, digits in enumerate(boxes):
        detections = detect(probabilities[index], allowed[index], window, classes, threshold)
        flags, wrong = match(detections, digits)
        found += sum(flags)
        total += len(flags)
        complete += all(flags)
        false_positives += wrong
    count = max(1, len(boxes))
    return found / max(1, total), complete / count, false_positives / count


def positions(
    shape: tuple[int, int], window: tuple[int, int], stride: tuple[int, int]
) -> Callable[[bool, bool], np.ndarray]:
    """A mask maker: windows inside the canvas only, and/or only those of one unshifted scan
    of the unpadded canvas (top-left at multiples of the stride): the plain scan."""
    height, width = shape
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    top, left, bottom, right = window_box(rows, cols, window)  # type: ignore[arg-type]

    def mask(inside: bool, strided: bool) -> np.ndarray:
        keep = np.ones(shape, dtype=bool)
        if inside:
            keep &= (top >= 0) & (left >= 0) & (bottom <= height) & (right <= width)
        if strided:
            keep &= (top % stride[0] == 0) & (left % stride[1] == 0)
        return keep

    return mask


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scan", description=__doc__)
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    parser.add_argument("--canvases", type=int, default=1000, help="how many (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="the canvases' seed (default 0)")
    parser.add_argument("--digits", choices=("held-out", "run-test"), default="held-out")
    parser.add_argument("--weights", choices=("latest", "best"), default="latest")
    args = parser.parse_args(argv)

    model, checkpoint = load_run(args.run_dir, args.weights)
    network = scanner(model, checkpoint.input_shape, str(args.run_dir))
    images, boxes = canvases(args.run_dir, args.digits, args.canvases, args.seed)
    normalize = Normalize(checkpoint.mean, checkpoint.std)
    probabilities = score_maps(network, images, normalize, np.dtype(checkpoint.config.dtype))
    window, classes = network.window, list(checkpoint.classes)
    where = positions(images.shape[2:], window, network.scan_stride)
    full = centred_windows(images, window)
    variants = [
        ("plain scan: stride-S windows inside the canvas", where(True, True)),
        ("+ windows past the border (padded canvas)", where(False, True)),
        ("+ a window at every pixel (S x S shifts)", where(False, False)),
        ("+ centre-of-mass test", centred_windows(images, window, centre_ink=None)),
        ("+ ink near the centre: the rule", full),
        ("the rule without the centre-of-mass test", centred_windows(images, window, None)),
        ("the rule on stride-S windows only", full & where(False, True)),
    ]
    digits = sum(len(b) for b in boxes)
    print(
        f"{args.run_dir} ({args.weights} weights), {len(boxes)} canvases of {args.digits} digits "
        f"(seed {args.seed}), {digits} digits; windows {window[0]}x{window[1]}, "
        f"stride {network.scan_stride}"
    )
    width = max(len(name) for name, _ in variants)
    heading = f"rule (threshold {DEFAULT_THRESHOLD:g})"
    print(f"{heading:{width}}  found  all found  FP/canvas")
    for name, allowed in variants:
        if allowed.ndim == 2:
            allowed = np.broadcast_to(allowed, probabilities[:, 0].shape)
        rate, complete, wrong = measure(
            probabilities, allowed, window, classes, boxes, DEFAULT_THRESHOLD
        )
        print(f"{name:{width}}  {rate:5.1%}  {complete:9.1%}  {wrong:9.3f}")
    print()
    print("threshold  found  all found  FP/canvas   (the rule)")
    for threshold in (0.5, 0.7, 0.8, 0.9, 0.95, 0.99):
        rate, complete, wrong = measure(probabilities, full, window, classes, boxes, threshold)
        print(f"{threshold:9g}  {rate:5.1%}  {complete:9.1%}  {wrong:9.3f}")


if __name__ == "__main__":
    main()
