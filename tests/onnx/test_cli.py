"""``convprop export`` and ``convprop train --model PATH.onnx``, through the command line."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from convprop.cli import main
from convprop.data import load_mnist_5k

onnx = pytest.importorskip("onnx", reason="needs the onnx extra (pip install 'convprop[onnx]')")
ort = pytest.importorskip("onnxruntime", reason="needs the onnx extra")
ort.set_default_logger_severity(3)
logging.getLogger("onnxruntime").setLevel(logging.ERROR)

TINY = ["--limit", "60", "--batch-size", "20", "--quiet", "--augment", "none", "--epochs", "1"]


def digits(folder: Path, count: int = 6) -> list[Path]:
    data = load_mnist_5k()
    paths = []
    for index in range(0, 500 * count, 500):
        path = folder / f"digit{index}.png"
        Image.fromarray((data.inputs[index, 0] * 255).astype(np.uint8)).save(path)
        paths.append(path)
    return paths


@pytest.mark.parametrize("model", ["lenet5", "tdnn"])
def test_exported_runs_predict_what_predict_prints(model: str, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    assert main(["train", "--model", model, *TINY, "--out", str(run)]) == 0
    for weights in ("latest", "best"):
        out = tmp_path / f"{weights}.onnx"
        assert main(["export", str(run), str(out), "--weights", weights]) == 0
    capsys.readouterr()
    images = digits(tmp_path)
    assert main(["predict", str(run), *map(str, images), "--top-k", "1"]) == 0
    predicted = [line.split(": ")[1].split()[0] for line in capsys.readouterr().out.splitlines()]
    session = ort.InferenceSession(
        str(tmp_path / "latest.onnx"), providers=["CPUExecutionProvider"]
    )
    batch = np.stack([np.asarray(Image.open(p), np.float32)[None] / 255 for p in images])
    logits = session.run(None, {"input": batch})[0]
    classes = json.loads(
        {p.key: p.value for p in onnx.load(str(tmp_path / "latest.onnx")).metadata_props}["classes"]
    )
    assert [classes[i] for i in logits.argmax(1)] == predicted


def test_export_errors_are_one_line(tmp_path: Path, capsys) -> None:
    assert main(["export", str(tmp_path / "nowhere"), str(tmp_path / "x.onnx")]) == 2
    assert "nowhere: no such run directory" in capsys.readouterr().err
    assert main(["export", str(tmp_path), str(tmp_path / "x.txt")]) == 2
    assert "OUT.onnx must name a .onnx file" in capsys.readouterr().err


def test_a_pytorch_export_fine_tunes_resumes_and_evaluates(tmp_path: Path, capsys) -> None:
    torch = pytest.importorskip("torch")
    from tests.models.mirrors import TorchLeNet5

    torch.manual_seed(0)
    source = tmp_path / "lenet.onnx"
    torch.onnx.export(
        TorchLeNet5().eval(),
        (torch.zeros(2, 1, 28, 28),),
        str(source),
        dynamo=False,
        input_names=["input"],
        dynamic_axes={"input": {0: "batch"}},
    )
    run = tmp_path / "run"
    assert (
        main(["train", "--model", str(source), *TINY, "--scheduler", "cosine", "--out", str(run)])
        == 0
    )
    assert (run / "source.onnx").read_bytes() == source.read_bytes()
    assert json.loads((run / "checkpoint.json").read_text())["config"]["model"] == str(source)
    source.unlink()  # the run holds its own copy
    assert main(["train", "--resume", str(run), "--epochs", "2", "--quiet"]) == 0
    assert main(["evaluate", str(run)]) == 0
    assert "accuracy" in capsys.readouterr().out
    assert main(["export", str(run), str(tmp_path / "again.onnx")]) == 0


def test_an_onnx_model_with_the_wrong_outputs_is_refused(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from tests.models.mirrors import TorchLeNet5

    source = tmp_path / "seven.onnx"
    torch.onnx.export(
        TorchLeNet5(1, 7).eval(), (torch.zeros(2, 1, 28, 28),), str(source), dynamo=False
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "convprop",
            "train",
            "--model",
            str(source),
            *TINY,
            "--out",
            str(tmp_path / "run"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "gives outputs of shape (7,) per sample, but the data has 10 classes" in result.stderr
    assert not (tmp_path / "run").exists()
