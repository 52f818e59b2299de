"""``convprop train --distributed`` as a user runs it: ``mpirun -n 2`` against one process.

The same command on two processes and on one trains the same model (float64, augmentation
off: to 1e-10 relative), with the same test metrics; a run resumes on another number of
processes; a rank killed mid-epoch ends the job quickly, leaves the run loadable, and
``--resume`` completes it; the errors of a distributed run are one line.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from convprop.io.files import load_arrays
from tests.distributed.launch import convprop_lines, mpirun_command

LIMIT_SECONDS = 30
EXACT = ["--dtype", "float64", "--augment", "none", "--quiet"]
# 201 samples in batches of 16: the last batch of 9 splits into shares of 5 and 4.
LENET = ["--limit", "201", "--batch-size", "16", "--scheduler", "none", *EXACT]


def environment() -> dict[str, str]:
    """This environment with one thread per process (two ranks fill the two cores)."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


def one_process(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "convprop", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def mpirun(ranks: int = 2) -> list[str]:
    """``mpirun -n RANKS``, passing this test's PYTHONPATH on (the tree under test)."""
    command = mpirun_command(ranks)
    if "PYTHONPATH" in os.environ:
        command += ["-x", "PYTHONPATH"]
    return [*command, sys.executable, "-m", "convprop"]


def processes(*args: str, ranks: int = 2) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*mpirun(ranks), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=environment(),
        stdin=subprocess.DEVNULL,  # mpirun forwards its stdin to rank 0: give it none
    )


def succeeded(finished: subprocess.CompletedProcess[str]) -> None:
    assert finished.returncode == 0, f"stdout:\n{finished.stdout}\nstderr:\n{finished.stderr}"


def assert_same_weights(expected_run: Path, actual_run: Path, rtol: float = 1e-10) -> None:
    expected = load_arrays(expected_run / "model.safetensors")
    actual = load_arrays(actual_run / "model.safetensors")
    assert expected.keys() == actual.keys()
    for name, value in expected.items():
        if value.dtype.kind != "f":
            np.testing.assert_array_equal(actual[name], value, err_msg=name)
            continue
        scale = max(float(np.abs(value).max()), 1e-300)
        assert float(np.abs(actual[name] - value).max()) <= rtol * scale, name


def history(run: Path) -> list[dict[str, float]]:
    rows: list[dict[str, float]] = json.loads((run / "checkpoint.json").read_text())["history"]
    return rows


def assert_same_metrics(expected_run: Path, actual_run: Path) -> None:
    """Accuracies (and a segmenter's IoUs) exactly, losses to rounding: what the distributed
    run's sharded evaluation and reduced step figures recorded."""
    for expected, actual in zip(history(expected_run), history(actual_run), strict=True):
        for key in ("epoch", "train_accuracy", "test_accuracy", "lr", "extra"):
            assert actual[key] == expected[key], (key, expected, actual)
        for key in ("train_loss", "test_loss"):
            assert actual[key] == pytest.approx(expected[key], rel=1e-10), key


def evaluation(run: Path) -> str:
    """``convprop evaluate``'s report (accuracy, per-class figures, the confusion matrix),
    without its first line, which names the run's weights file."""
    finished = one_process("evaluate", str(run))
    succeeded(finished)
    assert finished.stdout.startswith("weights: ")
    return finished.stdout.split("\n", 1)[1]


def test_lenet5_on_two_processes_trains_as_one_and_resumes_on_another_count(
    tmp_path: Path,
) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    succeeded(one_process("train", *LENET, "--epochs", "3", "--out", str(one)))
    finished = processes("train", "--distributed", *LENET, "--epochs", "3", "--out", str(two))
    succeeded(finished)
    # Rank 0 alone speaks: each epoch's line once, the final line once.
    assert finished.stdout.count("epoch   3/3") == 1
    assert finished.stdout.count("final test accuracy") == 1
    assert_same_weights(one, two)
    assert_same_metrics(one, two)
    assert evaluation(one) == evaluation(two)
    # Augmented, two epochs on one process and the third on two: the same run, since each
    # process augments its share with the draws one process makes for the whole batch.
    augmented = [*LENET, "--augment", "shift,rotate,scale"]
    straight, switched = tmp_path / "straight", tmp_path / "switched"
    succeeded(one_process("train", *augmented, "--epochs", "3", "--out", str(straight)))
    succeeded(one_process("train", *augmented, "--epochs", "2", "--out", str(switched)))
    succeeded(
        processes("train", "--resume", str(switched), "--distributed", "--epochs", "3", "--quiet")
    )
    assert_same_weights(straight, switched)
    assert_same_metrics(straight, switched)


def test_resnet20_with_sync_bn_on_two_processes_trains_as_one(tmp_path: Path) -> None:
    # 73 samples in batches of 16: the last batch of 9 gives SyncBatchNorm shares of 5 and 4.
    flags = ["--model", "resnet20", "--sync-bn", "--limit", "73", "--batch-size", "16", *EXACT]
    one, two = tmp_path / "one", tmp_path / "two"
    succeeded(one_process("train", *flags, "--epochs", "2", "--out", str(one)))
    succeeded(processes("train", "--distributed", *flags, "--epochs", "2", "--out", str(two)))
    assert json.loads((two / "checkpoint.json").read_text())["config"]["sync_bn"] is True
    assert_same_weights(one, two)
    assert_same_metrics(one, two)
    assert evaluation(one) == evaluation(two)


def test_segmentation_on_two_processes_trains_as_one(tmp_path: Path) -> None:
    """Per-pixel figures: each share's loss weighted by its labelled pixels, the IoUs from
    the gathered test masks."""
    flags = ["--task", "segment", "--sync-bn", "--limit", "22", "--batch-size", "4", *EXACT]
    one, two = tmp_path / "one", tmp_path / "two"
    succeeded(one_process("train", *flags, "--epochs", "1", "--out", str(one)))
    succeeded(processes("train", "--distributed", *flags, "--epochs", "1", "--out", str(two)))
    assert_same_weights(one, two)
    assert_same_metrics(one, two)
    assert "test_mean_iou" in history(two)[0]["extra"]


def rank_pid(job: subprocess.Popen[str], out: Path, rank: int) -> int | None:
    """The pid of rank ``rank`` of the job training into ``out`` (from /proc: its command
    line names ``out``, its environment the rank), or None if it is not running yet."""
    marker = f"OMPI_COMM_WORLD_RANK={rank}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == job.pid:
            continue
        try:
            command = (entry / "cmdline").read_bytes().split(b"\0")
            if str(out).encode() not in command or b"convprop" not in command:
                continue
            if marker in (entry / "environ").read_bytes().split(b"\0"):
                return int(entry.name)
        except OSError:  # gone, or not ours
            continue
    return None


def wait_for_epoch(run: Path, epoch: int, job: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if json.loads((run / "checkpoint.json").read_text())["epoch"] >= epoch:
                return
        except (OSError, ValueError, KeyError):
            pass
        assert job.poll() is None, job.communicate()[1]
        time.sleep(0.02)
    raise AssertionError(f"the run did not commit epoch {epoch} in time")


def test_a_killed_rank_ends_the_job_and_resume_completes_the_run(tmp_path: Path) -> None:
    if not Path("/proc/self/environ").exists():
        pytest.skip("finds the rank to kill through /proc")
    flags = ["--limit", "601", "--batch-size", "16", "--scheduler", "none", "--epochs", "3"]
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    job = subprocess.Popen(
        [*mpirun(), "train", "--distributed", *flags, *EXACT, "--out", str(killed)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=environment(),
    )
    try:
        wait_for_epoch(killed, 1, job)
        time.sleep(0.3)  # into the second epoch
        victim = rank_pid(job, killed, 1)
        assert victim is not None, "rank 1 not found"
        os.kill(victim, signal.SIGKILL)
        started = time.monotonic()
        _, stderr = job.communicate(timeout=2 * LIMIT_SECONDS)
        seconds = time.monotonic() - started
    finally:
        if job.poll() is None:
            job.kill()
            job.communicate()
    assert job.returncode != 0, stderr
    assert seconds < LIMIT_SECONDS
    epoch = json.loads((killed / "checkpoint.json").read_text())["epoch"]
    assert 1 <= epoch < 3
    assert "accuracy" in evaluation(killed)  # the committed epoch loads
    succeeded(processes("train", "--resume", str(killed), "--distributed", "--quiet"))
    succeeded(processes("train", "--distributed", *flags, *EXACT, "--out", str(whole)))
    assert_same_weights(whole, killed)
    assert_same_metrics(whole, killed)


def test_distributed_without_a_launcher_is_one_line(tmp_path: Path) -> None:
    finished = one_process("train", "--distributed", "--out", str(tmp_path / "run"))
    assert finished.returncode == 2
    lines = finished.stderr.splitlines()
    assert len(lines) == 1 and "mpirun -n N" in lines[0], finished.stderr
    assert not (tmp_path / "run").exists()


def test_distributed_without_mpi4py_is_one_line(tmp_path: Path) -> None:
    """Launched (the launcher's variable set) but mpi4py missing: say what to install."""
    shadow = tmp_path / "shadow" / "mpi4py"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('No module named mpi4py')\n")
    path = os.pathsep.join([str(shadow.parent), os.environ.get("PYTHONPATH", "")])
    finished = subprocess.run(
        [sys.executable, "-m", "convprop", "train", "--distributed"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "PYTHONPATH": path, "PMIX_RANK": "0"},
    )
    assert finished.returncode == 2
    lines = finished.stderr.splitlines()
    assert lines == [
        "convprop: error: distributed training needs mpi4py and an MPI library: "
        "pip install 'convprop[mpi]'"
    ], finished.stderr


def test_distributed_errors_are_one_line(tmp_path: Path) -> None:
    run = tmp_path / "run"
    finished = processes(
        "train", "--distributed", "--batch-size", "15", "--limit", "40", "--out", str(run)
    )
    assert finished.returncode == 2
    assert convprop_lines(finished.stderr) == [
        "convprop: error: batch size 15 is not divisible by the number of processes 2: the "
        "batch size is the global batch, split evenly between the processes; choose a "
        "multiple of 2"
    ], finished.stderr
    assert "Traceback" not in finished.stderr and not run.exists()
    # Several processes without --distributed would each train the whole run.
    finished = processes("train", "--limit", "40", "--out", str(run))
    assert finished.returncode == 2
    assert {line for line in convprop_lines(finished.stderr)} == {
        "convprop: error: this is one of 2 processes started by an MPI launcher, but without "
        "--distributed each would train the whole run on its own; pass --distributed"
    }, finished.stderr
    assert not run.exists()
