"""Every implementation of batch norm in the plan's tables, called directly, against PyTorch
and the notes' reference, on hypothesis configurations; the compiled passes also in blocks
of samples given explicitly (a small input in several blocks, no threshold patched)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given
from hypothesis import strategies as st

from convprop.ops import normalization
from convprop.ops.kernels import batch_norm as batch_norm_kernels
from convprop.ops.kernels.parallel import split_evenly
from tests.reference import assert_close


@st.composite
def batch_norm_configs(draw: st.DrawFn) -> dict[str, Any]:
    batch = draw(st.integers(2, 6))
    channels = draw(st.integers(1, 4))
    positions = draw(st.integers(1, 7))
    seed = draw(st.integers(0, 2**31))
    rng = np.random.default_rng(seed)
    return {
        "values": rng.standard_normal((batch, channels, positions)) * rng.uniform(0.1, 4)
        + rng.uniform(-3, 3),
        "grad": rng.standard_normal((batch, channels, positions)),
        "weight": rng.standard_normal(channels) if draw(st.booleans()) else None,
        "bias": rng.standard_normal(channels) if draw(st.booleans()) else None,
        "running": (rng.standard_normal(channels), rng.uniform(0.2, 3.0, channels)),
        "training": draw(st.booleans()),
        "eps": draw(st.sampled_from([1e-5, 0.5])),
        "block_count": draw(st.integers(1, batch)),
    }


def torch_batch_norm(config: dict[str, Any]) -> tuple[np.ndarray, ...]:
    """PyTorch's output and gradients (of the input, gamma and beta) for the configuration."""
    x = torch.tensor(config["values"], requires_grad=True)
    weight = torch.tensor(
        np.ones(x.shape[1]) if config["weight"] is None else config["weight"], requires_grad=True
    )
    bias = torch.tensor(
        np.zeros(x.shape[1]) if config["bias"] is None else config["bias"], requires_grad=True
    )
    running = [torch.tensor(r.copy()) for r in config["running"]]
    out = TF.batch_norm(x, *running, weight, bias, config["training"], 0.1, config["eps"])
    out.backward(torch.tensor(config["grad"]))
    return tuple(t.detach().numpy() for t in (out, x.grad, weight.grad, bias.grad))


def statistics_of(config: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    if config["training"]:
        values = config["values"]
        return values.mean(axis=(0, 2)), values.var(axis=(0, 2))
    return config["running"]


@pytest.mark.parametrize("kernel", sorted(normalization.STATISTICS_KERNELS))
@given(config=batch_norm_configs())
def test_every_statistics_kernel_matches_torch(kernel: str, config: dict[str, Any]) -> None:
    values = torch.tensor(config["values"])
    variance, mean = torch.var_mean(values, dim=(0, 2), unbiased=False)
    ours = normalization.STATISTICS_KERNELS[kernel](config["values"])
    assert_close(ours[0], mean, what=f"{kernel} mean")
    assert_close(ours[1], variance, what=f"{kernel} variance")


@pytest.mark.parametrize("kernel", sorted(normalization.NORMALIZE_KERNELS))
@given(config=batch_norm_configs())
def test_every_normalize_and_backward_kernel_matches_torch_and_the_reference(
    kernel: str, config: dict[str, Any]
) -> None:
    out, grad_x, grad_weight, grad_bias = torch_batch_norm(config)
    values, grad, weight, bias = (config[k] for k in ("values", "grad", "weight", "bias"))
    training, eps = config["training"], config["eps"]
    mean, variance = statistics_of(config)
    ours = normalization.NORMALIZE_KERNELS[kernel](
        values, mean, variance, weight, bias, eps, training
    )
    reference = normalization.reference_normalize(
        values, mean, variance, weight, bias, eps, training
    )
    assert_close(ours, out, what=f"{kernel} forward vs torch")
    assert_close(ours, reference, what=f"{kernel} forward vs reference")
    needs = (True, True, True)
    grads = normalization.BACKWARD_KERNELS[kernel](
        grad, values, mean, variance, weight, eps, training, needs
    )
    for what, ours_grad, theirs in zip(
        ("dL/dx", "dL/dgamma", "dL/dbeta"), grads, (grad_x, grad_weight, grad_bias), strict=True
    ):
        assert_close(ours_grad, theirs, what=f"{kernel} {what}")


@given(config=batch_norm_configs())
def test_the_compiled_passes_in_blocks_equal_torch(config: dict[str, Any]) -> None:
    """Partial sums over blocks of samples, added in block order, on the pool."""
    blocks = split_evenly(config["values"].shape[0], config["block_count"])
    out, grad_x, grad_weight, grad_bias = torch_batch_norm(config)
    values, training, eps = config["values"], config["training"], config["eps"]
    mean, variance = statistics_of(config)
    if training:
        mean, variance = batch_norm_kernels.statistics(values, blocks)
    ours = batch_norm_kernels.normalize(
        values, mean, variance, config["weight"], config["bias"], eps, training, blocks
    )
    assert_close(ours, out, what="forward in blocks")
    grads = batch_norm_kernels.backward(
        config["grad"], values, mean, variance, config["weight"], eps, training, (True,) * 3, blocks
    )
    for ours_grad, theirs in zip(grads, (grad_x, grad_weight, grad_bias), strict=True):
        assert_close(ours_grad, theirs, what="backward in blocks")


@pytest.mark.parametrize("kernel", sorted(normalization.BACKWARD_KERNELS))
@pytest.mark.parametrize("training", [True, False])
def test_backward_kernels_compute_only_what_is_needed(kernel: str, training: bool) -> None:
    rng = np.random.default_rng(1)
    values, grad = rng.standard_normal((3, 2, 4)), rng.standard_normal((3, 2, 4))
    mean, variance = values.mean(axis=(0, 2)), values.var(axis=(0, 2))
    backward = normalization.BACKWARD_KERNELS[kernel]
    full = backward(grad, values, mean, variance, None, 1e-5, training, (True, True, True))
    for needs in [(True, False, False), (False, True, False), (False, False, True)]:
        part = backward(grad, values, mean, variance, None, 1e-5, training, needs)
        for need, ours, whole in zip(needs, part, full, strict=True):
            if need:
                np.testing.assert_array_equal(ours, whole)
            else:
                assert ours is None


@pytest.mark.parametrize("kernel", sorted(normalization.NORMALIZE_KERNELS))
def test_float32_maps_stay_float32_in_every_kernel(kernel: str) -> None:
    rng = np.random.default_rng(2)
    values = rng.standard_normal((4, 3, 5)).astype(np.float32)
    grad = rng.standard_normal((4, 3, 5)).astype(np.float32)
    weight = rng.standard_normal(3).astype(np.float32)
    mean, variance = normalization.STATISTICS_KERNELS[kernel](values)
    out = normalization.NORMALIZE_KERNELS[kernel](values, mean, variance, weight, None, 1e-5, True)
    grads = normalization.BACKWARD_KERNELS[kernel](
        grad, values, mean, variance, weight, 1e-5, True, (True, True, True)
    )
    assert out.dtype == np.float32
    assert all(g is not None and g.dtype == np.float32 for g in grads)
