"""The ``convprop`` command: train, evaluate, predict, summary.

A user error (bad flag, bad file, bad run directory) prints one line to stderr and exits with
status 2, never a traceback; a run stopped by a non-finite loss exits with status 1.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from collections.abc import Sequence
from dataclasses import fields
from datetime import datetime
from pathlib import Path
from typing import Any

from convprop.data import AUGMENTATIONS, DataError
from convprop.io.files import CheckpointError
from convprop.train import (
    MODEL_NAMES,
    OPTIMIZER_NAMES,
    SCHEDULER_NAMES,
    RunDirectoryError,
    TrainConfig,
    TrainingError,
)

USAGE_ERROR = 2
TRAINING_FAILED = 1


class UsageError(Exception):
    """Raised for bad command-line input; reported as one line with exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


def _size(text: str) -> list[int]:
    """``28x28`` or ``28,28`` -> [28, 28]."""
    try:
        values = [int(v) for v in text.replace("x", ",").split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected sizes like 28x28, got {text!r}") from None
    if not values or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"sizes must be positive, got {text!r}")
    return values


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="convprop", description="CNNs with hand-derived backpropagation, on NumPy."
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    train = commands.add_parser("train", help="train a model (LeNet-5 on bundled MNIST by default)")
    defaults = TrainConfig()
    train.add_argument("--config", type=Path, help="TOML file whose keys are these flags' names")
    train.add_argument("--model", choices=MODEL_NAMES, help=f"default {defaults.model}")
    train.add_argument("--data", help="mnist-5k, a .npz, an IDX directory or an image folder")
    train.add_argument("--test-data", help="separate test data (else split off with the seed)")
    train.add_argument("--epochs", type=int, help=f"default {defaults.epochs}")
    train.add_argument("--batch-size", type=int, help=f"default {defaults.batch_size}")
    train.add_argument("--optimizer", choices=OPTIMIZER_NAMES, help=f"default {defaults.optimizer}")
    train.add_argument(
        "--lr", type=float, help="(peak) learning rate (default 0.05 sgd, 0.003 adam/adamw)"
    )
    train.add_argument("--momentum", type=float, help=f"SGD momentum, default {defaults.momentum}")
    train.add_argument("--weight-decay", type=float, help="default 0 (adamw: 0.01)")
    train.add_argument(
        "--scheduler",
        choices=SCHEDULER_NAMES,
        help=f"learning-rate schedule (default {defaults.scheduler})",
    )
    train.add_argument(
        "--augment",
        help=f"image augmentations: comma list of "
        f"{', '.join(AUGMENTATIONS)}, all or none "
        f"(default {','.join(defaults.augment)})",
    )
    train.add_argument("--seed", type=int, help=f"default {defaults.seed}")
    train.add_argument("--dtype", choices=("float32", "float64"), help="default float32")
    train.add_argument("--test-fraction", type=float, help="share split off for testing (0.2)")
    train.add_argument("--limit", type=int, help="train on this many samples only (quick runs)")
    train.add_argument("--resize", type=_size, help="resize images to HxW (image folders)")
    train.add_argument(
        "--out", type=Path, help="run directory (default: a new runs/YYYYmmdd-HHMMSS)"
    )
    train.add_argument(
        "--resume",
        type=Path,
        metavar="RUN_DIR",
        help="continue a run (with --epochs, to a new total)",
    )
    train.add_argument("--overwrite", action="store_true", help="replace an existing run")
    train.add_argument("--quiet", action="store_true", help="no progress bars")

    evaluate = commands.add_parser("evaluate", help="accuracy, precision/recall, confusion matrix")
    evaluate.add_argument("run_dir", type=Path)
    evaluate.add_argument("--data", help="evaluate on this data instead of the run's test split")

    predict = commands.add_parser("predict", help="top-k classes for image files")
    predict.add_argument("run_dir", type=Path)
    predict.add_argument("images", nargs="+", type=Path)
    predict.add_argument("--top-k", type=int, default=3)

    summary = commands.add_parser("summary", help="layer table of a model")
    summary.add_argument("--model", choices=MODEL_NAMES, default="lenet5")
    summary.add_argument("--input-shape", type=_size, help="C,H,W (or C,L for tdnn)")
    summary.add_argument("--num-classes", type=int, default=10)

    from convprop.explain.cli import add_parser as add_explain_parser

    add_explain_parser(commands)
    return parser


def _new_run_dir(parent: Path) -> Path:
    """A run directory that does not exist yet, named by the time (so running the README's
    ``convprop train`` twice keeps both runs instead of refusing the second)."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    candidate, suffix = parent / stamp, 2
    while candidate.exists():
        candidate, suffix = parent / f"{stamp}-{suffix}", suffix + 1
    return candidate


def _train_config(args: argparse.Namespace) -> TrainConfig:
    values: dict[str, Any] = {}
    if args.config is not None:
        try:
            loaded = tomllib.loads(args.config.read_text())
        except FileNotFoundError:
            raise UsageError(f"{args.config}: no such config file") from None
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
            raise UsageError(f"{args.config}: not a readable TOML file ({error})") from None
        values.update({key.replace("-", "_"): value for key, value in loaded.items()})
    for field in fields(TrainConfig):
        given = getattr(args, field.name, None)
        if given is not None:
            values[field.name] = given
    if isinstance(values.get("augment"), str):
        values["augment"] = [
            v.strip() for v in values["augment"].split(",") if v.strip() and v.strip() != "none"
        ]
    try:
        return TrainConfig.from_dict(values)
    except (TypeError, ValueError) as error:
        raise UsageError(f"{args.config or 'config'}: {error}") from None


def _run(args: argparse.Namespace) -> int:
    from convprop import train as training

    if args.command == "train":
        if args.resume is not None:
            result = training.fit(
                TrainConfig(), args.resume, resume=True, progress=not args.quiet, epochs=args.epochs
            )
        else:
            config = _train_config(args)
            result = training.fit(
                config,
                args.out if args.out is not None else _new_run_dir(Path("runs")),
                overwrite=args.overwrite,
                progress=not args.quiet,
            )
        print(f"final test accuracy {result.test_accuracy:.4f}; run saved in {result.run_dir}")
        return 0
    if args.command == "evaluate":
        print(training.evaluate(args.run_dir, args.data).report())
        return 0
    if args.command == "predict":
        for path, ranking in zip(
            args.images, training.predict(args.run_dir, args.images, args.top_k), strict=True
        ):
            print(f"{path}: " + ", ".join(f"{name} {p:.4f}" for name, p in ranking))
        return 0
    if args.command == "explain":
        from convprop.explain.cli import run as run_explain

        return run_explain(args)
    if args.command == "summary":
        from convprop.summary import summary

        shape = args.input_shape or ([40, 100] if args.model == "tdnn" else [1, 28, 28])
        model = training.build_model(args.model, shape, args.num_classes)
        print(summary(model, [1, *shape]))
        return 0
    raise UsageError(f"unknown command {args.command!r}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    try:
        args = build_parser().parse_args(argv)
        return _run(args)
    except UsageError as error:
        print(f"convprop: error: {error}", file=sys.stderr)
        return USAGE_ERROR
    except (
        DataError,
        CheckpointError,
        RunDirectoryError,
        ValueError,
        TypeError,
        FileNotFoundError,
        PermissionError,
        IsADirectoryError,
        NotADirectoryError,
    ) as error:
        print(f"convprop: error: {error}", file=sys.stderr)
        return USAGE_ERROR
    except TrainingError as error:
        print(f"convprop: training stopped: {error}", file=sys.stderr)
        return TRAINING_FAILED
    except KeyboardInterrupt:
        print(
            "convprop: interrupted; the last completed epoch's checkpoint is kept", file=sys.stderr
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
