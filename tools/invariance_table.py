"""Measure the table of docs/invariance.md: LeNet-5 trained with each augmentation, evaluated
clean and under each perturbation (``convprop evaluate --perturb``).

    python tools/invariance_table.py                                # train, evaluate, print
    python tools/invariance_table.py --markdown docs/invariance.md  # and rewrite the page's table

Every run is the default ``convprop train`` (LeNet-5, bundled mnist-5k, 20 epochs, Adam,
one-cycle) with only ``--augment`` and ``--seed`` given, trained one at a time in a
subprocess with the command printed on stderr, by the same convprop this script imports. A
run already complete in ``--runs`` with the same settings is reused, one interrupted part-way
is resumed (to bitwise the weights an uninterrupted run reaches), and anything else in its
directory is overwritten; so a second call only evaluates. Each run is evaluated with its
latest weights (the last epoch) on its own test split. The table is the mean test accuracy
over the seeds.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np

import convprop
from convprop.io.files import CheckpointError
from convprop.training import TrainConfig, evaluate, read_checkpoint

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_AUGMENT = ",".join(TrainConfig().augment)
# The --augment of each row; None: the flag is not given, so the run has the default.
AUGMENTS: dict[str, str | None] = {
    "none": "none",
    "shift": "shift",
    "rotate": "rotate",
    "scale": "scale",
    "elastic": "elastic",
    f"default ({DEFAULT_AUGMENT})": None,
}
PERTURB = [
    "shift=1",
    "shift=2",
    "shift=4",
    "rotate=10",
    "rotate=20",
    "scale=0.9,1.1",
    "scale=0.8,1.2",
    "elastic",
]
START, END = "<!-- invariance:start -->", "<!-- invariance:end -->"

Accuracies = dict[tuple[str, int], list[float]]


def run_name(row: str, seed: int) -> str:
    """The run's directory name in ``--runs``: ``none-seed0``, ``default-seed1``."""
    return f"{row.split()[0]}-seed{seed}"


def train_flags(augment: str | None, seed: int, out: Path) -> list[str]:
    """The ``convprop train`` flags of one run (``--augment`` only when not the default)."""
    flags = ["--seed", str(seed), "--out", str(out), "--quiet"]
    return flags + ([] if augment is None else ["--augment", augment])


def expected_config(augment: str | None, seed: int) -> TrainConfig:
    """The configuration ``train_flags`` gives: the defaults, the seed and the augmentation."""
    if augment is None:
        return TrainConfig(seed=seed)
    return TrainConfig(seed=seed, augment=[] if augment == "none" else augment.split(","))


def run_state(run: Path, augment: str | None, seed: int) -> str:
    """``complete``, ``partial`` (these settings, fewer epochs than asked) or ``other``
    (missing, never committed an epoch, unreadable, or trained with other settings)."""
    if not (run / "checkpoint.json").exists():
        return "other"
    try:
        checkpoint = read_checkpoint(run)
    except CheckpointError:
        return "other"
    if checkpoint.config != expected_config(augment, seed):
        return "other"
    return "complete" if checkpoint.epoch == checkpoint.config.epochs else "partial"


def _child_environment() -> dict[str, str]:
    """This process's environment, with the convprop it imports first on the child's path."""
    source = str(Path(convprop.__file__).resolve().parent.parent)
    environment = dict(os.environ)
    paths = [source, *filter(None, environment.get("PYTHONPATH", "").split(os.pathsep))]
    environment["PYTHONPATH"] = os.pathsep.join(paths)
    return environment


def train_all(runs: Path, seeds: list[int]) -> dict[tuple[str, int], Path]:
    """Train, resume or reuse one run per row and seed, one at a time."""
    done = {}
    for row, augment in AUGMENTS.items():
        for seed in seeds:
            out = runs / run_name(row, seed)
            state = run_state(out, augment, seed)
            if state != "complete":
                if state == "partial":
                    flags = ["--resume", str(out), "--quiet"]
                else:
                    flags = train_flags(augment, seed, out)
                    flags += ["--overwrite"] if out.exists() else []
                command = [sys.executable, "-m", "convprop", "train", *flags]
                print("$", shlex.join(command), file=sys.stderr, flush=True)
                began = time.perf_counter()
                # The child's epoch lines go to stderr: stdout is the table's.
                subprocess.run(command, check=True, env=_child_environment(), stdout=sys.stderr)
                seconds = time.perf_counter() - began
                print(f"{out}: trained in {seconds:.1f} s", file=sys.stderr, flush=True)
            done[row, seed] = out
    return done


def measure(done: dict[tuple[str, int], Path]) -> tuple[Accuracies, int]:
    """Clean accuracy, then the accuracy under each of ``PERTURB``, of every run; and the
    size of the smallest test split."""
    accuracies: Accuracies = {}
    test_size = 0
    for key, run in done.items():
        began = time.perf_counter()
        evaluation = evaluate(run, perturb=PERTURB)
        accuracies[key] = [evaluation.accuracy] + [row.accuracy for row in evaluation.perturbed]
        samples = int(evaluation.confusion.sum())
        test_size = samples if not test_size else min(test_size, samples)
        seconds = time.perf_counter() - began
        print(
            f"{run}: " + " ".join(f"{a:.4f}" for a in accuracies[key]) + f" ({seconds:.1f} s)",
            file=sys.stderr,
            flush=True,
        )
    return accuracies, test_size


def markdown_table(accuracies: Accuracies, seeds: list[int], test_size: int) -> str:
    """Mean accuracy (%) over the seeds, the best of each column in bold, and a note saying
    how far apart the seeds are."""
    rows = list(AUGMENTS)
    per_seed = np.array([[accuracies[row, s] for s in seeds] for row in rows])  # row, seed, col
    means = per_seed.mean(axis=1)
    spread = float((per_seed.max(axis=1) - per_seed.min(axis=1)).max())
    columns = ["clean", *PERTURB]
    lines = [
        "| trained with `--augment` | " + " | ".join(f"`{c}`" for c in columns) + " |",
        "| --- |" + " ---: |" * len(columns),
    ]
    for index, row in enumerate(rows):
        cells = []
        for column in range(len(columns)):
            text = f"{100 * means[index, column]:.1f}"
            best = np.isclose(means[index, column], means[:, column].max())
            cells.append(f"**{text}**" if best else text)
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    if len(seeds) == 1:
        seeds_text = f"seed {seeds[0]} alone (one run per row: no estimate of the spread)"
    else:
        seeds_text = (
            f"mean of seeds {', '.join(str(s) for s in seeds)}; the seeds' accuracies differ "
            f"by at most {100 * spread:.1f} points in any cell"
        )
    note = (
        f"Test accuracy in %, {seeds_text}. Each seed has its own stratified test split of "
        f"{test_size} images; every run is evaluated with its last epoch's weights."
    )
    lines += ["", textwrap.fill(note, width=100)]
    return "\n".join(lines)


def check_page(page: Path) -> str:
    """The page's text, if it holds the markers to put the table between (checked before
    anything is trained)."""
    try:
        text = page.read_text(encoding="utf-8")
    except OSError as error:
        raise SystemExit(f"--markdown {page}: cannot read it ({error.strerror})") from None
    if START not in text or END not in text or text.index(START) > text.index(END):
        raise SystemExit(f"--markdown {page}: has no {START} ... {END} markers to write between")
    return text


def rewrite(page: Path, table: str) -> None:
    """Replace what is between the page's markers with ``table``."""
    before, rest = check_page(page).split(START, 1)
    _, after = rest.split(END, 1)
    page.write_text(f"{before}{START}\n{table}\n{END}{after}", encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--runs", type=Path, default=ROOT / "runs" / "invariance", help="where the runs live"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="default 0 1")
    parser.add_argument("--markdown", type=Path, help="a page whose table to rewrite")
    args = parser.parse_args()
    if len(set(args.seeds)) != len(args.seeds) or min(args.seeds) < 0:
        parser.error(f"--seeds must be distinct integers >= 0, got {args.seeds}")
    if args.markdown is not None:
        check_page(args.markdown)
    print(f"convprop {convprop.__version__} from {Path(convprop.__file__).parent}", file=sys.stderr)
    began = time.perf_counter()
    accuracies, test_size = measure(train_all(args.runs, args.seeds))
    table = markdown_table(accuracies, args.seeds, test_size)
    print(table)
    if args.markdown is not None:
        rewrite(args.markdown, table)
    print(f"total {time.perf_counter() - began:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
