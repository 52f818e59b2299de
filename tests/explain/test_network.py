"""explain network: the hand-derived deltas (NumPy, the notes' formulas) equal the engine's and
PyTorch's; one gradient-descent step lowers the loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import convprop.explain as explain
from tests.explain.helpers import flat


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh"])
@pytest.mark.parametrize("seed", [0, 7])
def test_hand_derived_deltas_equal_the_engines(activation, seed):
    e = explain.network(seed=seed, activation=activation)
    for key, hand in e.backward.items():
        np.testing.assert_allclose(hand, e.engine_grads[key], rtol=0, atol=1e-12, err_msg=key)
    assert e.verification.passed


def test_deltas_against_torch():
    e = explain.network(seed=1, activation="tanh")
    p = {k: torch.tensor(v, requires_grad=True) for k, v in e.params.items()}
    x = torch.tensor(e.input[None, None])
    z = torch.nn.functional.conv2d(x, p["w1"], p["b1"])
    z.retain_grad()
    u = torch.nn.functional.max_pool2d(torch.tanh(z), 2)
    s = torch.nn.functional.linear(u.flatten(1), p["W2"], p["b2"])
    loss = torch.nn.functional.cross_entropy(s, torch.tensor([e.target]))
    loss.backward()
    np.testing.assert_allclose(e.backward["dz"], z.grad.numpy()[0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(e.backward["dw1"], p["w1"].grad.numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(e.backward["dW2"], p["W2"].grad.numpy(), rtol=0, atol=1e-12)
    assert abs(float(e.forward["E"]) - loss.item()) < 1e-12


def test_update_and_text():
    e = explain.network()
    for name, value in e.params.items():
        np.testing.assert_allclose(e.updated[name], value - 0.1 * e.backward["d" + name])
    assert e.loss_after < float(e.forward["E"])
    text = flat(e.render())
    for phrase in (
        "dE/ds = p - onehot(d)",
        "dE/dv = W^T dE/ds",
        "dE/dz = delta (map 1)",
        "One gradient-descent step",
        "The loss decreases",
    ):
        assert phrase in text


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(activation="gelu"), "explain network: activation must be one of"),
        (dict(lr=0), "lr must be a positive number"),
        (dict(target=3), "target must be a class index in 0..2"),
        (dict(input_size=(20, 20)), "at most 12x12"),
        (dict(input_size=(4, 4), kernel_size=4), "do not fit"),
    ],
)
def test_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        explain.network(**kwargs)
