"""Training through the Python API: run directory contents, resume, determinism, failures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import convprop.training.loop as loop
from convprop import training
from convprop.data import DataError
from convprop.io.files import CheckpointError, load_arrays
from convprop.training import (
    RunDirectoryError,
    TrainConfig,
    TrainingError,
    evaluate,
    fit,
    predict,
)

QUICK = dict(limit=300, batch_size=50, seed=3)


def quick_fit(run_dir: Path, epochs: int = 2, **overrides) -> training.RunResult:
    config = TrainConfig(epochs=epochs, **{**QUICK, **overrides})
    return fit(config, run_dir, progress=False, log=lambda line: None)


def weights(path: Path) -> dict[str, np.ndarray]:
    return load_arrays(path)


def test_run_directory_holds_every_artifact(tmp_path: Path) -> None:
    result = quick_fit(tmp_path / "run")
    run = tmp_path / "run"
    for name in (
        "checkpoint.json",
        "model.safetensors",
        "best.safetensors",
        "metrics.csv",
        "curves.png",
        "filters.png",
        "confusion.png",
        "feature_maps.png",
    ):
        assert (run / name).exists(), name
    for png in run.glob("*.png"):
        with Image.open(png) as image:
            image.verify()
    rows = (run / "metrics.csv").read_text().strip().splitlines()
    assert rows[0].startswith("epoch,train_loss,train_accuracy,test_loss,test_accuracy")
    assert len(rows) == 3
    checkpoint = json.loads((run / "checkpoint.json").read_text())
    assert checkpoint["epoch"] == 2 and checkpoint["config"]["limit"] == 300
    assert sorted(p.name for p in (run / "state").iterdir()) == [
        "epoch-0002.model.safetensors",
        "epoch-0002.optimizer.safetensors",
    ]
    assert len(result.history) == 2 and 0 <= result.test_accuracy <= 1


def test_weights_use_pytorch_keys_and_load_into_torch(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    quick_fit(tmp_path / "run", epochs=1)
    state = weights(tmp_path / "run" / "model.safetensors")
    reference = torch.nn.Sequential()
    reference.features = torch.nn.Sequential(
        torch.nn.Conv2d(1, 6, 5, padding=2),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(6, 16, 5),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
    )
    reference.classifier = torch.nn.Sequential(
        torch.nn.Flatten(),
        torch.nn.Linear(400, 120),
        torch.nn.ReLU(),
        torch.nn.Linear(120, 84),
        torch.nn.ReLU(),
        torch.nn.Linear(84, 10),
    )
    reference.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in state.items()})


def test_same_seed_gives_bitwise_identical_runs(tmp_path: Path) -> None:
    quick_fit(tmp_path / "a", augment=["all"])
    quick_fit(tmp_path / "b", augment=["all"])
    assert (tmp_path / "a" / "metrics.csv").read_text().split("\n")[1].split(",")[:5] == (
        tmp_path / "b" / "metrics.csv"
    ).read_text().split("\n")[1].split(",")[:5]
    first, second = (
        weights(tmp_path / "a" / "model.safetensors"),
        weights(tmp_path / "b" / "model.safetensors"),
    )
    for name in first:
        np.testing.assert_array_equal(first[name], second[name])


@pytest.mark.parametrize(
    "optimizer,scheduler", [("sgd", "cosine"), ("adamw", "onecycle"), ("adam", "plateau")]
)
def test_resume_ends_bitwise_equal_to_uninterrupted(
    tmp_path: Path, optimizer: str, scheduler: str
) -> None:
    settings = dict(optimizer=optimizer, scheduler=scheduler, augment=["shift"])
    quick_fit(tmp_path / "whole", epochs=3, **settings)

    def stop_after_first_epoch(line: str) -> None:
        raise KeyboardInterrupt  # as if the process died right after epoch 1 was committed

    partial = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        fit(
            TrainConfig(epochs=3, **QUICK, **settings),
            partial,
            progress=False,
            log=stop_after_first_epoch,
        )
    assert json.loads((partial / "checkpoint.json").read_text())["epoch"] == 1
    fit(TrainConfig(), partial, resume=True, progress=False, log=lambda s: None)
    whole, resumed = (
        weights(tmp_path / "whole" / "model.safetensors"),
        weights(partial / "model.safetensors"),
    )
    for name in whole:
        np.testing.assert_array_equal(whole[name], resumed[name], err_msg=name)

    def metrics_without_time(run: Path) -> list[list[str]]:
        return (run / "metrics.csv").read_bytes()

    assert metrics_without_time(tmp_path / "whole") == metrics_without_time(partial)


def test_existing_run_directory_is_refused_unless_resume_or_overwrite(tmp_path: Path) -> None:
    run = tmp_path / "run"
    quick_fit(run, epochs=1)
    (run / "notes.txt").write_text("mine")
    with pytest.raises(RunDirectoryError, match="already holds a run .* --resume .* --overwrite"):
        quick_fit(run, epochs=1)
    fit(
        TrainConfig(epochs=1, **{**QUICK, "seed": 4}),
        run,
        overwrite=True,
        progress=False,
        log=lambda s: None,
    )
    assert (run / "notes.txt").read_text() == "mine"
    before = (run / "model.safetensors").read_bytes()
    with pytest.raises(DataError, match="missing.npz: no such file"):
        fit(
            TrainConfig(epochs=1, data=str(tmp_path / "missing.npz")),
            run,
            overwrite=True,
            progress=False,
        )
    assert (run / "model.safetensors").read_bytes() == before  # a failed overwrite keeps the run
    assert json.loads((run / "checkpoint.json").read_text())["config"]["seed"] == 4
    with pytest.raises(RunDirectoryError, match="empty: no such run directory"):
        fit(TrainConfig(), tmp_path / "empty", resume=True, progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunDirectoryError, match="no checkpoint.json to resume from"):
        fit(TrainConfig(), tmp_path / "empty", resume=True, progress=False)


def poison_loss_at(monkeypatch, call: int) -> None:
    """Make the ``call``-th training loss NaN (6 batches per epoch in these quick runs)."""
    real = loop.F.cross_entropy
    calls = {"count": 0}

    def poisoned(*args, **kwargs):
        loss = real(*args, **kwargs)
        if kwargs.get("reduction", "mean") == "mean":
            calls["count"] += 1
            if calls["count"] == call:
                return loss * float("nan")
        return loss

    monkeypatch.setattr(loop.F, "cross_entropy", poisoned)


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path: Path, monkeypatch) -> None:
    run = tmp_path / "run"
    poison_loss_at(monkeypatch, 8)  # epoch 2, batch 2
    with pytest.raises(
        TrainingError, match=r"loss became nan at epoch 2, batch 2.*\(epoch 1\) is kept"
    ):
        quick_fit(run, epochs=3)
    checkpoint = json.loads((run / "checkpoint.json").read_text())
    assert checkpoint["epoch"] == 1
    model, _ = training.load_run(run)
    assert model is not None


def test_non_finite_loss_in_the_first_epoch_says_there_is_no_checkpoint(
    tmp_path: Path, monkeypatch
) -> None:
    poison_loss_at(monkeypatch, 3)
    with pytest.raises(TrainingError, match="epoch 1, batch 3.*No epoch had completed"):
        quick_fit(tmp_path / "run", epochs=2)
    assert not (tmp_path / "run" / "checkpoint.json").exists()


def test_evaluate_and_predict(tmp_path: Path) -> None:
    run = tmp_path / "run"
    quick_fit(run, epochs=2)
    report = evaluate(run)
    assert report.confusion.shape == (10, 10) and report.confusion.sum() == 60
    assert report.accuracy == pytest.approx(np.trace(report.confusion) / 60)
    assert "precision" in report.report()
    from convprop.data import load_mnist_5k

    data = load_mnist_5k()
    paths = []
    for index in (0, 2500):
        path = tmp_path / f"digit{index}.png"
        Image.fromarray((data.inputs[index, 0] * 255).astype(np.uint8)).save(path)
        paths.append(path)
    ranking = predict(run, paths, top_k=3)
    assert len(ranking) == 2 and all(len(r) == 3 for r in ranking)
    for row in ranking:
        probabilities = [p for _, p in row]
        assert (
            probabilities == sorted(probabilities, reverse=True) and sum(probabilities) <= 1 + 1e-6
        )


def test_checkpoint_from_another_architecture_is_refused(tmp_path: Path) -> None:
    quick_fit(tmp_path / "lenet", epochs=1)
    quick_fit(tmp_path / "tdnn", epochs=1, model="tdnn")
    (tmp_path / "tdnn" / "model.safetensors").write_bytes(
        (tmp_path / "lenet" / "model.safetensors").read_bytes()
    )
    with pytest.raises(CheckpointError, match="model.safetensors: does not fit the model"):
        evaluate(tmp_path / "tdnn")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (dict(model="vgg"), "model must be one of lenet5, .*, got 'vgg'"),
        (dict(optimizer="lbfgs"), "optimizer must be one of sgd, adam, adamw, got 'lbfgs'"),
        (dict(epochs=0), "epochs must be a positive integer, got 0"),
        (dict(lr=-1.0), "lr must be a positive finite number, got -1.0"),
        (dict(test_fraction=1.5), r"test_fraction must be a number in \(0, 1\)"),
    ],
)
def test_bad_configs(tmp_path: Path, overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        fit(TrainConfig(**overrides), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def _every_file(run: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


def test_identical_runs_write_identical_bytes_in_every_file(tmp_path: Path) -> None:
    settings = dict(augment=["shift", "rotate"], scheduler="cosine")
    quick_fit(tmp_path / "a", **settings)
    quick_fit(tmp_path / "b", **settings)
    first, second = _every_file(tmp_path / "a"), _every_file(tmp_path / "b")
    assert first.keys() == second.keys() and len(first) == 10
    for name in first:
        assert first[name] == second[name], name


def test_run_files_honour_the_umask(tmp_path: Path) -> None:
    import os

    previous = os.umask(0o022)
    try:
        quick_fit(tmp_path / "run", epochs=1)
    finally:
        os.umask(previous)
    run = tmp_path / "run"
    for path in [run, *run.rglob("*")]:
        expected = 0o755 if path.is_dir() else 0o644
        assert path.stat().st_mode & 0o777 == expected, path
