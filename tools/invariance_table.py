"""Measure the table of docs/invariance.md: LeNet-5 trained with each augmentation, evaluated
clean and under each perturbation (``convprop evaluate --perturb``).

    python tools/invariance_table.py                                # train, evaluate, print
    python tools/invariance_table.py --markdown docs/invariance.md  # and rewrite the page's table

Every run is the default ``convprop train`` (LeNet-5, bundled mnist-5k, 20 epochs, Adam,
one-cycle) with only ``--augment`` and ``--seed`` given, trained in a subprocess exactly as
the command prints it. A run already complete in ``--runs`` with the same settings is reused,
so a second call only evaluates. The table is the mean test accuracy over the seeds.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np

from convprop.training import TrainConfig, evaluate, read_checkpoint

ROOT = Path(__file__).resolve().parent.parent
# The --augment of each row; None: not given, the default (shift,rotate,scale).
AUGMENTS: dict[str, str | None] = {
    "none": "none",
    "shift": "shift",
    "rotate": "rotate",
    "scale": "scale",
    "elastic": "elastic",
    "default (shift,rotate,scale)": None,
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


def train_command(augment: str | None, seed: int, out: Path) -> list[str]:
    command = ["convprop", "train", "--seed", str(seed), "--out", str(out), "--quiet"]
    return command + ([] if augment is None else ["--augment", augment])


def _expected_config(augment: str | None, seed: int) -> TrainConfig:
    if augment is None:
        return TrainConfig(seed=seed)
    return TrainConfig(seed=seed, augment=[] if augment == "none" else augment.split(","))


def _complete(run: Path, augment: str | None, seed: int) -> bool:
    """The run exists, finished its epochs, and was trained with exactly these settings."""
    if not (run / "checkpoint.json").exists():
        return False
    checkpoint = read_checkpoint(run)
    config = checkpoint.config
    return config == _expected_config(augment, seed) and checkpoint.epoch == config.epochs


def train_all(runs: Path, seeds: list[int]) -> dict[tuple[str, int], Path]:
    """Train (or reuse) one run per row and seed, one at a time (the machine has 2 cores)."""
    done = {}
    for row, augment in AUGMENTS.items():
        for seed in seeds:
            out = runs / f"{row.split()[0]}-seed{seed}"
            if not _complete(out, augment, seed):
                command = train_command(augment, seed, out)
                print("$", shlex.join(command), file=sys.stderr, flush=True)
                overwrite = ["--overwrite"] if out.exists() else []
                subprocess.run(
                    [sys.executable, "-m", *command[:1], *command[1:], *overwrite], check=True
                )
            done[row, seed] = out
    return done


def measure(done: dict[tuple[str, int], Path]) -> dict[tuple[str, int], list[float]]:
    """Clean accuracy, then the accuracy under each of ``PERTURB``, of every run."""
    accuracies = {}
    for key, run in done.items():
        evaluation = evaluate(run, perturb=PERTURB)
        accuracies[key] = [evaluation.accuracy] + [row.accuracy for row in evaluation.perturbed]
        print(f"{run}: " + " ".join(f"{a:.4f}" for a in accuracies[key]), file=sys.stderr)
    return accuracies


def markdown_table(accuracies: dict[tuple[str, int], list[float]], seeds: list[int]) -> str:
    """Mean accuracy (%) over the seeds; the best of each column in bold."""
    rows = list(AUGMENTS)
    means = np.array([np.mean([accuracies[row, s] for s in seeds], axis=0) for row in rows])
    spread = max(
        float(np.std([accuracies[row, s] for s in seeds], axis=0, ddof=1).max())
        if len(seeds) > 1
        else 0.0
        for row in rows
    )
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
    seeds_text = ", ".join(str(s) for s in seeds)
    lines += [
        "",
        f"Test accuracy in %, mean of seeds {seeds_text} (each seed its own stratified test "
        f"split of 1000 images); the largest standard deviation between seeds in any cell is "
        f"{100 * spread:.1f} points.",
    ]
    return "\n".join(lines)


def rewrite(page: Path, table: str) -> None:
    text = page.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"{page}: has no {START} ... {END} markers to put the table between")
    before, rest = text.split(START, 1)
    _, after = rest.split(END, 1)
    page.write_text(f"{before}{START}\n{table}\n{END}{after}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "invariance")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--markdown", type=Path, help="a page whose table to rewrite")
    args = parser.parse_args()
    accuracies = measure(train_all(args.runs, args.seeds))
    table = markdown_table(accuracies, args.seeds)
    print(table)
    if args.markdown is not None:
        rewrite(args.markdown, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
