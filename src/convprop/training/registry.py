"""What ``--model``, ``--optimizer`` and ``--scheduler`` name: one table each, name to builder.

Adding a model to the command line is one entry in :data:`MODELS`; the flag's choices, the
configuration's validation and ``convprop summary`` all read these tables.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from convprop import models, nn, optim

if TYPE_CHECKING:
    from convprop.training.config import TrainConfig


def _image_model(build: Callable[[int, int, tuple[int, int]], nn.Module]) -> Any:
    def from_shape(input_shape: Sequence[int], num_classes: int) -> nn.Module:
        if len(input_shape) != 3:
            raise ValueError(f"expects images (C, H, W), got input shape {tuple(input_shape)}")
        channels, height, width = input_shape
        return build(channels, num_classes, (height, width))

    return from_shape


def _tdnn(input_shape: Sequence[int], num_classes: int) -> nn.Module:
    if len(input_shape) != 2:
        raise ValueError(f"expects sequences (C, L), got input shape {tuple(input_shape)}")
    return models.tdnn(input_shape[0], num_classes)


MODELS: dict[str, Callable[[Sequence[int], int], nn.Module]] = {
    "lenet5": _image_model(lambda c, k, size: models.lenet5(c, k, size)),
    "resnet20": _image_model(lambda c, k, size: models.resnet20(c, k)),
    "resnet32": _image_model(lambda c, k, size: models.resnet32(c, k)),
    "resnet56": _image_model(lambda c, k, size: models.resnet56(c, k)),
    "densenet_bc": _image_model(
        lambda c, k, size: models.densenet_bc(in_channels=c, num_classes=k)
    ),
    "tdnn": _tdnn,
}
# The models that read 1-D sequences (N, C, L) rather than images (N, C, H, W).
SEQUENCE_MODELS = ("tdnn",)


def build_model(name: str, input_shape: Sequence[int], num_classes: int) -> nn.Module:
    """The named model sized for ``input_shape`` ((C, H, W) or (C, L)) and ``num_classes``."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r} (choose from {', '.join(MODELS)})")
    try:
        return MODELS[name](input_shape, num_classes)
    except ValueError as error:
        message = str(error)  # the models name themselves; the shape checks above do not
        raise ValueError(message if message.startswith(name) else f"{name}: {message}") from None


def _sgd(config: TrainConfig, parameters: Sequence[nn.Parameter]) -> optim.Optimizer:
    return optim.SGD(
        parameters,
        lr=config.learning_rate,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
        nesterov=config.momentum > 0,
    )


def _adam(config: TrainConfig, parameters: Sequence[nn.Parameter]) -> optim.Optimizer:
    return optim.Adam(parameters, lr=config.learning_rate, weight_decay=config.weight_decay)


def _adamw(config: TrainConfig, parameters: Sequence[nn.Parameter]) -> optim.Optimizer:
    # AdamW's decoupled decay defaults to PyTorch's 0.01 when none is asked for.
    return optim.AdamW(
        parameters, lr=config.learning_rate, weight_decay=config.weight_decay or 1e-2
    )


OPTIMIZERS: dict[str, Callable[[TrainConfig, Sequence[nn.Parameter]], optim.Optimizer]] = {
    "sgd": _sgd,
    "adam": _adam,
    "adamw": _adamw,
}


def build_optimizer(config: TrainConfig, parameters: Sequence[nn.Parameter]) -> optim.Optimizer:
    return OPTIMIZERS[config.optimizer](config, parameters)


# Each scheduler builder takes (config, optimizer, steps per epoch); None means a constant rate.
Scheduler = Any
SCHEDULERS: dict[str, Callable[[TrainConfig, optim.Optimizer, int], Scheduler]] = {
    "none": lambda config, optimizer, steps: None,
    "step": lambda config, optimizer, steps: optim.lr_scheduler.StepLR(
        optimizer, step_size=max(1, config.epochs // 3), gamma=0.1
    ),
    "cosine": lambda config, optimizer, steps: optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=config.epochs
    ),
    "plateau": lambda config, optimizer, steps: optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, factor=0.5, patience=1
    ),
    "onecycle": lambda config, optimizer, steps: optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.learning_rate, epochs=config.epochs, steps_per_epoch=steps
    ),
}
# Schedulers that step after every batch rather than after every epoch.
PER_BATCH_SCHEDULERS = ("onecycle",)


def build_scheduler(
    config: TrainConfig, optimizer: optim.Optimizer, steps_per_epoch: int
) -> Scheduler:
    """The learning-rate scheduler ``config.scheduler`` names, or None for a constant rate."""
    return SCHEDULERS[config.scheduler](config, optimizer, steps_per_epoch)
