"""DistributedDataParallel under ``mpirun -n 2``: the exact mean of known gradients, and two
processes on half batches training as one process on the whole batches."""

from __future__ import annotations

import numpy as np
import pytest

import convprop as cp
from convprop import nn
from convprop.nn.parallel import DistributedDataParallel
from tests.distributed.launch import run_ranks_ok
from tests.distributed.ranks_ddp import KnownGradients, build_model, known_gradient, train

AVERAGED = ("wide", "short", "single")


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, np.ndarray]]:
    return run_ranks_ok("ranks_ddp.py", tmp_path_factory.mktemp("ddp"))


def shape_of(name: str) -> tuple[int, ...]:
    return tuple(getattr(KnownGradients(), name).shape)


@pytest.mark.parametrize("setting", ["default", "one_bucket_per_parameter"])
def test_known_gradients_average_exactly(ranks: list[dict[str, np.ndarray]], setting: str) -> None:
    """ChainerMN's test: every rank sets known gradients, the exact mean is expected (a
    parameter with a gradient on rank 0 only counts as zero on rank 1)."""
    for result in ranks:
        for name in (*AVERAGED, "rank0_only"):
            contributing = (0, 1) if name != "rank0_only" else (0,)
            shape = shape_of(name)
            expected = sum(known_gradient(name, shape, r) for r in contributing) / 2
            actual = result[f"known/{setting}/{name}"]
            assert actual.dtype == (np.float32 if name == "single" else np.float64)
            np.testing.assert_array_equal(actual, expected, err_msg=f"{setting}/{name}")
        # No rank had a gradient for these: they keep none.
        assert f"known/{setting}/unused" not in result
        assert f"known/{setting}/frozen" not in result
    buckets = int(ranks[0][f"known/{setting}/buckets"])
    assert buckets == (5 if setting == "one_bucket_per_parameter" else 2)  # else one per dtype


@pytest.mark.parametrize("kind", ["plain", "batch_norm"])
def test_two_ranks_on_shares_train_as_one_process(
    ranks: list[dict[str, np.ndarray]], kind: str
) -> None:
    """Two epochs of SGD with momentum and weight decay, batches of 6, 6 and 3 (the last
    one's shares 2 and 1, weighted by share_weight); with batch norm, SyncBatchNorm on the
    ranks against BatchNorm2d in one process. Each rank starts from other weights."""
    reference = train(build_model(kind, seed=100), num_replicas=1, rank=0).state_dict()
    for result in ranks:
        for name, expected in reference.items():
            actual = result[f"train/{kind}/{name}"]
            if expected.dtype.kind == "f":
                np.testing.assert_allclose(actual, expected, rtol=1e-10, atol=1e-13, err_msg=name)
            else:
                np.testing.assert_array_equal(actual, expected, err_msg=name)
    for name in reference:  # and the ranks agree with each other to the bit
        np.testing.assert_array_equal(
            ranks[0][f"train/{kind}/{name}"], ranks[1][f"train/{kind}/{name}"]
        )


def test_model_and_optimizer_state_come_from_rank_0(ranks: list[dict[str, np.ndarray]]) -> None:
    state_names = [name for name in ranks[0] if name.startswith("state/")]
    assert any("/exp_avg" in name for name in state_names)
    for name in state_names:
        np.testing.assert_array_equal(ranks[1][name], ranks[0][name], err_msg=name)
    expected = build_model("plain", seed=200).state_dict()
    for name, value in expected.items():
        # rank 0's model took one Adam step from seed 200's weights: close, not equal
        assert ranks[1][f"state/model/{name}"].shape == value.shape


def test_buffers_come_from_rank_0(ranks: list[dict[str, np.ndarray]]) -> None:
    for result in ranks:
        np.testing.assert_array_equal(result["buffers/at_wrapping"], np.full(4, 5.0))
        np.testing.assert_array_equal(result["buffers/synchronized"], np.ones(4))
        assert int(result["buffers/count"]) == 7


# ------------------------------------------------------------------ one process


def test_without_a_group_it_is_the_module() -> None:
    module = nn.Sequential(nn.Linear(3, 2))
    model = DistributedDataParallel(module)
    x = cp.tensor(np.ones((4, 3), dtype=np.float32))
    np.testing.assert_array_equal(model(x).numpy(), module(x).numpy())
    model(x).sum().backward()
    before = {name: p.grad.numpy().copy() for name, p in module.named_parameters()}
    model.synchronize_gradients()
    for name, param in module.named_parameters():
        np.testing.assert_array_equal(param.grad.numpy(), before[name])
    # state_dict without a "module." prefix, both ways
    assert list(model.state_dict()) == ["0.weight", "0.bias"]
    model.load_state_dict(nn.Sequential(nn.Linear(3, 2)).state_dict())
    assert [name for name, _ in model.named_parameters()] == ["module.0.weight", "module.0.bias"]


@pytest.mark.parametrize("cap", [0, -1.0, "25", True])
def test_bucket_cap_must_be_a_positive_number(cap: object) -> None:
    with pytest.raises(
        ValueError, match=f"bucket_cap_mb must be a positive number of megabytes, got {cap!r}"
    ):
        DistributedDataParallel(nn.Linear(2, 2), bucket_cap_mb=cap)  # type: ignore[arg-type]


def test_a_module_is_required() -> None:
    with pytest.raises(TypeError, match="module must be a Module, got list"):
        DistributedDataParallel([nn.Linear(2, 2)])  # type: ignore[arg-type]
