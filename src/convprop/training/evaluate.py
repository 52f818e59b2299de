"""``evaluate`` and ``predict``: a trained run on its test split, on other data, on images.

Other data is matched to the run by class name (folders ``3/`` and ``7/`` are the digits 3
and 7 of a run trained on the ten digits), never by position; a name the run does not know is
refused. Both say which weights they use: ``latest`` (``model.safetensors``, the last epoch)
or ``best`` (``best.safetensors``, the epoch with the best test accuracy).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

import convprop as cp
from convprop import nn
from convprop.data import DataError, Normalize, load, load_image
from convprop.nn import functional as F
from convprop.training.checkpoint import WEIGHTS, load_run
from convprop.training.data import image_as_sequence, prepare_data

if TYPE_CHECKING:
    from convprop.training.perturb import Perturbation, PerturbedEvaluation


def format_number(value: float) -> str:
    """A loss for people: four decimals in the usual range, else four significant digits
    (``1.8e+31``, not 32 digits)."""
    if value == 0 or 1e-3 <= abs(value) < 1e5:
        return f"{value:.4f}"
    return f"{value:.4g}"


def evaluate_arrays(
    model: nn.Module,
    inputs: np.ndarray,
    labels: np.ndarray,
    normalize: Callable[[np.ndarray], np.ndarray],
    dtype: np.dtype,
    batch_size: int = 256,
) -> tuple[float, np.ndarray]:
    """Mean cross-entropy and the predicted class of every input (eval mode, no graph)."""
    was_training = model.training
    model.eval()
    total_loss = 0.0
    predictions = []
    with cp.no_grad():
        for start in range(0, len(labels), batch_size):
            batch = normalize(inputs[start : start + batch_size])
            logits = model(cp.from_numpy(np.ascontiguousarray(batch, dtype=dtype)))
            target = cp.from_numpy(labels[start : start + batch_size])
            total_loss += float(F.cross_entropy(logits, target, reduction="sum").item())
            predictions.append(np.argmax(logits.numpy(), axis=1))
    model.train(was_training)
    predicted = np.concatenate(predictions) if predictions else np.zeros(0, dtype=np.int64)
    return total_loss / max(1, len(labels)), predicted


@dataclass
class Evaluation:
    accuracy: float
    loss: float
    confusion: np.ndarray
    classes: list[str]
    weights: str = ""  # which weights were evaluated, in words
    perturbed: list[PerturbedEvaluation] = field(default_factory=list)  # evaluate --perturb

    @property
    def precision(self) -> np.ndarray:
        predicted = self.confusion.sum(axis=0)
        return np.divide(
            np.diag(self.confusion), predicted, out=np.zeros(len(predicted)), where=predicted > 0
        )

    @property
    def recall(self) -> np.ndarray:
        actual = self.confusion.sum(axis=1)
        return np.divide(
            np.diag(self.confusion), actual, out=np.zeros(len(actual)), where=actual > 0
        )

    def report(self) -> str:
        width = max(5, *(len(c) for c in self.classes))
        lines = [f"weights: {self.weights}"] if self.weights else []
        lines += [
            f"accuracy {self.accuracy:.4f}  loss {format_number(self.loss)}  "
            f"({int(self.confusion.sum())} samples)",
            "",
            f"{'class'.ljust(width)}  precision  recall  support",
        ]
        for i, name in enumerate(self.classes):
            lines.append(
                f"{name.ljust(width)}  {self.precision[i]:9.4f}  {self.recall[i]:6.4f}  "
                f"{int(self.confusion[i].sum()):7d}"
            )
        lines += ["", "confusion matrix (rows: true class, columns: predicted)"]
        cell = max(4, len(str(int(self.confusion.max()))) + 1)
        lines.append(" " * width + "".join(c[: cell - 1].rjust(cell) for c in self.classes))
        for i, name in enumerate(self.classes):
            lines.append(
                name.ljust(width) + "".join(str(int(v)).rjust(cell) for v in self.confusion[i])
            )
        if self.perturbed:
            from convprop.training.perturb import perturbation_table

            samples = int(self.confusion.sum())
            lines += ["", perturbation_table(self.accuracy, self.loss, samples, self.perturbed)]
        return "\n".join(lines)


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (labels, predictions), 1)
    return matrix


def _weights_in_words(run_dir: Path, weights: str, epoch: int, best_epoch: int | None) -> str:
    if weights == "best":
        which = f"epoch {best_epoch}, the best test accuracy" if best_epoch else "the best epoch"
    else:
        which = f"epoch {epoch}, the latest"
    return f"{run_dir / WEIGHTS[weights]} ({which})"


def evaluate(
    run_dir: str | Path,
    data: str | None = None,
    weights: str = "latest",
    perturb: Sequence[str | Perturbation] = (),
) -> Evaluation:
    """Accuracy, per-class precision/recall and confusion matrix of a trained run, on the run's
    own test split or on ``data`` (a path or bundled name, all of it used as test data), with
    its ``latest`` or ``best`` weights; and, for each spec of ``perturb`` (``"shift=4"``,
    ``"rotate=20"``, ... see :mod:`convprop.training.perturb`), in ``perturbed``, the accuracy
    and loss on deterministically transformed copies of the same data."""
    from convprop.training.perturb import evaluate_perturbations, parse_perturbations

    perturbations = parse_perturbations(perturb)
    run_dir = Path(run_dir)
    model, checkpoint = load_run(run_dir, weights)
    config = checkpoint.config
    if data is None:
        prepared = prepare_data(config)
        if checkpoint.fingerprint not in (None, prepared.fingerprint()):
            raise DataError(
                f"{config.data}: the data changed since {run_dir} was trained (its fingerprint "
                "differs), so the run's test split is no longer the one it held out; evaluate "
                "on other data with --data"
            )
        test = prepared.test
    else:
        if not data.strip():
            raise DataError("--data must name a bundled data set or a path, got an empty string")
        resize = (config.resize[0], config.resize[1]) if config.resize else None
        loaded, _ = load(data, resize)
        loaded = loaded.relabelled(checkpoint.classes)
        test = image_as_sequence(loaded) if checkpoint.as_sequence else loaded
        if list(test.inputs.shape[1:]) != checkpoint.input_shape:
            raise DataError(
                f"{data}: inputs have shape {tuple(test.inputs.shape[1:])} but the model was "
                f"trained on {tuple(checkpoint.input_shape)}"
            )
    normalize = Normalize(checkpoint.mean, checkpoint.std)
    perturbed = evaluate_perturbations(
        model,
        test.inputs,
        test.labels,
        normalize,
        np.dtype(config.dtype),
        perturbations,
        checkpoint.image_shape,
    )
    loss, predictions = evaluate_arrays(
        model, test.inputs, test.labels, normalize, np.dtype(config.dtype)
    )
    matrix = confusion_matrix(test.labels, predictions, len(checkpoint.classes))
    return Evaluation(
        float((predictions == test.labels).mean()),
        loss,
        matrix,
        list(checkpoint.classes),
        _weights_in_words(run_dir, weights, checkpoint.epoch, checkpoint.best_epoch),
        perturbed,
    )


def predict(
    run_dir: str | Path, images: Sequence[str | Path], top_k: int = 3, weights: str = "latest"
) -> list[list[tuple[str, float]]]:
    """For each image file, the ``top_k`` classes and their probabilities."""
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k <= 0:
        raise ValueError(f"top_k must be a positive integer, got {top_k!r}")
    model, checkpoint = load_run(run_dir, weights)
    if checkpoint.image_shape is None:
        raise ValueError(
            f"{run_dir}: this model was trained on 1-D sequences ({checkpoint.config.data}), "
            "not images; evaluate it with --data"
        )
    channels, height, width = checkpoint.image_shape
    batch = np.stack([load_image(path, channels, (height, width)) for path in images])
    if checkpoint.as_sequence:  # a TDNN that reads each image column by column
        batch = batch.reshape(len(batch), channels * height, width)
    dtype = np.dtype(checkpoint.config.dtype)
    with cp.no_grad():
        normalized = Normalize(checkpoint.mean, checkpoint.std)(batch)
        logits = model(cp.from_numpy(np.ascontiguousarray(normalized, dtype=dtype)))
        probabilities = F.softmax(logits, 1).numpy()
    results = []
    for row in probabilities:
        order = np.argsort(-row, kind="stable")[:top_k]
        results.append([(checkpoint.classes[i], float(row[i])) for i in order])
    return results
