"""The ``convprop`` command: train, evaluate, predict, summary, explain.

A user error (bad flag, bad file, bad run directory) and an OS error (a full disk, a
read-only file system, no permission) print one line to stderr and exit with status 2, never
a traceback, and leave every file a user saved intact; a run stopped by a non-finite loss
exits with status 1; Ctrl-C with 130.

``train --distributed`` under ``mpirun -n N`` trains one run on N processes; process 0 alone
prints and writes. An error is still one line, from the process that failed (``rank R:``),
and ends every process of the job (``convprop.training.parallel``, docs/distributed.md).
"""

from __future__ import annotations

import argparse
import math
import sys
import warnings
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np

import convprop
from convprop.data import AUGMENTATIONS, DataError
from convprop.io.files import CheckpointError, describe_os_error
from convprop.onnx import MissingExtraError
from convprop.training.config import (
    SEGMENT_DEFAULTS,
    TASKS,
    ConfigError,
    TrainConfig,
    load_config_file,
    split_augment,
)
from convprop.training.registry import MODELS, OPTIMIZERS, SCHEDULERS, SEQUENCE_MODELS
from convprop.training.rundir import RunDirectoryError

USAGE_ERROR = 2
TRAINING_FAILED = 1
INTERRUPTED = 130


class UsageError(Exception):
    """Raised for bad command-line input; reported as one line with exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


def _sizes(example: str) -> Any:
    """An argparse type for ``28x28`` or ``1,28,28`` (``example`` shows the expected form)."""

    def parse(text: str) -> list[int]:
        try:
            values = [int(v) for v in text.replace("x", ",").split(",")]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected sizes like {example}, got {text!r}"
            ) from None
        if min(values) <= 0:
            raise argparse.ArgumentTypeError(f"sizes must be positive, got {text!r}")
        return values

    return parse


def _path(text: str) -> Path:
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a path, got an empty string")
    return Path(text)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be a probability in [0, 1], got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="convprop", description="CNNs with hand-derived backpropagation, on NumPy."
    )
    parser.add_argument("--version", action="version", version=f"convprop {convprop.__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_train(commands)

    weights_help = "latest: model.safetensors (the last epoch, default); best: best.safetensors"
    evaluate = commands.add_parser("evaluate", help="accuracy, precision/recall, confusion matrix")
    evaluate.add_argument("run_dir", type=_path, metavar="RUN_DIR", help="a training run")
    evaluate.add_argument(
        "--data", help="evaluate on this data (matched by class name) instead of the test split"
    )
    evaluate.add_argument(
        "--weights", choices=("latest", "best"), default="latest", help=weights_help
    )
    evaluate.add_argument(
        "--perturb",
        action="append",
        metavar="SPEC",
        help="also evaluate on deterministic transformed copies of the data (repeatable): "
        "shift=N (N px in each of 8 directions), rotate=DEG (+DEG and -DEG), scale=LO,HI "
        "(by LO and by HI), elastic[=ALPHA,SIGMA] (default 8,3)",
    )

    _add_predict(commands, weights_help)

    export = commands.add_parser("export", help="a trained run as an ONNX model")
    export.add_argument("run_dir", type=_path, metavar="RUN_DIR", help="a training run")
    export.add_argument("output", type=_path, metavar="OUT.onnx", help="the ONNX file to write")
    export.add_argument(
        "--opset",
        type=_positive_int,
        help="ONNX opset (default: the newest the pinned onnxruntime runs)",
    )
    export.add_argument(
        "--weights", choices=("latest", "best"), default="latest", help=weights_help
    )

    summary = commands.add_parser("summary", help="layer table of a model")
    summary.add_argument("--model", choices=tuple(MODELS), default="lenet5")
    summary.add_argument(
        "--input-shape",
        type=_sizes("1,28,28 (C,H,W) or 40,100 (C,L)"),
        help="C,H,W (or C,L for tdnn); default 1,28,28 (40,100 for tdnn)",
    )
    summary.add_argument("--num-classes", type=_positive_int, default=10)

    from convprop.explain.cli import add_parser as add_explain_parser

    add_explain_parser(commands)
    return parser


def _add_predict(commands: Any, weights_help: str) -> None:
    predict = commands.add_parser(
        "predict", help="top-k classes for image files (a segmentation run: their masks)"
    )
    predict.add_argument("run_dir", type=_path, metavar="RUN_DIR", help="a training run")
    predict.add_argument(
        "images", nargs="+", type=_path, metavar="IMAGE", help="image files (PNG, JPEG, ...)"
    )
    predict.add_argument("--top-k", type=_positive_int, help="how many classes to list (default 3)")
    predict.add_argument(
        "--mask",
        type=_path,
        metavar="OUT.png",
        help="segmentation runs: write the predicted mask (class indices, with a palette) and "
        "OUT-overlay.png; with several images, OUT is a directory of NAME.png files",
    )
    predict.add_argument(
        "--weights", choices=("latest", "best"), default="latest", help=weights_help
    )
    predict.add_argument(
        "--scan",
        action="store_true",
        help="find the digits on each (larger) image by scanning the classifier over it",
    )
    predict.add_argument(
        "--threshold",
        type=_probability,
        metavar="P",
        help="with --scan: the smallest class probability reported (default 0.9)",
    )
    predict.add_argument(
        "--heatmap",
        type=_path,
        metavar="OUT.png",
        help="with --scan: draw each class's score map over the image (one IMAGE)",
    )


def _add_train(commands: Any) -> None:
    train = commands.add_parser("train", help="train a model (LeNet-5 on bundled MNIST by default)")
    defaults = TrainConfig()
    train.add_argument("--config", type=_path, help="TOML file whose keys are these flags' names")
    train.add_argument(
        "--task",
        choices=TASKS,
        help="classify images (default) or segment them: a class per pixel (defaults "
        + ", ".join(f"--{k.replace('_', '-')} {_shown(v)}" for k, v in SEGMENT_DEFAULTS.items())
        + ")",
    )
    train.add_argument(
        "--model",
        help=f"{', '.join(MODELS)} (default {defaults.model}), or a PATH.onnx to fine-tune",
    )
    train.add_argument(
        "--data",
        help="mnist-5k, a .npz, an IDX directory or an image folder; to segment: mnist-canvases "
        "or a folder of images/ and masks/",
    )
    train.add_argument("--test-data", help="separate test data (else split off with the seed)")
    train.add_argument("--epochs", type=int, help=f"default {defaults.epochs}")
    train.add_argument("--batch-size", type=int, help=f"default {defaults.batch_size}")
    train.add_argument(
        "--optimizer", choices=tuple(OPTIMIZERS), help=f"default {defaults.optimizer}"
    )
    train.add_argument(
        "--lr", type=float, help="(peak) learning rate (default 0.05 sgd, 0.003 adam/adamw)"
    )
    train.add_argument("--momentum", type=float, help=f"SGD momentum, default {defaults.momentum}")
    train.add_argument("--weight-decay", type=float, help="default 0 (adamw: 0.01)")
    train.add_argument(
        "--scheduler",
        choices=tuple(SCHEDULERS),
        help=f"learning-rate schedule (default {defaults.scheduler})",
    )
    train.add_argument(
        "--augment",
        help=f"image augmentations: comma list of {', '.join(AUGMENTATIONS)}, all or none "
        f"(default {','.join(defaults.augment)})",
    )
    train.add_argument("--seed", type=int, help=f"default {defaults.seed}")
    train.add_argument("--dtype", choices=("float32", "float64"), help="default float32")
    train.add_argument("--test-fraction", type=float, help="share split off for testing (0.2)")
    train.add_argument("--limit", type=int, help="train on this many samples only (quick runs)")
    train.add_argument(
        "--resize", type=_sizes("28x28"), help="resize images to HxW (image folders)"
    )
    train.add_argument(
        "--num-classes",
        type=int,
        help="the number of classes, when the labels 0..K-1 do not all occur in the data",
    )
    train.add_argument(
        "--stream",
        action="store_true",
        default=None,
        help="read an image folder or a directory of .npy files lazily, decoding batches as "
        "they are needed, even if it would fit in memory (one whose loading would exceed the "
        "memory budget, 3/4 of the available memory or CONVPROP_MEMORY_BUDGET, is read "
        "lazily anyway)",
    )
    train.add_argument(
        "--num-workers",
        type=int,
        help="worker processes that decode batches ahead of training (default 0: the "
        "training process decodes them)",
    )
    train.add_argument(
        "--out", type=_path, help="run directory (default: a new runs/YYYYmmdd-HHMMSS)"
    )
    train.add_argument(
        "--resume",
        type=_path,
        metavar="RUN_DIR",
        help="continue a run (with --epochs, to a new total)",
    )
    train.add_argument("--overwrite", action="store_true", help="replace an existing run")
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    train.add_argument(
        "--distributed",
        action="store_true",
        help="train on every process of an MPI job: `mpirun -n N convprop train --distributed "
        "...`; --batch-size is the global batch (needs pip install 'convprop[mpi]')",
    )
    train.add_argument(
        "--sync-bn",
        action="store_true",
        default=None,
        help="batch norm statistics over the global batch of a distributed run "
        "(SyncBatchNorm; saved with the run), instead of each process's share",
    )


# ----------------------------------------------------------------------------- train
_SETTINGS = [f.name for f in fields(TrainConfig)]


def _shown(value: Any) -> str:
    return ",".join(value) or "none" if isinstance(value, list) else str(value)


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def _given_settings(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """The settings of the TOML file and of the flags, separately (flags win on merging)."""
    from_file: dict[str, Any] = {}
    if args.config is not None:
        try:
            from_file = load_config_file(args.config)
        except ConfigError as error:
            raise UsageError(f"--config: {error.rule}") from None
    from_flags = {
        key: getattr(args, key) for key in _SETTINGS if getattr(args, key, None) is not None
    }
    if isinstance(from_flags.get("augment"), str):
        from_flags["augment"] = split_augment(from_flags["augment"])
    return from_file, from_flags


def _config_error(
    error: ConfigError, args: argparse.Namespace, from_flags: dict[str, Any]
) -> UsageError:
    """A configuration error in the words of where the setting came from."""
    if error.key in from_flags:
        return UsageError(f"{_flag(error.key)} {error.rule}")
    if args.config is not None:
        return UsageError(f"{args.config}: {error.key} {error.rule}")
    return UsageError(str(error))


def _train_config(args: argparse.Namespace) -> TrainConfig:
    from_file, from_flags = _given_settings(args)
    try:
        return TrainConfig.from_dict({**from_file, **from_flags})
    except ConfigError as error:
        raise _config_error(error, args, from_flags) from None


def _check_resume_flags(args: argparse.Namespace) -> None:
    """A resumed run keeps its configuration: a flag that asks for another value is refused
    (``--epochs`` may change the total; ``--out`` may only name the same directory)."""
    from convprop.training.checkpoint import read_checkpoint
    from convprop.training.rundir import check_resumable

    if args.out is not None and args.out.resolve() != args.resume.resolve():
        raise UsageError(
            f"--out {args.out} conflicts with --resume {args.resume}: a resumed run stays in "
            "its own directory"
        )
    if args.overwrite:
        raise UsageError("choose either --resume or --overwrite, not both")
    from_file, from_flags = _given_settings(args)
    requested = {**from_file, **from_flags}
    requested.pop("epochs", None)
    if not requested:
        return
    check_resumable(args.resume)
    saved = read_checkpoint(args.resume).config
    for key, value in requested.items():
        key = key.replace("-", "_")
        # The learning rate a run was saved without is its optimizer's default: compare those.
        current = saved.learning_rate if key == "lr" else getattr(saved, key, None)
        if key in _SETTINGS and current != value:
            where = _flag(key) if key in from_flags else f"{args.config}: {key}"
            raise UsageError(
                f"{where} {value!r} conflicts with the run's saved {key} {current!r}: "
                "a resumed run keeps its configuration (only --epochs can change)"
            )


def _start_processes(args: argparse.Namespace) -> None:
    """Join the MPI job for ``--distributed``; refuse a job of several processes without it
    (each process would train the whole run on its own)."""
    from convprop import distributed

    if args.distributed:
        distributed.init_process_group()
        return
    launched = distributed.launched_world_size()
    if launched is not None and launched > 1:
        raise UsageError(
            f"this is one of {launched} processes started by an MPI launcher, but without "
            "--distributed each would train the whole run on its own; pass --distributed"
        )


def _train(args: argparse.Namespace) -> int:
    from convprop import training
    from convprop.ops.kernels.memory import keep_freed_memory
    from convprop.training import parallel

    _start_processes(args)
    keep_freed_memory()  # a training loop re-allocates the same buffers every step
    if args.resume is not None:
        parallel.from_leader(lambda: _check_resume_flags(args))
        try:
            result = training.fit(
                TrainConfig(), args.resume, resume=True, progress=not args.quiet, epochs=args.epochs
            )
        except ConfigError as error:
            raise _config_error(error, args, {"epochs": args.epochs}) from None
    else:
        config = parallel.together(lambda: _train_config(args))
        try:
            result = training.fit(
                config, args.out, overwrite=args.overwrite, progress=not args.quiet
            )
        except ConfigError as error:
            # Only a setting checked against the data can fail here: --sync-bn's last batch.
            raise _config_error(error, args, {"sync_bn": True} if args.sync_bn else {}) from None
    if not parallel.is_leader():
        return 0
    extra = result.history[-1].extra if result.history else {}
    if "test_mean_iou" in extra:
        print(
            f"final test mean IoU {extra['test_mean_iou']:.4f} (pixel accuracy "
            f"{result.test_accuracy:.4f}); run saved in {result.run_dir}"
        )
    else:
        print(f"final test accuracy {result.test_accuracy:.4f}; run saved in {result.run_dir}")
    return 0


def _predict_masks(args: argparse.Namespace) -> int:
    from convprop.training.segmentation import mask_destinations, predict_masks, write_masks

    if args.top_k is not None:
        raise UsageError("--top-k ranks a classifier's classes; a segmentation run gives masks")
    if args.mask is not None:
        mask_destinations(args.mask, args.images)  # a bad --mask is refused before any work
    predicted = predict_masks(args.run_dir, args.images, args.weights)
    for prediction in predicted:
        print(f"{prediction.path}: {prediction.summary()}")
    if args.mask is not None:
        written = write_masks(predicted, args.mask)
        print(f"masks and overlays written: {', '.join(str(p) for p in written)}")
    return 0


# ----------------------------------------------------------------------------- dispatch
def _run(args: argparse.Namespace) -> int:
    from convprop import training

    if args.command == "train":
        return _train(args)
    if args.command == "evaluate":
        print(training.evaluate(args.run_dir, args.data, args.weights, args.perturb).report())
        return 0
    if args.command == "predict" and args.scan:
        from convprop.training.scan import DEFAULT_THRESHOLD, report, save_heatmap, scan

        if args.top_k is not None:
            raise UsageError("--top-k ranks a whole image's classes; --scan lists each digit")
        if args.mask is not None:
            raise UsageError(
                "--mask writes a segmentation run's masks; --scan lists the digits a "
                "classifier finds: choose one"
            )
        if args.heatmap is not None and len(args.images) != 1:
            raise UsageError(f"--heatmap draws one image, got {len(args.images)} IMAGEs")
        if args.heatmap is not None and args.heatmap.suffix.lower() != ".png":
            raise UsageError(f"--heatmap must name a .png file, got {str(args.heatmap)!r}")
        threshold = DEFAULT_THRESHOLD if args.threshold is None else args.threshold
        results = scan(args.run_dir, args.images, threshold, args.weights)
        for path, result in zip(args.images, results, strict=True):
            print(report(path, result))
        if args.heatmap is not None:
            save_heatmap(args.heatmap, results[0])
            print(f"heat map written to {args.heatmap}")
        return 0
    if args.command == "predict":
        if args.threshold is not None or args.heatmap is not None:
            flag = "--threshold" if args.threshold is not None else "--heatmap"
            raise UsageError(f"{flag} needs --scan")
        if args.mask is not None or training.read_checkpoint(args.run_dir).config.task == "segment":
            return _predict_masks(args)
        top_k = 3 if args.top_k is None else args.top_k
        rankings = training.predict(args.run_dir, args.images, top_k, args.weights)
        for path, ranking in zip(args.images, rankings, strict=True):
            print(f"{path}: " + ", ".join(f"{name} {p:.4f}" for name, p in ranking))
        return 0
    if args.command == "export":
        from convprop.training.export import export_run

        if args.output.suffix.lower() != ".onnx":
            raise UsageError(f"OUT.onnx must name a .onnx file, got {str(args.output)!r}")
        path = export_run(args.run_dir, args.output, args.opset, args.weights)
        print(f"{args.run_dir} ({args.weights} weights) written to {path}")
        return 0
    if args.command == "explain":
        from convprop.explain.cli import run as run_explain

        return run_explain(args)
    if args.command == "summary":
        from convprop.summary import summary

        default = [40, 100] if args.model in SEQUENCE_MODELS else [1, 28, 28]
        shape = args.input_shape or default
        try:
            model = training.build_model(args.model, shape, args.num_classes)
        except ValueError as error:
            raise UsageError(f"--input-shape: {error}") from None
        print(summary(model, [1, *shape]))
        return 0
    raise UsageError(f"unknown command {args.command!r}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status.

    In a distributed run, a process that fails ends the whole job: with ``MPI_Abort``, unless
    every process already knows (an error agreed during setup, a non-finite loss), when they
    all leave together with the same status (``convprop.training.parallel``).
    """
    from convprop import distributed
    from convprop.training import parallel

    with distributed.abort_on_error():
        status = _main(argv)
        if status != 0 and distributed.is_initialized() and distributed.get_world_size() > 1:
            if parallel.failure_is_shared():
                distributed.barrier()  # the failing process has said why: leave together
            else:
                distributed.get_process_group().abort(status)
    return status


def _main(argv: Sequence[str] | None) -> int:
    from convprop.distributed import DistributedError
    from convprop.training import TrainingError
    from convprop.training.parallel import PeerFailed, is_leader

    try:
        args = build_parser().parse_args(argv)
        # NumPy's overflow warnings would come before the one-line message that explains them
        # (a non-finite loss is reported by the training loop itself).
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return _run(args)
    except UsageError as error:
        return _fail(str(error))
    except PeerFailed as failure:  # another process reports the error
        return failure.status
    except (
        DataError,
        CheckpointError,
        RunDirectoryError,
        ConfigError,
        ValueError,  # OnnxError too
        TypeError,
        MissingExtraError,  # an ImportError: say what to install
        DistributedError,  # no mpi4py, no MPI launcher: say what is missing
    ) as error:
        return _fail(str(error))
    except BrokenPipeError:  # e.g. `convprop evaluate RUN | head`
        sys.stderr.close()
        return USAGE_ERROR
    except OSError as error:
        return _fail(describe_os_error(error))
    except TrainingError as error:
        print(f"convprop: training stopped: {error}", file=sys.stderr)
        return TRAINING_FAILED
    except KeyboardInterrupt:
        if is_leader():
            print(
                "convprop: interrupted; the last completed epoch's checkpoint is kept",
                file=sys.stderr,
            )
        return INTERRUPTED


def _fail(message: str) -> int:
    from convprop.distributed import error_line
    from convprop.training.parallel import failed_everywhere

    # ``rank R:`` in front when one of several processes failed; not when all did alike.
    line = f"convprop: error: {' '.join(message.split())}"
    print(line if failed_everywhere() else error_line(message), file=sys.stderr)
    return USAGE_ERROR


if __name__ == "__main__":
    sys.exit(main())
