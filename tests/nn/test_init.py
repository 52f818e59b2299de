"""Initialisers: PyTorch's bounds exactly, its moments statistically, reproducible by seed."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import convprop as cp
import convprop.nn as cnn
from convprop.nn import init


@pytest.mark.parametrize(
    "build",
    [
        lambda nn: nn.Conv2d(16, 32, 3),
        lambda nn: nn.Conv1d(40, 64, 5, groups=4),
        lambda nn: nn.ConvTranspose2d(8, 12, 4),
        lambda nn: nn.Linear(300, 200),
    ],
    ids=["conv2d", "conv1d_groups", "conv_transpose2d", "linear"],
)
def test_default_initialisation_matches_torch_distribution(build) -> None:
    cp.manual_seed(0)
    torch.manual_seed(0)
    ours, theirs = build(cnn), build(torch.nn)
    for name, param in theirs.named_parameters():
        their_values = param.detach().numpy()
        our_values = getattr(ours, name).numpy()
        assert our_values.dtype == np.float32
        # Weights: kaiming_uniform(a=sqrt(5)), bound sqrt(6 / ((1 + 5) fan_in)) = 1 / sqrt(fan_in);
        # biases: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with the weight's fan_in.
        fan_in = int(np.prod(theirs.weight.shape[1:]))
        bound = 1 / math.sqrt(fan_in)
        assert np.abs(our_values).max() <= bound
        assert np.abs(their_values).max() <= bound
        # Uniform on [-b, b]: mean 0, variance b^2 / 3; compare with a tolerance of ~5 sigma.
        n = our_values.size
        assert abs(our_values.mean()) < 5 * bound / math.sqrt(3 * n)
        assert abs(our_values.var() - bound**2 / 3) < 5 * bound**2 * math.sqrt(4 / 45 / n)


def test_same_seed_gives_same_weights() -> None:
    cp.manual_seed(7)
    first = cnn.Conv2d(3, 4, 3).state_dict()
    cp.manual_seed(7)
    second = cnn.Conv2d(3, 4, 3).state_dict()
    for name in first:
        np.testing.assert_array_equal(first[name], second[name])
    cp.manual_seed(8)
    assert not np.array_equal(cnn.Conv2d(3, 4, 3).weight.numpy(), first["weight"])


@pytest.mark.parametrize(
    ("ours", "theirs", "std"),
    [
        (
            lambda t: init.kaiming_normal_(t, mode="fan_out", nonlinearity="relu"),
            lambda t: torch.nn.init.kaiming_normal_(t, mode="fan_out", nonlinearity="relu"),
            math.sqrt(2) / math.sqrt(64 * 9),
        ),
        (
            lambda t: init.xavier_normal_(t, gain=2.0),
            lambda t: torch.nn.init.xavier_normal_(t, gain=2.0),
            2.0 * math.sqrt(2 / (32 * 9 + 64 * 9)),
        ),
        (
            lambda t: init.xavier_uniform_(t),
            lambda t: torch.nn.init.xavier_uniform_(t),
            math.sqrt(6 / (32 * 9 + 64 * 9)) / math.sqrt(3),
        ),
        (
            lambda t: init.kaiming_uniform_(t, a=0.1),
            lambda t: torch.nn.init.kaiming_uniform_(t, a=0.1),
            math.sqrt(2 / 1.01) / math.sqrt(32 * 9),
        ),
        (lambda t: init.normal_(t, 0.5, 0.2), lambda t: torch.nn.init.normal_(t, 0.5, 0.2), 0.2),
        (
            lambda t: init.uniform_(t, -2, 1),
            lambda t: torch.nn.init.uniform_(t, -2, 1),
            3 / math.sqrt(12),
        ),
    ],
    ids=[
        "kaiming_normal",
        "xavier_normal",
        "xavier_uniform",
        "kaiming_uniform",
        "normal",
        "uniform",
    ],
)
def test_initialisers_match_torch_moments(ours, theirs, std) -> None:
    our_tensor = cp.tensor(np.zeros((64, 32, 3, 3)))
    their_tensor = torch.zeros((64, 32, 3, 3), dtype=torch.float64)
    ours(our_tensor)
    theirs(their_tensor)
    n = our_tensor.numel()
    for values in (our_tensor.numpy(), their_tensor.numpy()):
        assert abs(values.std() - std) < 0.02 * std
        assert abs(values.mean() - their_tensor.numpy().mean()) < 6 * std / math.sqrt(n)


def test_constant_initialisers_and_gain() -> None:
    t = cp.tensor(np.zeros((2, 3)))
    assert np.all(init.ones_(t).numpy() == 1)
    assert np.all(init.constant_(t, 0.25).numpy() == 0.25)
    assert np.all(init.zeros_(t).numpy() == 0)
    for name, param in [
        ("relu", None),
        ("tanh", None),
        ("leaky_relu", 0.2),
        ("sigmoid", None),
        ("selu", None),
    ]:
        assert init.calculate_gain(name, param) == pytest.approx(
            torch.nn.init.calculate_gain(name, param)
        )
    with pytest.raises(ValueError, match="unsupported nonlinearity 'swish'"):
        init.calculate_gain("swish")
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        init.xavier_uniform_(cp.tensor(np.zeros(3)))
    with pytest.raises(ValueError, match="mode must be 'fan_in' or 'fan_out', got 'fan'"):
        init.kaiming_uniform_(cp.tensor(np.zeros((3, 3))), mode="fan")
