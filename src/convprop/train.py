"""Training, evaluation and prediction: the API behind ``convprop train/evaluate/predict``.

A run directory holds everything a run needs to be evaluated, used or resumed:

* ``checkpoint.json``: the configuration, the epoch reached, the optimizer's and scheduler's
  non-array state, every random generator's state, the data's shape and normalisation, the
  metrics so far, and the names of the array files below. It is written last, atomically: it is
  the commit point of an epoch.
* ``state/epoch-NNNN.model.safetensors`` and ``state/epoch-NNNN.optimizer.safetensors``: the
  arrays that checkpoint refers to (older epochs are deleted once a newer one is committed).
* ``model.safetensors``: the latest completed epoch's weights, keys as PyTorch's;
  ``best.safetensors``: the weights with the best test accuracy so far.
* ``metrics.csv``: one row per epoch; ``*.png``: curves, filters, confusion matrix, feature maps.

Every file is written atomically, so a run killed at any moment leaves the last committed
epoch loadable, and ``resume`` continues from it to bitwise the same weights an uninterrupted
run with the same seed reaches.
"""

from __future__ import annotations

import csv
import io
import math
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

import convprop as cp
from convprop import models, nn, optim
from convprop import random as cp_random
from convprop.data import (
    ArrayDataset,
    DataError,
    DataLoader,
    Normalize,
    build_augmentation,
    channel_statistics,
    load,
    load_image,
    stratified_split,
)
from convprop.io.files import (
    CheckpointError,
    atomic_write_bytes,
    load_arrays,
    load_json,
    save_arrays,
    save_json,
    save_state_dict,
)
from convprop.nn import functional as F
from convprop.ops._malloc import keep_freed_memory

CHECKPOINT_FORMAT = 1
MODEL_NAMES = ("lenet5", "resnet20", "resnet32", "resnet56", "densenet_bc", "tdnn")
OPTIMIZER_NAMES = ("sgd", "adam", "adamw")
SCHEDULER_NAMES = ("none", "step", "cosine", "onecycle", "plateau")
# The peak rates of the default one-cycle schedule; measured on the bundled MNIST subset
# (LeNet-5, seeds 0-2: 98.0-98.4% test accuracy with shift/rotate/scale augmentation).
DEFAULT_LR = {"sgd": 0.05, "adam": 3e-3, "adamw": 3e-3}
RUN_FILES = (
    "checkpoint.json",
    "model.safetensors",
    "best.safetensors",
    "metrics.csv",
    "curves.png",
    "filters.png",
    "confusion.png",
    "feature_maps.png",
)


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. the loss became non-finite); the last checkpoint is kept."""


class RunDirectoryError(ValueError):
    """A run directory that cannot be used as asked (exists, missing, incompatible)."""


@dataclass
class TrainConfig:
    """Every setting of a run; the keys are the CLI flags' names (and a TOML config's keys)."""

    model: str = "lenet5"
    data: str = "mnist-5k"
    test_data: str | None = None
    epochs: int = 20
    batch_size: int = 64
    optimizer: str = "adam"
    lr: float | None = None
    momentum: float = 0.9
    weight_decay: float = 0.0
    scheduler: str = "onecycle"
    augment: list[str] = field(default_factory=lambda: ["shift", "rotate", "scale"])
    seed: int = 0
    dtype: str = "float32"
    test_fraction: float = 0.2
    limit: int | None = None
    resize: list[int] | None = None

    def validate(self) -> None:
        """Raise ValueError naming the first setting that is out of range."""
        choices = {
            "model": MODEL_NAMES,
            "optimizer": OPTIMIZER_NAMES,
            "scheduler": SCHEDULER_NAMES,
            "dtype": ("float32", "float64"),
        }
        for name, allowed in choices.items():
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(f"unknown {name} {value!r} (choose from {', '.join(allowed)})")
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.lr is not None and not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.momentum < 0 or self.weight_decay < 0:
            raise ValueError(
                f"momentum and weight_decay must be non-negative, got {self.momentum} and "
                f"{self.weight_decay}"
            )
        if not 0 < self.test_fraction < 1:
            raise ValueError(f"test_fraction must be in (0, 1), got {self.test_fraction}")
        if self.limit is not None and self.limit < 20:
            raise ValueError(f"limit must be at least 20 samples, got {self.limit}")
        if self.resize is not None and (len(self.resize) != 2 or min(self.resize) <= 0):
            raise ValueError(f"resize must be HEIGHT x WIDTH, got {self.resize}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR[self.optimizer]

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown setting(s): {', '.join(unknown)}")
        return cls(**values)


@dataclass
class EpochMetrics:
    epoch: int
    train_loss: float
    train_accuracy: float
    test_loss: float
    test_accuracy: float
    lr: float
    seconds: float


@dataclass
class RunResult:
    """What ``fit`` returns: the trained model, the metrics per epoch and where they are."""

    model: nn.Module
    history: list[EpochMetrics]
    run_dir: Path

    @property
    def test_accuracy(self) -> float:
        return self.history[-1].test_accuracy if self.history else float("nan")


# ----------------------------------------------------------------------------- data
@dataclass
class PreparedData:
    train: ArrayDataset
    test: ArrayDataset
    input_shape: tuple[int, ...]
    classes: list[str]
    mean: list[float]
    std: list[float]
    as_sequence: bool
    image_shape: tuple[int, ...] | None  # (C, H, W) of images read as sequences by a TDNN


def prepare_data(config: TrainConfig) -> PreparedData:
    """Load, split, limit and shape the data the way ``config`` asks; the model follows it."""
    resize = tuple(config.resize) if config.resize else None
    data, given_test = load(config.data, resize)  # type: ignore[arg-type]
    if config.test_data is not None:
        given_test, _ = load(config.test_data, resize)  # type: ignore[arg-type]
    if given_test is None:
        train_index, test_index = stratified_split(data.labels, config.test_fraction, config.seed)
        train, test = data.subset(train_index), data.subset(test_index)
    else:
        train, test = data, given_test
    if train.inputs.shape[1:] != test.inputs.shape[1:]:
        raise DataError(
            f"{config.test_data or config.data}: test inputs have shape {test.inputs.shape[1:]} "
            f"but training inputs have {train.inputs.shape[1:]}"
        )
    classes = train.classes if len(train.classes) >= len(test.classes) else test.classes
    if len(classes) < 2:
        raise DataError(f"{config.data}: need at least two classes, found {len(classes)}")
    if config.limit is not None:
        rng = np.random.default_rng([config.seed, 7])
        train = train.subset(np.sort(rng.permutation(len(train))[: config.limit]))
        test_count = max(10, int(round(config.limit * config.test_fraction)))
        test = test.subset(np.sort(rng.permutation(len(test))[:test_count]))
    as_sequence = config.model == "tdnn" and not train.is_sequence
    image_shape = tuple(train.inputs.shape[1:]) if not train.is_sequence else None
    if as_sequence:
        # A TDNN reads an image as a sequence over its columns, each column's pixels (of every
        # channel) being one frame's features.
        train = _image_as_sequence(train)
        test = _image_as_sequence(test)
    elif config.model != "tdnn" and train.is_sequence:
        raise DataError(
            f"{config.data}: holds 1-D sequences (N, C, L); only --model tdnn accepts them"
        )
    mean, std = channel_statistics(train.inputs)
    return PreparedData(
        train, test, tuple(train.inputs.shape[1:]), classes, mean, std, as_sequence, image_shape
    )


def _image_as_sequence(data: ArrayDataset) -> ArrayDataset:
    count, channels, height, width = data.inputs.shape
    inputs = np.ascontiguousarray(data.inputs.reshape(count, channels * height, width))
    return ArrayDataset(inputs, data.labels, data.classes, data.source)


def build_model(name: str, input_shape: Sequence[int], num_classes: int) -> nn.Module:
    """The named model sized for ``input_shape`` ((C, H, W) or (C, L)) and ``num_classes``."""
    channels = input_shape[0]
    if name == "tdnn":
        if len(input_shape) != 2:
            raise ValueError(f"tdnn expects sequences (C, L), got input shape {tuple(input_shape)}")
        return models.tdnn(channels, num_classes)
    if len(input_shape) != 3:
        raise ValueError(f"{name} expects images (C, H, W), got input shape {tuple(input_shape)}")
    if name == "lenet5":
        return models.lenet5(channels, num_classes, (input_shape[1], input_shape[2]))
    if name in ("resnet20", "resnet32", "resnet56"):
        return getattr(models, name)(channels, num_classes)
    if name == "densenet_bc":
        return models.densenet_bc(in_channels=channels, num_classes=num_classes)
    raise ValueError(f"unknown model {name!r} (choose from {', '.join(MODEL_NAMES)})")


def build_optimizer(config: TrainConfig, parameters: Sequence[nn.Parameter]) -> optim.Optimizer:
    lr = config.learning_rate
    if config.optimizer == "sgd":
        return optim.SGD(
            parameters,
            lr=lr,
            momentum=config.momentum,
            weight_decay=config.weight_decay,
            nesterov=config.momentum > 0,
        )
    if config.optimizer == "adam":
        return optim.Adam(parameters, lr=lr, weight_decay=config.weight_decay)
    return optim.AdamW(parameters, lr=lr, weight_decay=config.weight_decay or 1e-2)


def build_scheduler(config: TrainConfig, optimizer: optim.Optimizer, steps_per_epoch: int) -> Any:
    """The scheduler and whether it steps per batch (``onecycle``) or per epoch."""
    name = config.scheduler
    if name == "none":
        return None
    if name == "step":
        return optim.lr_scheduler.StepLR(optimizer, step_size=max(1, config.epochs // 3), gamma=0.1)
    if name == "cosine":
        return optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    if name == "plateau":
        return optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=1)
    return optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=config.learning_rate,
        epochs=config.epochs,
        steps_per_epoch=steps_per_epoch,
    )


# ----------------------------------------------------------------------------- run directory
def _check_run_dir(run_dir: Path, resume: bool, overwrite: bool) -> list[str]:
    """The run files already in ``run_dir`` (to be replaced); raises if they may not be."""
    if resume and overwrite:
        raise RunDirectoryError("choose either --resume or --overwrite, not both")
    if resume:
        if not (run_dir / "checkpoint.json").exists():
            raise RunDirectoryError(f"{run_dir}: no checkpoint.json to resume from")
        return []
    existing = [name for name in RUN_FILES if (run_dir / name).exists()]
    if (run_dir / "state").exists():
        existing.append("state/")
    if existing and not overwrite:
        raise RunDirectoryError(
            f"{run_dir}: already holds a run ({', '.join(existing[:3])}); pass --resume to "
            "continue it or --overwrite to replace it"
        )
    return existing


def _clear_run_dir(run_dir: Path, existing: list[str]) -> None:
    """Remove an overwritten run's files (only those a run writes: anything else the user
    keeps there stays) and create the directory."""
    for name in existing:
        target = run_dir / name.rstrip("/")
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink()
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "state").mkdir(exist_ok=True)


def _generator_state(generator: np.random.Generator) -> dict[str, Any]:
    return dict(generator.bit_generator.state)


def _restore_generator(state: dict[str, Any]) -> np.random.Generator:
    bit_generator = getattr(np.random, state["bit_generator"])()
    bit_generator.state = state
    return np.random.Generator(bit_generator)


def _optimizer_arrays(state: dict[str, Any]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Split an optimizer state_dict into its JSON part and its arrays (by a flat key)."""
    arrays: dict[str, np.ndarray] = {}
    json_state: dict[str, Any] = {}
    for index, per_param in state["state"].items():
        entry = {}
        for key, value in per_param.items():
            if isinstance(value, np.ndarray):
                name = f"{index}.{key}"
                arrays[name] = value
                entry[key] = {"array": name}
            else:
                entry[key] = value
        json_state[str(index)] = entry
    return {"state": json_state, "param_groups": state["param_groups"]}, arrays


def _optimizer_from_arrays(
    json_state: dict[str, Any], arrays: dict[str, np.ndarray]
) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for index, per_param in json_state["state"].items():
        state[int(index)] = {
            key: arrays[value["array"]] if isinstance(value, dict) and "array" in value else value
            for key, value in per_param.items()
        }
    return {"state": state, "param_groups": json_state["param_groups"]}


# ----------------------------------------------------------------------------- training
def _to_tensor(batch: np.ndarray, dtype: np.dtype) -> cp.Tensor:
    return cp.from_numpy(np.ascontiguousarray(batch, dtype=dtype))


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
            logits = model(_to_tensor(batch, dtype))
            target = cp.from_numpy(labels[start : start + batch_size])
            total_loss += float(F.cross_entropy(logits, target, reduction="sum").item())
            predictions.append(np.argmax(logits.numpy(), axis=1))
    model.train(was_training)
    predicted = np.concatenate(predictions) if predictions else np.zeros(0, dtype=np.int64)
    return total_loss / max(1, len(labels)), predicted


def fit(
    config: TrainConfig,
    run_dir: str | Path,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
    epochs: int | None = None,
) -> RunResult:
    """Train ``config.model`` on ``config.data``, checkpointing into ``run_dir`` every epoch.

    With ``resume`` the configuration comes from the run's checkpoint (``config`` is ignored)
    and training continues after its last committed epoch, up to ``epochs`` if given.
    """
    run_dir = Path(run_dir)
    keep_freed_memory()  # a training loop re-allocates the same buffers every step
    if resume:
        if not (run_dir / "checkpoint.json").exists():
            raise RunDirectoryError(f"{run_dir}: no checkpoint.json to resume from")
        saved = load_json(run_dir / "checkpoint.json")
        try:
            config = TrainConfig.from_dict(saved["config"])
        except (KeyError, TypeError, ValueError) as error:
            raise CheckpointError(
                f"{run_dir / 'checkpoint.json'}: not a convprop checkpoint ({error})"
            ) from None
        if epochs is not None and epochs != config.epochs:
            if config.scheduler == "onecycle":
                raise RunDirectoryError(
                    f"{run_dir}: its onecycle schedule was built for {config.epochs} epochs and "
                    "cannot be stretched; resume without --epochs"
                )
            config.epochs = epochs
    config.validate()
    replaced = _check_run_dir(run_dir, resume, overwrite)
    data = prepare_data(config)
    dtype = np.dtype(config.dtype)
    normalize = Normalize(data.mean, data.std)
    # Only now, with the data loaded, may an overwritten run go: a bad --data keeps it.
    _clear_run_dir(run_dir, replaced)

    cp.manual_seed(config.seed)
    model = build_model(config.model, data.input_shape, len(data.classes)).to(dtype)
    optimizer = build_optimizer(config, list(model.parameters()))
    steps_per_epoch = math.ceil(len(data.train) / config.batch_size)
    scheduler = build_scheduler(config, optimizer, steps_per_epoch)
    shuffle_rng = np.random.default_rng([config.seed, 1])
    augment_rng = np.random.default_rng([config.seed, 2])
    history: list[EpochMetrics] = []
    start_epoch = 0
    best_accuracy = -1.0
    if resume:
        start_epoch, best_accuracy, history, shuffle_rng, augment_rng = _restore(
            run_dir, model, optimizer, scheduler
        )
    augmentation = _augmentation_for(data, config.augment, augment_rng)
    predictions: np.ndarray | None = None  # the latest epoch's test predictions
    loader = DataLoader(data.train, config.batch_size, shuffle=True, generator=shuffle_rng)

    if start_epoch >= config.epochs:
        log(f"{run_dir}: all {config.epochs} epochs already done; nothing to resume")
    for epoch in range(start_epoch + 1, config.epochs + 1):
        started = time.perf_counter()
        model.train()
        loss_sum, correct, seen = 0.0, 0, 0
        bar = _progress_bar(progress, len(loader), f"epoch {epoch}/{config.epochs}")
        for batch_index, (inputs, labels) in enumerate(loader, start=1):
            if augmentation is not None:
                inputs = augmentation(inputs)
            logits = model(_to_tensor(normalize(inputs), dtype))
            loss = F.cross_entropy(logits, cp.from_numpy(labels))
            value = float(loss.item())
            if not math.isfinite(value):
                bar.close()
                kept = (
                    f"The last good checkpoint (epoch {history[-1].epoch}) is kept in {run_dir}"
                    if history
                    else "No epoch had completed, so there is no checkpoint"
                )
                raise TrainingError(
                    f"loss became {value} at epoch {epoch}, batch {batch_index}; try a smaller "
                    f"--lr. {kept}"
                )
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if isinstance(scheduler, optim.lr_scheduler.OneCycleLR):
                scheduler.step()
            loss_sum += value * len(labels)
            correct += int((np.argmax(logits.numpy(), axis=1) == labels).sum())
            seen += len(labels)
            elapsed = time.perf_counter() - started
            bar.set_postfix_str(
                f"loss {loss_sum / seen:.4f}  {seen / max(elapsed, 1e-9):.0f} img/s"
            )
            bar.update(1)
        bar.close()
        lr_used = optimizer.param_groups[0]["lr"]
        test_loss, predictions = evaluate_arrays(
            model, data.test.inputs, data.test.labels, normalize, dtype
        )
        test_accuracy = float((predictions == data.test.labels).mean())
        if scheduler is not None and not isinstance(scheduler, optim.lr_scheduler.OneCycleLR):
            if isinstance(scheduler, optim.lr_scheduler.ReduceLROnPlateau):
                scheduler.step(test_loss)
            else:
                scheduler.step()
        metrics = EpochMetrics(
            epoch,
            loss_sum / seen,
            correct / seen,
            test_loss,
            test_accuracy,
            lr_used,
            time.perf_counter() - started,
        )
        history.append(metrics)
        improved = test_accuracy > best_accuracy
        best_accuracy = max(best_accuracy, test_accuracy)
        _commit_epoch(
            run_dir,
            config,
            data,
            model,
            optimizer,
            scheduler,
            history,
            best_accuracy,
            improved,
            shuffle_rng,
            augment_rng,
        )
        log(
            f"epoch {epoch:>3}/{config.epochs}  train loss {metrics.train_loss:.4f} acc "
            f"{metrics.train_accuracy:.4f}  test loss {metrics.test_loss:.4f} acc "
            f"{metrics.test_accuracy:.4f}  lr {lr_used:.3g}  {metrics.seconds:.1f}s"
        )
    if predictions is None:  # resumed with every epoch already done
        _, predictions = evaluate_arrays(
            model, data.test.inputs, data.test.labels, normalize, dtype
        )
    _write_plots(run_dir, model, data, history, predictions, normalize, dtype)
    return RunResult(model, history, run_dir)


def _augmentation_for(
    data: PreparedData, names: Sequence[str], generator: np.random.Generator
) -> Callable[[np.ndarray], np.ndarray] | None:
    """The image augmentation; images a TDNN reads as sequences are augmented as images.
    Genuine 1-D sequences have no spatial augmentation, so none is applied to them."""
    augmentation = build_augmentation(names, generator)
    if augmentation is None or data.image_shape is None:
        return None
    if not data.as_sequence:
        return augmentation
    image_shape = data.image_shape

    def augment_as_image(batch: np.ndarray) -> np.ndarray:
        images = batch.reshape(len(batch), *image_shape)
        return augmentation(images).reshape(batch.shape)

    return augment_as_image


def _progress_bar(enabled: bool, total: int, description: str) -> Any:
    from tqdm import tqdm

    return tqdm(
        total=total,
        desc=description,
        unit="batch",
        leave=False,
        disable=not enabled,
        file=sys.stderr,
        dynamic_ncols=True,
    )


def _commit_epoch(
    run_dir: Path,
    config: TrainConfig,
    data: PreparedData,
    model: nn.Module,
    optimizer: optim.Optimizer,
    scheduler: Any,
    history: list[EpochMetrics],
    best_accuracy: float,
    improved: bool,
    shuffle_rng: np.random.Generator,
    augment_rng: np.random.Generator,
) -> None:
    """Write the epoch's files, then ``checkpoint.json`` (the commit point), then clean up."""
    epoch = history[-1].epoch
    state = model.state_dict()
    model_file = f"state/epoch-{epoch:04d}.model.safetensors"
    optimizer_file = f"state/epoch-{epoch:04d}.optimizer.safetensors"
    optimizer_json, optimizer_arrays = _optimizer_arrays(optimizer.state_dict())
    save_state_dict(run_dir / model_file, state)
    save_arrays(run_dir / optimizer_file, optimizer_arrays)
    save_state_dict(run_dir / "model.safetensors", state)
    if improved:
        save_state_dict(run_dir / "best.safetensors", state)
    _write_metrics(run_dir / "metrics.csv", history)
    checkpoint = {
        "format": CHECKPOINT_FORMAT,
        "convprop_version": cp.__version__,
        "config": asdict(config),
        "epoch": epoch,
        "best_test_accuracy": best_accuracy,
        "model_file": model_file,
        "optimizer_file": optimizer_file,
        "optimizer": optimizer_json,
        "scheduler": None if scheduler is None else scheduler.state_dict(),
        "rng": {
            "shuffle": _generator_state(shuffle_rng),
            "augment": _generator_state(augment_rng),
            "convprop": _generator_state(cp_random.default_generator()),
        },
        "data": {
            "input_shape": list(data.input_shape),
            "classes": data.classes,
            "mean": data.mean,
            "std": data.std,
            "as_sequence": data.as_sequence,
        },
        "history": [asdict(m) for m in history],
    }
    save_json(run_dir / "checkpoint.json", checkpoint)
    for stale in (run_dir / "state").iterdir():
        if stale.name.startswith("epoch-") and not stale.name.startswith(f"epoch-{epoch:04d}."):
            stale.unlink(missing_ok=True)


def _restore(
    run_dir: Path, model: nn.Module, optimizer: optim.Optimizer, scheduler: Any
) -> tuple[int, float, list[EpochMetrics], np.random.Generator, np.random.Generator]:
    checkpoint = load_json(run_dir / "checkpoint.json")
    load_weights(model, run_dir / checkpoint["model_file"])
    arrays = load_arrays(run_dir / checkpoint["optimizer_file"])
    optimizer.load_state_dict(_optimizer_from_arrays(checkpoint["optimizer"], arrays))
    if scheduler is not None and checkpoint["scheduler"] is not None:
        scheduler.load_state_dict(checkpoint["scheduler"])
    rng = checkpoint["rng"]
    cp_random.default_generator().bit_generator.state = rng["convprop"]
    history = [EpochMetrics(**row) for row in checkpoint["history"]]
    return (
        checkpoint["epoch"],
        checkpoint["best_test_accuracy"],
        history,
        _restore_generator(rng["shuffle"]),
        _restore_generator(rng["augment"]),
    )


def load_weights(model: nn.Module, path: str | Path) -> None:
    """Load a safetensors state_dict into ``model``; a mismatch names the file and the keys."""
    arrays = load_arrays(path)
    try:
        model.load_state_dict(arrays)
    except nn.StateDictError as error:
        raise CheckpointError(
            f"{path}: does not fit the model ({str(error).splitlines()[1].strip()} ...)"
        ) from None


def _write_metrics(path: Path, history: list[EpochMetrics]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([f.name for f in fields(EpochMetrics)])
    for row in history:
        writer.writerow([f"{v:.6g}" if isinstance(v, float) else v for v in asdict(row).values()])
    atomic_write_bytes(path, buffer.getvalue().encode())


def _write_plots(
    run_dir: Path,
    model: nn.Module,
    data: PreparedData,
    history: list[EpochMetrics],
    predictions: np.ndarray,
    normalize: Normalize,
    dtype: np.dtype,
) -> None:
    from convprop import plots

    plots.save_curves(run_dir / "curves.png", history)
    plots.save_confusion(
        run_dir / "confusion.png",
        confusion_matrix(data.test.labels, predictions, len(data.classes)),
        data.classes,
    )
    plots.save_filters(run_dir / "filters.png", model)
    plots.save_feature_maps(
        run_dir / "feature_maps.png", model, normalize(data.test.inputs[:1]).astype(dtype)
    )


# ----------------------------------------------------------------------------- evaluation
@dataclass
class Evaluation:
    accuracy: float
    loss: float
    confusion: np.ndarray
    classes: list[str]

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
        lines = [
            f"accuracy {self.accuracy:.4f}  loss {self.loss:.4f}  "
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
        return "\n".join(lines)


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (labels, predictions), 1)
    return matrix


def load_run(
    run_dir: str | Path, weights: str = "model.safetensors"
) -> tuple[nn.Module, dict[str, Any]]:
    """The model of a run directory with its weights loaded, and its checkpoint."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunDirectoryError(f"{run_dir}: no such run directory")
    checkpoint = load_json(run_dir / "checkpoint.json")
    try:
        config = TrainConfig.from_dict(checkpoint["config"])
        shape = checkpoint["data"]["input_shape"]
        classes = checkpoint["data"]["classes"]
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(
            f"{run_dir / 'checkpoint.json'}: not a convprop checkpoint ({error})"
        ) from None
    model = build_model(config.model, shape, len(classes)).to(np.dtype(config.dtype))
    load_weights(model, run_dir / weights)
    model.eval()
    return model, checkpoint


def evaluate(run_dir: str | Path, data: str | None = None) -> Evaluation:
    """Accuracy, per-class precision/recall and confusion matrix of a trained run, on the run's
    own test split or on ``data`` (a path or bundled name, all of it used as test data)."""
    model, checkpoint = load_run(run_dir)
    config = TrainConfig.from_dict(checkpoint["config"])
    info = checkpoint["data"]
    if data is None:
        test = prepare_data(config).test
    else:
        loaded, _ = load(data, tuple(config.resize) if config.resize else None)  # type: ignore[arg-type]
        test = _image_as_sequence(loaded) if info["as_sequence"] else loaded
        if list(test.inputs.shape[1:]) != info["input_shape"]:
            raise DataError(
                f"{data}: inputs have shape {tuple(test.inputs.shape[1:])} but the model was "
                f"trained on {tuple(info['input_shape'])}"
            )
        if test.labels.max() >= len(info["classes"]):
            raise DataError(
                f"{data}: label {int(test.labels.max())} is outside the model's "
                f"{len(info['classes'])} classes"
            )
    normalize = Normalize(info["mean"], info["std"])
    loss, predictions = evaluate_arrays(
        model, test.inputs, test.labels, normalize, np.dtype(config.dtype)
    )
    matrix = confusion_matrix(test.labels, predictions, len(info["classes"]))
    return Evaluation(float((predictions == test.labels).mean()), loss, matrix, info["classes"])


def predict(
    run_dir: str | Path, images: Sequence[str | Path], top_k: int = 3
) -> list[list[tuple[str, float]]]:
    """For each image file, the ``top_k`` classes and their probabilities."""
    if top_k <= 0:
        raise ValueError(f"top_k must be positive, got {top_k}")
    model, checkpoint = load_run(run_dir)
    info = checkpoint["data"]
    if info["as_sequence"] or len(info["input_shape"]) != 3:
        raise ValueError(f"{run_dir}: this model reads sequences, not images")
    channels, height, width = info["input_shape"]
    batch = np.stack([load_image(path, channels, (height, width)) for path in images])
    dtype = np.dtype(checkpoint["config"]["dtype"])
    with cp.no_grad():
        logits = model(_to_tensor(Normalize(info["mean"], info["std"])(batch), dtype))
        probabilities = F.softmax(logits, 1).numpy()
    results = []
    for row in probabilities:
        order = np.argsort(-row, kind="stable")[:top_k]
        results.append([(info["classes"][i], float(row[i])) for i in order])
    return results
