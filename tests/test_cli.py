"""The command line end to end: train, resume after SIGKILL, evaluate, predict, summary, errors."""

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
from PIL import Image

from convprop.cli import main
from convprop.io.files import load_arrays

QUICK = ["--limit", "300", "--batch-size", "50", "--quiet", "--seed", "5"]


def run_cli(
    *args: str, cwd: Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "convprop", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
    )


def test_train_evaluate_predict_through_the_cli(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    assert main(["train", "--epochs", "2", "--out", str(run), "--scheduler", "none", *QUICK]) == 0
    out = capsys.readouterr().out
    assert "epoch   2/2" in out and f"run saved in {run}" in out
    assert main(["train", "--resume", str(run), "--epochs", "3", "--quiet"]) == 0
    assert json.loads((run / "checkpoint.json").read_text())["epoch"] == 3
    capsys.readouterr()
    assert main(["evaluate", str(run)]) == 0
    report = capsys.readouterr().out
    assert report.startswith(
        f"weights: {run / 'model.safetensors'} (epoch 3, the latest)\naccuracy "
    )
    assert "confusion matrix" in report
    image = tmp_path / "digit.png"
    Image.fromarray(np.full((28, 28), 128, np.uint8)).save(image)
    assert main(["predict", str(run), str(image), "--top-k", "2"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"{image}: ") and line.count(",") == 1


def test_default_run_directories_are_new_each_time(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    for _ in range(2):
        assert main(["train", "--epochs", "1", *QUICK]) == 0
    runs = sorted((tmp_path / "runs").iterdir())
    assert len(runs) == 2 and all((run / "checkpoint.json").exists() for run in runs)
    assert f"run saved in {runs[-1].relative_to(tmp_path)}" in capsys.readouterr().out


def test_onecycle_run_cannot_be_stretched_on_resume(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    assert main(["train", "--epochs", "1", "--out", str(run), *QUICK]) == 0
    assert main(["train", "--resume", str(run), "--epochs", "2"]) == 2
    assert "onecycle schedule was built for 1 epochs" in capsys.readouterr().err


def test_config_file_and_flags(tmp_path: Path) -> None:
    config = tmp_path / "run.toml"
    config.write_text('epochs = 1\nbatch-size = 60\nlimit = 200\noptimizer = "sgd"\nlr = 0.02\n')
    run = tmp_path / "run"
    assert (
        main(["train", "--config", str(config), "--out", str(run), "--quiet", "--lr", "0.03"]) == 0
    )
    saved = json.loads((run / "checkpoint.json").read_text())["config"]
    assert saved["batch_size"] == 60 and saved["optimizer"] == "sgd" and saved["lr"] == 0.03


def test_summary_command(capsys) -> None:
    assert main(["summary", "--model", "lenet5"]) == 0
    table = capsys.readouterr().out
    assert "features.0 (Conv2d)" in table and "[1, 6, 28, 28]" in table
    assert "Total params: 61,706" in table


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--data", "missing.npz"], "missing.npz: no such file or directory"),
        (["train", "--model", "vgg"], "--model must be one of lenet5, "),
        (["train", "--optimizer", "lbfgs"], "invalid choice: 'lbfgs'"),
        (["train", "--epochs", "0"], "epochs must be a positive integer, got 0"),
        (["train", "--augment", "flip", "--limit", "100"], "unknown augmentation"),
        (["train", "--config", "nowhere.toml"], "--config: file nowhere.toml does not exist"),
        (["evaluate", "no-such-run"], "no-such-run: no such run directory"),
        (["summary", "--input-shape", "1,4,4"], "too small"),
        ([], "the following arguments are required"),
    ],
)
def test_user_errors_give_one_line_and_exit_2(
    tmp_path: Path, args: list[str], message: str, capsys, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main([*args, *(["--out", str(tmp_path / "run")] if args[:1] == ["train"] else [])]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("convprop: error: ") and message in err, err


def test_bad_files_in_a_subprocess_give_no_traceback(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"PK\x03\x04 not really a zip")
    result = run_cli("train", "--data", str(corrupt), "--out", str(tmp_path / "run"))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "corrupt.npz" in result.stderr
    assert result.stderr.count("\n") == 1


def test_second_train_into_a_run_directory_refuses(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    assert main(["train", "--epochs", "1", "--out", str(run), *QUICK]) == 0
    before = (run / "model.safetensors").read_bytes()
    assert main(["train", "--epochs", "1", "--out", str(run), *QUICK]) == 2
    assert "--resume" in capsys.readouterr().err
    assert (run / "model.safetensors").read_bytes() == before
    assert main(["train", "--epochs", "1", "--out", str(run), "--overwrite", *QUICK]) == 0


def _wait_for_epoch(run: Path, epoch: int, process: subprocess.Popen, limit: float = 120) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        checkpoint = run / "checkpoint.json"
        if checkpoint.exists():
            try:
                if json.loads(checkpoint.read_text())["epoch"] >= epoch:
                    return
            except (json.JSONDecodeError, KeyError):
                pass
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        time.sleep(0.02)
    raise AssertionError("training did not reach the epoch in time")


@pytest.mark.parametrize("delay", [0.0, 0.35], ids=["between_epochs", "inside_epoch"])
def test_sigkill_then_resume_is_bitwise_equal_to_an_uninterrupted_run(
    tmp_path: Path, delay: float
) -> None:
    args = ["--epochs", "3", *QUICK, "--augment", "shift,rotate"]
    whole = tmp_path / "whole"
    assert run_cli("train", *args, "--out", str(whole)).returncode == 0
    killed = tmp_path / "killed"
    process = subprocess.Popen(
        [sys.executable, "-m", "convprop", "train", *args, "--out", str(killed)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_for_epoch(killed, 1, process)
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    # Whatever moment the kill hit, the committed checkpoint loads and names existing files.
    checkpoint = json.loads((killed / "checkpoint.json").read_text())
    assert (killed / checkpoint["model_file"]).exists() and (
        killed / checkpoint["optimizer_file"]
    ).exists()
    if checkpoint["epoch"] < 3:
        resumed = run_cli("train", "--resume", str(killed), "--quiet")
        assert resumed.returncode == 0, resumed.stderr
    expected, actual = (
        load_arrays(whole / "model.safetensors"),
        load_arrays(killed / "model.safetensors"),
    )
    for name in expected:
        np.testing.assert_array_equal(expected[name], actual[name], err_msg=name)


def test_version_and_help_for_every_argument() -> None:
    from convprop import __version__

    version = run_cli("--version")
    assert version.returncode == 0 and version.stdout.strip() == f"convprop {__version__}"
    for command, positionals in (("evaluate", ["RUN_DIR"]), ("predict", ["RUN_DIR", "IMAGE"])):
        lines = [line.split() for line in run_cli(command, "--help").stdout.splitlines()]
        for name in positionals:
            # The last line that starts with the name: the usage line may wrap before it.
            described = [words for words in lines if words and words[0] == name]
            assert described and len(described[-1]) > 1, (command, name)
    text = run_cli("predict", "--help").stdout
    assert "--top-k TOP_K         how many classes to list (default 3)" in text


def test_a_diverging_run_prints_only_its_message(tmp_path: Path) -> None:
    result = run_cli(
        "train",
        "--lr",
        "1e8",
        "--optimizer",
        "sgd",
        "--scheduler",
        "none",
        "--limit",
        "100",
        "--batch-size",
        "20",
        "--epochs",
        "3",
        "--quiet",
        "--out",
        str(tmp_path / "run"),
    )
    assert result.returncode == 1
    assert result.stderr.startswith("convprop: training stopped: loss became nan at epoch 1")
    assert result.stderr.count("\n") == 1 and "Warning" not in result.stderr


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (2.30258, "2.3026"),
        (0.0, "0.0000"),
        (1.8e31, "1.8e+31"),
        (3e-7, "3e-07"),
        (-12.5, "-12.5000"),
    ],
)
def test_numbers_are_printed_for_people(value: float, text: str) -> None:
    from convprop.training.evaluate import format_number

    assert format_number(value) == text


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs os.sched_setaffinity")
@pytest.mark.parametrize(
    "flags",
    [
        # Batch 128: LeNet-5's first layer splits into blocks (50 samples fit in one).
        ["--limit", "300", "--batch-size", "128"],
        ["--model", "resnet20", "--limit", "100", "--batch-size", "50"],
    ],
    ids=["lenet5", "resnet20"],
)
def test_one_seed_gives_the_same_weights_on_one_core_and_on_all(
    tmp_path: Path, flags: list[str]
) -> None:
    """The weights a run saves are bitwise the same when the process may use one core (as
    under ``taskset -c 0``: one pool thread, one OpenBLAS thread) or every core. Read back
    with the safetensors package, not convprop's reader."""
    from safetensors.numpy import load_file

    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        pytest.skip("a single core: nothing to compare one core with")
    weights = {}
    for name, allowed in (("one core", cores[:1]), ("all cores", cores)):
        out = tmp_path / name.replace(" ", "-")
        result = subprocess.run(
            [sys.executable, "-m", "convprop", "train", "--epochs", "1", *flags, "--quiet"]
            + ["--seed", "5", "--out", str(out)],
            capture_output=True,
            text=True,
            timeout=300,
            preexec_fn=lambda allowed=allowed: os.sched_setaffinity(0, allowed),
        )
        assert result.returncode == 0, result.stderr
        weights[name] = load_file(out / "model.safetensors")
    one, every = weights["one core"], weights["all cores"]
    assert one.keys() == every.keys() and len(one) > 4
    for key in one:
        np.testing.assert_array_equal(one[key], every[key], err_msg=key)
