"""Measured invariance: a trained network on deterministic, transformed copies of its test set.

Deck 004 asks how a CNN copes with shifted, scaled, rotated and deformed inputs: weight
sharing and pooling give some tolerance of small shifts for free, and the rest has to be
taught by augmentation (``train --augment``). ``evaluate --perturb`` measures both: each
perturbation is a fixed set of transforms, every test image is evaluated under each of them,
and the accuracy and the mean cross-entropy are taken over all the copies.

- ``shift=N`` (8 copies): moved by exactly N whole pixels in each of the 8 compass
  directions, (rows, columns) = (-N, 0), (-N, N), (0, N), (N, N), (N, 0), (N, -N), (0, -N),
  (-N, -N) in that order (north first, clockwise; rows point down); the pixels moved in are
  zeros: ``np.roll`` without the wrap-around.
- ``rotate=DEG`` (2 copies): rotated about its centre by +DEG and by -DEG degrees
  (0 <= DEG <= 180), bilinear, zero fill.
- ``scale=LO,HI`` (2 copies): scaled about its centre by LO and by HI (0 < LO <= HI),
  bilinear, zero fill.
- ``elastic`` or ``elastic=ALPHA,SIGMA`` (1 copy): deformed by Simard et al.'s elastic field
  (default alpha 8, sigma 3, as ``train --augment elastic``); image i's field is drawn from
  ``np.random.default_rng([SEED, i])``, i its position in the evaluated data.

Copies that coincide are evaluated once (``shift=0`` and ``rotate=0`` are the clean images,
one copy; ``scale=1,1`` likewise). Nothing is drawn at random except the elastic fields,
which depend only on the spec, the image and its position in the evaluated data, so the
numbers are the same on every run and on any core count, and every model is measured
on the same deformed images. The geometry is ``convprop.data.transforms.affine_sample``'s
(a positive angle turns an image clockwise as displayed) and the sampling
``bilinear_sample``'s, the very code behind the training augmentations.

``convprop.training.evaluate(run_dir, perturb=["shift=2", "rotate=20"])`` evaluates a run
so (see its ``perturbed``); the pieces work on any batch of images:

>>> from convprop.training.perturb import parse_perturbation
>>> shift = parse_perturbation("shift=1")
>>> shift.copies, shift.describe()
(8, 'moved 1 px in each of 8 compass directions')
>>> image = np.arange(9.0).reshape(1, 1, 3, 3)
>>> shift.transform(image, 4)[0, 0]  # copy 4: (N, 0), one row down
array([[0., 0., 0.],
       [0., 1., 2.],
       [3., 4., 5.]])
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from convprop import nn
from convprop.data.transforms import affine_sample, elastic_sample
from convprop.training.evaluate import evaluate_arrays, format_number

PERTURBATIONS = ("shift", "rotate", "scale", "elastic")
SEED = 0
"""The seed of the elastic fields (with each image's index)."""
ELASTIC_DEFAULT = (8.0, 3.0)  # alpha, sigma: the training augmentation's
FORMS = "shift=N, rotate=DEG, scale=LO,HI, elastic or elastic=ALPHA,SIGMA"


class PerturbationError(ValueError):
    """A perturbation spec that cannot be used: ``spec`` is the text, ``rule`` the reason."""

    def __init__(self, spec: str, rule: str) -> None:
        super().__init__(f"--perturb {spec!r}: {rule}")
        self.spec = spec
        self.rule = rule


@dataclass(frozen=True)
class Perturbation:
    """A named set of deterministic transforms of an image (see the module docstring).

    ``amount`` is ``(N,)`` for shift, ``(DEG,)`` for rotate, ``(LO, HI)`` for scale and
    ``(ALPHA, SIGMA)`` for elastic. Build one with :func:`parse_perturbation`.
    """

    kind: str
    amount: tuple[float, ...]

    def __post_init__(self) -> None:
        shown = ",".join(f"{value:g}" for value in self.amount)
        _check_amount(self.kind, self.amount, self.spec, shown)

    @property
    def spec(self) -> str:
        """The canonical text: ``shift=4``, ``rotate=20``, ``scale=0.8,1.2``, ``elastic=8,3``."""
        return f"{self.kind}=" + ",".join(f"{value:g}" for value in self.amount)

    @property
    def copies(self) -> int:
        """How many transformed copies of each image the perturbation evaluates."""
        return len(self._variants())

    def describe(self) -> str:
        """What is done to each image, in words."""
        if self.kind == "shift":
            if self.amount[0] == 0:
                return "not moved"
            return f"moved {self.amount[0]:g} px in each of 8 compass directions"
        if self.kind == "rotate":
            if self.amount[0] == 0:
                return "not rotated"
            return f"rotated by +{self.amount[0]:g} and -{self.amount[0]:g} degrees"
        if self.kind == "scale":
            return "scaled by " + " and by ".join(f"{zoom:g}" for (zoom,) in self._variants())
        return f"elastic field, alpha {self.amount[0]:g}, sigma {self.amount[1]:g}"

    def transform(self, images: np.ndarray, copy: int, first_index: int = 0) -> np.ndarray:
        """Copy number ``copy`` (0 <= copy < ``copies``) of an (N, C, H, W) batch of images;
        ``first_index`` is the position of ``images[0]`` in the evaluated data (it seeds the
        elastic fields, so a batch's copies do not depend on how the data was split up)."""
        if images.ndim != 4:
            raise ValueError(
                f"{self.spec}: images must be an (N, C, H, W) batch, got shape {images.shape}"
            )
        if not 0 <= copy < self.copies:
            raise ValueError(f"{self.spec}: copy must be in 0..{self.copies - 1}, got {copy}")
        count, _, height, width = images.shape
        self.check_size(height, width)
        variant = self._variants()[copy]
        if self.kind == "elastic":
            noise = np.stack(
                [
                    np.random.default_rng([SEED, first_index + i]).uniform(
                        -1, 1, (2, height, width)
                    )
                    for i in range(count)
                ],
                axis=1,
            )
            return elastic_sample(images, noise, *self.amount)
        angle, zoom, shift = np.zeros(count), np.ones(count), np.zeros((count, 2))
        if self.kind == "shift":
            shift[:] = variant
        elif self.kind == "rotate":
            angle[:] = np.radians(variant[0])
        else:
            zoom[:] = variant[0]
        return affine_sample(images, angle, zoom, shift)

    def check_size(self, height: int, width: int) -> None:
        """Refuse a shift that would move a ``height`` x ``width`` image out of its frame."""
        if self.kind == "shift" and self.amount[0] >= min(height, width):
            raise PerturbationError(
                self.spec,
                f"moves a {height}x{width} image wholly out of its frame (N must be below "
                f"{min(height, width)})",
            )

    def _variants(self) -> list[tuple[float, ...]]:
        """One parameter tuple per distinct copy, in a fixed order."""
        variants: list[tuple[float, ...]]
        if self.kind == "shift":
            n = self.amount[0]
            compass = [(-n, 0), (-n, n), (0, n), (n, n), (n, 0), (n, -n), (0, -n), (-n, -n)]
            variants = [(float(r), float(c)) for r, c in compass]
        elif self.kind == "rotate":
            variants = [(self.amount[0],), (-self.amount[0],)]
        elif self.kind == "scale":
            variants = [(self.amount[0],), (self.amount[1],)]
        else:
            variants = [self.amount]
        return list(dict.fromkeys(variants))  # 0 == -0: shift=0 and rotate=0 are one copy


_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def parse_perturbation(text: str) -> Perturbation:
    """A perturbation from its spec (``shift=4``, ``rotate=20``, ``scale=0.8,1.2``,
    ``elastic``, ``elastic=8,3``); a :class:`PerturbationError` (a ``ValueError``) naming the
    spec and the rule it breaks otherwise."""
    if not isinstance(text, str):
        raise TypeError(f"perturb: expected a spec like 'shift=4', got {text!r}")
    name, equals, value = text.partition("=")
    if name not in PERTURBATIONS:
        raise PerturbationError(text, f"unknown perturbation {name!r} (the forms: {FORMS})")
    if name == "elastic" and not equals:
        return Perturbation("elastic", ELASTIC_DEFAULT)
    parts = value.split(",")
    if not equals:
        raise PerturbationError(text, f"{_RULES[name]}, got no value")
    if not all(_NUMBER.fullmatch(part) for part in parts) or (
        name == "shift" and not re.fullmatch(r"\d+", value)
    ):
        raise PerturbationError(text, f"{_RULES[name]}, got {value!r}")
    amount = tuple(float(part) for part in parts)
    _check_amount(name, amount, text, value)  # in the words the user wrote
    return Perturbation(name, amount)


def parse_perturbations(specs: Sequence[str | Perturbation] | None) -> list[Perturbation]:
    """:func:`parse_perturbation` of each spec (``None`` or ``[]``: none)."""
    if specs is None:
        return []
    if isinstance(specs, (str, Perturbation)):
        raise TypeError(f"perturb must be a list of specs, got a single one: {specs!r}")
    return [spec if isinstance(spec, Perturbation) else parse_perturbation(spec) for spec in specs]


_RULES = {
    "shift": "shift=N takes a whole number of pixels N >= 0",
    "rotate": "rotate=DEG takes an angle in degrees, 0 <= DEG <= 180",
    "scale": "scale=LO,HI takes two factors with 0 < LO <= HI (e.g. scale=0.8,1.2)",
    "elastic": "elastic=ALPHA,SIGMA takes a strength ALPHA >= 0 and a width SIGMA > 0",
}


def _check_amount(kind: str, amount: tuple[float, ...], spec: str, shown: str) -> None:
    if kind not in PERTURBATIONS:
        raise PerturbationError(spec, f"unknown perturbation {kind!r} (the forms: {FORMS})")
    size = {"shift": 1, "rotate": 1, "scale": 2, "elastic": 2}[kind]
    valid = len(amount) == size and all(math.isfinite(value) for value in amount)
    if valid and kind == "shift":
        valid = amount[0] >= 0 and amount[0] == int(amount[0])
    elif valid and kind == "rotate":
        valid = 0 <= amount[0] <= 180
    elif valid and kind == "scale":
        valid = 0 < amount[0] <= amount[1]
    elif valid:
        valid = amount[0] >= 0 and amount[1] > 0
    if not valid:
        raise PerturbationError(spec, f"{_RULES[kind]}, got {shown!r}")


@dataclass
class PerturbedEvaluation:
    """Accuracy and mean cross-entropy over every transformed copy of every test image."""

    perturbation: Perturbation
    accuracy: float
    loss: float
    samples: int  # images x copies


def evaluate_perturbations(
    model: nn.Module,
    inputs: np.ndarray,
    labels: np.ndarray,
    normalize: Callable[[np.ndarray], np.ndarray],
    dtype: np.dtype,
    perturbations: Sequence[Perturbation],
    image_shape: Sequence[int] | None,
    batch_size: int = 512,
) -> list[PerturbedEvaluation]:
    """The model (eval mode, no graph) on each perturbation's copies of ``inputs``.

    ``image_shape`` is the (C, H, W) of the images behind ``inputs``: the inputs themselves,
    or the (N, C*H, W) sequences a TDNN reads an image as (transformed as images, then read
    as sequences again). ``None`` means the inputs are 1-D sequences, which are refused.
    ``batch_size`` images are transformed at once (it bounds the memory of the sampling grids
    and changes no accuracy, the loss at most by rounding)."""
    if not perturbations:
        return []
    if image_shape is None:
        raise PerturbationError(
            perturbations[0].spec,
            "this model was trained on 1-D sequences, not images; shift, rotate, scale and "
            "elastic transform images (evaluate it without --perturb)",
        )
    images = inputs.reshape(len(inputs), *image_shape)
    for perturbation in perturbations:
        perturbation.check_size(*images.shape[2:])
    results = []
    for perturbation in perturbations:
        total_loss, correct = 0.0, 0
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size]
            chunk_labels = labels[start : start + batch_size]
            for copy in range(perturbation.copies):
                moved = perturbation.transform(chunk, copy, first_index=start)
                moved = moved.reshape(len(chunk), *inputs.shape[1:])
                loss, predicted = evaluate_arrays(model, moved, chunk_labels, normalize, dtype)
                total_loss += loss * len(chunk)
                correct += int((predicted == chunk_labels).sum())
        samples = len(images) * perturbation.copies
        results.append(
            PerturbedEvaluation(
                perturbation, correct / max(1, samples), total_loss / max(1, samples), samples
            )
        )
    return results


def perturbation_table(
    clean_accuracy: float,
    clean_loss: float,
    clean_samples: int,
    rows: Sequence[PerturbedEvaluation],
) -> str:
    """The clean line and one line per perturbation: accuracy, loss, drop in accuracy from
    clean, the number of evaluated copies and what was done to each image."""
    width = max(len("perturbation"), *(len(row.perturbation.spec) for row in rows))
    lines = [
        f"{'perturbation'.ljust(width)}  accuracy  {'loss':>8}  {'drop':>8}  samples  each image",
        f"{'clean'.ljust(width)}  {clean_accuracy:8.4f}  {format_number(clean_loss):>8}  "
        f"{'':>8}  {clean_samples:7d}  as it is",
    ]
    for row in rows:
        lines.append(
            f"{row.perturbation.spec.ljust(width)}  {row.accuracy:8.4f}  "
            f"{format_number(row.loss):>8}  {row.accuracy - clean_accuracy:+8.4f}  "
            f"{row.samples:7d}  {row.perturbation.describe()}"
        )
    return "\n".join(lines)
