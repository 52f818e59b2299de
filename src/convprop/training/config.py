"""Every setting of a training run, checked by name and type, and its TOML file.

The keys are the command line's flag names (``batch_size`` or ``batch-size`` in a TOML file,
``--batch-size`` on the command line). A value of the wrong type or out of range raises
:class:`ConfigError`, which names the setting, the rule and the value received, so a TOML
file's ``lr = "fast"`` reads ``lr must be a positive number, got 'fast' (a string)``.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from convprop.data import AUGMENTATIONS
from convprop.training.registry import MODELS, OPTIMIZERS, SCHEDULERS, SEGMENTATION_MODELS


class ConfigError(ValueError):
    """A setting that breaks its rule; ``key`` names it, ``rule`` says what is wrong."""

    def __init__(self, key: str, rule: str) -> None:
        super().__init__(f"{key} {rule}")
        self.key = key
        self.rule = rule


# The peak rates of the default one-cycle schedule; measured on the bundled MNIST subset
# (LeNet-5, seeds 0-2: 98.0-98.4% test accuracy with shift/rotate/scale augmentation).
DEFAULT_LR = {"sgd": 0.05, "adam": 3e-3, "adamw": 3e-3}
DTYPES = ("float32", "float64")
TASKS = ("classify", "segment")
# What a segmentation run uses where its configuration does not say (a classification run uses
# the dataclass's defaults): the fully-convolutional model on the bundled digit canvases, no
# augmentation (the spatial ones would have to move the masks too). Measured on two cores:
# see docs/segmentation.md.
SEGMENT_DEFAULTS: dict[str, Any] = {
    "model": "fcn",
    "data": "mnist-canvases",
    "augment": [],
    "epochs": 10,
    "batch_size": 32,
}


@dataclass
class TrainConfig:
    """Every setting of a run; the keys are the CLI flags' names (and a TOML config's keys)."""

    task: str = "classify"
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
    num_classes: int | None = None
    # Batch norm over the global batch of a distributed run (SyncBatchNorm). Saved with the
    # run, since it changes the model a resume must rebuild; ``--distributed`` is not, so a
    # run may resume on another number of processes.
    sync_bn: bool = False
    # Data larger than memory (convprop.data.lazy): read the data lazily even when it would
    # fit (an image folder or .npy directory too big for the memory budget is read lazily
    # anyway), and decode it in this many worker processes (0: in the training process).
    stream: bool = False
    num_workers: int = 0

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first setting that breaks its rule."""
        if self.task not in TASKS or not isinstance(self.task, str):
            raise ConfigError(
                "task", f"must be one of {', '.join(TASKS)}, got {_describe(self.task)}"
            )
        if not (isinstance(self.model, str) and self.model.lower().endswith(".onnx")):
            if not isinstance(self.model, str) or self.model not in MODELS:
                raise ConfigError(
                    "model",
                    f"must be one of {', '.join(MODELS)} or an .onnx file, got "
                    + _describe(self.model),
                )
        for name, allowed in (
            ("optimizer", tuple(OPTIMIZERS)),
            ("scheduler", tuple(SCHEDULERS)),
            ("dtype", DTYPES),
        ):
            value = getattr(self, name)
            if value not in allowed or not isinstance(value, str):
                raise ConfigError(
                    name, f"must be one of {', '.join(allowed)}, got {_describe(value)}"
                )
        _check_path("data", self.data, optional=False)
        _check_path("test_data", self.test_data, optional=True)
        for name in ("epochs", "batch_size"):
            _check_int(name, getattr(self, name), minimum=1)
        _check_int("seed", self.seed, minimum=0)
        _check_int("limit", self.limit, minimum=20, optional=True)
        _check_int("num_classes", self.num_classes, minimum=2, optional=True)
        if self.lr is not None and not (_is_number(self.lr) and 0 < self.lr < math.inf):
            raise ConfigError("lr", f"must be a positive finite number, got {_describe(self.lr)}")
        for name in ("momentum", "weight_decay"):
            value = getattr(self, name)
            if not (_is_number(value) and 0 <= value < math.inf):
                raise ConfigError(
                    name, f"must be a non-negative finite number, got {_describe(value)}"
                )
        if not (_is_number(self.test_fraction) and 0 < self.test_fraction < 1):
            raise ConfigError(
                "test_fraction", f"must be a number in (0, 1), got {_describe(self.test_fraction)}"
            )
        if not isinstance(self.augment, list) or not all(
            isinstance(name, str) for name in self.augment
        ):
            raise ConfigError(
                "augment",
                "must be a list of augmentation names or a comma-separated string, got "
                + _describe(self.augment),
            )
        unknown = sorted(set(self.augment) - {*AUGMENTATIONS, "all"})
        if unknown:
            raise ConfigError(
                "augment",
                f"names unknown augmentation(s) {', '.join(unknown)} (choose from "
                f"{', '.join(AUGMENTATIONS)}, or all)",
            )
        if not isinstance(self.sync_bn, bool):
            raise ConfigError("sync_bn", f"must be true or false, got {_describe(self.sync_bn)}")
        self._check_task()
        self._check_streaming()
        if self.resize is not None and not (
            isinstance(self.resize, list)
            and len(self.resize) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in self.resize)
        ):
            raise ConfigError(
                "resize",
                f"must be two positive integers HEIGHT, WIDTH, got {_describe(self.resize)}",
            )

    def _check_task(self) -> None:
        """The model and augmentation must suit the task."""
        if not isinstance(self.model, str) or self.model.lower().endswith(".onnx"):
            if self.task == "segment":
                raise ConfigError(
                    "model",
                    f"must be one of {', '.join(SEGMENTATION_MODELS)} for --task segment (an "
                    f"ONNX segmenter cannot be fine-tuned), got {_describe(self.model)}",
                )
            return
        segmenter = self.model in SEGMENTATION_MODELS
        if self.task == "segment" and not segmenter:
            raise ConfigError(
                "model",
                f"{self.model!r} is a classifier; --task segment needs one of "
                f"{', '.join(SEGMENTATION_MODELS)}",
            )
        if self.task == "classify" and segmenter:
            raise ConfigError(
                "model", f"{self.model!r} is a segmenter; train it with --task segment"
            )
        if self.task == "segment" and self.augment:
            raise ConfigError(
                "augment",
                f"{', '.join(self.augment)} would move the images but not their masks; "
                "--task segment trains without augmentation (--augment none)",
            )

    def _check_streaming(self) -> None:
        if not isinstance(self.stream, bool):
            raise ConfigError("stream", f"must be true or false, got {_describe(self.stream)}")
        _check_int("num_workers", self.num_workers, minimum=0)
        if self.stream and self.task == "segment":
            raise ConfigError(
                "stream",
                "reads classification data lazily; --task segment holds its images and masks "
                "in memory",
            )

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR[self.optimizer]

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """A validated configuration from a mapping of settings (a TOML file's, a
        checkpoint's); an unknown key or a bad value raises :class:`ConfigError`. A setting
        not given takes its task's default (``SEGMENT_DEFAULTS`` for ``task = "segment"``)."""
        values = {key.replace("-", "_"): value for key, value in values.items()}
        if values.get("task") == "segment":
            values = {**SEGMENT_DEFAULTS, "augment": list(SEGMENT_DEFAULTS["augment"]), **values}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(
                ", ".join(unknown),
                f"{'is not a setting' if len(unknown) == 1 else 'are not settings'} "
                f"(the settings are: {', '.join(sorted(known))})",
            )
        if isinstance(values.get("augment"), str):
            values["augment"] = split_augment(values["augment"])
        if isinstance(values.get("lr"), int) and not isinstance(values["lr"], bool):
            values["lr"] = float(values["lr"])
        config = cls(**values)
        config.validate()
        return config

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def split_augment(text: str) -> list[str]:
    """``"shift, rotate"`` -> ["shift", "rotate"]; ``"none"`` or ``""`` -> []."""
    return [name.strip() for name in text.split(",") if name.strip() not in ("", "none")]


def load_config_file(path: str | Path) -> dict[str, Any]:
    """The settings of a TOML file (not yet validated: merge the flags, then ``from_dict``).

    Raises:
        ConfigError: the file is missing, unreadable or not TOML (key ``config``).
    """
    path = Path(path)
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError("config", f"file {path} does not exist") from None
    except IsADirectoryError:
        raise ConfigError("config", f"{path} is a directory, not a TOML file") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise ConfigError("config", f"{path} is not a readable TOML file ({error})") from None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


def _check_int(name: str, value: Any, minimum: int, optional: bool = False) -> None:
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        kind = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ConfigError(name, f"must be {kind}, got {_describe(value)}")


def _check_path(name: str, value: Any, optional: bool) -> None:
    if optional and value is None:
        return
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(name, f"must name a bundled data set or a path, got {_describe(value)}")


_TYPE_NAMES = {
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    str: "a string",
    list: "a list",
    dict: "a table",
}


def _describe(value: Any) -> str:
    """``'fast' (a string)``, ``5 (an integer)``: the value and its type in words."""
    if isinstance(value, str) and not value:
        return "an empty string"
    kind = _TYPE_NAMES.get(type(value), f"a {type(value).__name__}")
    return f"{value!r} ({kind})"
