"""The run's PNG figures: same inputs, same bytes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

import convprop
from convprop import nn, plots
from convprop.train import EpochMetrics, build_model


def history(epochs: int) -> list[EpochMetrics]:
    return [
        EpochMetrics(e, 2.3 - 0.1 * e, 0.1 + 0.04 * e, 2.3 - 0.09 * e, 0.1 + 0.03 * e, 1e-3, 1.0)
        for e in range(1, epochs + 1)
    ]


def test_same_inputs_give_the_same_bytes_and_no_version_stamp(tmp_path: Path) -> None:
    convprop.manual_seed(0)
    model = build_model("lenet5", (1, 28, 28), 10)
    image = np.random.default_rng(0).standard_normal((1, 1, 28, 28)).astype(np.float32)
    matrix = np.diag(np.arange(10, 20))
    for run in ("a", "b"):
        (tmp_path / run).mkdir()
        plots.save_curves(tmp_path / run / "curves.png", history(3))
        plots.save_confusion(tmp_path / run / "confusion.png", matrix, [str(i) for i in range(10)])
        plots.save_filters(tmp_path / run / "filters.png", model)
        plots.save_feature_maps(tmp_path / run / "maps.png", model, image)
    for name in ("curves.png", "confusion.png", "filters.png", "maps.png"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
        with Image.open(tmp_path / "a" / name) as png:
            assert "Software" not in png.info


def test_a_model_without_convolutions_writes_no_conv_figures(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    assert plots.save_filters(tmp_path / "f.png", model) is None
    assert plots.save_feature_maps(tmp_path / "m.png", model, np.zeros((1, 4), np.float32)) is None
    assert not (tmp_path / "f.png").exists() and not (tmp_path / "m.png").exists()
