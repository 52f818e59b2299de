"""``convprop explain conv|matrix|pool|network``: the command-line side of ``convprop.explain``.

``add_parser`` only builds argparse parsers (no sympy import, so ``convprop`` starts fast);
``run`` builds the explanation, prints it in the chosen format and writes the figure. Bad
configurations raise the engine's ``ValueError``/``TypeError`` (or argparse's usage errors),
which ``convprop.cli.main`` reports as one line with exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def _ints(text: str) -> int | tuple[int, ...]:
    """``2`` -> 2, ``2x1`` or ``2,1`` -> (2, 1); zero and negative values are left to the
    engine's checks (so ``--stride 0`` gets the engine's own message)."""
    try:
        values = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an int or sizes like 3x3, got {text!r}"
        ) from None
    return values[0] if len(values) == 1 else values


def _padding(text: str) -> int | tuple[int, ...] | str:
    if text in ("same", "valid"):
        return text
    try:
        return _ints(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expected an int, sizes like 1x2, 'same' or 'valid', got {text!r}"
        ) from None


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.replace(" ", ",").split(",") if v]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected numbers separated by commas, got {text!r}"
        ) from None


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--format",
        choices=("text", "markdown", "json"),
        default="text",
        help="text for the terminal (default), markdown with LaTeX, or json",
    )
    parser.add_argument(
        "--figure", type=Path, metavar="PATH.png", help="also draw the grids into this PNG file"
    )
    parser.add_argument(
        "--seed",
        type=_seed,
        default=0,
        help="seed of the random numbers of the verification (default 0)",
    )


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {text!r}")
    return value


def add_parser(subcommands: Any) -> None:
    """Add ``explain`` and its four subcommands to the ``convprop`` command's subparsers."""
    explain = subcommands.add_parser(
        "explain",
        help="the lecture notes' derivations, symbolically, for any configuration",
        description="The notes' derivations computed with sympy for the configuration you "
        "choose, checked against the engine.",
    )
    kinds = explain.add_subparsers(dest="explain_kind", required=True, parser_class=type(explain))

    for add in (_add_conv, _add_matrix, _add_pool, _add_network, _add_model):
        add(kinds)


def _add_conv(kinds: Any) -> None:
    """``explain conv``: a convolution's forward and backward, symbol by symbol."""
    conv = kinds.add_parser(
        "conv",
        help="forward and backward of a convolution, symbol by symbol",
        description="Every output as a sum of products of named inputs and weights, the "
        "gradients by differentiation, and the notes' identities proven by sympy.",
    )
    conv.add_argument(
        "--input", type=_ints, required=True, metavar="HxW", help="input size: 3x3 (2-D) or 4 (1-D)"
    )
    conv.add_argument(
        "--kernel", type=_ints, required=True, metavar="KxK", help="kernel size: 2x2, or 2"
    )
    conv.add_argument("--stride", type=_ints, default=1)
    conv.add_argument("--padding", type=_padding, default=0, help="int, 1x2, same or valid")
    conv.add_argument("--dilation", type=_ints, default=1)
    conv.add_argument("--in-channels", type=int, default=1)
    conv.add_argument("--out-channels", type=int, default=1)
    conv.add_argument("--batch", type=int, default=1, help="minibatch size")
    conv.add_argument("--groups", type=int, default=1)
    conv.add_argument(
        "--convention",
        choices=("correlation", "convolution"),
        default="correlation",
        help="correlation (PyTorch, default) or convolution (decks 000/001: the "
        "kernel rotated by 180 degrees)",
    )
    conv.add_argument("--no-bias", action="store_true", help="leave the bias out")
    _common(conv)


def _add_matrix(kinds: Any) -> None:
    """``explain matrix``: deck 002's matrix view of a convolution."""
    matrix = kinds.add_parser(
        "matrix",
        help="a convolution as a matrix on the flattened input (deck 002)",
        description="h = M x, dL/dx = M^T delta, dL/dw = Q^T delta, each proven by sympy.",
    )
    matrix.add_argument("--input", type=_ints, required=True, metavar="HxW")
    matrix.add_argument("--kernel", type=_ints, required=True, metavar="KxK")
    matrix.add_argument("--stride", type=_ints, default=1)
    matrix.add_argument("--padding", type=_padding, default=0, help="int, 1x2, same or valid")
    matrix.add_argument("--dilation", type=_ints, default=1)
    matrix.add_argument(
        "--convention", choices=("correlation", "convolution"), default="correlation"
    )
    _common(matrix)


def _add_pool(kinds: Any) -> None:
    """``explain pool``: max and mean pooling's routing of the gradient."""
    pool = kinds.add_parser(
        "pool",
        help="max or mean pooling on numbers: routing of the gradient",
        description="Which input each output came from, and where its gradient goes back "
        "(argmax with '+=' for max, 1/K^2 for mean).",
    )
    pool.add_argument("--mode", choices=("max", "mean"), required=True)
    pool.add_argument("--input", type=_ints, default=(4, 4), metavar="HxW")
    pool.add_argument("--kernel", type=_ints, default=2, metavar="K")
    pool.add_argument("--stride", type=_ints, default=None, help="default: the window size")
    pool.add_argument("--padding", type=_ints, default=0)
    pool.add_argument(
        "--values",
        type=_floats,
        default=None,
        help="the input's numbers, row by row, comma-separated (use "
        "--values=-1,2,... for a negative first value); default: a seeded "
        "shuffle of 1..N",
    )
    _common(pool)


def _add_network(kinds: Any) -> None:
    """``explain network``: deck 004's tiny CNN, layer by layer."""
    network = kinds.add_parser(
        "network",
        help="a tiny CNN layer by layer: forward values, deltas, one SGD step",
        description="conv -> activation -> max pool -> flatten -> linear -> softmax -> "
        "cross-entropy on a seeded input; the hand-derived deltas are checked "
        "against the engine's.",
    )
    network.add_argument("--activation", choices=("relu", "sigmoid", "tanh"), default="relu")
    network.add_argument("--lr", type=float, default=0.1, help="learning rate (default 0.1)")
    network.add_argument(
        "--target", type=int, default=None, help="the target class, 1..3 (default: seeded)"
    )
    _common(network)


def _add_model(kinds: Any) -> None:
    """``explain model``: the user's trained network on one image, layer by layer."""
    model = kinds.add_parser(
        "model",
        help="your trained network on one image: every layer's maps and gradients, checked",
        description="One forward and one backward pass of a run's network on an image, with the "
        "cross-entropy against a label (for a segmentation run a mask, the loss the mean over "
        "its labelled pixels): per layer its configuration and shape arithmetic, its "
        "maps, delta = dL/d(output), dL/d(input), dL/dw and dL/db, the notes' rule connecting "
        "them, and a check by finite differences and the chain rule.",
    )
    model.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a training run")
    source = model.add_mutually_exclusive_group(required=True)
    source.add_argument("--image", type=Path, help="an image file (as predict reads it)")
    source.add_argument("--index", type=int, help="the I-th sample of the run's test split")
    model.add_argument(
        "--label",
        help="the class to take the loss against (name or index; default: the true "
        "label when known, else the predicted class); not for segmentation runs (--mask)",
    )
    model.add_argument(
        "--mask",
        type=Path,
        metavar="MASK.png",
        help="segmentation runs, with --image: the true mask to take the loss against "
        "(8-bit class indices, 255 ignored; default: the predicted mask)",
    )
    model.add_argument("--weights", choices=("latest", "best"), default="latest")
    model.add_argument("--html", type=Path, metavar="PAGE.html", help="also write the page")
    model.add_argument(
        "--checks", type=int, default=2, help="finite differences per layer (default 2; 0: none)"
    )
    _common(model)


def build(args: argparse.Namespace) -> Any:
    """The explanation the parsed arguments ask for."""
    import convprop.explain as explain

    if args.explain_kind == "conv":
        return explain.conv(
            args.input,
            args.kernel,
            args.stride,
            args.padding,
            args.dilation,
            args.in_channels,
            args.out_channels,
            args.batch,
            args.groups,
            args.convention,
            not args.no_bias,
            args.seed,
        )
    if args.explain_kind == "matrix":
        return explain.matrix(
            args.input,
            args.kernel,
            args.stride,
            args.padding,
            args.dilation,
            args.convention,
            args.seed,
        )
    if args.explain_kind == "pool":
        return explain.pool(
            args.mode, args.input, args.kernel, args.stride, args.padding, args.values, args.seed
        )
    if args.explain_kind == "model":
        from convprop.explain.model import explain_run

        return explain_run(
            args.run_dir,
            args.image,
            args.index,
            args.label,
            args.weights,
            args.checks,
            args.seed,
            mask=args.mask,
        )
    if args.explain_kind == "network":
        target = None if args.target is None else args.target - 1
        if target is not None and not 0 <= target < 3:
            raise ValueError(f"explain network: --target must be a class 1..3, got {args.target}")
        return explain.network(args.seed, args.activation, args.lr, target=target)
    raise ValueError(f"explain: unknown kind {args.explain_kind!r}")


def run(args: argparse.Namespace) -> int:
    """Print the explanation (and write its figure); returns the exit status."""
    if args.figure is not None:
        if args.figure.suffix.lower() != ".png":
            raise ValueError(f"explain: --figure must name a .png file, got {str(args.figure)!r}")
        if not args.figure.parent.is_dir():
            raise ValueError(
                f"explain: --figure {args.figure}: no such directory {str(args.figure.parent)!r}"
            )
    page = getattr(args, "html", None)
    if page is not None:
        if page.suffix.lower() not in (".html", ".htm"):
            raise ValueError(f"explain: --html must name a .html file, got {str(page)!r}")
        if not page.parent.is_dir():
            raise ValueError(f"explain: --html {page}: no such directory {str(page.parent)!r}")
    explanation = build(args)
    sys.stdout.write(explanation.render(args.format))
    if args.figure is not None:
        path = explanation.figure(args.figure)
        print(f"figure written to {path}", file=sys.stderr)
    if page is not None:
        from convprop.io.files import atomic_write_bytes

        atomic_write_bytes(page, explanation.html().encode())
        print(f"page written to {page}", file=sys.stderr)
    return 0
