"""A run's checkpoint: written as one commit per epoch, read back through one checked reader.

``checkpoint.json`` holds the configuration, the epoch reached, the optimizer's and
scheduler's non-array state, every random generator's state, the data's shape, classes,
normalisation and fingerprint, and the metrics so far, and names the array files in
``state/`` that go with it. It is written last: it is the commit point of an epoch. Before it,
``state/epoch-NNNN.{model,optimizer}.safetensors``, ``model.safetensors``, ``best.safetensors``
and ``metrics.csv`` are written (each atomically); after it, the older epoch's arrays go. A
commit that fails half-way (a full disk) removes what it wrote of the new epoch, so the run
stays at its last good epoch.

:func:`read_checkpoint` is the only reader, used by resume, ``evaluate``, ``predict`` and
``load_run``: it checks the file against its schema and version (every key, type and range),
so a damaged or hand-edited file is one :class:`CheckpointError` naming the file and the
field, never a KeyError deep inside. Nothing in a run directory is loaded with pickle.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

import convprop as cp
from convprop import nn, optim
from convprop import random as cp_random
from convprop.io.files import (
    CheckpointError,
    StagedWrites,
    json_bytes,
    load_arrays,
    load_json,
    safetensors_bytes,
    state_dict_bytes,
)
from convprop.training.config import ConfigError, TrainConfig
from convprop.training.data import PreparedData
from convprop.training.registry import build_model, is_onnx
from convprop.training.rundir import SOURCE_ONNX, RunDirectoryError

# Format 2 (convprop 0.2): no wall-clock seconds (so identical runs write identical bytes),
# the data's fingerprint and the best epoch. Format 1 checkpoints are still read.
CHECKPOINT_FORMAT = 2
READABLE_FORMATS = (1, 2)
WEIGHTS = {"latest": "model.safetensors", "best": "best.safetensors"}


@dataclass
class EpochMetrics:
    """One epoch's row of ``metrics.csv``. A segmentation run's accuracies are per pixel, and
    ``extra`` holds its further columns (``test_pixel_accuracy``, ``test_mean_iou`` and one
    ``test_iou_<class>`` per class), in order."""

    epoch: int
    train_loss: float
    train_accuracy: float
    test_loss: float
    test_accuracy: float
    lr: float
    extra: dict[str, float] = field(default_factory=dict)


@dataclass
class Checkpoint:
    """A checked ``checkpoint.json``: every field present, of its type and in range."""

    path: Path
    config: TrainConfig
    epoch: int
    best_test_accuracy: float
    best_epoch: int | None
    model_file: Path
    optimizer_file: Path
    optimizer: dict[str, Any]
    scheduler: dict[str, Any] | None
    rng: dict[str, dict[str, Any]]
    input_shape: list[int]
    classes: list[str]
    mean: list[float]
    std: list[float]
    as_sequence: bool
    image_shape: list[int] | None  # (C, H, W) of the images, also when read as sequences
    fingerprint: str | None
    history: list[EpochMetrics]


# ----------------------------------------------------------------------------- writing
def commit_epoch(
    run_dir: Path,
    config: TrainConfig,
    data: PreparedData,
    model: nn.Module,
    optimizer: optim.Optimizer,
    scheduler: Any,
    history: list[EpochMetrics],
    best: tuple[float, int],
    improved: bool,
    generators: dict[str, np.random.Generator],
) -> None:
    """Write the epoch's files as one (``checkpoint.json``, the commit point, last), then
    delete the previous epoch's arrays. Until every file is written none replaces its old
    version, so a failure leaves the run exactly at its previous epoch."""
    epoch = history[-1].epoch
    state = model.state_dict()
    model_file = f"state/epoch-{epoch:04d}.model.safetensors"
    optimizer_file = f"state/epoch-{epoch:04d}.optimizer.safetensors"
    optimizer_json, optimizer_arrays = _split_optimizer_state(optimizer.state_dict())
    checkpoint = {
        "format": CHECKPOINT_FORMAT,
        "convprop_version": cp.__version__,
        "config": config.to_dict(),
        "epoch": epoch,
        "best_test_accuracy": best[0],
        "best_epoch": best[1],
        "model_file": model_file,
        "optimizer_file": optimizer_file,
        "optimizer": optimizer_json,
        "scheduler": None if scheduler is None else scheduler.state_dict(),
        "rng": {
            **{name: dict(g.bit_generator.state) for name, g in generators.items()},
            "convprop": cp_random.get_state(),
        },
        "data": {
            "input_shape": list(data.input_shape),
            "classes": data.classes,
            "mean": data.mean,
            "std": data.std,
            "as_sequence": data.as_sequence,
            "image_shape": None if data.image_shape is None else list(data.image_shape),
            "fingerprint": data.fingerprint(),
        },
        "history": [asdict(m) for m in history],
    }
    weights = state_dict_bytes(state)
    (run_dir / "state").mkdir(exist_ok=True)
    with StagedWrites() as files:
        files.write(run_dir / model_file, weights)
        files.write(run_dir / optimizer_file, safetensors_bytes(optimizer_arrays))
        files.write(run_dir / "model.safetensors", weights)
        if improved:
            files.write(run_dir / "best.safetensors", weights)
        files.write(run_dir / "metrics.csv", metrics_bytes(history))
        files.write(run_dir / "checkpoint.json", json_bytes(checkpoint))
    for stale in (run_dir / "state").iterdir():
        if not stale.name.startswith(f"epoch-{epoch:04d}."):
            stale.unlink(missing_ok=True)


def metrics_bytes(history: list[EpochMetrics]) -> bytes:
    """``metrics.csv``: a header and one row per epoch."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    columns = [f.name for f in fields(EpochMetrics) if f.name != "extra"]
    extra = list(history[0].extra) if history else []
    writer.writerow(columns + extra)
    for row in history:
        values = [getattr(row, name) for name in columns] + [row.extra[name] for name in extra]
        writer.writerow([f"{v:.6g}" if isinstance(v, float) else v for v in values])
    return buffer.getvalue().encode()


def _split_optimizer_state(state: dict[str, Any]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """An optimizer state_dict as its JSON part and its arrays (by a flat key)."""
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


def _join_optimizer_state(
    json_state: dict[str, Any], arrays: dict[str, np.ndarray], where: str
) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for index, per_param in json_state["state"].items():
        if not isinstance(per_param, dict) or not index.isdigit():
            raise CheckpointError(f"{where}: optimizer state {index!r} is not a parameter's state")
        entry = {}
        for key, value in per_param.items():
            if isinstance(value, dict):
                name = value.get("array")
                if name not in arrays:
                    raise CheckpointError(f"{where}: optimizer array {name!r} is missing")
                value = arrays[name]
            entry[key] = value
        state[int(index)] = entry
    return {"state": state, "param_groups": json_state["param_groups"]}


# ----------------------------------------------------------------------------- reading
class _Fields:
    """Typed access to one JSON object of the checkpoint, naming the field on failure."""

    def __init__(self, path: Path, values: Any, where: str = "") -> None:
        if not isinstance(values, dict):
            raise CheckpointError(f"{path}: {where or 'the file'} must be a JSON object")
        self.path, self.values, self.where = path, values, where

    def fail(self, key: str, rule: str) -> CheckpointError:
        name = f"{self.where}.{key}" if self.where else key
        return CheckpointError(f"{self.path}: {name} {rule}")

    def get(self, key: str, kind: type | tuple[type, ...], rule: str) -> Any:
        if key not in self.values:
            raise self.fail(key, "is missing")
        value = self.values[key]
        if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
            raise self.fail(key, f"{rule}, got {value!r}")
        if not isinstance(value, kind):
            raise self.fail(key, f"{rule}, got {value!r}")
        return value

    def integer(self, key: str, minimum: int) -> int:
        value: int = self.get(key, int, f"must be an integer >= {minimum}")
        if value < minimum:
            raise self.fail(key, f"must be an integer >= {minimum}, got {value}")
        return value

    def number(self, key: str) -> float:
        value = self.get(key, (int, float), "must be a number")
        return float(value)

    def numbers(self, key: str, length: int) -> list[float]:
        values = self.get(key, list, f"must be a list of {length} numbers")
        if len(values) != length or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            for v in values
        ):
            raise self.fail(key, f"must be a list of {length} finite numbers, got {values!r}")
        return [float(v) for v in values]

    def state_file(self, key: str) -> Path:
        value = self.get(key, str, "must be a file name in state/")
        parts = PurePosixPath(value).parts
        if len(parts) != 2 or parts[0] != "state" or parts[1] in ("..", "."):
            raise self.fail(key, f"must name a file in the run's state/ folder, got {value!r}")
        return self.path.parent / value

    def child(self, key: str) -> _Fields:
        where = f"{self.where}.{key}" if self.where else key
        return _Fields(self.path, self.get(key, dict, "must be a JSON object"), where)


def _is_float(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _epoch_metrics(entry: _Fields) -> EpochMetrics:
    """One row of a checkpoint's history, checked."""
    extra = entry.values.get("extra", {})
    if not isinstance(extra, dict) or not all(
        isinstance(k, str) and _is_float(v) for k, v in extra.items()
    ):
        raise entry.fail("extra", f"must map column names to numbers, got {extra!r}")
    numbers = {f.name: entry.number(f.name) for f in fields(EpochMetrics)[1:-1]}
    return EpochMetrics(
        epoch=entry.integer("epoch", 1), **numbers, extra={k: float(v) for k, v in extra.items()}
    )


def read_checkpoint(run_dir: str | Path) -> Checkpoint:
    """The run's ``checkpoint.json``, checked field by field (see the module docstring)."""
    path = Path(run_dir) / "checkpoint.json"
    top = _Fields(path, load_json(path))
    version = top.get("format", int, "must be an integer")
    if version not in READABLE_FORMATS:
        newer = " (written by a newer convprop)" if version > CHECKPOINT_FORMAT else ""
        raise top.fail(
            "format", f"is {version}{newer}; this convprop reads formats {READABLE_FORMATS}"
        )
    try:
        config = TrainConfig.from_dict(top.get("config", dict, "must be a JSON object"))
    except ConfigError as error:
        raise top.fail("config", f"is not valid: {error}") from None
    epoch = top.integer("epoch", 1)
    best_accuracy = top.number("best_test_accuracy")
    best_epoch = top.integer("best_epoch", 1) if version >= 2 else None
    optimizer = top.child("optimizer")
    optimizer.get("state", dict, "must be a JSON object")
    optimizer.get("param_groups", list, "must be a list")
    scheduler = top.get("scheduler", (dict, type(None)), "must be a JSON object or null")
    rng = top.child("rng")
    generators = {}
    for name in ("shuffle", "augment", "convprop"):
        state = rng.child(name)
        kind = state.get("bit_generator", str, "must name a NumPy bit generator")
        if kind not in cp_random.BIT_GENERATORS:
            raise state.fail(
                "bit_generator", f"must be one of {cp_random.BIT_GENERATORS}, got {kind!r}"
            )
        state.get("state", dict, "must be a JSON object")
        generators[name] = state.values
    data = top.child("data")
    shape = data.get("input_shape", list, "must be a list of sizes")
    if len(shape) not in (2, 3) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in shape
    ):
        raise data.fail("input_shape", f"must be 2 or 3 positive sizes, got {shape!r}")
    classes = data.get("classes", list, "must be a list of class names")
    if len(classes) < 2 or not all(isinstance(c, str) for c in classes):
        raise data.fail("classes", f"must be at least two class names, got {classes!r}")
    as_sequence = data.get("as_sequence", bool, "must be true or false")
    image_shape = _image_shape(data, version, shape, as_sequence)
    history = [
        _epoch_metrics(_Fields(path, row, f"history[{index}]"))
        for index, row in enumerate(top.get("history", list, "must be a list"))
    ]
    if [m.epoch for m in history] != list(range(1, epoch + 1)):
        raise top.fail("history", f"must hold one row for each of epochs 1..{epoch}")
    return Checkpoint(
        path=path,
        config=config,
        epoch=epoch,
        best_test_accuracy=best_accuracy,
        best_epoch=best_epoch,
        model_file=top.state_file("model_file"),
        optimizer_file=top.state_file("optimizer_file"),
        optimizer=optimizer.values,
        scheduler=scheduler,
        rng=generators,
        input_shape=shape,
        classes=classes,
        mean=data.numbers("mean", shape[0]),
        std=data.numbers("std", shape[0]),
        as_sequence=as_sequence,
        image_shape=image_shape,
        fingerprint=data.get("fingerprint", str, "must be a string") if version >= 2 else None,
        history=history,
    )


def _image_shape(
    data: _Fields, version: int, input_shape: list[int], as_sequence: bool
) -> list[int] | None:
    if version < 2:  # format 1 kept no image shape: its sequences came from grey images
        if as_sequence:
            return [1, *input_shape]
        return list(input_shape) if len(input_shape) == 3 else None
    shape = data.get("image_shape", (list, type(None)), "must be a list of sizes or null")
    if shape is not None and (
        len(shape) != 3
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in shape)
    ):
        raise data.fail("image_shape", f"must be 3 positive sizes (C, H, W) or null, got {shape!r}")
    return shape


def restore_generator(state: Mapping[str, Any], where: str) -> np.random.Generator:
    bit_generator = getattr(np.random, state["bit_generator"])()
    try:
        bit_generator.state = dict(state)
    except (TypeError, ValueError, KeyError) as error:
        raise CheckpointError(f"{where}: a random generator's state is damaged ({error})") from None
    return np.random.Generator(bit_generator)


def restore_training_state(
    checkpoint: Checkpoint, model: nn.Module, optimizer: optim.Optimizer, scheduler: Any
) -> dict[str, np.random.Generator]:
    """Load the checkpoint's model, optimizer, scheduler and generator states; returns the
    data generators (``shuffle``, ``augment``)."""
    where = str(checkpoint.path)
    load_weights(model, checkpoint.model_file)
    arrays = load_arrays(checkpoint.optimizer_file)
    try:
        optimizer.load_state_dict(_join_optimizer_state(checkpoint.optimizer, arrays, where))
    except (KeyError, TypeError, ValueError, IndexError) as error:
        raise CheckpointError(f"{where}: optimizer state does not fit ({error})") from None
    if scheduler is not None and checkpoint.scheduler is not None:
        expected = scheduler.state_dict()
        unknown = sorted(set(checkpoint.scheduler) - set(expected))
        if unknown:
            raise CheckpointError(f"{where}: scheduler has unknown field(s) {', '.join(unknown)}")
        try:
            scheduler.load_state_dict(checkpoint.scheduler)
        except (KeyError, TypeError, ValueError) as error:
            raise CheckpointError(f"{where}: scheduler state does not fit ({error})") from None
    try:
        cp_random.set_state(checkpoint.rng["convprop"])
    except (TypeError, ValueError, KeyError) as error:
        raise CheckpointError(f"{where}: a random generator's state is damaged ({error})") from None
    return {name: restore_generator(checkpoint.rng[name], where) for name in ("shuffle", "augment")}


def load_weights(model: nn.Module, path: str | Path) -> None:
    """Load a safetensors state_dict into ``model``; a mismatch names the file and the keys."""
    arrays = load_arrays(path)
    try:
        model.load_state_dict(arrays)
    except nn.StateDictError as error:
        raise CheckpointError(
            f"{path}: does not fit the model ({str(error).splitlines()[1].strip()} ...)"
        ) from None


def weights_file(run_dir: Path, weights: str) -> Path:
    """``model.safetensors`` for the ``latest`` weights, ``best.safetensors`` for the best."""
    if weights not in WEIGHTS:
        raise ValueError(f"weights must be one of {', '.join(WEIGHTS)}, got {weights!r}")
    return run_dir / WEIGHTS[weights]


def load_run(run_dir: str | Path, weights: str = "latest") -> tuple[nn.Module, Checkpoint]:
    """The model of a run directory with its ``latest`` (``model.safetensors``) or ``best``
    (``best.safetensors``) weights loaded, in eval mode, and its checkpoint."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunDirectoryError(f"{run_dir}: no such run directory")
    path = weights_file(run_dir, weights)
    checkpoint = read_checkpoint(run_dir)
    config = checkpoint.config
    source = config.model
    if is_onnx(source) and (run_dir / SOURCE_ONNX).is_file():
        source = str(run_dir / SOURCE_ONNX)
    model = build_model(source, checkpoint.input_shape, len(checkpoint.classes))
    model.to(np.dtype(config.dtype))
    load_weights(model, path)
    model.eval()
    return model, checkpoint
