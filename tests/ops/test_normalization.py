"""batch_norm against PyTorch (outputs, gradients, running statistics) and finite differences."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given
from hypothesis import strategies as st

import convprop as cp
import convprop.nn.functional as F
from convprop.autograd import gradcheck
from convprop.ops import normalization
from convprop.ops.algorithm import kernels_used, use_algorithm
from convprop.ops.kernels import parallel
from tests.reference import assert_close, grad_of, pair


def compare_batch_norm(
    x: np.ndarray,
    running: tuple[np.ndarray, np.ndarray] | None,
    weight: np.ndarray | None,
    bias: np.ndarray | None,
    training: bool,
    momentum: float,
    eps: float,
    seed: int,
) -> None:
    ours_x, torch_x = pair(x)
    ours_w, torch_w = (None, None) if weight is None else pair(weight)
    ours_b, torch_b = (None, None) if bias is None else pair(bias)
    if running is None:
        ours_stats: list[Any] = [None, None]
        torch_stats: list[Any] = [None, None]
    else:
        ours_stats = [cp.from_numpy(s.copy()) for s in running]
        torch_stats = [torch.tensor(s) for s in running]
    ours_out = F.batch_norm(ours_x, *ours_stats, ours_w, ours_b, training, momentum, eps)
    torch_out = TF.batch_norm(torch_x, *torch_stats, torch_w, torch_b, training, momentum, eps)
    assert_close(ours_out.numpy(), torch_out, what="forward")
    if running is not None:
        assert_close(ours_stats[0].numpy(), torch_stats[0], what="running_mean")
        assert_close(ours_stats[1].numpy(), torch_stats[1], what="running_var")
    grad = np.random.default_rng(seed + 1).standard_normal(x.shape)
    ours_out.backward(grad)
    torch_out.backward(torch.tensor(grad))
    assert_close(grad_of(ours_x), grad_of(torch_x), what="input gradient")
    if weight is not None:
        assert_close(grad_of(ours_w), grad_of(torch_w), what="weight gradient")
    if bias is not None:
        assert_close(grad_of(ours_b), grad_of(torch_b), what="bias gradient")


@given(
    batch=st.integers(1, 3),
    channels=st.integers(1, 4),
    spatial=st.lists(st.integers(1, 5), max_size=3).map(tuple),
    training=st.booleans(),
    with_running=st.booleans(),
    affine=st.sampled_from(["both", "weight", "bias", "none"]),
    momentum=st.floats(0.0, 1.0),
    eps=st.sampled_from([1e-5, 1e-3, 0.5]),
    seed=st.integers(0, 2**31),
)
def test_batch_norm_matches_torch(
    batch: int,
    channels: int,
    spatial: tuple[int, ...],
    training: bool,
    with_running: bool,
    affine: str,
    momentum: float,
    eps: float,
    seed: int,
) -> None:
    shape = (batch, channels) + spatial
    if not training:
        with_running = True  # evaluation mode needs the running statistics
    if training and np.prod(shape) // channels == 1:
        batch += 1
        shape = (batch, channels) + spatial
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * rng.uniform(0.1, 5.0) + rng.uniform(-3, 3)
    running = (rng.standard_normal(channels), rng.uniform(0.2, 3.0, channels))
    weight = rng.standard_normal(channels) if affine in ("both", "weight") else None
    bias = rng.standard_normal(channels) if affine in ("both", "bias") else None
    compare_batch_norm(
        x, running if with_running else None, weight, bias, training, momentum, eps, seed
    )


def test_running_stats_after_several_training_steps_equal_torch() -> None:
    rng = np.random.default_rng(7)
    ours_mean, ours_var = cp.zeros(3, dtype=np.float64), cp.ones(3, dtype=np.float64)
    torch_mean, torch_var = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    for _ in range(5):
        x = rng.standard_normal((4, 3, 5, 2)) * 2 + 1
        F.batch_norm(cp.tensor(x), ours_mean, ours_var, training=True, momentum=0.3)
        TF.batch_norm(torch.tensor(x), torch_mean, torch_var, training=True, momentum=0.3)
    assert_close(ours_mean.numpy(), torch_mean, what="running_mean")
    assert_close(ours_var.numpy(), torch_var, what="running_var")


def test_running_variance_is_unbiased() -> None:
    x = np.array([[1.0], [2.0], [6.0]])
    mean, var = cp.zeros(1, dtype=np.float64), cp.zeros(1, dtype=np.float64)
    F.batch_norm(cp.tensor(x), mean, var, training=True, momentum=1.0)
    np.testing.assert_allclose(mean.numpy(), [3.0])
    np.testing.assert_allclose(var.numpy(), [np.var(x, ddof=1)])


@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_gradcheck(training: bool) -> None:
    rng = np.random.default_rng(3)
    x = cp.tensor(rng.standard_normal((3, 2, 2)), requires_grad=True)
    w = cp.tensor(rng.standard_normal(2), requires_grad=True)
    b = cp.tensor(rng.standard_normal(2), requires_grad=True)
    mean_values, var_values = rng.standard_normal(2), rng.uniform(0.5, 2, 2)

    def normalise(x: cp.Tensor, w: cp.Tensor, b: cp.Tensor) -> cp.Tensor:
        # Fresh running statistics on every call, so the central differences see the same ones.
        stats = cp.tensor(mean_values), cp.tensor(var_values)
        return F.batch_norm(x, *stats, w, b, training=training, eps=1e-3)

    assert gradcheck(normalise, [x, w, b])


def test_batch_norm_keeps_float32_and_handles_empty_batch() -> None:
    rng = np.random.default_rng(4)
    x = cp.tensor(rng.standard_normal((4, 3, 5)).astype(np.float32), requires_grad=True)
    mean, var = cp.zeros(3), cp.ones(3)
    w, b = cp.ones(3, requires_grad=True), cp.zeros(3, requires_grad=True)
    out = F.batch_norm(x, mean, var, w, b, training=True)
    assert out.dtype == mean.dtype == var.dtype == np.float32
    out.sum().backward()
    assert x.grad.dtype == w.grad.dtype == np.float32
    expected = TF.batch_norm(torch.tensor(x.numpy()), None, None, training=True)
    np.testing.assert_allclose(out.numpy(), expected.numpy(), rtol=1e-5, atol=1e-5)
    empty = F.batch_norm(cp.tensor(np.zeros((0, 3), dtype=np.float32)), mean, var, training=True)
    assert empty.shape == (0, 3)


def test_batch_norm_split_over_blocks_matches_torch() -> None:
    """Statistics summed over blocks of samples on the pool (partial sums in block order),
    here 7 samples of 4.3 MB in all, in blocks of 2, 2, 2 and 1."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((7, 3, 160, 160)) * 2 + 1
    assert [b.stop - b.start for b in parallel.batch_blocks(7, x[0].nbytes)] == [2, 2, 2, 1]
    with use_algorithm("fast"):
        compare_batch_norm(
            x,
            (np.zeros(3), np.ones(3)),
            rng.standard_normal(3),
            rng.standard_normal(3),
            training=True,
            momentum=0.1,
            eps=1e-5,
            seed=5,
        )


@pytest.mark.parametrize("training", [True, False])
def test_float32_batch_norm_of_a_large_mean_keeps_its_precision(training: bool) -> None:
    """Nothing cancels when |mean| >> std: float32 values around 1000 with std 0.01 come out
    within float32 rounding of the float64 result on the same values (rounding the mean to
    float32 before subtracting it would cost 3e-3 here)."""
    rng = np.random.default_rng(6)
    x = (1000 + 0.01 * rng.standard_normal((16, 2, 30))).astype(np.float32)
    exact = x.astype(np.float64)
    # Evaluation mode normalises with the running statistics as given (float32 here).
    mean = exact.mean(axis=(0, 2)).astype(np.float32).astype(np.float64)
    var = exact.var(axis=(0, 2)).astype(np.float32).astype(np.float64)
    if training:
        mean, var = exact.mean(axis=(0, 2)), exact.var(axis=(0, 2))
    running = cp.from_numpy(mean.astype(np.float32)), cp.from_numpy(var.astype(np.float32))
    out = F.batch_norm(cp.tensor(x), *running, training=training, eps=1e-9).numpy()
    expected = (exact - mean[:, None]) / np.sqrt(var[:, None] + 1e-9)
    np.testing.assert_allclose(out, expected, atol=1e-4)


def test_batch_norm_errors() -> None:
    stats = cp.zeros(4, dtype=np.float64), cp.ones(4, dtype=np.float64)
    with pytest.raises(
        ValueError,
        match=r"batch_norm: Expected more than 1 value per channel "
        r"when training, got input of shape \(1, 4\)",
    ):
        F.batch_norm(cp.tensor(np.ones((1, 4))), *stats, training=True)
    with pytest.raises(
        ValueError,
        match=r"batch_norm: running_mean must have one entry per "
        r"channel, shape \(3,\) .* got shape \(4,\)",
    ):
        F.batch_norm(cp.tensor(np.ones((2, 3))), *stats)
    with pytest.raises(ValueError, match=r"batch_norm: weight must have one entry per channel"):
        F.batch_norm(cp.tensor(np.ones((2, 4))), *stats, weight=cp.tensor(np.ones(3)))
    with pytest.raises(
        ValueError,
        match=r"batch_norm: running_mean and running_var must be "
        r"given in evaluation mode",
    ):
        F.batch_norm(cp.tensor(np.ones((2, 4))), None, None)
    with pytest.raises(
        ValueError,
        match=r"batch_norm: running_mean and running_var must either "
        r"both be None or neither",
    ):
        F.batch_norm(cp.tensor(np.ones((2, 4))), stats[0], None, training=True)
    with pytest.raises(
        ValueError,
        match=r"batch_norm: input must be at least 2-D \(N, C, \*\), "
        r"got shape \(4,\)",
    ):
        F.batch_norm(cp.tensor(np.ones(4)), *stats)
    with pytest.raises(
        TypeError,
        match=r"batch_norm: all inputs must have the same dtype, but "
        r"input is float32, running_mean is float64",
    ):
        F.batch_norm(cp.tensor(np.ones((2, 4), dtype=np.float32)), *stats)
    with pytest.raises(TypeError, match=r"batch_norm: input must have a floating-point dtype"):
        F.batch_norm(cp.tensor(np.ones((2, 4), dtype=np.int64)), *stats)


def test_the_plan_picks_the_compiled_passes_and_the_reference_on_request() -> None:
    with use_algorithm("fast"):
        assert normalization.plan_batch_norm() == "compiled"
    with use_algorithm("reference"):
        assert normalization.plan_batch_norm() == "reference"
    assert set(normalization.STATISTICS_KERNELS) == {"reference", "compiled"}
    assert set(normalization.NORMALIZE_KERNELS) == set(normalization.BACKWARD_KERNELS)


def test_the_reference_path_is_really_taken() -> None:
    """Under ``use_algorithm("reference")`` batch norm (training and evaluation) runs the
    formulas as written and only reference kernels are counted; the results, running
    statistics included, equal the compiled passes'."""
    rng = np.random.default_rng(8)
    x = rng.standard_normal((4, 3, 5, 5)) * 3 + 2
    gamma, beta = rng.standard_normal(3), rng.standard_normal(3)

    def run() -> tuple[np.ndarray, ...]:
        inputs = cp.tensor(x, requires_grad=True)
        weight, bias = cp.tensor(gamma, requires_grad=True), cp.tensor(beta, requires_grad=True)
        mean, var = cp.zeros(3, dtype=np.float64), cp.ones(3, dtype=np.float64)
        hidden = F.batch_norm(inputs, mean, var, weight, bias, training=True)
        out = F.batch_norm(hidden * hidden, mean, var, weight, bias, training=False)
        (out * out).sum().backward()
        grads = (inputs.grad.numpy(), weight.grad.numpy(), bias.grad.numpy())
        return (out.numpy(), mean.numpy(), var.numpy(), *grads)

    with use_algorithm("reference"), kernels_used() as used:
        reference = run()
    assert used and all(name.endswith(".reference") for name in used), used
    assert set(used) == {
        "batch_norm.statistics.reference",
        "batch_norm.normalize.reference",
        "batch_norm.backward.reference",
    }
    with use_algorithm("fast"), kernels_used() as used:
        fast = run()
    assert not any(name.endswith(".reference") for name in used), used
    for a, b in zip(reference, fast, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)
