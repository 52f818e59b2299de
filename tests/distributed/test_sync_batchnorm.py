"""SyncBatchNorm: under ``mpirun -n 2`` equal to PyTorch's batch norm on the concatenated
batch (output, input gradient, weight and bias gradients, running statistics), and in one
process exactly ``BatchNorm2d``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import convprop as cp
from convprop import nn
from convprop.ops import sync_batch_norm as sync_ops
from convprop.ops import use_algorithm
from convprop.ops.normalization import reference_statistics
from tests.distributed.launch import run_ranks_ok
from tests.distributed.ranks_sync_batchnorm import CASES, EPS, MOMENTUM, Case, case_data, share

RTOL = 1e-12


def torch_reference(case: Case) -> dict[str, np.ndarray]:
    """PyTorch's batch norm, training mode, on the whole batch of every step."""
    data = case_data(case)
    layer_type = torch.nn.BatchNorm2d if len(case.shape) == 4 else torch.nn.BatchNorm1d
    layer = layer_type(case.shape[1], eps=EPS, momentum=MOMENTUM).double()
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(data["weight"]))
        layer.bias.copy_(torch.from_numpy(data["bias"]))
    expected: dict[str, np.ndarray] = {}
    for step in range(case.steps):
        x = torch.from_numpy(data["inputs"][step]).requires_grad_()
        layer.zero_grad()
        y = layer(x)
        y.backward(torch.from_numpy(data["grads"][step]))
        expected[f"output{step}"] = y.detach().numpy()
        expected[f"input_grad{step}"] = x.grad.numpy()
        expected[f"weight_grad{step}"] = layer.weight.grad.numpy()
        expected[f"bias_grad{step}"] = layer.bias.grad.numpy()
    expected["running_mean"] = layer.running_mean.numpy()
    expected["running_var"] = layer.running_var.numpy()
    expected["num_batches_tracked"] = layer.num_batches_tracked.numpy()
    layer.eval()
    with torch.no_grad():
        expected["eval_output"] = layer(torch.from_numpy(data["eval_input"])).numpy()
    return expected


def assert_close(actual: np.ndarray, expected: np.ndarray, what: str) -> None:
    scale = max(1.0, float(np.abs(expected).max(initial=0.0)))
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=RTOL * scale, err_msg=what)


def test_sync_batch_norm_equals_torch_on_the_concatenated_batch(tmp_path: Path) -> None:
    ranks = run_ranks_ok("ranks_sync_batchnorm.py", tmp_path)
    for algorithm in ("fast", "reference"):
        for case in CASES:
            expected = torch_reference(case)
            prefix = f"{algorithm}/{case.name}/"
            for step in range(case.steps):
                for name in (f"output{step}", f"input_grad{step}"):
                    joined = np.concatenate([rank[prefix + name] for rank in ranks])
                    assert_close(joined, expected[name], prefix + name)
                for name in (f"weight_grad{step}", f"bias_grad{step}"):
                    # each rank holds its own part; the gradient averaging adds them
                    total = sum(rank[prefix + name] for rank in ranks)
                    assert_close(total, expected[name], prefix + name)
            for rank_number, rank in enumerate(ranks):
                for name in ("running_mean", "running_var"):
                    assert_close(rank[prefix + name], expected[name], f"{prefix}{name}")
                assert rank[prefix + "num_batches_tracked"] == expected["num_batches_tracked"]
                mine = share(case, rank_number)
                assert_close(
                    rank[prefix + "eval_output"], expected["eval_output"][mine], prefix + "eval"
                )
            # every rank's running statistics are bitwise the same
            for name in ("running_mean", "running_var"):
                np.testing.assert_array_equal(ranks[0][prefix + name], ranks[1][prefix + name])


# ------------------------------------------------------------------ one process


def batch_norm_pair(seed: int, **options: object) -> tuple[nn.Module, nn.Module]:
    rng = np.random.default_rng(seed)
    plain = nn.BatchNorm2d(3, dtype=np.float64, **options)  # type: ignore[arg-type]
    synced = nn.SyncBatchNorm(3, dtype=np.float64, **options)  # type: ignore[arg-type]
    if plain.weight is not None:
        weight = rng.uniform(0.5, 1.5, 3)
        for layer in (plain, synced):
            layer.weight.data[...] = weight
            layer.bias.data[...] = np.arange(3.0)
    return plain, synced


@pytest.mark.parametrize(
    "options", [{}, {"momentum": None}, {"affine": False}, {"track_running_stats": False}]
)
def test_without_a_process_group_it_is_batch_norm_exactly(options: dict[str, object]) -> None:
    plain, synced = batch_norm_pair(0, **options)
    rng = np.random.default_rng(1)
    for step in range(3):
        if step == 2:
            plain.eval()
            synced.eval()
        data, grad = rng.standard_normal((2, 4, 3, 5, 5))
        outputs = []
        for layer in (plain, synced):
            x = cp.tensor(data, requires_grad=True)
            layer.zero_grad()
            y = layer(x)
            y.backward(cp.tensor(grad))
            outputs.append((y.numpy(), x.grad.numpy(), layer.state_dict()))
        (y0, dx0, state0), (y1, dx1, state1) = outputs
        np.testing.assert_array_equal(y0, y1)
        np.testing.assert_array_equal(dx0, dx1)
        assert list(state0) == list(state1)
        for name in state0:
            np.testing.assert_array_equal(state0[name], state1[name])


@pytest.mark.parametrize("algorithm", ["fast", "reference"])
def test_the_synchronised_op_in_a_world_of_one_is_batch_norm(algorithm: str) -> None:
    """The op's own path (gather, combine, reduce) with LocalCollectives, against torch."""
    rng = np.random.default_rng(2)
    x, grad = rng.standard_normal((2, 4, 3, 3, 3)) + 5.0
    weight, bias = rng.uniform(0.5, 1.5, 3), rng.standard_normal(3)
    running_mean, running_var = np.zeros(3), np.ones(3)
    with use_algorithm(algorithm):
        out, saved = sync_ops.sync_batch_norm_forward(
            x, weight, bias, running_mean, running_var, 0.1, EPS, sync_ops.LocalCollectives()
        )
        grad_x, grad_weight, grad_bias = sync_ops.sync_batch_norm_backward(
            grad, saved, (True, True, True)
        )
    layer = torch.nn.BatchNorm2d(3, eps=EPS).double()
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(weight))
        layer.bias.copy_(torch.from_numpy(bias))
    tx = torch.from_numpy(x).requires_grad_()
    ty = layer(tx)
    ty.backward(torch.from_numpy(grad))
    for actual, expected in [
        (out, ty.detach().numpy()),
        (grad_x, tx.grad.numpy()),
        (grad_weight, layer.weight.grad.numpy()),
        (grad_bias, layer.bias.grad.numpy()),
        (running_mean, layer.running_mean.numpy()),
        (running_var, layer.running_var.numpy()),
    ]:
        assert_close(actual, expected, algorithm)


def test_combined_statistics_do_not_cancel_far_from_zero() -> None:
    """Three shares of a channel around 1e6 with spread 1: the combination of counts, means
    and squared deviations keeps the variance to rounding (sums of squares would not)."""
    rng = np.random.default_rng(3)
    shares = [rng.standard_normal((n, 2, 8)) + 1e6 for n in (3, 1, 5)]
    local = [reference_statistics(share) for share in shares]
    counts = np.array([share.shape[0] * share.shape[2] for share in shares], dtype=np.float64)
    means = np.stack([mean for mean, _ in local])
    deviations = np.stack([variance for _, variance in local]) * counts[:, np.newaxis]
    mean, variance = sync_ops.combine_statistics(counts, means, deviations)
    expected_mean, expected_variance = reference_statistics(np.concatenate(shares))
    np.testing.assert_allclose(mean, expected_mean, rtol=1e-15)
    np.testing.assert_allclose(variance, expected_variance, rtol=1e-9)


def test_too_few_values_over_all_processes_is_refused() -> None:
    with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
        sync_ops.sync_batch_norm_forward(
            np.ones((1, 2)), None, None, None, None, 0.1, EPS, sync_ops.LocalCollectives()
        )


def test_convert_sync_batchnorm_keeps_parameters_buffers_and_mode() -> None:
    shared = nn.BatchNorm2d(4)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3), shared, nn.Sequential(nn.BatchNorm1d(4), shared), nn.ReLU()
    )
    model.eval()
    before = dict(model.state_dict())
    parameters = [id(p) for p in model.parameters()]
    converted = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    assert converted is model
    assert [type(m).__name__ for m in model.modules()] == [
        "Sequential",
        "Conv2d",
        "SyncBatchNorm",
        "Sequential",
        "SyncBatchNorm",
        "ReLU",
    ]
    assert model[1] is model[2][1]  # a shared layer stays shared
    assert [id(p) for p in model.parameters()] == parameters
    assert list(model.state_dict()) == list(before)
    assert not model[1].training and not model[2][0].training
    single = nn.SyncBatchNorm.convert_sync_batchnorm(nn.BatchNorm1d(3, affine=False))
    assert isinstance(single, nn.SyncBatchNorm) and single.weight is None


def test_sync_batch_norm_refuses_1d_input_as_batch_norm_does() -> None:
    with pytest.raises(ValueError, match=r"SyncBatchNorm: expected 2D or 3D or 4D or 5D input"):
        nn.SyncBatchNorm(3)(cp.tensor(np.zeros(3, dtype=np.float32)))
