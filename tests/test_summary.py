"""``convprop.summary.summary``: rows, shapes, parameter counts and mult-adds, checked by hand.

The expected mult-adds are computed here from the layer shapes alone (a convolution costs one
kernel, C_in k_h k_w multiply-adds, per output value; a linear layer in * out per sample),
not from the code under test.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from convprop import models, nn
from convprop.summary import summary

LENET_ROWS = [
    # (name, type, output shape, parameters)
    ("features.0", "Conv2d", (1, 6, 28, 28), 6 * 1 * 5 * 5 + 6),
    ("features.1", "ReLU", (1, 6, 28, 28), 0),
    ("features.2", "MaxPool2d", (1, 6, 14, 14), 0),
    ("features.3", "Conv2d", (1, 16, 10, 10), 16 * 6 * 5 * 5 + 16),
    ("features.4", "ReLU", (1, 16, 10, 10), 0),
    ("features.5", "MaxPool2d", (1, 16, 5, 5), 0),
    ("classifier.0", "Flatten", (1, 400), 0),
    ("classifier.1", "Linear", (1, 120), 400 * 120 + 120),
    ("classifier.2", "ReLU", (1, 120), 0),
    ("classifier.3", "Linear", (1, 84), 120 * 84 + 84),
    ("classifier.4", "ReLU", (1, 84), 0),
    ("classifier.5", "Linear", (1, 10), 84 * 10 + 10),
]


def expected_mult_adds(module: nn.Module, output_shape: tuple[int, ...]) -> int:
    if isinstance(module, nn.Conv2d):
        batch, out_channels, height, width = output_shape
        in_channels = module.in_channels // module.groups
        kernel_h, kernel_w = module.kernel_size
        return batch * height * width * out_channels * in_channels * kernel_h * kernel_w
    if isinstance(module, nn.Conv1d):
        batch, out_channels, length = output_shape
        return batch * length * out_channels * module.in_channels * module.kernel_size[0]
    if isinstance(module, nn.Linear):
        return int(np.prod(output_shape[:-1])) * module.in_features * module.out_features
    return 0


def test_lenet5_rows_shapes_and_parameters() -> None:
    model = models.lenet5()
    result = summary(model, (1, 1, 28, 28))
    assert [(r.name, r.kind, r.output_shape, r.parameters) for r in result.rows] == LENET_ROWS
    assert result.total_parameters == result.trainable_parameters == 61_706
    assert result.input_shape == (1, 1, 28, 28)
    assert result.output_shape == (1, 10)


def test_lenet5_mult_adds_match_an_independent_count() -> None:
    model = models.lenet5()
    result = summary(model, (1, 1, 28, 28))
    modules = dict(model.named_modules())
    for row in result.rows:
        assert row.mult_adds == expected_mult_adds(modules[row.name], row.output_shape), row.name
    # A few rows by hand: 28*28 positions * 150 weights; 10*10 * 2400; 400 * 120.
    by_name = {row.name: row.mult_adds for row in result.rows}
    assert by_name["features.0"] == 117_600
    assert by_name["features.3"] == 240_000
    assert by_name["classifier.1"] == 48_000
    assert result.total_mult_adds == 117_600 + 240_000 + 48_000 + 10_080 + 840


def test_mult_adds_count_every_sample_of_the_batch() -> None:
    model = models.lenet5(3, 10, 32)
    one, four = summary(model, (1, 3, 32, 32)), summary(model, (4, 3, 32, 32))
    assert four.total_mult_adds == 4 * one.total_mult_adds
    assert four.rows[0].output_shape == (4, 6, 28, 28)
    assert four.total_parameters == one.total_parameters == 62_006


def test_table_renders_rows_and_totals() -> None:
    text = str(summary(models.lenet5(), (1, 1, 28, 28)))
    lines = text.splitlines()
    assert lines[0].startswith("=") and "Layer (type)" in lines[1] and "Mult-adds" in lines[1]
    cells = {
        re.split(r"\s{2,}", line.strip())[0]: re.split(r"\s{2,}", line.strip())[1:]
        for line in lines[3:15]
    }
    assert cells["features.0 (Conv2d)"] == ["[1, 6, 28, 28]", "156", "117,600"]
    assert cells["features.2 (MaxPool2d)"] == ["[1, 6, 14, 14]", "0", "0"]
    assert cells["classifier.1 (Linear)"] == ["[1, 120]", "48,120", "48,000"]
    assert cells["classifier.5 (Linear)"] == ["[1, 10]", "850", "840"]
    assert lines[15].startswith("=")
    assert "Total params: 61,706" in lines
    assert "Trainable params: 61,706" in lines
    assert "Non-trainable params: 0" in lines
    assert "Total mult-adds (M): 0.42" in lines
    assert "Input shape: [1, 1, 28, 28]    Output shape: [1, 10]" in lines


def test_frozen_layers_count_as_non_trainable() -> None:
    model = models.lenet5()
    model.features.requires_grad_(False)
    result = summary(model, (1, 1, 28, 28))
    assert result.total_parameters == 61_706
    assert result.trainable_parameters == 61_706 - 156 - 2416
    assert "Non-trainable params: 2,572" in str(result)


def test_resnet20_and_tdnn_summaries() -> None:
    model = models.resnet20()
    result = summary(model, (2, 3, 32, 32))
    assert result.total_parameters == 272_474
    assert result.output_shape == (2, 10)
    modules = dict(model.named_modules())
    assert result.total_mult_adds == sum(
        expected_mult_adds(modules[row.name], row.output_shape) for row in result.rows
    )
    names = [row.name for row in result.rows]
    assert names[:3] == ["conv1", "bn1", "layer1.0.conv1"]
    assert "layer2.0.downsample.0" in names
    bn_row = result.rows[1]
    assert (bn_row.kind, bn_row.parameters, bn_row.mult_adds) == ("BatchNorm2d", 32, 0)
    network = models.tdnn(8, 4, 16)
    frames = summary(network, (1, 8, 20))
    assert frames.rows[0].output_shape == (1, 16, 16)
    assert frames.rows[0].mult_adds == 16 * 16 * 8 * 5


def test_summary_restores_mode_and_removes_hooks() -> None:
    model = models.lenet5()
    summary(model, (1, 1, 28, 28))
    assert model.training
    assert all(not module._forward_hooks for module in model.modules())
    model.eval()
    summary(model, (1, 1, 28, 28))
    assert not model.training
    model.train()
    with pytest.raises(ValueError):
        summary(model, (1, 3, 28, 28))  # the model itself rejects 3 channels
    assert model.training and all(not module._forward_hooks for module in model.modules())


@pytest.mark.parametrize("shape", [(), (1, 0, 28, 28), (1, 1, -28, 28)])
def test_bad_input_shape_raises(shape: tuple[int, ...]) -> None:
    message = f"summary: input_shape must be positive sizes, got {shape}"
    with pytest.raises(ValueError, match=re.escape(message)):
        summary(models.lenet5(), shape)


def test_wrong_channel_count_names_the_layer_rule() -> None:
    with pytest.raises(ValueError, match=r"channels"):
        summary(models.lenet5(), (1, 3, 28, 28))
