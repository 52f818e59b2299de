"""Training, evaluation and prediction: the API behind ``convprop train/evaluate/predict``.

A run directory holds everything a run needs to be evaluated, used or resumed:

* ``checkpoint.json``: the configuration, the epoch reached, the optimizer's and scheduler's
  non-array state, every random generator's state, the data's shape, classes, normalisation
  and fingerprint, and the metrics so far; it names the array files below. It is written
  last, atomically: it is the commit point of an epoch (:mod:`.checkpoint`).
* ``state/epoch-NNNN.model.safetensors`` and ``state/epoch-NNNN.optimizer.safetensors``: the
  arrays that checkpoint refers to (older epochs are deleted once a newer one is committed).
* ``model.safetensors``: the latest completed epoch's weights, keys as PyTorch's;
  ``best.safetensors``: the weights with the best test accuracy so far.
* ``metrics.csv``: one row per epoch; ``*.png``: curves, filters, confusion matrix, feature maps.

Every file is written atomically and reproducibly (the same command and seed give the same
bytes), so a run killed at any moment leaves the last committed epoch loadable, and
``resume`` continues from it to bitwise the weights an uninterrupted run reaches.

The package, in the order a run goes through it: :mod:`.config` (the settings and their
rules), :mod:`.registry` (what the model, optimizer and scheduler names build),
:mod:`.data` (the run's data and classes), :mod:`.rundir` (the directory: exclusive, locked,
replaced safely), :mod:`.loop` (``fit``), :mod:`.checkpoint` (commit and the one checked
reader), :mod:`.evaluate` (``evaluate``, ``predict``).
"""

from convprop.training.checkpoint import (
    CHECKPOINT_FORMAT,
    Checkpoint,
    EpochMetrics,
    load_run,
    load_weights,
    read_checkpoint,
)
from convprop.training.config import DEFAULT_LR, ConfigError, TrainConfig, load_config_file
from convprop.training.data import PreparedData, prepare_data, resolve_classes
from convprop.training.evaluate import (
    Evaluation,
    confusion_matrix,
    evaluate,
    evaluate_arrays,
    predict,
)
from convprop.training.loop import RunResult, TrainingError, fit
from convprop.training.registry import (
    MODELS,
    OPTIMIZERS,
    SCHEDULERS,
    build_model,
    build_optimizer,
    build_scheduler,
)
from convprop.training.rundir import RunDirectoryError, new_run_dir

MODEL_NAMES = tuple(MODELS)
OPTIMIZER_NAMES = tuple(OPTIMIZERS)
SCHEDULER_NAMES = tuple(SCHEDULERS)

__all__ = [
    "CHECKPOINT_FORMAT",
    "DEFAULT_LR",
    "MODELS",
    "MODEL_NAMES",
    "OPTIMIZERS",
    "OPTIMIZER_NAMES",
    "SCHEDULERS",
    "SCHEDULER_NAMES",
    "Checkpoint",
    "ConfigError",
    "EpochMetrics",
    "Evaluation",
    "PreparedData",
    "RunDirectoryError",
    "RunResult",
    "TrainConfig",
    "TrainingError",
    "build_model",
    "build_optimizer",
    "build_scheduler",
    "confusion_matrix",
    "evaluate",
    "evaluate_arrays",
    "fit",
    "load_config_file",
    "load_run",
    "load_weights",
    "new_run_dir",
    "predict",
    "prepare_data",
    "read_checkpoint",
    "resolve_classes",
]
