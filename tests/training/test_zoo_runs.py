"""Every model of the zoo comes back after training: evaluate, predict and resume its run.

Through the command line's entry point, one tiny epoch each: batch norm's 0-d
``num_batches_tracked`` once came back as shape (1,), and no model with batch norm could be
evaluated, used or resumed after training.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from convprop.cli import main
from convprop.data import load_mnist_5k
from convprop.data.canvases import make_canvases
from convprop.io.files import load_arrays
from convprop.training import MODEL_NAMES
from convprop.training.registry import SEGMENTATION_MODELS

TINY = ["--limit", "20", "--batch-size", "10", "--quiet", "--seed", "1", "--augment", "none"]


@pytest.mark.parametrize("model", MODEL_NAMES)
def test_train_evaluate_predict_resume(model: str, tmp_path: Path, capsys) -> None:
    run = tmp_path / model
    segment = model in SEGMENTATION_MODELS
    command = ["train", "--model", model, "--epochs", "1", "--scheduler", "cosine"]
    command += ["--task", "segment"] if segment else []
    assert main([*command, *TINY, "--out", str(run)]) == 0, capsys.readouterr().err
    trained = load_arrays(run / "model.safetensors")
    capsys.readouterr()

    counted = f"({10 * 64 * 64} labelled pixels)" if segment else "(10 samples)"
    for weights in ("latest", "best"):
        assert main(["evaluate", str(run), "--weights", weights]) == 0, capsys.readouterr().err
        report = capsys.readouterr().out
        assert report.startswith("weights: ") and "accuracy " in report and counted in report

    digit = make_canvases(1, "test").inputs[0, 0] if segment else load_mnist_5k().inputs[0, 0]
    image = tmp_path / "digit.png"
    Image.fromarray((digit * 255).astype(np.uint8)).save(image)
    ranking = [] if segment else ["--top-k", "2"]  # a segmenter gives a mask, not a ranking
    assert main(["predict", str(run), str(image), *ranking]) == 0, capsys.readouterr().err
    assert capsys.readouterr().out.startswith(f"{image}: ")

    assert main(["train", "--resume", str(run), "--epochs", "2", "--quiet"]) == 0, (
        capsys.readouterr().err
    )
    assert json.loads((run / "checkpoint.json").read_text())["epoch"] == 2
    resumed = load_arrays(run / "model.safetensors")
    assert resumed.keys() == trained.keys()
    for key, value in trained.items():
        assert resumed[key].shape == value.shape and resumed[key].dtype == value.dtype, key
    counters = [key for key in trained if key.endswith("num_batches_tracked")]
    assert all(trained[key].shape == () for key in counters)
    assert all(int(resumed[key]) == 2 * int(trained[key]) for key in counters)
