"""Training on image folders larger than memory: ``python -m benchmarks.streaming``.

Generates class folders of 64x64 RGB PNG images at three sizes (20,000, 40,000 and 80,000
images by default: their float32 arrays would take 0.98, 2.0 and 3.9 GB), trains LeNet-5 on
each for one epoch with ``convprop train --stream`` under a memory budget of 1 GB
(``CONVPROP_MEMORY_BUDGET=1G``: the memory the loader may use; loading even the smallest
folder into memory would take some 4.4 GB), and measures, for every run, the peak memory of the
whole process tree (the training process and its decoding workers, sampled every 50 ms from
``/proc``: the sum of the resident sets, and of the proportional sets, which count a page
shared by several processes once), the largest single process (``ru_maxrss``), the time the
setup takes (listing, headers, the pass that computes the fingerprint and statistics), the
epoch's time (training and the test split's evaluation) and the training images per second.
With ``--in-memory`` it also trains on the smaller folder without ``--stream`` and checks
that the weights are bitwise the same as the streamed run's.

The folders are made once, the smaller one of hard links into the larger one, under
``--dir`` (default ``/work/tmp-streaming``), and deleted at the end unless ``--keep``.
Linux only (``/proc``).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

CLASSES = 10
IMAGE_SIZE = 64


def _write_images(job: tuple[str, int, int, int]) -> int:
    """Images ``start``..``stop`` of one class: a colour of the class, a random rectangle and
    mild noise (cheap to write, compressing like a photograph would not, ~10 KB each)."""
    from PIL import Image

    folder, label, start, stop = job
    rng = np.random.default_rng([label, start])
    base = np.array([(37 * label) % 256, (91 * label) % 256, (53 * label + 120) % 256])
    for index in range(start, stop):
        image = np.empty((IMAGE_SIZE, IMAGE_SIZE, 3), np.float32)
        image[:] = base
        top, left = rng.integers(0, IMAGE_SIZE - 16, 2)
        image[top : top + 16, left : left + 16] = 255 - base
        image += rng.normal(0, 6, image.shape)
        pixels = np.clip(image, 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(Path(folder) / f"{index:06d}.png", compress_level=1)
    return stop - start


def generate(root: Path, count: int) -> float:
    """A folder of ``count`` images (``CLASSES`` classes of equal size), written by two
    processes; returns the seconds it took."""
    started = time.perf_counter()
    per_class = count // CLASSES
    jobs = []
    for label in range(CLASSES):
        folder = root / f"class{label}"
        folder.mkdir(parents=True, exist_ok=True)
        jobs += [
            (str(folder), label, start, min(start + 1000, per_class))
            for start in range(0, per_class, 1000)
        ]
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        pool.map(_write_images, jobs)
    return time.perf_counter() - started


def linked_subset(source: Path, target: Path, count: int) -> None:
    """A folder of the first ``count / CLASSES`` images of each class of ``source``, as hard
    links (no more disk)."""
    for class_dir in sorted(source.iterdir()):
        (target / class_dir.name).mkdir(parents=True, exist_ok=True)
        for name in sorted(os.listdir(class_dir))[: count // CLASSES]:
            os.link(class_dir / name, target / class_dir.name / name)


def _tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    parent = int(stat.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            parents.setdefault(parent, []).append(int(entry))
    found, frontier = [pid], [pid]
    while frontier:
        frontier = [child for p in frontier for child in parents.get(p, [])]
        found += frontier
    return found


def _memory_kb(pid: int) -> tuple[int, int]:
    """(resident, proportional) set size of one process, in KB (0, 0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as rollup:
            values = dict(line.split(":", 1) for line in rollup if ":" in line)
        return int(values["Rss"].split()[0]), int(values["Pss"].split()[0])
    except (OSError, KeyError, ValueError):
        return 0, 0


def measure(command: list[str], env: dict[str, str]) -> dict:
    """Run ``command``, sampling its process tree's memory; returns the peaks, the time of
    each phase and the epoch's line."""
    import tempfile
    import threading

    started = time.perf_counter()
    lines: list[tuple[float, str]] = []
    with tempfile.TemporaryFile("w+") as errors:
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=errors, text=True, env=env
        )

        def read() -> None:
            for line in process.stdout:  # type: ignore[union-attr]
                lines.append((time.perf_counter() - started, line.rstrip("\n")))

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        peak_rss = peak_pss = 0
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                process.returncode = os.waitstatus_to_exitcode(status)
                break
            rss = pss = 0
            for member in _tree(process.pid):
                one_rss, one_pss = _memory_kb(member)
                rss, pss = rss + one_rss, pss + one_pss
            peak_rss, peak_pss = max(peak_rss, rss), max(peak_pss, pss)
            time.sleep(0.05)
        reader.join()
        errors.seek(0)
        if process.returncode:
            raise SystemExit(f"{' '.join(command)} failed ({process.returncode}): {errors.read()}")
    wall = time.perf_counter() - started
    seen, epoch_line = next((t, line) for t, line in lines if line.startswith("epoch"))
    epoch_seconds = float(re.findall(r"([\d.]+)s$", epoch_line)[0])
    return {
        "wall_s": wall,
        "setup_s": seen - epoch_seconds,
        "epoch_s": epoch_seconds,
        "peak_rss_mb": peak_rss / 1024,
        "peak_pss_mb": peak_pss / 1024,
        "max_process_rss_mb": usage.ru_maxrss / 1024,  # the largest single process
        "epoch_line": epoch_line,
    }


def weights_digest(run: Path) -> str:
    import hashlib

    from convprop.io.files import load_arrays

    arrays = load_arrays(run / "model.safetensors")
    digest = hashlib.sha256()
    for name in sorted(arrays):
        digest.update(name.encode() + arrays[name].tobytes())
    return digest.hexdigest()[:16]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", default="20000,40000,80000", help="image counts, comma-separated"
    )
    parser.add_argument("--budget", default="1G", help="CONVPROP_MEMORY_BUDGET of --stream runs")
    parser.add_argument("--workers", default="0,2", help="--num-workers values to run")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--in-memory", action="store_true", help="also the smallest, unstreamed")
    parser.add_argument("--dir", type=Path, default=Path("/work/tmp-streaming"))
    parser.add_argument("--keep", action="store_true", help="keep the generated folders")
    parser.add_argument("--json", type=Path, help="write the measurements here")
    args = parser.parse_args()
    sizes = sorted(int(n) for n in args.sizes.split(","))
    workers = [int(n) for n in args.workers.split(",")]
    free = shutil.disk_usage(args.dir.parent).free
    needed = max(sizes) * 12 * 1024  # ~10 KB per image, and margin
    if free < 2 * needed:
        raise SystemExit(
            f"{args.dir.parent}: {free / 2**30:.1f} GB free, want {2 * needed / 2**30:.1f}"
        )
    args.dir.mkdir(parents=True, exist_ok=True)
    results = []
    try:
        largest = args.dir / f"images-{sizes[-1]}"
        if not largest.exists():
            seconds = generate(largest, sizes[-1])
            print(f"generated {sizes[-1]} images in {seconds:.0f} s", flush=True)
        for size in sizes[:-1]:
            if not (args.dir / f"images-{size}").exists():
                linked_subset(largest, args.dir / f"images-{size}", size)
        disk = sum(f.stat().st_size for f in largest.rglob("*.png"))
        print(f"{sizes[-1]} images take {disk / 2**20:.0f} MB on disk", flush=True)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        runs = [(size, count, True) for size in sizes for count in workers]
        if args.in_memory:
            runs.append((sizes[0], workers[0], False))
        for size, count, stream in runs:
            out = args.dir / f"run-{size}-{count}-{'stream' if stream else 'memory'}"
            shutil.rmtree(out, ignore_errors=True)
            data = str(args.dir / f"images-{size}")
            command = [
                sys.executable, "-m", "convprop", "train", "--data", data,
                "--model", "lenet5", "--epochs", "1", "--batch-size", str(args.batch_size),
                "--augment", "none", "--quiet", "--out", str(out), "--num-workers", str(count),
            ] + (["--stream"] if stream else [])  # fmt: skip
            # The in-memory run must not stream: its budget is ample.
            budget = args.budget if stream else "64G"
            result = measure(command, {**env, "CONVPROP_MEMORY_BUDGET": budget})
            train_images = size - round(size * 0.2)
            result.update(
                images=size,
                decoded_gb=size * 3 * IMAGE_SIZE * IMAGE_SIZE * 4 / 1e9,
                workers=count,
                stream=stream,
                images_per_s=train_images / result["epoch_s"],
                weights=weights_digest(out),
                budget=budget,
                command=" ".join(command[1:]),
            )
            results.append(result)
            print(json.dumps(result), flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(args.dir, ignore_errors=True)
    print()
    print(
        "| images | float32 array | --num-workers | path | peak RSS, all processes "
        "| peak PSS, all processes | largest process | setup | epoch | train images/s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['images']:,} | {r['decoded_gb']:.2f} GB | {r['workers']} | "
            f"{'--stream' if r['stream'] else 'in memory'} | {r['peak_rss_mb']:.0f} MB | "
            f"{r['peak_pss_mb']:.0f} MB | {r['max_process_rss_mb']:.0f} MB | "
            f"{r['setup_s']:.1f} s | {r['epoch_s']:.1f} s | {r['images_per_s']:.0f} |"
        )
    streamed = {r["weights"] for r in results if r["images"] == sizes[0]}
    print(f"\nweights of the {sizes[0]:,}-image runs: {', '.join(sorted(streamed))}")
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
