"""What ``--model``, ``--optimizer`` and ``--scheduler`` name: one table each, name to builder.

Adding a model to the command line is one entry in :data:`MODELS`; the flag's choices, the
configuration's validation and ``convprop summary`` all read these tables.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from convprop import models, nn, optim


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
    "fcn": _image_model(lambda c, k, size: models.fcn(c, k)),
    "unet": _image_model(lambda c, k, size: models.unet(c, k)),
}
# The models that read 1-D sequences (N, C, L) rather than images (N, C, H, W).
SEQUENCE_MODELS = ("tdnn",)
# The models that give a class score per pixel (N, K, H, W): ``--task segment``.
SEGMENTATION_MODELS = ("fcn", "unet")


def is_onnx(name: str) -> bool:
    """Whether ``--model`` names an ONNX file to fine-tune rather than a model of the zoo."""
    return name.lower().endswith(".onnx")


def imported_model(path: str | Path, input_shape: Sequence[int], num_classes: int) -> nn.Module:
    """The network of an ONNX file, checked to take ``input_shape`` and give ``num_classes``
    outputs (``convprop.onnx.load``)."""
    import numpy as np

    import convprop as cp
    from convprop.onnx import OnnxError, load

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"--model {path}: no such ONNX file")
    model = load(path)
    model.eval()
    try:
        with cp.no_grad():
            output = model(cp.tensor(np.zeros((1, *input_shape), np.float32)))
    except OnnxError as error:
        raise ValueError(
            f"{path}: does not take the data's inputs of shape {tuple(input_shape)} ({error})"
        ) from None
    if output.ndim != 2 or output.shape[1] != num_classes:
        raise ValueError(
            f"{path}: gives outputs of shape {tuple(output.shape[1:])} per sample, but the data "
            f"has {num_classes} classes"
        )
    model.train()
    return model


def build_model(name: str, input_shape: Sequence[int], num_classes: int) -> nn.Module:
    """The named model sized for ``input_shape`` ((C, H, W) or (C, L)) and ``num_classes``,
    or the network of an ONNX file (``imported_model``)."""
    if is_onnx(name):
        return imported_model(name, input_shape, num_classes)
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r} (choose from {', '.join(MODELS)})")
    try:
        return MODELS[name](input_shape, num_classes)
    except ValueError as error:
        message = str(error)  # the models name themselves; the shape checks above do not
        raise ValueError(message if message.startswith(name) else f"{name}: {message}") from None


def _sgd(
    parameters: Sequence[nn.Parameter], lr: float, momentum: float, weight_decay: float
) -> optim.Optimizer:
    return optim.SGD(
        parameters, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=momentum > 0
    )


def _adam(
    parameters: Sequence[nn.Parameter], lr: float, momentum: float, weight_decay: float
) -> optim.Optimizer:
    return optim.Adam(parameters, lr=lr, weight_decay=weight_decay)


def _adamw(
    parameters: Sequence[nn.Parameter], lr: float, momentum: float, weight_decay: float
) -> optim.Optimizer:
    # AdamW's decoupled decay defaults to PyTorch's 0.01 when none is asked for.
    return optim.AdamW(parameters, lr=lr, weight_decay=weight_decay or 1e-2)


# Each builder takes (parameters, lr, momentum, weight_decay); Adam ignores the momentum.
OPTIMIZERS: dict[str, Callable[[Sequence[nn.Parameter], float, float, float], optim.Optimizer]] = {
    "sgd": _sgd,
    "adam": _adam,
    "adamw": _adamw,
}


def build_optimizer(
    name: str,
    parameters: Sequence[nn.Parameter],
    *,
    lr: float,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
) -> optim.Optimizer:
    """The optimizer ``name`` over ``parameters`` (Nesterov momentum for SGD with momentum)."""
    return OPTIMIZERS[name](parameters, lr, momentum, weight_decay)


Scheduler = Any
# Each builder takes (optimizer, epochs, steps per epoch, peak rate); None is a constant rate.
SCHEDULERS: dict[str, Callable[[optim.Optimizer, int, int, float], Scheduler]] = {
    "none": lambda optimizer, epochs, steps, lr: None,
    "step": lambda optimizer, epochs, steps, lr: optim.lr_scheduler.StepLR(
        optimizer, step_size=max(1, epochs // 3), gamma=0.1
    ),
    "cosine": lambda optimizer, epochs, steps, lr: optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=epochs
    ),
    "plateau": lambda optimizer, epochs, steps, lr: optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, factor=0.5, patience=1
    ),
    "onecycle": lambda optimizer, epochs, steps, lr: optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, epochs=epochs, steps_per_epoch=steps
    ),
}
# Schedulers that step after every batch rather than after every epoch.
PER_BATCH_SCHEDULERS = ("onecycle",)


def build_scheduler(
    name: str, optimizer: optim.Optimizer, *, epochs: int, steps_per_epoch: int, lr: float
) -> Scheduler:
    """The learning-rate scheduler ``name`` (``lr`` is one-cycle's peak), or None."""
    return SCHEDULERS[name](optimizer, epochs, steps_per_epoch, lr)
