"""The checkpoint: one commit per epoch, one checked reader, older formats still read."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from convprop.io.files import CheckpointError, load_arrays
from convprop.training import TrainConfig, evaluate, fit, load_run, read_checkpoint

QUICK = dict(limit=40, batch_size=20, seed=3, augment=[], scheduler="cosine")


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("finished") / "run"
    fit(TrainConfig(epochs=2, **QUICK), run, progress=False, log=lambda line: None)
    return run


def test_the_reader_gives_typed_fields(finished: Path) -> None:
    checkpoint = read_checkpoint(finished)
    assert checkpoint.epoch == 2 and len(checkpoint.history) == 2
    assert checkpoint.config == TrainConfig(epochs=2, **QUICK)
    assert checkpoint.model_file == finished / "state" / "epoch-0002.model.safetensors"
    assert checkpoint.input_shape == [1, 28, 28] and checkpoint.image_shape == [1, 28, 28]
    assert checkpoint.classes == [str(i) for i in range(10)]
    assert 1 <= (checkpoint.best_epoch or 0) <= 2
    best = checkpoint.history[(checkpoint.best_epoch or 0) - 1].test_accuracy
    assert checkpoint.best_test_accuracy == best == max(m.test_accuracy for m in checkpoint.history)
    assert checkpoint.fingerprint and checkpoint.fingerprint.startswith("sha256:")


def test_no_wall_clock_time_is_saved(finished: Path) -> None:
    assert "seconds" not in (finished / "metrics.csv").read_text()
    assert "seconds" not in (finished / "checkpoint.json").read_text()


def as_format_1(run: Path) -> None:
    """Rewrite a checkpoint as convprop 0.1 wrote it (the test of reading old runs)."""
    path = run / "checkpoint.json"
    checkpoint = json.loads(path.read_text())
    checkpoint["format"] = 1
    del checkpoint["best_epoch"]
    for key in ("fingerprint", "image_shape"):
        del checkpoint["data"][key]
    for row in checkpoint["history"]:
        row["seconds"] = 1.5
    path.write_text(json.dumps(checkpoint))


def test_format_1_runs_evaluate_and_resume(finished: Path, tmp_path: Path) -> None:
    import shutil

    run = tmp_path / "old"
    shutil.copytree(finished, run)
    as_format_1(run)
    assert read_checkpoint(run).best_epoch is None
    assert evaluate(run, weights="best").weights.endswith("(the best epoch)")
    fit(TrainConfig(), run, resume=True, epochs=3, progress=False, log=lambda line: None)
    assert json.loads((run / "checkpoint.json").read_text())["format"] == 2


def test_weights_best_and_latest(finished: Path) -> None:
    latest, checkpoint = load_run(finished, "latest")
    best, _ = load_run(finished, "best")
    expected_best = load_arrays(finished / "best.safetensors")
    for key, value in best.state_dict().items():
        np.testing.assert_array_equal(value, expected_best[key])
    assert f"epoch {checkpoint.epoch}, the latest" in evaluate(finished).weights
    with pytest.raises(ValueError, match="weights must be one of latest, best, got 'first'"):
        load_run(finished, "first")


def test_a_checkpoint_never_reaches_outside_its_run(finished: Path, tmp_path: Path) -> None:
    import shutil

    run = tmp_path / "run"
    shutil.copytree(finished, run)
    checkpoint = json.loads((run / "checkpoint.json").read_text())
    for path in ("/etc/passwd", "state/../../x", "model.safetensors", "state/a/b"):
        checkpoint["model_file"] = path
        (run / "checkpoint.json").write_text(json.dumps(checkpoint))
        with pytest.raises(
            CheckpointError, match="model_file must name a file in the run's state/"
        ):
            read_checkpoint(run)
    assert os.path.exists(run / "model.safetensors")
