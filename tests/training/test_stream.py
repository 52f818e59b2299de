"""Training on lazy data (--stream): the same data, statistics, fingerprint and weights as the
in-memory path; one-line errors; Ctrl-C leaves no worker behind."""

from __future__ import annotations

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
from convprop.data import LazyDataset, load_mnist_5k
from convprop.io.files import load_arrays
from convprop.training import ConfigError, TrainConfig, prepare_data
from tests.data.test_workers import gone

QUICK = ["--epochs", "2", "--batch-size", "16", "--quiet", "--seed", "3"]


def digit_folder(root: Path, per_class: int = 12, size: int = 28) -> Path:
    """Digits of the bundled subset as PNG files, ``per_class`` of each."""
    data = load_mnist_5k()
    for digit in range(10):
        (root / str(digit)).mkdir(parents=True)
        for index in np.flatnonzero(data.labels == digit)[:per_class]:
            pixels = np.round(data.inputs[index, 0] * 255).astype(np.uint8)
            picture = Image.fromarray(pixels)
            if size != 28:
                picture = picture.resize((size, size))
            picture.save(root / str(digit) / f"{index:04d}.png")
    return root


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return digit_folder(tmp_path_factory.mktemp("stream") / "digits")


def weights(run: Path) -> dict[str, bytes]:
    return {name: array.tobytes() for name, array in load_arrays(run / "model.safetensors").items()}


@pytest.mark.parametrize("model", ["lenet5", "tdnn"])
def test_streamed_data_equals_the_in_memory_data(digits: Path, model: str) -> None:
    memory = prepare_data(TrainConfig(data=str(digits), model=model, limit=60))
    lazy = prepare_data(TrainConfig(data=str(digits), model=model, limit=60, stream=True))
    assert isinstance(lazy.train, LazyDataset) and isinstance(lazy.test, LazyDataset)
    assert not isinstance(memory.train, LazyDataset)
    for got, want in ((lazy.train, memory.train), (lazy.test, memory.test)):
        assert np.asarray(got.inputs).tobytes() == want.inputs.tobytes()
        np.testing.assert_array_equal(got.labels, want.labels)
    assert lazy.input_shape == memory.input_shape and lazy.as_sequence == memory.as_sequence
    # The statistics stream: equal to rounding, and exactly in the float32 Normalize uses.
    np.testing.assert_allclose(lazy.mean, memory.mean, rtol=1e-13)
    np.testing.assert_allclose(lazy.std, memory.std, rtol=1e-13)
    assert np.float32(lazy.std).tobytes() == np.float32(memory.std).tobytes()
    assert lazy.fingerprint() == memory.fingerprint()


def test_train_stream_gives_the_in_memory_weights(digits: Path, tmp_path: Path) -> None:
    runs = {}
    for name, flags in (
        ("memory", []),
        ("stream", ["--stream"]),
        ("workers", ["--stream", "--num-workers", "2"]),
    ):
        runs[name] = tmp_path / name
        assert main(["train", "--data", str(digits), "--out", str(runs[name]), *QUICK, *flags]) == 0
    assert weights(runs["stream"]) == weights(runs["memory"]) == weights(runs["workers"])


def test_npy_directory_trains_like_its_npz(tmp_path: Path, monkeypatch) -> None:
    data = load_mnist_5k()
    images = np.round(data.inputs[::25, 0] * 255).astype(np.uint8)
    labels = data.labels[::25]
    np.savez(tmp_path / "digits.npz", images=images, labels=labels)
    (tmp_path / "digits").mkdir()
    np.save(tmp_path / "digits" / "images.npy", images)
    np.save(tmp_path / "digits" / "labels.npy", labels)
    monkeypatch.chdir(tmp_path)
    for name, flags in (("npz", ["digits.npz"]), ("npy", ["digits", "--stream"])):
        assert main(["train", "--data", *flags, "--out", name, *QUICK, "--epochs", "1"]) == 0
    assert weights(tmp_path / "npy") == weights(tmp_path / "npz")


def test_resume_of_a_streamed_run_and_changed_data(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "digits"
    digit_folder(folder, per_class=6)
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--data",
                str(folder),
                "--out",
                str(run),
                *QUICK,
                "--stream",
                "--scheduler",
                "none",
                "--epochs",
                "1",
            ]
        )
        == 0
    )
    assert main(["train", "--resume", str(run), "--epochs", "2", "--quiet"]) == 0
    image = next((folder / "3").iterdir())
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(image)
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--epochs", "3", "--quiet"]) == 2
    assert "the training data changed since" in capsys.readouterr().err


def test_a_folder_over_the_memory_budget_streams_unasked(digits: Path, monkeypatch) -> None:
    # The folder decodes to 376 KB, which takes some 1.7 MB to load.
    monkeypatch.setenv("CONVPROP_MEMORY_BUDGET", "1M")
    assert isinstance(prepare_data(TrainConfig(data=str(digits))).train, LazyDataset)
    monkeypatch.setenv("CONVPROP_MEMORY_BUDGET", "1G")
    assert not isinstance(prepare_data(TrainConfig(data=str(digits))).train, LazyDataset)


def test_stream_settings_are_checked(capsys) -> None:
    with pytest.raises(ConfigError, match="stream must be true or false, got 'yes'"):
        TrainConfig.from_dict({"stream": "yes"})
    with pytest.raises(ConfigError, match="num_workers must be an integer >= 0, got -1"):
        TrainConfig.from_dict({"num_workers": -1})
    with pytest.raises(ConfigError, match="stream reads classification data lazily"):
        TrainConfig.from_dict({"task": "segment", "stream": True})
    assert main(["train", "--stream", "--quiet"]) == 2
    assert "mnist-5k: is bundled and small" in capsys.readouterr().err


def run_cli(*args: str, **options) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "convprop", *args],
        capture_output=True,
        text=True,
        timeout=120,
        **options,
    )


@pytest.mark.parametrize("flags", [[], ["--stream", "--num-workers", "2"]])
def test_a_corrupt_image_is_one_line_with_exit_2(tmp_path: Path, flags: list[str]) -> None:
    folder = digit_folder(tmp_path / "digits", per_class=4)
    broken = sorted((folder / "5").iterdir())[1]
    broken.write_bytes(broken.read_bytes()[:120])  # the header survives, the pixels do not
    done = run_cli("train", "--data", str(folder), "--out", str(tmp_path / "run"), *QUICK, *flags)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"convprop: error: {broken}: cannot read image (")
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert not (tmp_path / "run").exists()


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _command_line(pid: int) -> str:
    try:
        return f"{pid}: " + Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return f"{pid}: gone"


def test_ctrl_c_stops_the_workers_too(tmp_path: Path) -> None:
    folder = digit_folder(tmp_path / "digits", per_class=40)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "convprop",
            "train",
            "--data",
            str(folder),
            "--stream",
            "--num-workers",
            "2",
            "--epochs",
            "50",
            "--batch-size",
            "8",
            "--quiet",
            "--out",
            str(tmp_path / "run"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    workers: list[int] = []
    while time.monotonic() < deadline and process.poll() is None:
        # The loader's two workers (the data pass's have come and gone by then: the first
        # epoch has been committed).
        if (tmp_path / "run" / "checkpoint.json").exists():
            workers = _children(process.pid)
            if len(workers) >= 2:
                break
        time.sleep(0.1)
    if len(workers) < 2:
        process.kill()
        pytest.fail(f"no workers found: {process.communicate()}")
    os.killpg(process.pid, signal.SIGINT)  # what the terminal sends on Ctrl-C
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert stderr == "convprop: interrupted; the last completed epoch's checkpoint is kept\n"
    assert gone(workers), [_command_line(pid) for pid in workers]
