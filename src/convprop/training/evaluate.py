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
from convprop.data import ArrayDataset, DataError, Normalize, load, load_image
from convprop.data.canvases import IGNORE, SegmentationDataset
from convprop.data.masks import load_segmentation
from convprop.nn import functional as F
from convprop.training.checkpoint import WEIGHTS, Checkpoint, load_run
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
    ignore_index: int = -100,
) -> tuple[float, np.ndarray]:
    """Mean cross-entropy and the predicted class of every input (eval mode, no graph).

    With (N, H, W) masks for labels and a segmenter's (N, K, H, W) scores, both are per pixel:
    the mean is over the pixels whose label is not ``ignore_index``, and the predictions are
    (N, H, W)."""
    loss_sum, counted, predicted = evaluate_totals(
        model, inputs, labels, normalize, dtype, batch_size, ignore_index
    )
    return loss_sum / max(1, counted), predicted


def evaluate_totals(
    model: nn.Module,
    inputs: np.ndarray,
    labels: np.ndarray,
    normalize: Callable[[np.ndarray], np.ndarray],
    dtype: np.dtype,
    batch_size: int = 256,
    ignore_index: int = -100,
) -> tuple[float, int, np.ndarray]:
    """``evaluate_arrays`` as sums: the summed cross-entropy, the number of samples (or
    labelled pixels) it sums over, and the predictions. Sums of shards add up to the whole
    set's, which is how a distributed run evaluates (each process a slice, then one
    ``Allreduce``)."""
    was_training = model.training
    model.eval()
    total_loss = 0.0
    predictions = []
    with cp.no_grad():
        for start in range(0, len(labels), batch_size):
            batch = normalize(inputs[start : start + batch_size])
            logits = model(cp.from_numpy(np.ascontiguousarray(batch, dtype=dtype)))
            target = cp.from_numpy(labels[start : start + batch_size])
            loss = F.cross_entropy(logits, target, reduction="sum", ignore_index=ignore_index)
            total_loss += float(loss.item())
            predictions.append(np.argmax(logits.numpy(), axis=1))
    model.train(was_training)
    # No inputs (an empty shard): no predictions, in the labels' shape (masks stay 3-D).
    empty = np.zeros(labels.shape, dtype=np.int64)
    predicted = np.concatenate(predictions) if predictions else empty
    counted = int(np.count_nonzero(labels != ignore_index))
    return total_loss, counted, predicted


@dataclass
class Evaluation:
    accuracy: float
    loss: float
    confusion: np.ndarray
    classes: list[str]
    weights: str = ""  # which weights were evaluated, in words
    task: str = "classify"  # "segment": the counts are of pixels, and IoU is reported
    perturbed: list[PerturbedEvaluation] = field(default_factory=list)  # evaluate --perturb

    @property
    def iou(self) -> np.ndarray:
        """Each class's intersection over union (NaN for a class neither present nor
        predicted)."""
        return intersection_over_union(self.confusion)

    @property
    def mean_iou(self) -> float:
        iou = self.iou
        return float(np.nanmean(iou)) if not np.isnan(iou).all() else float("nan")

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
        segment = self.task == "segment"
        if segment:
            lines.append(
                f"pixel accuracy {self.accuracy:.4f}  mean IoU {self.mean_iou:.4f}  loss "
                f"{format_number(self.loss)}  ({int(self.confusion.sum())} labelled pixels)"
            )
        else:
            lines.append(
                f"accuracy {self.accuracy:.4f}  loss {format_number(self.loss)}  "
                f"({int(self.confusion.sum())} samples)"
            )
        support = "pixels" if segment else "support"
        iou_header = "     IoU" if segment else ""
        lines += ["", f"{'class'.ljust(width)}{iou_header}  precision  recall  {support}"]
        for i, name in enumerate(self.classes):
            iou = f"  {self.iou[i]:6.4f}" if segment else ""
            lines.append(
                f"{name.ljust(width)}{iou}  {self.precision[i]:9.4f}  {self.recall[i]:6.4f}  "
                f"{int(self.confusion[i].sum()):{len(support)}d}"
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


def confusion_matrix(
    labels: np.ndarray, predictions: np.ndarray, num_classes: int, ignore_index: int | None = None
) -> np.ndarray:
    """Counts of (true class, predicted class) pairs, rows true; labels and predictions of any
    shape (a class per sample or per pixel), pairs whose label is ``ignore_index`` left out."""
    labels, predictions = np.ravel(labels), np.ravel(predictions)
    if ignore_index is not None:
        kept = labels != ignore_index
        labels, predictions = labels[kept], predictions[kept]
    pairs = labels.astype(np.int64) * num_classes + predictions
    return np.bincount(pairs, minlength=num_classes * num_classes).reshape(num_classes, -1)


def intersection_over_union(confusion: np.ndarray) -> np.ndarray:
    """Per class, |predicted and true| / |predicted or true| = TP / (TP + FP + FN), from a
    confusion matrix (rows true); NaN for a class neither present nor predicted."""
    true_positive = np.diag(confusion).astype(np.float64)
    union = confusion.sum(axis=0) + confusion.sum(axis=1) - true_positive
    return np.divide(true_positive, union, out=np.full(len(union), np.nan), where=union > 0)


def segmentation_scores(confusion: np.ndarray, classes: Sequence[str]) -> dict[str, float]:
    """The test columns a segmentation run adds to metrics.csv: pixel accuracy, the mean IoU
    over the classes that occur (present or predicted), and each class's IoU."""
    iou = intersection_over_union(confusion)
    total = confusion.sum()
    scores = {
        "test_pixel_accuracy": float(np.trace(confusion) / total) if total else float("nan"),
        "test_mean_iou": float(np.nanmean(iou)) if not np.isnan(iou).all() else float("nan"),
    }
    scores.update({f"test_iou_{name}": float(v) for name, v in zip(classes, iou, strict=True)})
    return scores


def _weights_in_words(
    run_dir: Path, weights: str, epoch: int, best_epoch: int | None, task: str = "classify"
) -> str:
    if weights == "best":
        score = "mean IoU" if task == "segment" else "accuracy"
        which = f"epoch {best_epoch}, the best test {score}" if best_epoch else "the best epoch"
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
    if perturbations and config.task == "segment":
        raise ValueError(
            f"--perturb: {run_dir} is a segmentation run; its masks would have to move with "
            "the images, and --perturb measures a classifier's invariance"
        )
    test: ArrayDataset | SegmentationDataset
    if data is None:
        prepared = prepare_data(config)
        if checkpoint.fingerprint not in (None, prepared.fingerprint()):
            raise DataError(
                f"{config.data}: the data changed since {run_dir} was trained (its fingerprint "
                "differs), so the run's test split is no longer the one it held out; evaluate "
                "on other data with --data"
            )
        test = prepared.test
    elif config.task == "segment":
        test = _segmentation_test_data(data, checkpoint)
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
    ignore_index = IGNORE if config.task == "segment" else -100
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
        model,
        test.inputs,
        test.labels,
        normalize,
        np.dtype(config.dtype),
        ignore_index=ignore_index,
    )
    matrix = confusion_matrix(test.labels, predictions, len(checkpoint.classes), ignore_index)
    return Evaluation(
        float(np.trace(matrix) / max(1, matrix.sum())),
        loss,
        matrix,
        list(checkpoint.classes),
        _weights_in_words(run_dir, weights, checkpoint.epoch, checkpoint.best_epoch, config.task),
        config.task,
        perturbed,
    )


def _segmentation_test_data(data: str, checkpoint: Checkpoint) -> SegmentationDataset:
    """Mask-folder (or bundled canvas) test data in the run's classes: by name when the data
    names its classes, else by index, which must be one of the run's."""
    if not data.strip():
        raise DataError("--data must name a mask folder or a bundled data set, got an empty string")
    config = checkpoint.config
    resize = (config.resize[0], config.resize[1]) if config.resize else None
    loaded, held_out = load_segmentation(data, resize)
    test = held_out if held_out is not None else loaded
    test = test.relabelled(checkpoint.classes)
    if test.inputs.shape[1] != checkpoint.input_shape[0]:
        raise DataError(
            f"{data}: images have {test.inputs.shape[1]} channels but the model was trained on "
            f"{checkpoint.input_shape[0]}"
        )
    return test


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
